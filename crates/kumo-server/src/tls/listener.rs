//! The TLS listener: a small accept loop (tokio-rustls, then hyper's HTTP/1 with upgrades for the
//! console's WebSocket) serving the same axum router as the plain listener. After the handshake it
//! reads who the client certificate names ([`super::identity`]) and attaches it to every request on
//! the connection as a [`TlsPeer`] extension; `axum::serve` cannot do either.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use kumo_types::{Error, Result};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::ca::{ClusterCa, KeyedCert};
use super::identity::identity_of;
use crate::auth::TlsPeer;

/// Connections served at once per listener; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 1024;
/// A handshake that takes longer is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls settings: our certificate chain `[server, CA]`, and client certificates optional but,
/// when presented, verified against the cluster CA.
pub fn server_config(ca: &ClusterCa, server: &KeyedCert) -> Result<Arc<rustls::ServerConfig>> {
    server_config_with(ca, server, None)
}

/// [`server_config`], serving the operator's certificate to the SNI names it covers
/// ([`super::operator`]).
pub fn server_config_with(
    ca: &ClusterCa,
    server: &KeyedCert,
    operator: Option<&super::operator::OperatorCert>,
) -> Result<Arc<rustls::ServerConfig>> {
    let tls = |what: &str, e: rustls::Error| Error::internal_with(what.to_string(), e);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.cert_der.clone())
        .map_err(|e| tls("trusting the cluster CA", e))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::internal_with("client certificate verifier", e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("TLS versions", e))?
        .with_client_cert_verifier(verifier);
    let chain = vec![server.cert_der.clone(), ca.cert_der.clone()];
    let mut cfg = match operator {
        None => builder
            .with_single_cert(chain, server.key_der())
            .map_err(|e| tls("server certificate", e))?,
        Some(op) => {
            let cluster =
                rustls::sign::CertifiedKey::from_der(chain, server.key_der(), &provider())
                    .map_err(|e| tls("server certificate", e))?;
            builder.with_cert_resolver(Arc::new(super::operator::Resolver {
                operator: op.clone(),
                cluster: Arc::new(cluster),
            }))
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accept TLS connections on `listener` until the process ends.
pub async fn serve(listener: TcpListener, config: Arc<rustls::ServerConfig>, router: Router) {
    let acceptor = TlsAcceptor::from(config);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: wait a little instead of spinning.
                tracing::warn!(error = %e, "TLS listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let _permit = permit;
            serve_one(acceptor, router, tcp, peer).await;
        });
    }
}

async fn serve_one(
    acceptor: TlsAcceptor,
    router: Router,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first());
    let identity = leaf.and_then(|l| identity_of(l));
    let serial = leaf.and_then(|l| crate::tls::identity::serial_of(l));
    let ext = TlsPeer(identity);
    let svc = router.map_request(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ext.clone());
        if let Some(s) = &serial {
            req.extensions_mut()
                .insert(crate::tls::identity::PeerSerial(s.clone()));
        }
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        req
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "TLS connection ended with an error");
    }
}
