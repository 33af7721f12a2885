//! The workload's identity: an X.509 certificate for its SPIFFE ID
//! (`spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`), obtained from the mesh's
//! CA and renewed before it expires — the part of Istio's agent (`pilot-agent`'s SDS cache)
//! that Keel runs inside the proxy.
//!
//! - [`key`]: a fresh key per certificate (ECDSA P-256), made here and never sent anywhere,
//!   and the CSR naming the identity.
//! - [`client`]: Istio's `CreateCertificate` over TLS to the CA, with the bearer token.
//! - [`manager`]: the loop — request, install, sleep until half-life (with jitter, as Istio),
//!   renew; failures retried with backoff (1 s doubling to 60 s) forever, the current
//!   certificate staying in use until the next one arrives.
//! - [`WorkloadIdentity`]: the live material behind an `ArcSwap`, read without locks by
//!   handshakes through [`resolve`]'s rustls resolvers, so a rotation never touches a
//!   connection: new handshakes get the new certificate, established ones keep theirs.
//! - [`certs`]: the admin's `/certs` (Envoy's endpoint name).
//! - [`files`]: the other source, certificates mounted as files (Istio's
//!   `FILE_MOUNTED_CERTS`: `cert-chain.pem`, `key.pem`, `root-cert.pem`), read at start and
//!   read again when they change; the identity is the certificate's own URI SAN.
//! - [`flags`]: the sidecar's and gateway's `--ca-address`, `--service-account`,
//!   `--cert-chain`, ... flags.
//!
//! Start with [`spawn`]; docs/security.md describes the behaviour and where it differs from
//! Istio's agent.

pub mod certs;
pub mod client;
pub mod files;
pub mod flags;
pub mod key;
pub mod manager;
pub mod material;
pub mod resolve;
pub mod schedule;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::watch;

pub use client::{CaClient, CertificateSigner, TokenSource};
pub use files::FileIdentityConfig;
pub use flags::IdentityArgs;
pub use key::KeyAlgorithm;
pub use manager::{IdentityManager, RotationPolicy, spawn};
pub use material::{CertFacts, Material, San, TrustRoots};
pub use resolve::{WorkloadCertResolver, WorkloadClientCertResolver};

pub use keel_snapshot::identity::SpiffeId;

/// Why a certificate could not be had; each message names the cause and the fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "cannot use the root certificate {path}: {cause}; --ca-root-cert must name the mesh's root-cert.pem (keel control-plane prints its path)"
    )]
    RootUnreadable { path: PathBuf, cause: String },
    #[error(
        "cannot read the CA token {place}: {cause}; give the workload's token with --ca-token-file FILE or KEEL_CA_TOKEN"
    )]
    TokenUnreadable { place: String, cause: String },
    #[error(
        "the CA at {address} is unreachable ({cause}); is the control plane running with its CA there (--ca-listen), and is --ca-address right?"
    )]
    Unreachable { address: String, cause: String },
    #[error(
        "TLS to the CA at {address} failed ({cause}); its certificate must chain to the root in {} and name istiod.istio-system.svc — is --ca-root-cert this mesh's root?",
        root.display()
    )]
    Tls {
        address: String,
        root: PathBuf,
        cause: String,
    },
    #[error(
        "the CA rejected the token {place}: {message}; issue a token for this workload's namespace and service account (and check --service-account)"
    )]
    TokenRejected { place: String, message: String },
    #[error(
        "the CA refused to sign: {message}; the token must prove the identity in --namespace/--service-account/--trust-domain"
    )]
    Refused { message: String },
    #[error("the CA refused the request ({code}): {message}")]
    Rejected { code: String, message: String },
    #[error("the CA's answer can't be used: {0}")]
    BadResponse(String),
    #[error("cannot make the key or CSR: {0}")]
    Key(String),
    #[error(
        "cannot use the workload certificate {path}: {cause}; --cert-chain must name a PEM file with the workload's certificate first, then any intermediates (Istio's cert-chain.pem)"
    )]
    CertFile { path: PathBuf, cause: String },
    #[error(
        "cannot use the private key {path}: {cause}; --key must name the PEM private key (PKCS#8, SEC1 or PKCS#1) of the certificate in --cert-chain (Istio's key.pem)"
    )]
    KeyFile { path: PathBuf, cause: String },
    #[error(
        "cannot use the root certificate {path}: {cause}; --root-cert must name the mesh's root certificates in PEM (Istio's root-cert.pem)"
    )]
    RootFile { path: PathBuf, cause: String },
    #[error(
        "the certificate in {path} carries no SPIFFE ID (URI SANs found: {found}); a workload certificate names its identity as exactly one URI SAN spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> — issue it with one"
    )]
    NoSpiffeId { path: PathBuf, found: String },
    #[error(
        "the key in {key} is not the key of the certificate in {cert} ({cause}); give --key the private key the certificate was issued for"
    )]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        cause: String,
    },
    #[error(
        "the certificate in {path} now names {found}, but the proxy runs as {running}; its identity is fixed at start (metrics and peers know it by that name): restart the proxy to change it"
    )]
    IdentityChanged {
        path: PathBuf,
        found: String,
        running: String,
    },
    #[error("{0}")]
    Internal(String),
}

