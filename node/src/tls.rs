//! HTTPS for the HTTP server and the API (`[https]`): rustls with a certificate chain and a
//! private key from PEM files. The files are checked every [`WATCH_EVERY`] and read again when
//! either changes on disk, so a renewed certificate (certbot, an ACME client, a copied file)
//! serves every new connection without a restart; a file that does not load is logged and the
//! certificate in use stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// How often the certificate and key files are looked at.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The certificate every handshake gets, replaced when the files change.
#[derive(Debug)]
pub struct Certificate {
    current: RwLock<Arc<CertifiedKey>>,
    cert_file: PathBuf,
    key_file: PathBuf,
    /// The files' stamps when they were read, taken before reading (a change meanwhile is
    /// seen by the watcher).
    loaded: Stamp,
}

/// Modification time and length of the certificate and the key file.
type Stamp = [Option<(SystemTime, u64)>; 2];

fn stamp(cert_file: &Path, key_file: &Path) -> Stamp {
    let one = |path: &Path| std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    [one(cert_file), one(key_file)]
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and private key; the error names the file and the problem.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("https.cert_file {}: {e}", cert_file.display()))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("https.cert_file {}: no CERTIFICATE in it", cert_file.display()));
    };
    // The first certificate must parse as one (PEM around anything else is not a certificate).
    webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("https.cert_file {}: not a valid certificate ({e:?})", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| format!("https.key_file {}: {e}", key_file.display()))?;
    let signing = provider().key_provider.load_private_key(key).map_err(|e| format!("https.key_file {}: {e}", key_file.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| format!("https.key_file {} is not the key of https.cert_file {}: {e}", key_file.display(), cert_file.display()))?;
    Ok(certified)
}

/// The TLS configuration of a server, and its certificate (to watch).
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<(rustls::ServerConfig, Arc<Certificate>), String> {
    let loaded = stamp(cert_file, key_file);
    let certificate = Arc::new(Certificate { current: RwLock::new(Arc::new(load(cert_file, key_file)?)), cert_file: cert_file.to_path_buf(), key_file: key_file.to_path_buf(), loaded });
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    // The HTTP server speaks HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, certificate))
}

/// Reads the files again whenever either one's modification time or length changes, until
/// the node stops. The files are looked at and read off the actors' threads.
pub async fn watch(certificate: Arc<Certificate>) {
    let mut seen = certificate.loaded;
    let mut every = tokio::time::interval(WATCH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let (cert_file, key_file) = (certificate.cert_file.clone(), certificate.key_file.clone());
        let Ok(now) = tokio::task::spawn_blocking(move || stamp(&cert_file, &key_file)).await else { continue };
        if now == seen {
            continue;
        }
        seen = now;
        let (cert_file, key_file) = (certificate.cert_file.clone(), certificate.key_file.clone());
        // The files are read off the actors' threads.
        match tokio::task::spawn_blocking(move || load(&cert_file, &key_file)).await {
            Ok(Ok(fresh)) => {
                *certificate.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
                tracing::info!(cert = %certificate.cert_file.display(), "HTTPS certificate changed on disk; new connections get the new one");
            }
            // A half-written pair (the certificate copied, not yet its key) is tried again at
            // the next change; the certificate in use stays.
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTPS certificate changed on disk but does not load; the one in use stays"),
            Err(e) => tracing::warn!(error = %e, "HTTPS certificate reload failed"),
        }
    }
}
