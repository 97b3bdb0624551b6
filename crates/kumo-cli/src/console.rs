//! `kumo instance console`: the instance's serial console over the API's WebSocket
//! (`GET /v1/instances/{id}/console`; binary frames carry raw serial bytes both ways).
//!
//! Two modes:
//! - stdin is a terminal: the terminal goes into raw mode (restored on every exit path by
//!   [`crate::terminal::RawMode`]'s drop), every key goes to the guest, `Ctrl-]` quits.
//! - stdin is not a terminal (scripts, tests): stdin is piped to the guest byte for byte (no escape key)
//!   and guest output to stdout; after stdin reaches EOF the command keeps printing output until the
//!   guest has been quiet for `linger`, or the server closes the connection.
//!
//! Stdin is read on a plain OS thread (not a tokio blocking task) so that a read still blocked when the
//! session ends can never delay process exit.

use std::io::Read;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::CliError;
use crate::client::{Client, error_body, seg};
use crate::terminal::{RawMode, is_tty};

/// `Ctrl-]`, the quit key in terminal mode (as in telnet and virsh console).
pub const ESCAPE: u8 = 0x1d;

/// Split a chunk of input at the escape key: the bytes to forward, and whether to quit after them.
pub fn scan_input(buf: &[u8], escape_enabled: bool) -> (&[u8], bool) {
    if escape_enabled && let Some(pos) = buf.iter().position(|&b| b == ESCAPE) {
        return (&buf[..pos], true);
    }
    (buf, false)
}

/// Console options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Non-terminal mode: how long to keep printing after stdin EOF once output goes quiet.
    pub linger: Duration,
}

/// Attach to the console of instance `id` until the user quits, stdin ends (plus linger), or the
/// server closes the connection.
pub async fn attach(client: &Client, id: &str, opts: Options) -> Result<(), CliError> {
    let url = client.ws_url(&format!("instances/{}/console", seg(id)));
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| CliError::usage(format!("bad console URL {url}: {e}")))?;
    let auth = HeaderValue::from_str(&format!("Bearer {}", client.token())).map_err(|_| {
        CliError::usage("the API token contains characters not allowed in an HTTP header")
    })?;
    req.headers_mut().insert("authorization", auth);
    if let Some(p) = client.project() {
        let p = HeaderValue::from_str(p)
            .map_err(|_| CliError::usage("the project name is not a valid HTTP header value"))?;
        req.headers_mut().insert("x-kumo-project", p);
    }
    if url.starts_with("wss://") {
        let tls = tls_connect(client, &req).await?;
        let (ws, _) = tokio_tungstenite::client_async(req, tls)
            .await
            .map_err(|e| ws_error(client, e))?;
        return session(ws, id, opts).await;
    }
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| ws_error(client, e))?;
    session(ws, id, opts).await
}

/// A TLS connection to the server `req` is for, trusting the CA file's certificates (or, without
/// one, the system's roots).
async fn tls_connect(
    client: &Client,
    req: &tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, CliError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let connect_err = |message: String| CliError::Connect {
        url: client.base_url().to_string(),
        message,
    };
    let host = req
        .uri()
        .host()
        .ok_or_else(|| CliError::usage("the console URL has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = req.uri().port_u16().unwrap_or(443);
    let mut roots = rustls::RootCertStore::empty();
    match client.ca_pem() {
        Some(pem) => {
            for c in CertificateDer::pem_slice_iter(pem).flatten() {
                roots
                    .add(c)
                    .map_err(|e| CliError::usage(format!("the CA file: {e}")))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| connect_err(format!("TLS settings: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone())
        .map_err(|e| CliError::usage(format!("{host:?} is not a server name: {e}")))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| connect_err(format!("TLS: {e}")))
}

/// Run a connected console session.
async fn session<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    id: &str,
    opts: Options,
) -> Result<(), CliError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let tty = is_tty(libc::STDIN_FILENO);
    let _raw = if tty {
        eprint!("Connected to the console of `{id}`. Press Ctrl-] to quit.\r\n");
        Some(
            RawMode::enable(libc::STDIN_FILENO)
                .map_err(|e| CliError::Other(anyhow::anyhow!("raw terminal mode: {e}")))?,
        )
    } else {
        None
    };
    let result = pump(ws, tty, opts).await;
    drop(_raw);
    if tty {
        eprintln!("\nDisconnected.");
    }
    result
}

/// Move bytes both ways until one side ends.
async fn pump<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    tty: bool,
    opts: Options,
) -> Result<(), CliError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut tx, mut rx) = ws.split();
    let mut input = spawn_stdin_reader();
    let mut stdout = tokio::io::stdout();
    let mut stdin_open = true;
    let idle = tokio::time::sleep(opts.linger);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            msg = rx.next() => {
                let data = match msg {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(CliError::Connect { url: "console".into(), message: e.to_string() }),
                };
                stdout.write_all(&data).await.map_err(|e| CliError::Other(anyhow::anyhow!("writing stdout: {e}")))?;
                stdout.flush().await.map_err(|e| CliError::Other(anyhow::anyhow!("writing stdout: {e}")))?;
                idle.as_mut().reset(tokio::time::Instant::now() + opts.linger);
            }
            chunk = input.recv(), if stdin_open => {
                let Some(chunk) = chunk else {
                    stdin_open = false;
                    if tty {
                        break;
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + opts.linger);
                    continue;
                };
                let (fwd, quit) = scan_input(&chunk, tty);
                if !fwd.is_empty() {
                    tx.send(Message::Binary(fwd.to_vec().into())).await
                        .map_err(|e| CliError::Connect { url: "console".into(), message: e.to_string() })?;
                }
                if quit {
                    break;
                }
            }
            () = &mut idle, if !stdin_open => break,
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    Ok(())
}

/// Read stdin on an OS thread; chunks arrive on the channel, which closes at EOF or on error.
fn spawn_stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    let spawned = std::thread::Builder::new()
        .name("console-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 4096];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    // If the thread cannot be spawned the sender is dropped with the closure: stdin reads as EOF.
    drop(spawned);
    rx
}

/// Map a WebSocket handshake failure: HTTP error answers become API errors, the rest connect errors.
fn ws_error(client: &Client, e: tokio_tungstenite::tungstenite::Error) -> CliError {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Http(resp) => {
            let status = resp.status().as_u16();
            let text = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            CliError::Api {
                status,
                body: error_body(status, &text),
            }
        }
        other => CliError::Connect {
            url: client.base_url().to_string(),
            message: other.to_string(),
        },
    }
}
