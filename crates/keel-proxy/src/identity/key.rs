//! The workload's private key and its certificate signing request. The key is generated here,
//! kept in memory only and never sent anywhere: the CA sees the CSR (the public key and the
//! identity asked for), as with Istio's agent.

use std::fmt;
use std::str::FromStr;

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::SpiffeId;

/// The key type of the workload certificate (`--key-algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256: Istio's `ECC_SIGNATURE_ALGORITHM=ECDSA`. Keel's default:
    /// smaller and faster handshakes than RSA.
    #[default]
    EcdsaP256,
    /// RSA 2048 (Istio's default, `WORKLOAD_RSA_KEY_SIZE`). Named so the flag can explain why
    /// it is refused: ring, Keel's only crypto backend, signs with RSA keys but cannot
    /// generate them (rcgen's `KeyPair::generate_rsa_for` exists only with aws-lc-rs).
    Rsa2048,
}

/// Why RSA is refused, shared by the flag's error and [`generate`].
pub const RSA_UNAVAILABLE: &str = "rsa-2048 is not available: Keel's crypto backend (ring) cannot generate RSA keys \
(rcgen's KeyPair::generate_rsa_for needs aws-lc-rs, which Keel leaves out); use ecdsa-p256, which Istio also \
supports (ECC_SIGNATURE_ALGORITHM=ECDSA) and every peer accepts";

impl FromStr for KeyAlgorithm {
    type Err = String;
    /// Parses the flag's values; `rsa-2048` is refused with [`RSA_UNAVAILABLE`].
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ecdsa-p256" => Ok(KeyAlgorithm::EcdsaP256),
            "rsa-2048" => Err(RSA_UNAVAILABLE.to_string()),
            other => Err(format!(
                "\"{other}\" is not a key algorithm; use ecdsa-p256"
            )),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
        })
    }
}

/// A fresh key and the PEM CSR asking for `id`.
pub struct KeyAndCsr {
    pub key: PrivateKeyDer<'static>,
    pub csr_pem: String,
}

impl fmt::Debug for KeyAndCsr {
    // The key never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAndCsr")
            .field("csr_pem", &self.csr_pem)
            .finish_non_exhaustive()
    }
}

/// Generates a key of `alg` and a CSR carrying `id` as its only SAN (a URI), with an empty
/// subject as Istio's agent sends. Each rotation gets a new key.
pub fn generate(alg: KeyAlgorithm, id: &SpiffeId) -> Result<KeyAndCsr, String> {
    let key = match alg {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("cannot generate an ECDSA P-256 key: {e}"))?,
        KeyAlgorithm::Rsa2048 => return Err(RSA_UNAVAILABLE.to_string()),
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let uri = id
        .to_string()
        .try_into()
        .map_err(|e| format!("{id} can't be a URI SAN: {e}"))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr_pem = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| format!("cannot build the CSR: {e}"))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(KeyAndCsr { key, csr_pem })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_csr_asks_for_the_spiffe_id_and_nothing_else() {
        let id = SpiffeId::new("cluster.local", "default", "sleep");
        let out = generate(KeyAlgorithm::EcdsaP256, &id).unwrap();
        let csr = rcgen::CertificateSigningRequestParams::from_pem(&out.csr_pem).unwrap();
        let sans: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .map(|s| match s {
                SanType::URI(u) => u.as_str().to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(sans, vec!["spiffe://cluster.local/ns/default/sa/sleep"]);
        assert!(matches!(out.key, PrivateKeyDer::Pkcs8(_)));
        assert!(
            !format!("{out:?}").contains("key:"),
            "the key is not printed"
        );
        // A second call makes another key.
        let again = generate(KeyAlgorithm::EcdsaP256, &id).unwrap();
        assert_ne!(out.key.secret_der(), again.key.secret_der());
    }

    #[test]
    fn rsa_is_refused_with_the_reason_and_the_alternative() {
        let err = "rsa-2048".parse::<KeyAlgorithm>().unwrap_err();
        assert!(err.contains("ring") && err.contains("ecdsa-p256"), "{err}");
        assert_eq!(
            "ecdsa-p256".parse::<KeyAlgorithm>().unwrap(),
            KeyAlgorithm::EcdsaP256
        );
        assert!("dsa".parse::<KeyAlgorithm>().is_err());
        let id = SpiffeId::new("cluster.local", "default", "sleep");
        assert!(generate(KeyAlgorithm::Rsa2048, &id).is_err());
    }
}
