//! The etcd v3 backend, over etcd's JSON gRPC gateway (`/v3/...`), with `reqwest`.
//!
//! Why the gateway rather than gRPC: it needs no protobuf toolchain and keeps the dependency tree
//! small; every operation the [`Kv`] trait needs (range, txn, watch, lease grant/keepalive/revoke,
//! compaction) is exposed by etcd 3.4's gateway. Keys and values travel base64-encoded; int64s arrive
//! as JSON strings; zero-valued fields are omitted (so a missing field means 0/false/empty).
//!
//! Semantics map one-to-one: etcd's revisions, create/mod revisions, versions, compare rules
//! (a value compare on a missing key is false) and lease behaviour are exactly the trait's. Absolute
//! revision numbers differ from the SQLite backend's; relative properties are the same.
//!
//! Failover: requests go to the endpoint that last worked; on a connection failure or an
//! "unavailable" answer (no leader) the next endpoint is tried, once each. Only failures where the
//! request cannot have been applied are retried.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{StreamExt, stream};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::keys::prefix_end;
use crate::{
    CompareOp, CompareTarget, KeyValue, Kv, LeaseId, ListPage, Op, OpResult, Result, Revision,
    StoreError, Txn, TxnResult, WatchEvent, WatchStream,
};

mod wire;

use wire::{JsonStream, decode_kv};

/// An etcd cluster reached through its JSON gateway.
pub struct EtcdKv {
    client: reqwest::Client,
    endpoints: Vec<String>,
    current: AtomicUsize,
}

/// An error answer from the gateway: `{"error": ..., "code": <grpc code>, "message": ...}`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct GatewayError {
    code: i64,
    message: String,
}

const GRPC_NOT_FOUND: i64 = 5;
const GRPC_OUT_OF_RANGE: i64 = 11;
const GRPC_UNAVAILABLE: i64 = 14;
const GRPC_DEADLINE_EXCEEDED: i64 = 4;

