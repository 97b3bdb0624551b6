//! Interactive serial console: a WebSocket bridged to QEMU's serial socket. Binary frames carry raw
//! bytes both ways. QEMU accepts one client on the socket at a time. An instance on another host
//! than this server's is reached through its agent ([`crate::app::console`]).

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use kumo_types::{Error, ErrorBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::caller::Who;
use crate::app::{App, console, instance};
use crate::error::ApiResult;

#[utoipa::path(get, path = "/v1/instances/{id}/console", params(("id" = String, Path, description = "ID or name")),
    responses((status = 101, description = "WebSocket upgrade; binary frames are raw serial bytes"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn console(
    State(app): State<App>,
    who: Who,
    Path(id): Path<String>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let (inst, _) = instance::find_in(&app, &who.scope(), &id).await?;
    let sock = kumo_agent::paths::serial_sock(&app.cfg.data_dir, &inst.id);
    match UnixStream::connect(&sock).await {
        Ok(stream) => Ok(ws.on_upgrade(move |socket| bridge(socket, stream))),
        // Not on this server's own host (or not running): ask the host's agent, which says why
        // not if it cannot.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && inst.host.is_some() => {
            let user = console::open(&app, &inst).await?;
            Ok(ws.on_upgrade(move |socket| bridge_remote(socket, user)))
        }
        Err(e) => Err(Error::conflict(format!(
            "the console of `{}` is not available (is it running?): {e}",
            inst.name
        ))
        .into()),
    }
}

/// The WebSocket to a console session on another host ([`console::UserEnd`]).
async fn bridge_remote(socket: WebSocket, user: console::UserEnd) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let console::UserEnd {
        input,
        mut output,
        session: _session,
    } = user;
    let to_ws = async {
        while let Some(chunk) = output.recv().await {
            if ws_tx.send(Message::Binary(chunk)).await.is_err() {
                break;
            }
        }
        let _ = ws_tx.close().await;
    };
    let from_ws = async {
        while let Some(Ok(msg)) = ws_rx.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Text(t) => bytes::Bytes::copy_from_slice(t.as_bytes()),
                Message::Close(_) => break,
                _ => continue,
            };
            if input.send(data).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = to_ws => {},
        _ = from_ws => {},
    }
}

async fn bridge(socket: WebSocket, stream: UnixStream) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut rd, mut wr) = stream.into_split();
    let to_ws = async {
        let mut buf = vec![0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_tx
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.close().await;
    };
    let from_ws = async {
        while let Some(Ok(msg)) = ws_rx.next().await {
            let data = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = to_ws => {},
        _ = from_ws => {},
    }
}
