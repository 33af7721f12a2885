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
    /// RSA 2048 (Istio's default, `WORKLOAD_RSA_KEY_SIZE`): for peers or policies that want
    /// RSA. The key is generated with the `rsa` crate (ring signs with RSA keys but can't make
    /// them); every signature after that is ring's.
    Rsa2048,
}

impl FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ecdsa-p256" => Ok(KeyAlgorithm::EcdsaP256),
            "rsa-2048" => Ok(KeyAlgorithm::Rsa2048),
            other => Err(format!(
                "\"{other}\" is not a key algorithm; use ecdsa-p256 or rsa-2048"
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
        KeyAlgorithm::Rsa2048 => rsa_2048()?,
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

/// A new RSA 2048 key (exponent 65537), handed to rcgen as PKCS#8 to sign the CSR with
/// RSA PKCS#1 v1.5 SHA-256, as Istio's agent does.
fn rsa_2048() -> Result<KeyPair, String> {
    use rsa::pkcs8::EncodePrivateKey;
    let mut rng = rsa::rand_core::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048)
        .map_err(|e| format!("cannot generate an RSA 2048 key: {e}"))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| format!("cannot encode the RSA key: {e}"))?;
    let der = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
    KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| format!("the RSA key can't sign: {e}"))
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
    fn rsa_2048_is_selectable_and_its_key_signs_for_rustls() {
        assert_eq!(
            "rsa-2048".parse::<KeyAlgorithm>().unwrap(),
            KeyAlgorithm::Rsa2048
        );
        assert_eq!(
            "ecdsa-p256".parse::<KeyAlgorithm>().unwrap(),
            KeyAlgorithm::EcdsaP256
        );
        let err = "dsa".parse::<KeyAlgorithm>().unwrap_err();
        assert!(err.contains("ecdsa-p256 or rsa-2048"), "{err}");
        let id = SpiffeId::new("cluster.local", "default", "sleep");
        let out = generate(KeyAlgorithm::Rsa2048, &id).unwrap();
        let csr = rcgen::CertificateSigningRequestParams::from_pem(&out.csr_pem).unwrap();
        assert_eq!(csr.public_key.algorithm(), &rcgen::PKCS_RSA_SHA256);
        // rcgen parsed the request and checked its signature; the key is 2048 bits.
        let spki_der = rcgen::PublicKeyData::subject_public_key_info(&csr.public_key);
        let (_, spki) =
            <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<
                '_,
                x509_parser::error::X509Error,
            >>::from_der(&spki_der)
            .unwrap();
        assert_eq!(spki.parsed().unwrap().key_size(), 2048);
        let signer = rustls::crypto::ring::sign::any_supported_type(&out.key).unwrap();
        assert_eq!(signer.algorithm(), rustls::SignatureAlgorithm::RSA);
    }
}
