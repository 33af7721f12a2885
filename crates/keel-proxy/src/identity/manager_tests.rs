//! The rotation loop against a CA in-process (keel-control's, called directly), and the
//! resolvers through real rustls handshakes in memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use keel_control::ca::{Ca, CaOptions};

use rustls::client::ResolvesClientCert;

use super::*;
use crate::identity::{CertFacts, San, SpiffeId};

struct FakeCa {
    ca: Ca,
    _dir: tempfile::TempDir,
    /// Whom the CA signs for (the identity a token would prove).
    signs_for: keel_control::ca::SpiffeId,
    fail_next: AtomicU32,
    calls: Mutex<Vec<tokio::time::Instant>>,
}

impl FakeCa {
    fn new() -> Arc<FakeCa> {
        Self::signing_for("default", "sleep")
    }

    fn signing_for(ns: &str, sa: &str) -> Arc<FakeCa> {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path(), None, CaOptions::default()).unwrap();
        Arc::new(FakeCa {
            ca,
            _dir: dir,
            signs_for: keel_control::ca::SpiffeId::new("cluster.local", ns, sa),
            fail_next: AtomicU32::new(0),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn roots(&self) -> Arc<TrustRoots> {
        Arc::new(
            TrustRoots::from_pem(Path::new("root-cert.pem"), self.ca.root_pem().as_bytes())
                .unwrap(),
        )
    }
}

impl CertificateSigner for Arc<FakeCa> {
    async fn sign(&self, csr_pem: String, ttl: Duration) -> Result<Vec<String>, IdentityError> {
        self.calls.lock().unwrap().push(tokio::time::Instant::now());
        if self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(IdentityError::Unreachable {
                address: "127.0.0.1:15012".into(),
                cause: "connection refused".into(),
            });
        }
        self.ca
            .sign_csr(&csr_pem, &self.signs_for, Some(ttl))
            .map_err(|e| IdentityError::Rejected {
                code: "InvalidArgument".into(),
                message: e.to_string(),
            })
    }
}

fn sleep_id() -> SpiffeId {
    SpiffeId::new("cluster.local", "default", "sleep")
}

fn manager(
    ca: &Arc<FakeCa>,
    roots: Arc<TrustRoots>,
    ttl: Duration,
) -> IdentityManager<Arc<FakeCa>> {
    let identity = WorkloadIdentity::new(sleep_id(), "127.0.0.1:15012", roots);
    IdentityManager::new(
        identity,
        ca.clone(),
        KeyAlgorithm::EcdsaP256,
        RotationPolicy {
            ttl,
            ..RotationPolicy::default()
        },
    )
}

#[tokio::test]
async fn a_certificate_names_the_identity_and_is_renewed_near_half_life() {
    let ca = FakeCa::new();
    let m = manager(&ca, ca.roots(), Duration::from_secs(3600));
    assert!(!m.identity.has_certificate());
    let material = m.renew().await.unwrap();
    assert_eq!(material.id, sleep_id());
    assert_eq!(
        material.leaf.sans,
        vec![San::Uri(
            "spiffe://cluster.local/ns/default/sa/sleep".into()
        )]
    );
    assert!(material.intermediates.is_empty(), "the root is not served");
    assert!(m.identity.has_certificate());
    // Half of the hour from receipt, ± 1% of it (36 s), plus a second of slack for the test.
    let after = material
        .rotate_at
        .duration_since(material.received_at)
        .unwrap();
    assert!(
        (1800 - 37..=1800 + 37).contains(&after.as_secs()),
        "{after:?}"
    );
    // A renewal is a new certificate with a new key.
    let next = m.renew().await.unwrap();
    assert_ne!(next.leaf.serial, material.leaf.serial);
    assert_ne!(
        next.certified_key.cert[0], material.certified_key.cert[0],
        "new certificate"
    );
    assert_eq!(m.identity.current().unwrap().leaf.serial, next.leaf.serial);
}

#[tokio::test]
async fn a_failed_renewal_keeps_the_certificate_in_use_and_shows_the_error() {
    let ca = FakeCa::new();
    let m = manager(&ca, ca.roots(), Duration::from_secs(3600));
    let first = m.renew().await.unwrap();
    ca.fail_next.store(1, Ordering::SeqCst);
    let err = m.renew().await.unwrap_err();
    m.report_failure(&err, Duration::from_secs(1));
    assert!(err.to_string().contains("--ca-address"), "{err}");
    assert_eq!(m.identity.current().unwrap().leaf.serial, first.leaf.serial);
    let doc = m.identity.certs_json(SystemTime::now());
    assert_eq!(doc["workload"]["state"], "ACTIVE");
    assert!(
        doc["workload"]["last_error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{doc}"
    );
    // The next success clears it.
    m.renew().await.unwrap();
    assert!(m.identity.certs_json(SystemTime::now())["workload"]["last_error"].is_null());
}

#[tokio::test]
async fn a_chain_from_another_root_or_for_another_identity_is_refused() {
    let ca = FakeCa::new();
    let stranger = FakeCa::new();
    let m = manager(&ca, stranger.roots(), Duration::from_secs(3600));
    let err = m.renew().await.unwrap_err().to_string();
    assert!(
        err.contains("doesn't verify against the root in root-cert.pem"),
        "{err}"
    );
    assert!(!m.identity.has_certificate());

    // A chain for another identity, or for another key, is not used even when it verifies.
    let httpbin = SpiffeId::new("cluster.local", "default", "httpbin");
    let theirs = key::generate(KeyAlgorithm::EcdsaP256, &httpbin).unwrap();
    let chain = ca
        .ca
        .sign_csr(
            &theirs.csr_pem,
            &keel_control::ca::SpiffeId::new("cluster.local", "default", "httpbin"),
            None,
        )
        .unwrap();
    let err = Material::from_ca_response(
        &chain,
        theirs.key.clone_key(),
        &sleep_id(),
        ca.roots(),
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(
        err.contains("names spiffe://cluster.local/ns/default/sa/httpbin, not"),
        "{err}"
    );
    let mine = key::generate(KeyAlgorithm::EcdsaP256, &httpbin).unwrap();
    let err = Material::from_ca_response(&chain, mine.key, &httpbin, ca.roots(), SystemTime::now())
        .unwrap_err();
    assert!(err.contains("doesn't match the key"), "{err}");
    assert!(
        Material::from_ca_response(&chain, theirs.key, &httpbin, ca.roots(), SystemTime::now())
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_with_doubling_backoff_until_the_ca_answers() {
    let ca = FakeCa::new();
    ca.fail_next.store(4, Ordering::SeqCst);
    let m = manager(&ca, ca.roots(), Duration::from_secs(3600));
    let identity = m.identity.clone();
    let task = tokio::spawn(m.run());
    tokio::time::timeout(Duration::from_secs(3600), identity.wait_for_certificate())
        .await
        .expect("a certificate after the failures");
    task.abort();
    let calls = ca.calls.lock().unwrap().clone();
    let gaps: Vec<u64> = calls.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(gaps, vec![1, 2, 4, 8], "1 s doubling");
    assert_eq!(
        identity.certs_json(SystemTime::now())["workload"]["failed_attempts"],
        4
    );
}

#[test]
fn human_durations_read_like_log_lines() {
    assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    assert_eq!(human(Duration::from_secs(242)), "4m2s");
    assert_eq!(human(Duration::from_secs(12 * 3600 + 61)), "12h1m1s");
}

#[tokio::test]
async fn certs_shows_envoys_shape_with_the_rotation_and_the_root() {
    let ca = FakeCa::new();
    let m = manager(&ca, ca.roots(), Duration::from_secs(48 * 3600));
    let before = m.identity.certs_json(SystemTime::now());
    assert_eq!(before["certificates"], serde_json::json!([]));
    assert_eq!(before["workload"]["state"], "PENDING");
    assert_eq!(before["root"][0]["subject"], "O=cluster.local");
    let material = m.renew().await.unwrap();
    let doc = m.identity.certs_json(SystemTime::now());
    let leaf = &doc["certificates"][0]["cert_chain"][0];
    assert_eq!(leaf["serial_number"], material.leaf.serial.as_str());
    assert_eq!(
        leaf["subject_alt_names"],
        serde_json::json!([{"uri": "spiffe://cluster.local/ns/default/sa/sleep"}])
    );
    assert_eq!(leaf["days_until_expiration"], "1", "47.99 h left");
    assert_eq!(leaf["issuer"], "O=cluster.local");
    assert!(leaf["expiration_time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        doc["certificates"][0]["ca_cert"][0]["days_until_expiration"],
        "3649"
    );
    let left = doc["workload"]["seconds_to_next_rotation"]
        .as_u64()
        .unwrap();
    assert!((23 * 3600..=25 * 3600).contains(&left), "{left}");
    assert_eq!(
        doc["workload"]["identity"],
        "spiffe://cluster.local/ns/default/sa/sleep"
    );
}

/// Accepts any server certificate: SPIFFE certificates carry no DNS name for WebPKI's name
/// check, and this test is about which certificate is presented, not about verifying it.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A full handshake in memory; returns the certificates each side saw from the other
/// (server's view of the client, client's view of the server) as serials.
fn handshake(
    server: &Arc<rustls::ServerConfig>,
    client: &Arc<rustls::ClientConfig>,
) -> (String, String) {
    let name = rustls::pki_types::ServerName::try_from("sleep.default").unwrap();
    let mut c = rustls::ClientConnection::new(client.clone(), name).unwrap();
    let mut s = rustls::ServerConnection::new(server.clone()).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets().unwrap();
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets().unwrap();
        if !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
    }
    assert!(!c.is_handshaking() && !s.is_handshaking(), "handshake done");
    let serial = |certs: Option<&[rustls::pki_types::CertificateDer<'_>]>| {
        CertFacts::parse(&certs.unwrap()[0]).unwrap().serial
    };
    (serial(s.peer_certificates()), serial(c.peer_certificates()))
}

#[tokio::test]
async fn the_resolvers_present_the_certificate_in_use_at_each_handshake() {
    let ca = FakeCa::new();
    let m = manager(&ca, ca.roots(), Duration::from_secs(3600));
    let identity = m.identity.clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        identity.roots().store.clone(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(identity.server_resolver()),
    );
    let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider.clone())))
        .with_client_cert_resolver(identity.client_resolver());
    // A resumed session would carry the first handshake's certificates over.
    client.resumption = rustls::client::Resumption::disabled();
    let client = Arc::new(client);
    assert!(!identity.client_resolver().has_certs());

    let first = m.renew().await.unwrap().leaf.serial.clone();
    assert!(identity.client_resolver().has_certs());
    assert_eq!(handshake(&server, &client), (first.clone(), first.clone()));
    // The same configs, after a rotation: the new certificate, both ways.
    let second = m.renew().await.unwrap().leaf.serial.clone();
    assert_ne!(first, second);
    assert_eq!(handshake(&server, &client), (second.clone(), second));
}
