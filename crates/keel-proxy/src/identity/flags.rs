//! The sidecar's and gateway's identity flags (Istio's agent settings, as flags), turned into
//! an [`IdentityConfig`].

use std::path::PathBuf;
use std::time::Duration;

use super::{
    FileIdentityConfig, IdentityConfig, KeyAlgorithm, RotationPolicy, SpiffeId, TokenSource,
};

/// The workload certificate: requested from the mesh's CA when --ca-address is given, renewed
/// at half-life, or read from files (--cert-chain, --key, --root-cert); without either the
/// proxy runs without one.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// The CA's address (Istio's CA_ADDR), e.g. 127.0.0.1:15012; unset = no certificate. With it
    /// the proxy is ready only once it holds a certificate
    #[arg(long, value_name = "HOST:PORT", requires = "ca_root_cert")]
    pub ca_address: Option<String>,
    /// The workload certificate from a file instead of the CA (Istio's file-mounted
    /// /etc/certs/cert-chain.pem): PEM, the certificate first, then any intermediates. Its
    /// spiffe:// URI SAN is the proxy's identity (--service-account and --trust-domain don't
    /// apply). The three files are read again when they change
    #[arg(
        long,
        value_name = "FILE",
        requires_all = ["key", "root_cert"],
        conflicts_with_all = ["ca_address", "ca_root_cert", "ca_token_file"]
    )]
    pub cert_chain: Option<PathBuf>,
    /// The private key of --cert-chain's certificate (PEM; Istio's key.pem)
    #[arg(long, value_name = "FILE", requires_all = ["cert_chain", "root_cert"])]
    pub key: Option<PathBuf>,
    /// The mesh's root certificates with --cert-chain (PEM; Istio's root-cert.pem): the chain
    /// must verify to them, and peers are verified against them
    #[arg(long, value_name = "FILE", requires_all = ["cert_chain", "key"])]
    pub root_cert: Option<PathBuf>,
    /// The mesh's root certificate (PEM): trusted for the CA's TLS and for peers
    #[arg(long, value_name = "FILE")]
    pub ca_root_cert: Option<PathBuf>,
    /// The token proving the workload's identity to the CA, read at each request (or the
    /// token itself in the environment variable KEEL_CA_TOKEN)
    #[arg(long, value_name = "FILE")]
    pub ca_token_file: Option<PathBuf>,
    /// The workload's service account, the SA of its SPIFFE identity
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub service_account: String,
    /// The mesh's trust domain, the first part of its SPIFFE identity
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
    /// The certificate lifetime asked for (Istio's SECRET_TTL); renewed at about half of it.
    /// `keel up` passes its environment on, so KEEL_CERT_TTL sets it for a whole local mesh
    #[arg(long, default_value = "24h", value_parser = parse_ttl, env = "KEEL_CERT_TTL")]
    pub cert_ttl: Duration,
    /// The workload key's type: ecdsa-p256 (Keel's default) or rsa-2048 (Istio's)
    #[arg(long, value_name = "ALG", default_value = "ecdsa-p256", value_parser = parse_key_algorithm)]
    pub key_algorithm: KeyAlgorithm,
}

fn parse_key_algorithm(s: &str) -> Result<KeyAlgorithm, String> {
    s.parse()
}

/// A duration in Istio's form (`24h`, `90m`); the CA counts whole seconds, so at least 1 s.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = keel_config::types::Duration::parse(s)?.to_std();
    if d < Duration::from_secs(1) {
        return Err(format!("\"{s}\" is shorter than the CA's unit, 1s"));
    }
    Ok(d)
}

impl IdentityArgs {
    /// The mounted certificate files, when --cert-chain, --key and --root-cert are given
    /// (clap makes sure they come together, and not with --ca-address).
    pub fn files(&self) -> Option<FileIdentityConfig> {
        match (&self.cert_chain, &self.key, &self.root_cert) {
            (Some(cert_chain), Some(key), Some(root_cert)) => Some(FileIdentityConfig {
                cert_chain: cert_chain.clone(),
                key: key.clone(),
                root_cert: root_cert.clone(),
                poll: super::files::POLL,
            }),
            _ => None,
        }
    }

