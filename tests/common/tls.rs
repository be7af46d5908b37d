//! HTTPS for tests: a throwaway certificate authority, a server certificate it signs for
//! `127.0.0.1` (IP SAN) and `localhost`, and [`serve`], which serves an axum [`Router`]
//! over TLS on an ephemeral 127.0.0.1 port.
//!
//! An HTTP proxy only tunnels with `CONNECT` when the upstream URL is `https://`, so the
//! proxy tests need an HTTPS upstream (see `Mock::start_tls`).
//!
//! A reqwest 0.13 client trusts the test CA with [`reqwest::Certificate::from_pem`] and
//! either `ClientBuilder::tls_certs_only([cert])` (only this CA; plain webpki checks) or
//! `ClientBuilder::tls_certs_merge([cert])` / the older `add_root_certificate(cert)`
//! (this CA on top of the platform's roots, via rustls-platform-verifier).
//! [`client_builder_trusting`] does the former.
//!
//! The server uses rustls with aws-lc-rs, the crypto provider reqwest's `rustls` feature
//! uses; the provider is passed to the config explicitly, so no process-wide default
//! provider has to be installed. It offers HTTP/2 and HTTP/1.1 by ALPN, like the real API.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A running HTTPS server.
#[derive(Clone, Debug)]
pub struct TlsServer {
    pub addr: SocketAddr,
    /// The PEM of the CA that signed the server's certificate; trust it to connect.
    pub ca_pem: String,
}

impl TlsServer {
    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// A freshly generated CA and a server certificate it signed.
pub struct TestCerts {
    pub ca_pem: String,
    /// The server certificate followed by the CA certificate.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCerts {
    /// A CA "Carpool Test CA" and a server certificate for `127.0.0.1` and `localhost`.
    pub fn generate() -> TestCerts {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Carpool Test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();

        TestCerts {
            ca_pem: ca_cert.pem(),
            chain: vec![cert.der().clone(), ca_cert.der().clone()],
            key: key.into(),
        }
    }

    /// Writes the certificate chain and the key as PEM files `cert.pem` and `key.pem` in
    /// `dir` (what Carpool's `tls` takes) and returns their paths.
    pub fn write_pem(&self, dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let chain: String = self
            .chain
            .iter()
            .map(|cert| pem("CERTIFICATE", cert.as_ref()))
            .collect();
        let key = pem("PRIVATE KEY", self.key.secret_der());
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        // Write-then-rename, as certificate renewers do, so a reader never sees half a file.
        for (path, text) in [(&cert_path, chain), (&key_path, key)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        (cert_path, key_path)
    }

    /// A rustls server config presenting this certificate, offering h2 and http/1.1.
    pub fn server_config(&self) -> ServerConfig {
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

/// Serves `app` over TLS on an ephemeral 127.0.0.1 port with a new [`TestCerts`].
/// The server runs until the test's runtime ends.
pub async fn serve(app: Router) -> TlsServer {
    let certs = TestCerts::generate();
    let acceptor = TlsAcceptor::from(Arc::new(certs.server_config()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
    tokio::spawn(async move {
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            // No Nagle, as in `Mock::start`: SSE events are small separate writes.
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let app = app.clone();
            #[allow(clippy::disallowed_methods)] // a test fixture's task, not Carpool's
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                let Ok(Ok(tls)) = handshake.await else {
                    return;
                };
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    TlsServer {
        addr,
        ca_pem: certs.ca_pem,
    }
}

/// DER as a PEM block.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A reqwest client builder trusting only `ca_pem` (no platform roots), with no proxy.
pub fn client_builder_trusting(ca_pem: &str) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    reqwest::Client::builder().no_proxy().tls_certs_only([ca])
}
