//! TLS for the clients of a `folio serve` (HTTP and WebSocket): rustls on ring, trusting the system's roots (and,
//! as rustls-native-certs reads them, `SSL_CERT_FILE` / `SSL_CERT_DIR`) plus an optional extra CA for private PKI
//! and tests (`--ca-cert`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::SyncError;

/// Makes ring the process's rustls crypto provider, unless one is installed already. Every client built without
/// [`client_config`] (a plain `reqwest::Client::new()`) needs one; calling this more than once is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificates of a PEM file (one or more `CERTIFICATE` blocks).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE in this PEM file", path.display()));
    }
    Ok(certs)
}

/// A client configuration: the system's roots plus the certificates of `extra_ca` (a PEM file), on ring.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, SyncError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    // A missing or unreadable system store is not fatal when a CA is given (a minimal container has none).
    if native.certs.is_empty() && extra_ca.is_none() && !native.errors.is_empty() {
        tracing::warn!("no system CA roots could be read: {:?}", native.errors);
    }
    let _ = roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        for cert in read_certificates(path).map_err(SyncError::Protocol)? {
            roots
                .add(cert)
                .map_err(|e| SyncError::Protocol(format!("{}: not a usable CA certificate: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SyncError::Protocol(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