/// What the proxy needs to get and renew its certificate (the sidecar's and gateway's flags).
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// `HOST:PORT` of the CA (Istio's `CA_ADDR`).
    pub ca_address: String,
    /// `--ca-root-cert`.
    pub root_cert: PathBuf,
    pub token: TokenSource,
    pub id: SpiffeId,
    pub key_algorithm: KeyAlgorithm,
    pub policy: RotationPolicy,
}

/// What `/certs` shows besides the certificate: the last failure, if the latest attempt
/// failed.
#[derive(Debug, Clone, Default)]
struct Status {
    last_error: Option<String>,
    failures: u64,
}

/// Where the workload certificate comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Requested from the CA at this address (`--ca-address`) and renewed by the proxy.
    Ca { address: String },
    /// Read from these files (`--cert-chain`, `--key`, `--root-cert`) and read again when
    /// they change; whoever writes them renews it.
    Files(FileIdentityConfig),
}

/// The proxy's live identity: the certificate in use (none before the first one arrives)
/// and the roots. Cheap to read from any thread; the [`IdentityManager`] (or, for mounted
/// files, [`files::watch`]) writes it.
pub struct WorkloadIdentity {
    id: SpiffeId,
    source: Source,
    roots: ArcSwap<TrustRoots>,
    current: ArcSwapOption<Material>,
    /// Counts certificates installed, so waiters learn of each one.
    installed: watch::Sender<u64>,
    status: Mutex<Status>,
}

impl fmt::Debug for WorkloadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadIdentity")
            .field("id", &self.id)
            .field("serial", &self.current().map(|m| m.leaf.serial.clone()))
            .finish_non_exhaustive()
    }
}

impl WorkloadIdentity {
    /// An identity whose certificate the CA at `ca_address` issues.
    pub fn new(id: SpiffeId, ca_address: &str, roots: Arc<TrustRoots>) -> Arc<WorkloadIdentity> {
        Self::with_source(
            id,
            Source::Ca {
                address: ca_address.to_string(),
            },
            roots,
        )
    }

    pub fn with_source(
        id: SpiffeId,
        source: Source,
        roots: Arc<TrustRoots>,
    ) -> Arc<WorkloadIdentity> {
        Arc::new(WorkloadIdentity {
            id,
            source,
            roots: ArcSwap::new(roots),
            current: ArcSwapOption::empty(),
            installed: watch::Sender::new(0),
            status: Mutex::new(Status::default()),
        })
    }

    /// The identity this proxy asks for (or, with mounted files, the one its certificate
    /// named at start).
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// Where the certificate comes from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The certificate in use now, or `None` before the first one.
    pub fn current(&self) -> Option<Arc<Material>> {
        self.current.load_full()
    }

    /// The roots peers are verified against (mTLS builds its verifiers from this store).
    pub fn roots(&self) -> Arc<TrustRoots> {
        self.roots.load_full()
    }

    /// Whether a certificate is held (readiness).
    pub fn has_certificate(&self) -> bool {
        self.current.load().is_some()
    }

    /// Changes with every certificate installed; `borrow()` is how many so far.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.installed.subscribe()
    }

    /// Returns once a certificate is held.
    pub async fn wait_for_certificate(&self) {
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|n| *n > 0).await;
    }

    /// Puts `material` in use. Handshakes already running keep the `Arc` they loaded.
    /// Roots that differ from those in use (mounted files changed) are put in use first, so
    /// no handshake sees the new certificate with roots it doesn't chain to.
    pub fn install(&self, material: Material) {
        if !Arc::ptr_eq(&self.roots.load(), &material.roots) {
            self.roots.store(material.roots.clone());
        }
        self.current.store(Some(Arc::new(material)));
        self.set_status(None);
        self.installed.send_modify(|n| *n += 1);
    }

    fn set_status(&self, error: Option<String>) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if error.is_some() {
            s.failures += 1;
        }
        s.last_error = error;
    }

    fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Time left until the current certificate's rotation is due (zero when overdue or none).
    pub fn rotation_in(&self, now: SystemTime) -> Option<Duration> {
        self.current()
            .map(|m| m.rotate_at.duration_since(now).unwrap_or_default())
    }
}
