//! A TLS-terminating TCP proxy on loopback with a fresh self-signed certificate (for
//! 127.0.0.1 and localhost): an RTMPS listener in front of a node's RTMP port, for testing
//! RTMPS clients without any real certificate authority.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// A running proxy; its runtime thread ends with the test process.
pub struct TlsProxy {
    port: u16,
    /// The certificate, PEM (trust it to connect).
    pub cert_pem: String,
}

impl TlsProxy {
    /// Listens on a free loopback port and forwards decrypted bytes to `127.0.0.1:target`.
    pub fn start(target: u16) -> TlsProxy {
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("self-signed certificate");
        let cert_pem = key.cert.pem();
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("certificate PEM");
        let private = PrivateKeyDer::from_pem_slice(key.key_pair.serialize_pem().as_bytes()).expect("key PEM");
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], private)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((socket, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(socket).await else { return };
                        let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                    });
                }
            });
        });
        TlsProxy { port, cert_pem }
    }

    /// The TLS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Writes the certificate to `path` (PEM).
    pub fn write_cert(&self, path: &Path) {
        std::fs::write(path, &self.cert_pem).expect("write certificate");
    }
}
