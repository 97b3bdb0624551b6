//! Interactive consoles of instances on other hosts than this server's own.
//!
//! The user's WebSocket ends on the server they called; the serial socket is on the instance's host.
//! The two meet in a session:
//!
//! 1. The server opens a session (two channels: what the user types, what the guest prints) and asks
//!    the host's agent for it through the relay ([`super::relay::ask`]), naming itself.
//! 2. The agent connects the instance's serial socket, answers the relay request (or says why not),
//!    then opens `GET …/consoles/{session}/input` and `POST …/consoles/{session}/output` (a streamed
//!    body) on the server it talks to.
//! 3. That server serves them from the session if it is its own, or forwards them to the session's
//!    server over `/peer/v1` ([`input_stream`], [`feed_output`]).
//!
//! The session ends when the user's WebSocket closes (dropping [`UserEnd`] removes it, which ends the
//! agent's input stream, and the agent then closes the serial socket) or when the guest side ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use kumo_types::{ConsoleRelay, Error, Instance, RelayRequest, Result, ids};
use tokio::sync::mpsc;

use super::App;

/// Chunks buffered each way before the sender waits.
const DEPTH: usize = 64;

pub use kumo_agent::control::ByteStream;

struct Session {
    host: String,
    /// Taken by the agent's input request (once).
    input: Option<mpsc::Receiver<Bytes>>,
    output: mpsc::Sender<Bytes>,
}

/// The console sessions whose users are connected to this server.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Session>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The user's end of a session: send what they type, receive what the guest prints. Dropping it
/// ends the session.
pub struct UserEnd {
    pub input: mpsc::Sender<Bytes>,
    pub output: mpsc::Receiver<Bytes>,
    pub session: SessionGuard,
}

/// Removes its session when dropped.
pub struct SessionGuard {
    id: String,
    sessions: Arc<Sessions>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.with(|m| m.remove(&self.id));
    }
}

/// Open a console session for `inst` with the agent of the host it runs on.
pub async fn open(app: &App, inst: &Instance) -> Result<UserEnd> {
    let host = super::relay::reachable_host(app, inst, "its console cannot be reached").await?;
    let host_id = host.id.clone();
    let id = ids::new_id("console");
    let (in_tx, in_rx) = mpsc::channel(DEPTH);
    let (out_tx, out_rx) = mpsc::channel(DEPTH);
    app.consoles.with(|m| {
        m.insert(
            id.clone(),
            Session {
                host: host_id.clone(),
                input: Some(in_rx),
                output: out_tx,
            },
        )
    });
    let user = UserEnd {
        input: in_tx,
        output: out_rx,
        session: SessionGuard {
            id: id.clone(),
            sessions: app.consoles.clone(),
        },
    };
    let req = RelayRequest {
        id: ids::new_id("relay"),
        instance_id: inst.id.clone(),
        offset: 0,
        max: 0,
        console: Some(ConsoleRelay {
            session: id,
            server: app.peers.me.clone(),
        }),
    };
    let answer = super::relay::ask(app, &host, req).await?;
    if let Some(e) = answer.error {
        return Err(Error::conflict(format!(
            "the console of `{}` is not available: {e}",
            inst.name
        )));
    }
    Ok(user)
}

fn no_session(session: &str) -> Error {
    Error::not_found("console session", session)
}

/// What the user types, for the agent of `host` (session `session`, held by server `server`).
pub async fn input_stream(
    app: &App,
    host: &str,
    session: &str,
    server: &str,
) -> Result<ByteStream> {
    if server != app.peers.me {
        let peer = peer(app, server).await?;
        let resp = app
            .peers
            .get(&peer, &format!("/consoles/{session}/{host}/input"))
            .await?;
        return Ok(resp
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other))
            .boxed());
    }
    let rx = app
        .consoles
        .with(|m| match m.get_mut(session) {
            Some(s) if s.host == host => s.input.take(),
            _ => None,
        })
        .ok_or_else(|| no_session(session))?;
    Ok(kumo_agent::control::byte_stream(rx))
}

/// What the guest prints, from the agent of `host`, until the stream ends.
pub async fn feed_output(
    app: &App,
    host: &str,
    session: &str,
    server: &str,
    mut body: ByteStream,
) -> Result<()> {
    if server != app.peers.me {
        let peer = peer(app, server).await?;
        app.peers
            .post_stream(
                &peer,
                &format!("/consoles/{session}/{host}/output"),
                reqwest::Body::wrap_stream(body),
            )
            .await?;
        return Ok(());
    }
    let tx = app
        .consoles
        .with(|m| match m.get(session) {
            Some(s) if s.host == host => Some(s.output.clone()),
            _ => None,
        })
        .ok_or_else(|| no_session(session))?;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        if tx.send(chunk).await.is_err() {
            break; // the user left
        }
    }
    Ok(())
}

async fn peer(app: &App, server: &str) -> Result<kumo_types::ServerInfo> {
    crate::peers::live(app.kv())
        .await?
        .into_iter()
        .find(|s| s.id == server)
        .ok_or_else(|| {
            Error::unavailable(format!(
                "server {server}, which holds the console session, is not live"
            ))
        })
}
