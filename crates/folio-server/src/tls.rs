//! `folio serve --tls-cert PEM --tls-key PEM`: HTTPS and WSS without a proxy, on rustls (ring).
//!
//! Handshakes run in tasks of their own (a slow or silent client holds up nobody), with a timeout; the certificate
//! and key files are looked at again at most every few seconds, so a renewed certificate (`certbot renew`) is served
//! without a restart. A pair that does not load keeps the previous one and logs why.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are looked at again.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_pair(cert: &Path, key: &Path) -> io::Result<Arc<CertifiedKey>> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(format!("{}: {e}", cert.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{}: not a PEM certificate file: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(invalid(format!("{}: no CERTIFICATE in this PEM file", cert.display())));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| invalid(format!("{}: not a PEM private key: {e}", key.display())))?;
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| invalid(format!("{}: unusable private key: {e}", key.display())))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        invalid(format!(
            "{} and {} do not belong together: {e}",
            cert.display(),
            key.display()
        ))
    })?;
    Ok(Arc::new(certified))
}

/// What tells a changed file from the one loaded: its modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}

struct Current {
    checked: Instant,
    stamps: (Stamp, Stamp),
    key: Arc<CertifiedKey>,
}

/// The certificate of `--tls-cert`/`--tls-key`, reloaded when the files change.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<Current>,
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current").field("checked", &self.checked).finish()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.checked.elapsed() >= RELOAD_CHECK {
            current.checked = Instant::now();
            let stamps = (stamp(&self.cert), stamp(&self.key));
            if stamps != current.stamps {
                match load_pair(&self.cert, &self.key) {
                    Ok(key) => {
                        tracing::info!("TLS certificate reloaded from {}", self.cert.display());
                        current.key = key;
                        current.stamps = stamps;
                    }
                    // Half-written files during a renewal: try again at the next check, serve the old pair meanwhile.
                    Err(e) => tracing::warn!("TLS certificate not reloaded (the previous one is served): {e}"),
                }
            }
        }
        Some(current.key.clone())
    }
}

/// The server's TLS configuration from a PEM certificate chain and its PEM private key (checked now: a wrong
/// path or a key of another certificate fails here, at start, not at the first handshake). HTTP/1.1 only (ALPN),
/// as the plain listener.
pub fn server_config(cert: &Path, key: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    let loaded = load_pair(cert, key)?;
    let resolver = Reloading {
        cert: cert.to_owned(),
        key: key.to_owned(),
        current: Mutex::new(Current {
            checked: Instant::now(),
            stamps: (stamp(cert), stamp(key)),
            key: loaded,
        }),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener whose connections are TLS streams: what `axum::serve` takes in place of a `TcpListener`.
pub struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener`, handshaking with `config`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, incoming) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let acceptor = tokio::spawn(async move {
            loop {
                let (tcp, addr) = match listener.accept().await {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            incoming,
            local_addr,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(pair) => pair,
            // The acceptor task never ends on its own; if it did, wait for the shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
