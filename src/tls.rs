//! Inbound TLS: Carpool serving HTTPS itself (`tls` in the config), relay and API alike,
//! on the one listener.
//!
//! [`Inbound`] is what the listener asks, for each new connection, whether to do a TLS
//! handshake and with which certificate. It outlives reloads: a config edit that turns TLS
//! on, off or to other files applies from the next connection on ([`Inbound::set`]);
//! connections already open go on as they are.
//!
//! The certificate and key files are read again when they change, so a renewed
//! certificate (certbot, another ACME client, the user's own CA) needs no restart. They are
//! looked at when a connection arrives, at most every [`RECHECK`]: nothing runs while no
//! one connects, and a renewal written as two files (certificate, then key) is taken once
//! both match. Contents are compared, not modification times, which symlink swaps (certbot's
//! `live/` directory) and same-second writes would fool. A pair that cannot be used
//! (unreadable, not PEM, a key that does not belong to the certificate) is logged once and
//! the pair in use stays.
//!
//! rustls with the aws-lc-rs provider (the one reqwest already uses for upstream HTTPS),
//! TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;
use crate::tasks::{lock, read, write};

/// The certificate and key files are looked at again at most this often.
pub const RECHECK: Duration = Duration::from_secs(2);

/// A certificate and key that cannot be served with.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot serve HTTPS with the certificate {} and the key {} (`tls`): {problem}",
    certificate.display(),
    key.display()
)]
pub struct TlsError {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub problem: String,
}

/// Whether, and with what, new connections are served over TLS.
#[derive(Default)]
pub struct Inbound {
    current: RwLock<Option<Arc<Served>>>,
}

/// A certificate and key ready to serve with ([`Inbound::load`]), to be put in force with
/// [`Inbound::set`].
pub struct Loaded(Arc<Served>);

/// The certificate in use, and what was last seen of its files.
struct Served {
    files: TlsConfig,
    acceptor: TlsAcceptor,
    /// SHA-256 of the files' contents in use.
    digest: [u8; 32],
    watch: Mutex<Watch>,
}

struct Watch {
    checked: Instant,
    /// The contents last refused (and logged), so they are logged once.
    refused: Option<[u8; 32]>,
}

impl Inbound {
    /// Plain HTTP until [`Inbound::set`] says otherwise.
    pub fn plain() -> Inbound {
        Inbound::default()
    }

    /// Reads and checks the certificate and key of `files`.
    pub fn load(files: &TlsConfig) -> Result<Loaded, TlsError> {
        let certificate = std::fs::read(&files.certificate);
        let key = std::fs::read(&files.key);
        Served::build(files, certificate, key).map(|served| Loaded(Arc::new(served)))
    }

    /// Serves new connections with `loaded`, or over plain HTTP with `None`.
    pub fn set(&self, loaded: Option<Loaded>) {
        *write(&self.current) = loaded.map(|l| l.0);
    }

    /// Whether new connections are served over TLS.
    pub fn is_on(&self) -> bool {
        read(&self.current).is_some()
    }

    /// The files in use, if TLS is on.
    pub fn files(&self) -> Option<TlsConfig> {
        read(&self.current).as_ref().map(|s| s.files.clone())
    }

    /// What a new connection is to be served with: `None` for plain HTTP. Reads the files
    /// again first when they were last looked at more than [`RECHECK`] ago.
    pub async fn acceptor(&self) -> Option<TlsAcceptor> {
        let served = read(&self.current).clone()?;
        if !served.due() {
            return Some(served.acceptor.clone());
        }
        let certificate = tokio::fs::read(&served.files.certificate).await;
        let key = tokio::fs::read(&served.files.key).await;
        let seen = digest(&certificate, &key);
        if seen == served.digest || lock(&served.watch).refused == Some(seen) {
            return Some(served.acceptor.clone());
        }
        match Served::build(&served.files, certificate, key) {
            Ok(new) => {
                let new = Arc::new(new);
                let mut current = write(&self.current);
                // A config edit may have replaced the certificate meanwhile: it wins.
                if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &served)) {
                    tracing::info!(
                        certificate = %served.files.certificate.display(),
                        "the TLS certificate changed on disk; new connections use the new one"
                    );
                    *current = Some(new);
                }
                current.as_ref().map(|c| c.acceptor.clone())
            }
            Err(e) => {
                tracing::error!("{e}; new connections keep the certificate in use");
                lock(&served.watch).refused = Some(seen);
                Some(served.acceptor.clone())
            }
        }
    }
}