fn normalize(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    if e.contains("://") {
        e.to_owned()
    } else {
        format!("http://{e}")
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// `(key, range_end)` for every key with `prefix` (etcd's "\0" range end means "no upper bound").
fn prefix_range(prefix: &str) -> (String, String) {
    if prefix.is_empty() {
        return (b64(b"\0"), b64(b"\0"));
    }
    let end = prefix_end(prefix.as_bytes()).unwrap_or_else(|| b"\0".to_vec());
    (b64(prefix.as_bytes()), b64(&end))
}

fn compare_json(c: &crate::Compare) -> Value {
    let result = match c.op {
        CompareOp::Equal => "EQUAL",
        CompareOp::NotEqual => "NOT_EQUAL",
        CompareOp::Less => "LESS",
        CompareOp::Greater => "GREATER",
    };
    let key = b64(c.key.as_bytes());
    match &c.target {
        CompareTarget::ModRevision(r) => {
            json!({"key": key, "result": result, "target": "MOD", "mod_revision": r.to_string()})
        }
        CompareTarget::CreateRevision(r) => {
            json!({"key": key, "result": result, "target": "CREATE", "create_revision": r.to_string()})
        }
        CompareTarget::Version(v) => {
            json!({"key": key, "result": result, "target": "VERSION", "version": v.to_string()})
        }
        CompareTarget::Value(v) => {
            json!({"key": key, "result": result, "target": "VALUE", "value": b64(v)})
        }
    }
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Put { key, value, lease } => json!({"request_put": {
            "key": b64(key.as_bytes()), "value": b64(value), "lease": lease.to_string(), "prev_kv": true
        }}),
        Op::Delete { key } => json!({"request_delete_range": {"key": b64(key.as_bytes())}}),
        Op::DeletePrefix { prefix } => {
            let (key, range_end) = prefix_range(prefix);
            json!({"request_delete_range": {"key": key, "range_end": range_end}})
        }
        Op::Get { key } => json!({"request_range": {"key": b64(key.as_bytes())}}),
    }
}

/// The JSON body of a txn request.
fn txn_json(t: &Txn) -> Value {
    json!({
        "compare": t.compare.iter().map(compare_json).collect::<Vec<_>>(),
        "success": t.success.iter().map(op_json).collect::<Vec<_>>(),
        "failure": t.failure.iter().map(op_json).collect::<Vec<_>>(),
    })
}

fn op_result(op: &Op, resp: &wire::ResponseOp) -> Result<OpResult> {
    match op {
        Op::Put { .. } => {
            let r = resp
                .response_put
                .as_ref()
                .ok_or_else(|| malformed("txn put response"))?;
            Ok(OpResult::Put {
                prev: r.prev_kv.as_ref().map(decode_kv).transpose()?,
            })
        }
        Op::Delete { .. } | Op::DeletePrefix { .. } => {
            let r = resp
                .response_delete_range
                .as_ref()
                .ok_or_else(|| malformed("txn delete response"))?;
            Ok(OpResult::Delete { deleted: r.deleted })
        }
        Op::Get { .. } => {
            let r = resp
                .response_range
                .as_ref()
                .ok_or_else(|| malformed("txn range response"))?;
            Ok(OpResult::Get {
                kv: r.kvs.first().map(decode_kv).transpose()?,
            })
        }
    }
}

fn malformed(what: &str) -> StoreError {
    StoreError::Backend(format!("etcd gateway: malformed {what}"))
}

fn gateway_error(status: reqwest::StatusCode, body: &[u8]) -> StoreError {
    let e: GatewayError = serde_json::from_slice(body).unwrap_or_default();
    let msg = if e.message.is_empty() {
        String::from_utf8_lossy(body).into_owned()
    } else {
        e.message
    };
    match e.code {
        GRPC_NOT_FOUND if msg.contains("lease not found") => StoreError::LeaseNotFound(0),
        GRPC_OUT_OF_RANGE if msg.contains("compacted") => StoreError::Compacted {
            requested: 0,
            oldest: 0,
        },
        GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED => {
            StoreError::Unavailable(format!("etcd: {msg}"))
        }
        _ => StoreError::Backend(format!("etcd ({status}): {msg}")),
    }
}

/// Put the lease id the caller knows into a `LeaseNotFound` from the gateway.
fn with_lease(id: LeaseId) -> impl FnOnce(StoreError) -> StoreError {
    move |e| match e {
        StoreError::LeaseNotFound(_) => StoreError::LeaseNotFound(id),
        e => e,
    }
}

impl EtcdKv {
    /// Connect to an etcd cluster through any of `endpoints` (`http://host:port`; a bare `host:port`
    /// gets `http://`). Fails unless one endpoint answers.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdKv> {
        if endpoints.is_empty() {
            return Err(StoreError::Unavailable("no etcd endpoints given".into()));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| StoreError::Backend(format!("http client: {e}")))?;
        let kv = EtcdKv {
            client,
            endpoints: endpoints.iter().map(|e| normalize(e)).collect(),
            current: AtomicUsize::new(0),
        };
        kv.revision().await?;
        Ok(kv)
    }

    /// POST `body` to `path`, failing over across endpoints; returns the successful response.
    async fn send(&self, path: &str, body: &Value) -> Result<reqwest::Response> {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let url = format!("{}{path}", self.endpoints[idx]);
            match self.client.post(&url).json(body).send().await {
                Ok(resp) if resp.status().is_success() => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok(resp);
                }
                Ok(resp) => {
                    let status = resp.status();
                    let bytes = resp.bytes().await.unwrap_or_default();
                    match gateway_error(status, &bytes) {
                        StoreError::Unavailable(m) => last = format!("{url}: {m}"),
                        e => return Err(e),
                    }
                }
                Err(e) if e.is_connect() => last = format!("{url}: {e}"),
                Err(e) => return Err(StoreError::Unavailable(format!("{url}: {e}"))),
            }
        }
        Err(StoreError::Unavailable(format!(
            "no etcd endpoint answered (last: {last})"
        )))
    }

    async fn call<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        let resp = self.send(path, body).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| StoreError::Unavailable(format!("etcd {path}: reading answer: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            StoreError::Backend(format!(
                "etcd {path}: bad answer {}: {e}",
                String::from_utf8_lossy(&bytes)
            ))
        })
    }
}

