//! TLS on the listeners, with certificates reloaded without a restart.
//!
//! chainpulse on a pod's loopback needs no TLS; as a node or cluster
//! service it does, and certificates there are short-lived (cert-manager
//! renews them into a Secret, which the kubelet swaps into the pod by
//! re-pointing a symlink). So the files are not read once: every
//! `tls.reload_interval_ms` (and on SIGHUP) their identity (device, inode,
//! size, mtime, following symlinks) is compared with the last one seen, and
//! on a change the whole set is loaded again. A set that does not load (a
//! half-written file, a key that does not match its certificate) is logged
//! and counted (`chainpulse_tls_reload_total{result="error"}`) and the old
//! certificate keeps being served: a bad rotation must not take ingest
//! down. Connections already open keep the certificate they shook hands
//! with; new ones get the new one.
//!
//! rustls with the ring provider (the one tonic and reqwest already bring),
//! chosen explicitly so the process-wide default provider does not matter.
//! ALPN: `h2` on the gRPC listener, `h2` and `http/1.1` on the HTTP ones.
//! With `tls.client_ca_file` clients must present a certificate that CA
//! signed (mutual TLS); the CA bundle is reloaded with the rest.

use crate::config::TlsConfig;
use crate::export::names::{TLS_HANDSHAKE_FAILURES, TLS_RELOADS};
use crate::export::Registry;
use metrics::Counter;
use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// A TLS file over this is the wrong file (a log, `/dev/zero`).
const MAX_PEM_BYTES: u64 = 1 << 20;

/// A configuration problem, with the key it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    pub key: &'static str,
    pub message: String,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for TlsError {}

fn fail(key: &'static str, message: impl Into<String>) -> TlsError {
    TlsError {
        key,
        message: message.into(),
    }
}

