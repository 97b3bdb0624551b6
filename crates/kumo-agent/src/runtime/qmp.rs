//! A small async QMP client over a unix socket.
//!
//! Protocol: QEMU sends a greeting, the client sends `qmp_capabilities`, then every command carries an
//! `id` that QEMU echoes in its `return`/`error` reply. Asynchronous events (`SHUTDOWN`, `RESET`,
//! `STOP`, …) arrive interleaved, without an id.
//!
//! Design:
//! - One reader task owns the read half. It routes replies to the waiting caller by `id`, publishes
//!   events on a bounded broadcast channel ([`Qmp::subscribe`]; slow subscribers lag, they never block
//!   the reader), and records what matters for exit classification — the last `SHUTDOWN` event and
//!   whether the connection ended — in a watch channel ([`Qmp::state`]), so that information is never
//!   lost to a lagging subscriber.
//! - On EOF or a read error every pending command fails with [`QmpError::Closed`].
//! - Dropping the last [`Qmp`] handle closes the connection (QEMU keeps running and accepts the next
//!   client, which is how a restarted agent re-adopts a VM). QEMU serves one QMP client at a time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Mutex, broadcast, oneshot, watch};
use tokio::task::JoinHandle;

/// Default time a command may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Capacity of the event broadcast channel.
const EVENT_CAPACITY: usize = 64;
/// Longest accepted QMP line (QEMU's replies are small; bound memory on a misbehaving peer).
const MAX_LINE: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket {path}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP I/O")]
    Io(#[from] std::io::Error),
    #[error("QMP connection closed (QEMU exited or dropped the client)")]
    Closed,
    #[error("QMP command `{command}` got no reply within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("QMP command `{command}` failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("QMP protocol: {0}")]
    Protocol(String),
}

impl From<QmpError> for kumo_types::Error {
    fn from(e: QmpError) -> Self {
        match e {
            QmpError::Closed | QmpError::Timeout { .. } | QmpError::Connect { .. } => {
                kumo_types::Error::Unavailable {
                    message: format!("{e}"),
                }
            }
            other => kumo_types::Error::internal_with("QMP", other),
        }
    }
}

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    pub name: String,
    pub data: Value,
    /// Seconds since the epoch (QEMU's timestamp).
    pub timestamp: f64,
}

/// The payload of a `SHUTDOWN` event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShutdownEvent {
    /// True if the guest initiated it (ACPI poweroff, panic); false for host requests (QMP `quit`,
    /// a signal).
    pub guest: bool,
    /// QEMU's `ShutdownCause`, e.g. `guest-shutdown`, `host-qmp-quit`, `host-signal`, `guest-panic`.
    pub reason: String,
}

/// What the reader has seen so far; the final value (`closed == true`) never changes again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QmpState {
    pub last_shutdown: Option<ShutdownEvent>,
    pub closed: bool,
}

/// `query-status` result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Status {
    pub running: bool,
    /// `running`, `paused`, `shutdown`, `prelaunch`, `internal-error`, …
    pub status: String,
}

type Pending = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Result<Value, QmpError>>>>>;

struct Inner {
    writer: Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
    events: broadcast::Sender<QmpEvent>,
    state: watch::Receiver<QmpState>,
    reader: JoinHandle<()>,
    greeting: Value,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A connected, capability-negotiated QMP client. Cheap to clone.
#[derive(Clone)]
pub struct Qmp {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp")
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

impl Qmp {
    /// Connect, read the greeting and negotiate capabilities, all within `timeout`.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let fut = async {
            let stream = UnixStream::connect(path)
                .await
                .map_err(|source| QmpError::Connect {
                    path: path.display().to_string(),
                    source,
                })?;
            Self::handshake(stream).await
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(QmpError::Timeout {
                command: "greeting".into(),
                timeout,
            }),
        }
    }

