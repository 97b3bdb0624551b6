//! What only a host has, read through its agent: the serial log of an instance running on another
//! host than this server's, or its interactive console ([`super::console`]). The store is the rendezvous, so it works whichever server the user and
//! the agent talk to:
//!
//! 1. The server writes `/relay/req/<host>/<id>` under a short lease and watches
//!    `/relay/resp/<id>`.
//! 2. The host's agent long-polls its requests ([`pending`]), reads the log, and answers
//!    ([`respond`]): one transaction that needs the request to still exist and writes the answer under
//!    the same lease.
//! 3. The server reads the answer. Whatever happens, the lease removes both keys within
//!    [`LEASE_SECS`].

use base64::Engine;
use futures::StreamExt;
use kumo_store::{Compare, Op, Txn};
use kumo_types::{Error, Host, HostState, Instance, RelayRequest, RelayResponse, Result, ids};

use super::App;
use crate::storeutil::{decode, encode, store_err};

/// Requests and answers vanish after this long.
pub const LEASE_SECS: i64 = 30;
/// How long a reader waits for the agent's answer.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long an agent's long-poll waits for a request.
pub const POLL: std::time::Duration = std::time::Duration::from_secs(25);

fn req_prefix(host: &str) -> String {
    format!("/relay/req/{host}/")
}

fn resp_key(id: &str) -> String {
    format!("/relay/resp/{id}")
}

/// Up to `max` bytes of instance `inst`'s serial log from `offset`, and the log's size, from the
/// agent of the host it runs on.
pub async fn serial_log(
    app: &App,
    inst: &Instance,
    offset: u64,
    max: u64,
) -> Result<(Vec<u8>, u64)> {
    let host = reachable_host(app, inst, "its serial log cannot be read").await?;
    let req = RelayRequest {
        id: ids::new_id("relay"),
        instance_id: inst.id.clone(),
        offset,
        max,
        console: None,
    };
    let answer = ask(app, &host, req).await?;
    if let Some(e) = answer.error {
        return Err(Error::unavailable(format!("host `{}`: {e}", host.name)));
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(answer.data_b64.as_bytes())
        .map_err(|e| Error::internal_with("relay answer", e))?;
    Ok((data, answer.size))
}

/// The host `inst` runs on, unless it has none or is down (`consequence` says what that means).
pub async fn reachable_host(app: &App, inst: &Instance, consequence: &str) -> Result<Host> {
    let host_id = inst
        .host
        .as_deref()
        .ok_or_else(|| Error::conflict(format!("instance `{}` is on no host yet", inst.name)))?;
    let host = super::host::get(app, host_id).await?;
    if host.state == HostState::Down {
        return Err(Error::unavailable(format!(
            "instance `{}` runs on host `{}`, which is down: {consequence}",
            inst.name, host.name
        )));
    }
    Ok(host)
}

/// Put `req` to `host`'s agent and wait up to [`WAIT`] for its answer.
pub async fn ask(app: &App, host: &Host, req: RelayRequest) -> Result<RelayResponse> {
    let kv = app.kv();
    let lease = kv.lease_grant(LEASE_SECS).await.map_err(store_err)?;
    let rev = kv.revision().await.map_err(store_err)?;
    let mut answers = kv
        .watch(&resp_key(&req.id), rev + 1)
        .await
        .map_err(store_err)?;
    kv.txn(Txn {
        compare: vec![],
        success: vec![Op::Put {
            key: format!("{}{}", req_prefix(&host.id), req.id),
            value: encode(&req)?,
            lease,
        }],
        failure: vec![],
    })
    .await
    .map_err(store_err)?;
    let answer = tokio::time::timeout(WAIT, async {
        while let Some(ev) = answers.next().await {
            let ev = ev.map_err(store_err)?;
            if !ev.kv.value.is_empty() {
                return decode::<RelayResponse>(&ev.kv);
            }
        }
        Err(Error::unavailable("the store ended the watch"))
    })
    .await;
    let _ = kv.lease_revoke(lease).await;
    answer.map_err(|_| {
        Error::unavailable(format!(
            "host `{}` did not answer within {WAIT:?} (is its agent connected?)",
            host.name
        ))
    })?
}

/// The requests waiting for `host_id`'s agent; waits up to [`POLL`] for one when there are none.
pub async fn pending(app: &App, host_id: &str) -> Result<Vec<RelayRequest>> {
    let kv = app.kv();
    let prefix = req_prefix(host_id);
    let rev = kv.revision().await.map_err(store_err)?;
    let now = list(app, &prefix).await?;
    if !now.is_empty() {
        return Ok(now);
    }
    let mut events = kv.watch(&prefix, rev + 1).await.map_err(store_err)?;
    let _ = tokio::time::timeout(POLL, async {
        while let Some(Ok(ev)) = events.next().await {
            if !ev.kv.value.is_empty() {
                return;
            }
        }
    })
    .await;
    list(app, &prefix).await
}

async fn list(app: &App, prefix: &str) -> Result<Vec<RelayRequest>> {
    let page = app.kv().list(prefix, None, 100).await.map_err(store_err)?;
    page.kvs.iter().map(decode::<RelayRequest>).collect()
}

/// `host_id`'s agent answers request `id` (ignored if the request is gone).
pub async fn respond(app: &App, host_id: &str, id: &str, resp: RelayResponse) -> Result<()> {
    let rkey = format!("{}{id}", req_prefix(host_id));
    let Some(req) = app.kv().get(&rkey).await.map_err(store_err)? else {
        return Ok(());
    };
    app.kv()
        .txn(Txn {
            compare: vec![Compare::mod_revision(&rkey, req.mod_revision)],
            success: vec![
                Op::delete(&rkey),
                Op::Put {
                    key: resp_key(id),
                    value: encode(&resp)?,
                    lease: req.lease,
                },
            ],
            failure: vec![],
        })
        .await
        .map_err(store_err)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_host_and_per_request() {
        assert_eq!(req_prefix("host-1"), "/relay/req/host-1/");
        assert_eq!(resp_key("relay-1"), "/relay/resp/relay-1");
        assert!(!req_prefix("host-1").starts_with(&req_prefix("host-")));
    }
}