impl Served {
    fn build(
        files: &TlsConfig,
        certificate: std::io::Result<Vec<u8>>,
        key: std::io::Result<Vec<u8>>,
    ) -> Result<Served, TlsError> {
        let fail = |problem: String| TlsError {
            certificate: files.certificate.clone(),
            key: files.key.clone(),
            problem,
        };
        let seen = digest(&certificate, &key);
        let certificate =
            certificate.map_err(|e| fail(format!("cannot read the certificate file: {e}")))?;
        let key = key.map_err(|e| fail(format!("cannot read the key file: {e}")))?;
        let config = server_config(&certificate, &key).map_err(fail)?;
        Ok(Served {
            files: files.clone(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
            digest: seen,
            watch: Mutex::new(Watch {
                checked: Instant::now(),
                refused: None,
            }),
        })
    }

    /// True (and rearmed) when the files were last looked at [`RECHECK`] ago or more: one
    /// connection looks, the others go on with the certificate in use.
    fn due(&self) -> bool {
        let mut watch = lock(&self.watch);
        if watch.checked.elapsed() < RECHECK {
            return false;
        }
        watch.checked = Instant::now();
        true
    }
}

/// SHA-256 over what reading both files gave (contents or error).
fn digest(certificate: &std::io::Result<Vec<u8>>, key: &std::io::Result<Vec<u8>>) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [certificate, key] {
        match part {
            Ok(bytes) => {
                hash.update(b"ok");
                hash.update((bytes.len() as u64).to_le_bytes());
                hash.update(bytes);
            }
            Err(e) => {
                hash.update(b"error");
                hash.update(e.to_string().as_bytes());
            }
        }
    }
    hash.finalize().into()
}

/// A rustls server config for a PEM certificate chain and key, offering h2 and http/1.1.
fn server_config(certificate: &[u8], key: &[u8]) -> Result<ServerConfig, String> {
    let chain = CertificateDer::pem_slice_iter(certificate)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate file is not valid PEM: {e}"))?;
    if chain.is_empty() {
        return Err(
            "the certificate file holds no certificate (no `-----BEGIN CERTIFICATE-----`)".into(),
        );
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        format!("the key file holds no private key in PEM (`-----BEGIN PRIVATE KEY-----`): {e}")
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            tokio_rustls::rustls::Error::InconsistentKeys(_) => {
                "the private key does not belong to the certificate (the first one in its file)"
                    .to_owned()
            }
            other => format!("the certificate or key cannot be used: {other}"),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A self-signed certificate and its key, as PEM.
    fn pair() -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    fn files(dir: &Path) -> TlsConfig {
        TlsConfig {
            certificate: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    fn write(files: &TlsConfig, (cert, key): &(String, String)) {
        std::fs::write(&files.certificate, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
    }

    fn in_force(inbound: &Inbound) -> [u8; 32] {
        read(&inbound.current).as_ref().unwrap().digest
    }

    /// Makes the next [`Inbound::acceptor`] look at the files.
    fn make_due(inbound: &Inbound) {
        let served = read(&inbound.current).clone().unwrap();
        lock(&served.watch).checked = Instant::now() - RECHECK;
    }

    #[test]
    fn a_pair_that_does_not_belong_together_or_is_missing_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        let problem = |files: &TlsConfig| match Inbound::load(files) {
            Ok(_) => panic!("loaded"),
            Err(e) => e.to_string(),
        };
        assert!(problem(&files).contains("cannot read the certificate file"));
        let (cert, _) = pair();
        let (_, other_key) = pair();
        write(&files, &(cert.clone(), other_key));
        let message = problem(&files);
        assert!(message.contains("does not belong"), "{message}");
        assert!(
            message.contains("cert.pem") && message.contains("`tls`"),
            "{message}"
        );
        write(&files, &(cert, "not a key".into()));
        assert!(problem(&files).contains("no private key"));
        write(&files, &(String::new(), pair().1));
        assert!(problem(&files).contains("no certificate"));
    }

    #[tokio::test]
    async fn a_changed_pair_is_taken_and_a_bad_one_leaves_the_one_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        write(&files, &pair());
        let inbound = Inbound::plain();
        assert!(!inbound.is_on());
        assert!(inbound.acceptor().await.is_none());
        inbound.set(Some(Inbound::load(&files).unwrap()));
        assert!(inbound.is_on());
        let first = in_force(&inbound);

        // Changed, but not looked at before RECHECK has passed.
        write(&files, &pair());
        assert!(inbound.acceptor().await.is_some());
        assert_eq!(in_force(&inbound), first);
        make_due(&inbound);
        assert!(inbound.acceptor().await.is_some());
        let second = in_force(&inbound);
        assert_ne!(second, first);

        // Half a renewal (a new certificate, the old key) is refused; the pair in use stays.
        std::fs::write(&files.certificate, pair().0).unwrap();
        make_due(&inbound);
        assert!(inbound.acceptor().await.is_some());
        assert_eq!(in_force(&inbound), second);
        let refused = lock(&read(&inbound.current).as_ref().unwrap().watch).refused;
        assert!(refused.is_some(), "remembered, so it is logged once");

        inbound.set(None);
        assert!(inbound.acceptor().await.is_none());
    }
}
