//! A TLS front for loopback test servers (test tree only): a private CA, issued on the spot,
//! signs a certificate for 127.0.0.1; the front terminates TLS with it and passes the plain
//! bytes on to a backend. As a self-hosted AIGW behind an internal CA looks to the harness.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;

/// An https front: its base URL, and the PEM of the CA that signed its certificate.
pub struct TlsFront {
    pub url: String,
    pub ca_pem: String,
}

impl TlsFront {
    /// Writes the CA's PEM to `path` (a `--ca-bundle` file).
    pub fn write_ca(&self, path: &Path) {
        std::fs::write(path, &self.ca_pem).unwrap();
    }
}

/// Fronts `backend` (a plain `http://127.0.0.1:PORT` base URL) with TLS, on a runtime of its
/// own thread.
pub fn front(backend: &str) -> TlsFront {
    let backend: SocketAddr = backend
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("a loopback backend address");
    let (config, ca_pem) = server_config();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let addr = super::serve_on_thread(move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            // A client that refuses the certificate ends here; that is a test's point.
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        }
    });
    let url = format!("https://{addr}");
    TlsFront { url, ca_pem }
}

/// A server configuration whose certificate (for 127.0.0.1 and localhost) a fresh CA signed;
/// and that CA's PEM.
fn server_config() -> (rustls::ServerConfig, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "duo-harness test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (config, ca_cert.pem())
}