    async fn handshake(stream: UnixStream) -> Result<Qmp, QmpError> {
        let (rd, wr) = stream.into_split();
        let mut rd = BufReader::new(rd);
        let greeting = loop {
            let v = read_message(&mut rd).await?.ok_or(QmpError::Closed)?;
            if v.get("QMP").is_some() {
                break v;
            }
        };
        let pending: Pending = Arc::default();
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (state_tx, state) = watch::channel(QmpState::default());
        let reader = tokio::spawn(read_loop(rd, pending.clone(), events.clone(), state_tx));
        let qmp = Qmp {
            inner: Arc::new(Inner {
                writer: Mutex::new(wr),
                pending,
                next_id: AtomicU64::new(1),
                events,
                state,
                reader,
                greeting,
            }),
        };
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// The greeting QEMU sent (contains its version and capabilities).
    pub fn greeting(&self) -> &Value {
        &self.inner.greeting
    }

    /// Receive events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<QmpEvent> {
        self.inner.events.subscribe()
    }

    /// The last `SHUTDOWN` seen and whether the connection has ended.
    pub fn state(&self) -> watch::Receiver<QmpState> {
        self.inner.state.clone()
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.state.borrow().closed
    }

    /// Wait until the connection ends (QEMU exited or closed it); returns the final state.
    pub async fn closed(&self) -> QmpState {
        let mut rx = self.inner.state.clone();
        let done = rx.wait_for(|s| s.closed).await.map(|s| s.clone()).ok();
        // `None`: the reader is gone (aborted); treat as closed with what it saw.
        done.unwrap_or_else(|| QmpState {
            closed: true,
            ..rx.borrow().clone()
        })
    }

    /// Run a command with [`DEFAULT_TIMEOUT`].
    pub async fn execute(&self, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
        self.execute_timeout(command, args, DEFAULT_TIMEOUT).await
    }

    /// Run a command; returns its `return` value.
    pub async fn execute_timeout(
        &self,
        command: &str,
        args: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        let (tx, rx) = oneshot::channel();
        self.pending_map().insert(id, tx);
        if self.is_closed() {
            self.pending_map().remove(&id);
            return Err(QmpError::Closed);
        }
        let mut line = msg.to_string();
        line.push('\n');
        let sent = async {
            let mut w = self.inner.writer.lock().await;
            w.write_all(line.as_bytes()).await?;
            w.flush().await
        };
        if let Err(e) = tokio::time::timeout(timeout, sent)
            .await
            .map_err(|_| QmpError::Timeout {
                command: command.into(),
                timeout,
            })
            .and_then(|r| r.map_err(QmpError::Io))
        {
            self.pending_map().remove(&id);
            return Err(e);
        }
        let res = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(QmpError::Closed),
            Err(_) => Err(QmpError::Timeout {
                command: command.into(),
                timeout,
            }),
        };
        self.pending_map().remove(&id);
        res.map_err(|e| match e {
            QmpError::Command { class, desc, .. } => QmpError::Command {
                command: command.into(),
                class,
                desc,
            },
            other => other,
        })
    }

    fn pending_map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Result<Value, QmpError>>>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map itself is still valid.
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn query_status(&self) -> Result<Status, QmpError> {
        let v = self.execute("query-status", None).await?;
        serde_json::from_value(v)
            .map_err(|e| QmpError::Protocol(format!("query-status reply: {e}")))
    }

    /// `major.minor.micro` of the running QEMU.
    pub async fn query_version(&self) -> Result<String, QmpError> {
        let v = self.execute("query-version", None).await?;
        let q = &v["qemu"];
        match (
            q["major"].as_u64(),
            q["minor"].as_u64(),
            q["micro"].as_u64(),
        ) {
            (Some(a), Some(b), Some(c)) => Ok(format!("{a}.{b}.{c}")),
            _ => Err(QmpError::Protocol(format!("query-version reply: {v}"))),
        }
    }

    /// Ask the guest to power off (ACPI power button).
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).await.map(drop)
    }

    /// Hard reset of the guest.
    pub async fn system_reset(&self) -> Result<(), QmpError> {
        self.execute("system_reset", None).await.map(drop)
    }

    /// Make QEMU exit. The connection closing before the reply arrives counts as success.
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self.execute("quit", None).await {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Read one JSON message (one line). `None` on EOF.
async fn read_message(rd: &mut BufReader<OwnedReadHalf>) -> Result<Option<Value>, QmpError> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut *rd)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() != Some(&b'\n') && n >= MAX_LINE {
            return Err(QmpError::Protocol(format!(
                "message longer than {MAX_LINE} bytes"
            )));
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return serde_json::from_slice(&buf)
            .map(Some)
            .map_err(|e| QmpError::Protocol(format!("bad JSON from QEMU: {e}")));
    }
}

