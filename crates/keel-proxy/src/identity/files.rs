//! Workload certificates mounted as files, the other way Istio's agent gets them
//! (`FILE_MOUNTED_CERTS`, with `/etc/certs/cert-chain.pem`, `key.pem` and `root-cert.pem`
//! written by cert-manager, Vault or a Secret volume): no CA call and no key made here. The
//! identity is what the certificate says — its one `spiffe://` URI SAN — rather than
//! `--service-account`. The files are read at start (a problem there stops the proxy, naming
//! the file and the fix) and polled every [`POLL`]: changed contents are read again and, if
//! the new certificate, key and roots go together, put in use the same way a CA rotation is
//! ([`WorkloadIdentity::install`]); otherwise the old material stays in use and the reason is
//! logged and shown in `/certs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::material::{CertFacts, Material, San, TrustRoots, rfc3339, verify_chain};
use super::{IdentityError, Source, SpiffeId, WorkloadIdentity};

/// How often the files are checked for changes. Reading three small files is cheaper than
/// a file-system watch that must survive Kubernetes' `..data` symlink swaps, and a renewed
/// certificate only has to arrive well before the old one expires.
pub const POLL: Duration = Duration::from_secs(2);

/// `--cert-chain`, `--key` and `--root-cert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentityConfig {
    /// The workload certificate first, then any intermediates (the root may follow; it is
    /// not sent in handshakes).
    pub cert_chain: PathBuf,
    pub key: PathBuf,
    /// The mesh's roots: what the chain must verify to, and what peers are verified against.
    pub root_cert: PathBuf,
    pub poll: Duration,
}

/// The three files' contents as last read, by digest: a change in any of them (a rewrite, a
/// rename over it, a symlink swapped) shows as a different digest whatever the timestamps say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen([Option<[u8; 32]>; 3]);

impl Seen {
    /// What the files hold now; an unreadable file counts as its own state, so one that
    /// comes back is read again.
    pub fn read(config: &FileIdentityConfig) -> Seen {
        let digest = |p: &Path| {
            std::fs::read(p).ok().map(|bytes| {
                let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
                let mut out = [0u8; 32];
                out.copy_from_slice(d.as_ref());
                out
            })
        };
        Seen([
            digest(&config.cert_chain),
            digest(&config.key),
            digest(&config.root_cert),
        ])
    }
}