/// The server configurations built from one set of files.
#[derive(Clone)]
pub struct Loaded {
    /// ALPN `h2` only (OTLP/gRPC).
    h2: Arc<ServerConfig>,
    /// ALPN `h2`, `http/1.1` (OTLP/HTTP, metrics).
    http: Arc<ServerConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(key: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(key, format!("cannot read {path}: {e}")))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(fail(
            key,
            format!("{path} is larger than {MAX_PEM_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

fn certificates(key: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(key, format!("{path}: bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail(key, format!("{path} holds no PEM certificate")));
    }
    Ok(certs)
}

/// Loads and checks the files of `c` (which must have TLS enabled): used
/// at start-up, by `check-config`, and on every reload.
pub fn load(c: &TlsConfig) -> Result<Loaded, TlsError> {
    let (Some(cert_file), Some(key_file)) = (&c.cert_file, &c.key_file) else {
        return Err(fail(
            "tls.cert_file",
            "TLS needs tls.cert_file and tls.key_file",
        ));
    };
    let chain = certificates("tls.cert_file", cert_file)?;
    let key_pem = read_pem("tls.key_file", key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        fail(
            "tls.key_file",
            format!("{key_file} holds no usable PEM private key: {e}"),
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("tls", e.to_string()))?;
    let builder = match &c.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("tls.client_ca_file", ca_file)? {
                roots.add(cert).map_err(|e| {
                    fail(
                        "tls.client_ca_file",
                        format!("{ca_file}: not a usable CA certificate: {e}"),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                .build()
                .map_err(|e| fail("tls.client_ca_file", format!("{ca_file}: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // Checks that the key is one rustls can sign with and that it matches
    // the leaf certificate's public key.
    let mut http = builder.with_single_cert(chain, key).map_err(|e| {
        fail(
            "tls.key_file",
            format!("{key_file} does not go with the certificate in {cert_file}: {e}"),
        )
    })?;
    let mut h2 = http.clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Loaded {
        h2: Arc::new(h2),
        http: Arc::new(http),
    })
}

/// The certificates in force, swapped by the reloader.
pub struct Certificates {
    current: RwLock<Loaded>,
    config: TlsConfig,
    reloads_ok: Counter,
    reloads_failed: Counter,
}

impl Certificates {
    /// Loads the files (an error names its key) and registers the metrics.
    pub fn load(c: &TlsConfig, registry: &Registry) -> Result<Arc<Certificates>, TlsError> {
        let loaded = load(c)?;
        Ok(Arc::new(Certificates {
            current: RwLock::new(loaded),
            config: c.clone(),
            reloads_ok: registry.counter(TLS_RELOADS, &[("result", "ok")]),
            reloads_failed: registry.counter(TLS_RELOADS, &[("result", "error")]),
        }))
    }

    /// The acceptor for one listener.
    pub fn acceptor(
        self: &Arc<Self>,
        registry: &Registry,
        listener: &'static str,
        handshake_timeout: Duration,
    ) -> Acceptor {
        Acceptor {
            certs: self.clone(),
            h2_only: listener == "grpc",
            handshake_timeout,
            failures: registry.counter(TLS_HANDSHAKE_FAILURES, &[("listener", listener)]),
        }
    }

    /// Loads the files again; keeps the old set if the new one fails.
    pub fn reload(&self) -> Result<(), TlsError> {
        match load(&self.config) {
            Ok(loaded) => {
                *self.current.write() = loaded;
                self.reloads_ok.increment(1);
                tracing::info!("TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                self.reloads_failed.increment(1);
                tracing::warn!(error = %e, "TLS files changed but do not load; still serving the previous certificate");
                Err(e)
            }
        }
    }

    /// Identity of the files: changes when any of them is replaced.
    fn stamp(&self) -> Vec<Option<(u64, u64, u64, std::time::SystemTime)>> {
        let c = &self.config;
        [&c.cert_file, &c.key_file, &c.client_ca_file]
            .into_iter()
            .flatten()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                #[cfg(unix)]
                let (dev, ino) = {
                    use std::os::unix::fs::MetadataExt;
                    (m.dev(), m.ino())
                };
                #[cfg(not(unix))]
                let (dev, ino) = (0, 0);
                Some((dev, ino, m.len(), m.modified().ok()?))
            })
            .collect()
    }

    /// Polls the files every `tls.reload_interval_ms` and reloads on a
    /// change, or at once on SIGHUP. Runs until aborted.
    pub async fn watch(self: Arc<Self>) {
        let every = Duration::from_millis(self.config.reload_interval_ms);
        let mut last = self.stamp();
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = (!every.is_zero()).then(|| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let forced = tokio::select! {
                _ = async {
                    match &mut tick {
                        Some(t) => { t.tick().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => false,
                _ = async {
                    #[cfg(unix)]
                    if let Some(h) = &mut hup {
                        h.recv().await;
                        return;
                    }
                    std::future::pending::<()>().await
                } => true,
            };
            let now = self.stamp();
            if forced || now != last {
                // Remembered even when the load fails: a pair written one
                // file at a time changes again, and is loaded then.
                last = now;
                let _ = self.reload();
            }
        }
    }
}

/// Performs TLS handshakes for one listener with the certificate in force.
#[derive(Clone)]
pub struct Acceptor {
    certs: Arc<Certificates>,
    h2_only: bool,
    handshake_timeout: Duration,
    failures: Counter,
}

impl Acceptor {
    /// The handshake, within the handshake timeout; failures are counted
    /// (and logged at debug: scanners would flood the log otherwise).
    pub async fn accept<IO>(&self, io: IO) -> Option<tokio_rustls::server::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let config = {
            let current = self.certs.current.read();
            if self.h2_only {
                current.h2.clone()
            } else {
                current.http.clone()
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(io)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                self.failures.increment(1);
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                self.failures.increment(1);
                tracing::debug!("TLS handshake timed out (server.header_read_timeout_ms)");
                None
            }
        }
    }
}