#[async_trait]
impl Kv for EtcdKv {
    async fn revision(&self) -> Result<Revision> {
        let r: wire::RangeResponse = self
            .call(
                "/v3/kv/range",
                &json!({"key": b64(b"\0"), "count_only": true}),
            )
            .await?;
        Ok(r.header.revision)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let r: wire::RangeResponse = self
            .call("/v3/kv/range", &json!({"key": b64(key.as_bytes())}))
            .await?;
        r.kvs.first().map(decode_kv).transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let (start, range_end) = prefix_range(prefix);
        let start = match start_after {
            Some(s) if s >= prefix => {
                let mut k = s.as_bytes().to_vec();
                k.push(0);
                b64(&k)
            }
            _ => start,
        };
        let body = json!({"key": start, "range_end": range_end, "limit": limit.to_string()});
        let r: wire::RangeResponse = self.call("/v3/kv/range", &body).await?;
        let kvs = r.kvs.iter().map(decode_kv).collect::<Result<Vec<_>>>()?;
        Ok(ListPage {
            kvs,
            revision: r.header.revision,
            more: r.more,
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult> {
        let lease = txn
            .success
            .iter()
            .chain(&txn.failure)
            .find_map(|op| match op {
                Op::Put { lease, .. } if *lease != 0 => Some(*lease),
                _ => None,
            })
            .unwrap_or(0);
        let r: wire::TxnResponse = self
            .call("/v3/kv/txn", &txn_json(&txn))
            .await
            .map_err(with_lease(lease))?;
        let ops = if r.succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        if ops.len() != r.responses.len() {
            return Err(malformed("txn response (wrong number of results)"));
        }
        let results = ops
            .iter()
            .zip(&r.responses)
            .map(|(op, resp)| op_result(op, resp))
            .collect::<Result<_>>()?;
        Ok(TxnResult {
            succeeded: r.succeeded,
            revision: r.header.revision,
            results,
        })
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        let (key, range_end) = prefix_range(prefix);
        let body = json!({"create_request": {
            "key": key, "range_end": range_end, "start_revision": from.max(0).to_string(), "prev_kv": true
        }});
        let resp = self.send("/v3/watch", &body).await?;
        let mut bytes = resp.bytes_stream();
        let mut parser = JsonStream::default();
        // Wait for "created" so that every event committed after this call returns is delivered.
        let first = loop {
            if let Some(v) = parser.next_value()? {
                break v;
            }
            match bytes.next().await {
                Some(Ok(chunk)) => parser.push(&chunk),
                Some(Err(e)) => return Err(StoreError::Unavailable(format!("etcd watch: {e}"))),
                None => {
                    return Err(StoreError::Unavailable(
                        "etcd watch stream ended before creation".into(),
                    ));
                }
            }
        };
        let (tx, rx) = mpsc::channel::<Result<WatchEvent>>(256);
        tokio::spawn(async move {
            let mut pending = Some(first);
            loop {
                let value = match pending.take() {
                    Some(v) => v,
                    None => match parser.next_value() {
                        Ok(Some(v)) => v,
                        Ok(None) => {
                            let chunk = tokio::select! {
                                () = tx.closed() => return,
                                c = bytes.next() => c,
                            };
                            match chunk {
                                Some(Ok(c)) => {
                                    parser.push(&c);
                                    continue;
                                }
                                Some(Err(e)) => {
                                    let _ = tx
                                        .send(Err(StoreError::Unavailable(format!(
                                            "etcd watch: {e}"
                                        ))))
                                        .await;
                                    return;
                                }
                                None => {
                                    let _ = tx
                                        .send(Err(StoreError::Unavailable(
                                            "etcd watch stream ended".into(),
                                        )))
                                        .await;
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    },
                };
                match wire::watch_items(value, from) {
                    Ok(items) => {
                        for item in items {
                            let stop = item.is_err();
                            if tx.send(item).await.is_err() || stop {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<LeaseId> {
        let r: wire::LeaseResponse = self
            .call(
                "/v3/lease/grant",
                &json!({"TTL": ttl_secs.to_string(), "ID": "0"}),
            )
            .await?;
        if !r.error.is_empty() {
            return Err(StoreError::Backend(format!(
                "etcd lease grant: {}",
                r.error
            )));
        }
        Ok(r.id)
    }

    async fn lease_keepalive(&self, id: LeaseId) -> Result<i64> {
        let r: wire::KeepaliveResponse = self
            .call("/v3/lease/keepalive", &json!({"ID": id.to_string()}))
            .await
            .map_err(with_lease(id))?;
        match r.result {
            Some(res) if res.ttl > 0 => Ok(res.ttl),
            _ => Err(StoreError::LeaseNotFound(id)),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        let _: Value = self
            .call("/v3/lease/revoke", &json!({"ID": id.to_string()}))
            .await
            .map_err(with_lease(id))?;
        Ok(())
    }

    async fn compact(&self, rev: Revision) -> Result<()> {
        let _: Value = self
            .call(
                "/v3/kv/compaction",
                &json!({"revision": rev.to_string(), "physical": true}),
            )
            .await
            .map_err(|e| match e {
                StoreError::Compacted { .. } => StoreError::Compacted {
                    requested: rev,
                    oldest: rev,
                },
                e => e,
            })?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_cover_exactly_the_prefix() {
        assert_eq!(prefix_range(""), (b64(b"\0"), b64(b"\0")));
        assert_eq!(prefix_range("/a/"), (b64(b"/a/"), b64(b"/a0")));
    }

    #[test]
    fn txn_json_uses_gateway_names() {
        let t = Txn {
            compare: vec![crate::Compare::absent("k")],
            success: vec![Op::put("k", "v")],
            failure: vec![Op::get("k")],
        };
        let j = txn_json(&t);
        assert_eq!(j["compare"][0]["target"], "CREATE");
        assert_eq!(j["compare"][0]["create_revision"], "0");
        assert_eq!(j["success"][0]["request_put"]["value"], b64(b"v"));
        assert_eq!(j["failure"][0]["request_range"]["key"], b64(b"k"));
    }

    #[test]
    fn gateway_errors_map_to_store_errors() {
        let lease = br#"{"error":"x","message":"etcdserver: requested lease not found","code":5}"#;
        assert!(matches!(
            gateway_error(reqwest::StatusCode::NOT_FOUND, lease),
            StoreError::LeaseNotFound(_)
        ));
        let unavailable = br#"{"message":"etcdserver: no leader","code":14}"#;
        assert!(matches!(
            gateway_error(reqwest::StatusCode::SERVICE_UNAVAILABLE, unavailable),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn endpoints_get_a_scheme() {
        assert_eq!(normalize("127.0.0.1:2379/"), "http://127.0.0.1:2379");
        assert_eq!(normalize("http://h:1"), "http://h:1");
    }
}
