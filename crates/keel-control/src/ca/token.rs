//! Who may ask the CA for a certificate. The CA signs only identities a caller has proven
//! (Istio's CA checks a Kubernetes service-account token); the proof is behind
//! [`Authenticator`] so the Kubernetes token review can join later.
//!
//! In the local mesh, `keel up` issues each workload a bootstrap token ([`LocalTokens`]):
//! `keel1:<namespace>:<service-account>:<hex HMAC-SHA256>` under a key kept (mode 0600) beside
//! the CA's own material. The token names the identity it proves, so the CA holds no table of
//! issued tokens and tokens survive a control-plane restart. `:` can't occur in namespace or
//! service-account names (DNS labels and subdomains).

use std::path::Path;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::store::atomic;
use keel_snapshot::identity::SpiffeId;

/// Why a caller is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credential: send the workload's token as `authorization: Bearer TOKEN`")]
    Missing,
    #[error("the token is not one this control plane issued ({0})")]
    Invalid(&'static str),
}

/// Proves a caller's identity from the credential it presents.
pub trait Authenticator: Send + Sync {
    fn authenticate(&self, token: &str) -> Result<SpiffeId, AuthError>;
}

const PREFIX: &str = "keel1";

/// Bootstrap tokens for the local mesh, signed with a key the control plane keeps.
pub struct LocalTokens {
    key: hmac::Key,
    trust_domain: String,
}

impl LocalTokens {
    /// Reads the key at `path`, or creates it (32 random bytes, owner-only) on first start.
    pub fn load_or_create(path: &Path, trust_domain: &str) -> std::io::Result<Self> {
        let secret = match std::fs::read(path) {
            Ok(bytes) if bytes.len() >= 32 => bytes,
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is shorter than 32 bytes; remove it and a new key is made (tokens issued before stop working)",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = vec![0u8; 32];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| std::io::Error::other("no randomness for the token key"))?;
                atomic::write(path, &bytes, true)?;
                bytes
            }
            Err(e) => return Err(e),
        };
        Ok(Self::from_secret(&secret, trust_domain))
    }

    pub fn from_secret(secret: &[u8], trust_domain: &str) -> Self {
        LocalTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            trust_domain: trust_domain.to_string(),
        }
    }

    fn message(namespace: &str, service_account: &str) -> String {
        format!("{PREFIX}:{namespace}:{service_account}")
    }

    /// The token proving `namespace`/`service_account`.
    pub fn issue(&self, namespace: &str, service_account: &str) -> String {
        let msg = Self::message(namespace, service_account);
        let tag = hmac::sign(&self.key, msg.as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{msg}:{hex}")
    }
}

impl Authenticator for LocalTokens {
    fn authenticate(&self, token: &str) -> Result<SpiffeId, AuthError> {
        let mut parts = token.trim().split(':');
        let (Some(PREFIX), Some(ns), Some(sa), Some(hex), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(AuthError::Invalid("malformed"));
        };
        if ns.is_empty() || sa.is_empty() || hex.len() % 2 != 0 {
            return Err(AuthError::Invalid("malformed"));
        }
        let tag: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
        let tag = tag.ok_or(AuthError::Invalid("malformed"))?;
        hmac::verify(&self.key, Self::message(ns, sa).as_bytes(), &tag)
            .map_err(|_| AuthError::Invalid("bad signature"))?;
        Ok(SpiffeId::new(&self.trust_domain, ns, sa))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_token_proves_the_identity_it_was_issued_for_and_nothing_else() {
        let tokens = LocalTokens::from_secret(&[7u8; 32], "cluster.local");
        let t = tokens.issue("default", "sleep");
        assert_eq!(
            tokens.authenticate(&t).unwrap(),
            SpiffeId::new("cluster.local", "default", "sleep")
        );
        let forged = t.replace(":sleep:", ":httpbin:");
        assert_eq!(
            tokens.authenticate(&forged),
            Err(AuthError::Invalid("bad signature"))
        );
        let other = LocalTokens::from_secret(&[8u8; 32], "cluster.local");
        assert!(other.authenticate(&t).is_err(), "another key");
        for bad in [
            "",
            "keel1:default:sleep",
            "x:default:sleep:00",
            "keel1:a:b:zz",
        ] {
            assert!(tokens.authenticate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_key_is_created_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token-key");
        let a = LocalTokens::load_or_create(&path, "cluster.local").unwrap();
        let b = LocalTokens::load_or_create(&path, "cluster.local").unwrap();
        let t = a.issue("ns", "sa");
        assert!(b.authenticate(&t).is_ok(), "the same key after a restart");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