    /// The identity settings for a workload in `namespace`; `None` without --ca-address.
    /// `env_token` is `KEEL_CA_TOKEN`'s value, used when no token file is given.
    pub fn config(
        &self,
        namespace: &str,
        env_token: Option<String>,
    ) -> Result<Option<IdentityConfig>, String> {
        let Some(address) = &self.ca_address else {
            return Ok(None);
        };
        let root_cert = self
            .ca_root_cert
            .clone()
            .ok_or("--ca-address needs --ca-root-cert FILE (the mesh's root-cert.pem)")?;
        let token = match (&self.ca_token_file, env_token) {
            (Some(path), _) => TokenSource::File(path.clone()),
            (None, Some(t)) if !t.trim().is_empty() => TokenSource::Env(t),
            _ => {
                return Err(
                    "--ca-address needs a token proving the workload's identity: --ca-token-file FILE or KEEL_CA_TOKEN"
                        .into(),
                );
            }
        };
        Ok(Some(IdentityConfig {
            ca_address: address.clone(),
            root_cert,
            token,
            id: SpiffeId::new(&self.trust_domain, namespace, &self.service_account),
            key_algorithm: self.key_algorithm,
            policy: RotationPolicy {
                ttl: self.cert_ttl,
                ..RotationPolicy::default()
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        identity: IdentityArgs,
    }

    fn parse(args: &[&str]) -> Result<IdentityArgs, String> {
        Cli::try_parse_from(std::iter::once("keel-proxy").chain(args.iter().copied()))
            .map(|c| c.identity)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_istios_and_no_ca_means_no_identity() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.service_account, "default");
        assert_eq!(a.trust_domain, "cluster.local");
        assert_eq!(a.cert_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(a.key_algorithm, KeyAlgorithm::EcdsaP256);
        assert!(a.config("default", None).unwrap().is_none());
    }

    #[test]
    fn a_ca_needs_a_root_and_a_token() {
        let err = parse(&["--ca-address", "127.0.0.1:15012"]).err().unwrap();
        assert!(err.contains("--ca-root-cert"), "{err}");
        let a = parse(&[
            "--ca-address",
            "127.0.0.1:15012",
            "--ca-root-cert",
            "root.pem",
            "--service-account",
            "sleep",
            "--cert-ttl",
            "1h",
        ])
        .unwrap();
        let err = a.config("default", None).unwrap_err();
        assert!(
            err.contains("--ca-token-file") && err.contains("KEEL_CA_TOKEN"),
            "{err}"
        );
        let c = a
            .config("prod", Some("keel1:prod:sleep:00".into()))
            .unwrap()
            .unwrap();
        assert_eq!(c.id.to_string(), "spiffe://cluster.local/ns/prod/sa/sleep");
        assert_eq!(c.policy.ttl, Duration::from_secs(3600));
        assert!(matches!(c.token, TokenSource::Env(_)));
        // A file wins over the environment.
        let mut with_file = a.clone();
        with_file.ca_token_file = Some("token".into());
        let c = with_file.config("prod", Some("x".into())).unwrap().unwrap();
        assert!(matches!(c.token, TokenSource::File(_)));
    }

    #[test]
    fn mounted_files_come_as_three_and_exclude_the_ca() {
        let a = parse(&[
            "--cert-chain",
            "/etc/certs/cert-chain.pem",
            "--key",
            "/etc/certs/key.pem",
            "--root-cert",
            "/etc/certs/root-cert.pem",
        ])
        .unwrap();
        let files = a.files().unwrap();
        assert_eq!(files.key, PathBuf::from("/etc/certs/key.pem"));
        assert_eq!(files.poll, crate::identity::files::POLL);
        assert!(a.config("default", None).unwrap().is_none());
        assert!(parse(&[]).unwrap().files().is_none());

        let err = parse(&["--cert-chain", "c.pem", "--key", "k.pem"])
            .err()
            .unwrap();
        assert!(err.contains("--root-cert"), "{err}");
        let err = parse(&["--key", "k.pem"]).err().unwrap();
        assert!(err.contains("--cert-chain"), "{err}");
        let err = parse(&[
            "--cert-chain",
            "c.pem",
            "--key",
            "k.pem",
            "--root-cert",
            "r.pem",
            "--ca-address",
            "127.0.0.1:15012",
            "--ca-root-cert",
            "r.pem",
        ])
        .err()
        .unwrap();
        assert!(err.contains("cannot be used with"), "{err}");
    }

    #[test]
    fn unknown_key_types_and_sub_second_ttls_are_refused_at_parse_time() {
        let err = parse(&["--key-algorithm", "rsa-4096"]).err().unwrap();
        assert!(err.contains("ecdsa-p256 or rsa-2048"), "{err}");
        let err = parse(&["--cert-ttl", "500ms"]).err().unwrap();
        assert!(err.contains("1s"), "{err}");
    }
}