/// Reads and checks the three files: the roots parse, the chain verifies to them (as peers
/// will check it), its leaf carries one SPIFFE ID (`expected`, when given: the identity the
/// proxy runs as) and the key is the leaf's.
pub fn load(
    config: &FileIdentityConfig,
    expected: Option<&SpiffeId>,
) -> Result<Material, IdentityError> {
    let roots = TrustRoots::load(&config.root_cert).map_err(|e| match e {
        IdentityError::RootUnreadable { path, cause } => IdentityError::RootFile { path, cause },
        other => other,
    })?;
    let roots = Arc::new(roots);
    let cert_err = |cause: String| IdentityError::CertFile {
        path: config.cert_chain.clone(),
        cause,
    };
    let pem = std::fs::read(&config.cert_chain).map_err(|e| cert_err(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(format!("not PEM certificates: {e}")))?;
    // A chain file may end with the root (Istio's own cert-chain.pem does not, some issuers'
    // do); peers have it, so it isn't sent.
    let served: Vec<CertificateDer<'static>> = certs
        .into_iter()
        .filter(|c| !roots.certs.contains(c))
        .collect();
    if served.is_empty() {
        return Err(cert_err("holds no certificate other than the roots".into()));
    }
    let mut facts = Vec::new();
    for c in &served {
        facts.push(CertFacts::parse(c).map_err(cert_err)?);
    }
    let leaf = facts.remove(0);
    let id = leaf.spiffe_id().ok_or_else(|| {
        let uris: Vec<&str> = leaf
            .sans
            .iter()
            .filter_map(|s| match s {
                San::Uri(u) => Some(u.as_str()),
                _ => None,
            })
            .collect();
        IdentityError::NoSpiffeId {
            path: config.cert_chain.clone(),
            found: if uris.is_empty() {
                "none".into()
            } else {
                uris.join(", ")
            },
        }
    })?;
    if let Some(running) = expected
        && &id != running
    {
        return Err(IdentityError::IdentityChanged {
            path: config.cert_chain.clone(),
            found: id.to_string(),
            running: running.to_string(),
        });
    }
    verify_chain(&served, &roots).map_err(cert_err)?;
    let key_pem = std::fs::read(&config.key).map_err(|e| IdentityError::KeyFile {
        path: config.key.clone(),
        cause: e.to_string(),
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| IdentityError::KeyFile {
        path: config.key.clone(),
        cause: format!("no PEM private key in it: {e}"),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified_key = CertifiedKey::from_der(served, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => IdentityError::KeyMismatch {
            cert: config.cert_chain.clone(),
            key: config.key.clone(),
            cause: e.to_string(),
        },
        // The key itself can't be used (an unsupported type or curve, a damaged file).
        other => IdentityError::KeyFile {
            path: config.key.clone(),
            cause: other.to_string(),
        },
    })?;
    let now = SystemTime::now();
    Ok(Material {
        certified_key: Arc::new(certified_key),
        leaf,
        intermediates: facts,
        id,
        received_at: now,
        // Whoever writes the files renews the certificate; the proxy has no rotation of its
        // own to schedule.
        rotate_at: now,
        roots,
    })
}

/// Reads the files, puts the certificate in use and starts polling them. Fails on anything
/// wrong with the files at start: the proxy should not come up with an identity it can't
/// prove.
pub fn spawn(config: FileIdentityConfig) -> Result<Arc<WorkloadIdentity>, IdentityError> {
    let seen = Seen::read(&config);
    let material = load(&config, None)?;
    let identity = WorkloadIdentity::with_source(
        material.id.clone(),
        Source::Files(config.clone()),
        material.roots.clone(),
    );
    log_installed(&config, &material, "loaded");
    identity.install(material);
    tokio::spawn(watch(identity.clone(), config, seen));
    Ok(identity)
}

/// Polls the files every `config.poll` for the life of the proxy.
pub async fn watch(identity: Arc<WorkloadIdentity>, config: FileIdentityConfig, mut seen: Seen) {
    let mut tick = tokio::time::interval(config.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let _ = reload_if_changed(&identity, &config, &mut seen);
    }
}

/// One poll: when any file changed since `seen`, reads them again and puts the result in
/// use, or keeps the material in use and reports why. `None` when nothing changed.
///
/// A writer that replaces the files one by one may be caught between the certificate and
/// the key: that read fails (the key doesn't match), and the next poll, seeing the key
/// changed too, reads the pair again.
pub fn reload_if_changed(
    identity: &WorkloadIdentity,
    config: &FileIdentityConfig,
    seen: &mut Seen,
) -> Option<Result<(), IdentityError>> {
    let now = Seen::read(config);
    if &now == seen {
        return None;
    }
    *seen = now;
    match load(config, Some(identity.id())) {
        Ok(mut material) => {
            // The same roots as before stay the same `Arc`, so mTLS keeps the configurations
            // it built for them (it rebuilds them when the roots change).
            let roots = identity.roots();
            if roots.certs == material.roots.certs {
                material.roots = roots;
            }
            log_installed(config, &material, "reloaded");
            identity.install(material);
            Some(Ok(()))
        }
        Err(e) => {
            identity.set_status(Some(e.to_string()));
            match identity.current() {
                Some(m) => tracing::error!(
                    "identity: the certificate files changed but can't be used: {e}; the certificate in use (serial {}, valid until {}) stays in use",
                    m.leaf.serial,
                    rfc3339(m.leaf.not_after)
                ),
                None => tracing::error!("identity: the certificate files can't be used: {e}"),
            }
            Some(Err(e))
        }
    }
}

fn log_installed(config: &FileIdentityConfig, m: &Material, what: &str) {
    tracing::info!(
        "identity: {what} the certificate for {} from {} (key {}, roots {}): serial {} valid until {}; the files are checked for changes every {}",
        m.id,
        config.cert_chain.display(),
        config.key.display(),
        config.root_cert.display(),
        m.leaf.serial,
        rfc3339(m.leaf.not_after),
        super::manager::human(config.poll)
    );
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
