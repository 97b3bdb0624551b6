//! What the control plane relays to this host because only this host has it: serial logs of its
//! instances, and their interactive consoles. Requests arrive by long-poll
//! ([`ControlPlane::relay_requests`]); each is answered once ([`ControlPlane::relay_respond`]).

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use kumo_types::{ConsoleRelay, RelayRequest, RelayResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::control::ControlPlane;
use crate::worker::Ctx;

/// Answer relayed requests for as long as the agent runs.
pub async fn serve(ctx: Arc<Ctx>) {
    loop {
        match ctx.cp.relay_requests(&ctx.host_id).await {
            Ok(reqs) => {
                for r in reqs {
                    if let Some(c) = r.console.clone() {
                        tokio::spawn(console(ctx.clone(), r, c));
                        continue;
                    }
                    let path = crate::paths::serial_log(&ctx.data_dir, &r.instance_id);
                    let resp =
                        tokio::task::spawn_blocking(move || read_log(&path, r.offset, r.max))
                            .await
                            .unwrap_or_else(|e| failed(format!("reading the log: {e}")));
                    answer(ctx.cp.as_ref(), &ctx.host_id, &r.id, resp).await;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "relay poll failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    }
}

fn failed(why: String) -> RelayResponse {
    RelayResponse {
        data_b64: String::new(),
        size: 0,
        error: Some(why),
    }
}

async fn answer(cp: &dyn ControlPlane, host_id: &str, request: &str, resp: RelayResponse) {
    if let Err(e) = cp.relay_respond(host_id, request, resp).await {
        tracing::warn!(error = %e, "could not answer a relayed request");
    }
}

/// Up to `max` bytes of a serial log from `offset`, and its size (an absent log is empty).
fn read_log(path: &std::path::Path, offset: u64, max: u64) -> RelayResponse {
    use base64::Engine;
    match crate::paths::read_log_chunk(path, offset, max) {
        Ok((data, size)) => RelayResponse {
            data_b64: base64::engine::general_purpose::STANDARD.encode(data),
            size,
            error: None,
        },
        Err(e) => failed(format!("{}: {e}", path.display())),
    }
}

/// An interactive console session: the instance's serial socket joined to the session's two
/// streams on the control plane, until either side ends. The relay request is answered first, with
/// why not if the socket cannot be opened (the instance does not run here).
async fn console(ctx: Arc<Ctx>, r: RelayRequest, c: ConsoleRelay) {
    let sock = crate::paths::serial_sock(&ctx.data_dir, &r.instance_id);
    let stream = match tokio::net::UnixStream::connect(&sock).await {
        Ok(s) => s,
        Err(e) => {
            let why = format!("it is not running on this host ({e})");
            answer(ctx.cp.as_ref(), &ctx.host_id, &r.id, failed(why)).await;
            return;
        }
    };
    let ok = RelayResponse {
        data_b64: String::new(),
        size: 0,
        error: None,
    };
    answer(ctx.cp.as_ref(), &ctx.host_id, &r.id, ok).await;
    let (mut rd, mut wr) = stream.into_split();
    let mut input = match ctx.cp.console_input(&ctx.host_id, &c).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(session = %c.session, error = %e, "console session: no input stream");
            return;
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let output = crate::control::byte_stream(rx);
    let upload = ctx.cp.console_output(&ctx.host_id, &c, output);
    let guest_to_user = async {
        let mut buf = vec![0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let user_to_guest = async {
        while let Some(Ok(chunk)) = input.next().await {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        r = upload => if let Err(e) = r {
            tracing::debug!(session = %c.session, error = %e, "console session output ended");
        },
        _ = guest_to_user => {},
        _ = user_to_guest => {},
    }
    tracing::info!(session = %c.session, instance = %r.instance_id, "console session ended");
}
