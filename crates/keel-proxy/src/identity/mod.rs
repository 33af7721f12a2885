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
//! - [`flags`]: the sidecar's and gateway's `--ca-address`, `--service-account`, ... flags.
//!
//! Start with [`spawn`]; docs/security.md describes the behaviour and where it differs from
//! Istio's agent.

pub mod certs;
pub mod client;
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

/// The proxy's live identity: the certificate in use (none before the first one arrives)
/// and the roots. Cheap to read from any thread; the [`IdentityManager`] writes it.
pub struct WorkloadIdentity {
    id: SpiffeId,
    ca_address: String,
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
    pub fn new(id: SpiffeId, ca_address: &str, roots: Arc<TrustRoots>) -> Arc<WorkloadIdentity> {
        Arc::new(WorkloadIdentity {
            id,
            ca_address: ca_address.to_string(),
            roots: ArcSwap::new(roots),
            current: ArcSwapOption::empty(),
            installed: watch::Sender::new(0),
            status: Mutex::new(Status::default()),
        })
    }

    /// The identity this proxy asks for.
    pub fn id(&self) -> &SpiffeId {
        &self.id
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
    pub fn install(&self, material: Material) {
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
