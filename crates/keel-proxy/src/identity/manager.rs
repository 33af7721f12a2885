//! The rotation loop: get a certificate, put it in use, sleep until its renewal is due
//! ([`schedule::renew_after`]), renew; on failure retry with backoff, forever, while the
//! certificate in use stays in use (a proxy whose CA is away keeps serving with what it has,
//! as Istio's agent does).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::client::{CaClient, CertificateSigner};
use super::material::{Material, TrustRoots, rfc3339};
use super::schedule::{self, Backoff};
use super::{IdentityConfig, IdentityError, KeyAlgorithm, WorkloadIdentity, key};

/// How long certificates are asked for and when they are renewed.
#[derive(Debug, Clone)]
pub struct RotationPolicy {
    /// The lifetime requested (`--cert-ttl`; Istio's `SECRET_TTL`, 24 h). The CA may give
    /// less; renewal follows what it gave.
    pub ttl: Duration,
    /// Renew when this share of the lifetime is left (Istio's `SECRET_GRACE_PERIOD_RATIO`).
    pub grace_ratio: f64,
    /// ± this much of the ratio at random (`SECRET_GRACE_PERIOD_RATIO_JITTER`).
    pub grace_jitter: f64,
    /// First retry delay after a failure; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy {
            ttl: Duration::from_secs(24 * 3600),
            grace_ratio: schedule::GRACE_RATIO,
            grace_jitter: schedule::GRACE_RATIO_JITTER,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Keeps a [`WorkloadIdentity`] supplied with a valid certificate from a CA.
pub struct IdentityManager<S> {
    identity: Arc<WorkloadIdentity>,
    signer: S,
    key_algorithm: KeyAlgorithm,
    policy: RotationPolicy,
}

/// Loads the root, builds the CA client and starts the rotation loop on the runtime.
/// Fails only on what a retry can't fix (the root file); the CA being away is retried.
pub fn spawn(config: IdentityConfig) -> Result<Arc<WorkloadIdentity>, IdentityError> {
    let roots = Arc::new(TrustRoots::load(&config.root_cert)?);
    let client = CaClient::new(&config.ca_address, &roots, config.token.clone())?;
    let identity = WorkloadIdentity::new(config.id.clone(), &config.ca_address, roots);
    let manager = IdentityManager::new(
        identity.clone(),
        client,
        config.key_algorithm,
        config.policy.clone(),
    );
    tokio::spawn(manager.run());
    Ok(identity)
}

impl<S: CertificateSigner> IdentityManager<S> {
    pub fn new(
        identity: Arc<WorkloadIdentity>,
        signer: S,
        key_algorithm: KeyAlgorithm,
        policy: RotationPolicy,
    ) -> Self {
        IdentityManager {
            identity,
            signer,
            key_algorithm,
            policy,
        }
    }

    /// Runs until the task is dropped: renews at each certificate's renewal time, retries
    /// failures with backoff.
    pub async fn run(self) {
        let mut backoff = Backoff::new(self.policy.initial_backoff, self.policy.max_backoff);
        loop {
            match self.renew().await {
                Ok(material) => {
                    backoff.reset();
                    sleep_until(material.rotate_at).await;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    self.report_failure(&e, delay);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One attempt: a new key and CSR, the CA's signature, checks, then in use. Returns the
    /// material installed.
    pub async fn renew(&self) -> Result<Arc<Material>, IdentityError> {
        let id = self.identity.id().clone();
        let fresh = key::generate(self.key_algorithm, &id).map_err(IdentityError::Key)?;
        let chain = self.signer.sign(fresh.csr_pem, self.policy.ttl).await?;
        let received_at = SystemTime::now();
        let mut material =
            Material::from_ca_response(&chain, fresh.key, &id, self.identity.roots(), received_at)
                .map_err(IdentityError::BadResponse)?;
        let renew_after = schedule::renew_after(
            material.lifetime(),
            self.policy.grace_ratio,
            self.policy.grace_jitter,
            rand::random::<f64>() * 2.0 - 1.0,
        );
        // Never sooner than a second: a certificate that is all but expired on arrival (a
        // CA clock ahead of ours) must not turn the loop into a stream of requests.
        let renew_after = renew_after.max(MIN_RENEW_AFTER);
        material.rotate_at = received_at + renew_after;
        tracing::info!(
            "identity: got certificate for {id} serial {} valid until {} next rotation in {}",
            material.leaf.serial,
            rfc3339(material.leaf.not_after),
            human(renew_after)
        );
        self.identity.install(material);
        self.identity
            .current()
            .ok_or_else(|| IdentityError::Internal("the certificate was not installed".into()))
    }

    fn report_failure(&self, e: &IdentityError, retry_in: Duration) {
        self.identity.set_status(Some(e.to_string()));
        let now = SystemTime::now();
        match self.identity.current() {
            None => tracing::error!(
                "identity: no certificate yet for {}: {e} (retrying in {}; the proxy is not ready until one arrives)",
                self.identity.id(),
                human(retry_in)
            ),
            Some(m) if m.leaf.not_after <= now => tracing::error!(
                "identity: cannot renew the certificate for {}: {e} (retrying in {}); the current one (serial {}) EXPIRED at {}, peers will refuse it",
                self.identity.id(),
                human(retry_in),
                m.leaf.serial,
                rfc3339(m.leaf.not_after)
            ),
            Some(m) => tracing::warn!(
                "identity: cannot renew the certificate for {}: {e} (retrying in {}); the current one (serial {}) stays in use until {}",
                self.identity.id(),
                human(retry_in),
                m.leaf.serial,
                rfc3339(m.leaf.not_after)
            ),
        }
    }
}

/// The shortest time a certificate is kept before its renewal.
const MIN_RENEW_AFTER: Duration = Duration::from_secs(1);

/// Sleeps until the wall clock reaches `at`, a minute at most at a time: certificate times are
/// wall-clock times, and a monotonic timer alone would oversleep a suspend or a clock step.
async fn sleep_until(at: SystemTime) {
    loop {
        let Ok(left) = at.duration_since(SystemTime::now()) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_secs(60))).await;
    }
}

/// `11h59m30s`, `4m2s`, `1.5s`: durations for log lines.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match h {
        0 => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