/// What one incoming message is.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Reply {
        id: u64,
        result: Result<Value, (String, String)>,
    },
    Event(QmpEvent),
    Other,
}

/// Classify one message from QEMU (pure).
pub fn classify(v: &Value) -> Incoming {
    if let Some(name) = v.get("event").and_then(Value::as_str) {
        let ts = &v["timestamp"];
        let timestamp = ts["seconds"].as_f64().unwrap_or(0.0)
            + ts["microseconds"].as_f64().unwrap_or(0.0) / 1e6;
        return Incoming::Event(QmpEvent {
            name: name.to_string(),
            data: v.get("data").cloned().unwrap_or(Value::Null),
            timestamp,
        });
    }
    let Some(id) = v.get("id").and_then(Value::as_u64) else {
        return Incoming::Other;
    };
    if let Some(r) = v.get("return") {
        return Incoming::Reply {
            id,
            result: Ok(r.clone()),
        };
    }
    if let Some(e) = v.get("error") {
        let class = e["class"].as_str().unwrap_or("GenericError").to_string();
        let desc = e["desc"].as_str().unwrap_or("").to_string();
        return Incoming::Reply {
            id,
            result: Err((class, desc)),
        };
    }
    Incoming::Other
}

/// The `SHUTDOWN` payload of an event, if it is one.
pub fn shutdown_of(ev: &QmpEvent) -> Option<ShutdownEvent> {
    (ev.name == "SHUTDOWN").then(|| ShutdownEvent {
        guest: ev.data["guest"].as_bool().unwrap_or(false),
        reason: ev.data["reason"].as_str().unwrap_or("unknown").to_string(),
    })
}

async fn read_loop(
    mut rd: BufReader<OwnedReadHalf>,
    pending: Pending,
    events: broadcast::Sender<QmpEvent>,
    state: watch::Sender<QmpState>,
) {
    loop {
        let msg = match read_message(&mut rd).await {
            Ok(Some(v)) => v,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "QMP read failed; closing connection");
                break;
            }
        };
        match classify(&msg) {
            Incoming::Reply { id, result } => {
                let tx = pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Some(tx) = tx {
                    let r = result.map_err(|(class, desc)| QmpError::Command {
                        command: String::new(),
                        class,
                        desc,
                    });
                    let _ = tx.send(r);
                }
            }
            Incoming::Event(ev) => {
                if let Some(sd) = shutdown_of(&ev) {
                    state.send_modify(|s| s.last_shutdown = Some(sd));
                }
                // No subscribers is fine; lagging subscribers see `Lagged`.
                let _ = events.send(ev);
            }
            Incoming::Other => tracing::debug!(%msg, "unexpected QMP message"),
        }
    }
    state.send_modify(|s| s.closed = true);
    let waiting: Vec<_> = pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    for (_, tx) in waiting {
        let _ = tx.send(Err(QmpError::Closed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_replies_errors_and_events() {
        let r = classify(&json!({"return": {"running": true}, "id": 3}));
        assert_eq!(
            r,
            Incoming::Reply {
                id: 3,
                result: Ok(json!({"running": true}))
            }
        );
        let e = classify(&json!({"error": {"class": "CommandNotFound", "desc": "nope"}, "id": 4}));
        assert_eq!(
            e,
            Incoming::Reply {
                id: 4,
                result: Err(("CommandNotFound".into(), "nope".into()))
            }
        );
        let ev = classify(
            &json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"},
            "timestamp": {"seconds": 10, "microseconds": 500000}}),
        );
        let Incoming::Event(ev) = ev else {
            panic!("not an event: {ev:?}")
        };
        assert_eq!(ev.timestamp, 10.5);
        assert_eq!(
            shutdown_of(&ev),
            Some(ShutdownEvent {
                guest: true,
                reason: "guest-shutdown".into()
            })
        );
        let reset = QmpEvent {
            name: "RESET".into(),
            data: Value::Null,
            timestamp: 0.0,
        };
        assert_eq!(shutdown_of(&reset), None);
        assert_eq!(classify(&json!({"return": {}})), Incoming::Other);
    }
}
