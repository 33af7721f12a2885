//! The file-mounted certificate loader with certificates made here (rcgen): good files, a
//! certificate without a SPIFFE ID, a key of another certificate, and reloads good and bad.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};

use super::*;

/// A root CA issuing workload certificates.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, name);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    fn root_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A workload certificate with these SANs and its key, both PEM.
    fn leaf(&self, sans: Vec<SanType>) -> (String, String) {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.signed_by(&key, &*self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn workload(&self, sa: &str) -> (String, String) {
        let uri = format!("spiffe://cluster.local/ns/default/sa/{sa}");
        self.leaf(vec![SanType::URI(uri.try_into().unwrap())])
    }
}

/// The three files in a temporary directory.
struct Files {
    dir: tempfile::TempDir,
    config: FileIdentityConfig,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let config = FileIdentityConfig {
            cert_chain: dir.path().join("cert-chain.pem"),
            key: dir.path().join("key.pem"),
            root_cert: dir.path().join("root-cert.pem"),
            poll: Duration::from_millis(50),
        };
        Files { dir, config }
    }

    fn write(&self, ca: &TestCa, (cert, key): &(String, String)) {
        std::fs::write(&self.config.root_cert, ca.root_pem()).unwrap();
        std::fs::write(&self.config.cert_chain, cert).unwrap();
        std::fs::write(&self.config.key, key).unwrap();
    }
}

fn sleep_id() -> SpiffeId {
    SpiffeId::new("cluster.local", "default", "sleep")
}

#[test]
fn good_files_give_the_identity_of_the_certificates_uri_san() {
    let ca = TestCa::new("test-mesh");
    let files = Files::new();
    let pair = ca.workload("sleep");
    files.write(&ca, &pair);
    let m = load(&files.config, None).unwrap();
    assert_eq!(m.id, sleep_id());
    assert!(m.intermediates.is_empty());
    assert_eq!(m.roots.certs.len(), 1);
    // A chain file that ends with the root is accepted; the root is not served.
    std::fs::write(
        &files.config.cert_chain,
        format!("{}{}", pair.0, ca.root_pem()),
    )
    .unwrap();
    let m = load(&files.config, None).unwrap();
    assert_eq!(m.certified_key.cert.len(), 1);
    assert!(m.intermediates.is_empty());
    drop(files.dir);
}

#[test]
fn a_certificate_without_a_spiffe_id_is_refused_naming_the_file() {
    let ca = TestCa::new("test-mesh");
    let files = Files::new();
    files.write(
        &ca,
        &ca.leaf(vec![SanType::DnsName("sleep.default".try_into().unwrap())]),
    );
    let err = load(&files.config, None).unwrap_err();
    assert!(matches!(err, IdentityError::NoSpiffeId { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("cert-chain.pem"), "{text}");
    assert!(text.contains("found: none"), "{text}");
    assert!(text.contains("spiffe://<trust-domain>"), "{text}");
    // A URI SAN that isn't a SPIFFE ID is named.
    files.write(
        &ca,
        &ca.leaf(vec![SanType::URI(
            "https://sleep.example".try_into().unwrap(),
        )]),
    );
    let text = load(&files.config, None).unwrap_err().to_string();
    assert!(text.contains("https://sleep.example"), "{text}");
}

#[test]
fn a_key_of_another_certificate_is_refused_naming_both_files() {
    let ca = TestCa::new("test-mesh");
    let files = Files::new();
    let (cert, _) = ca.workload("sleep");
    let (_, other_key) = ca.workload("sleep");
    files.write(&ca, &(cert, other_key));
    let err = load(&files.config, None).unwrap_err();
    assert!(matches!(err, IdentityError::KeyMismatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("key.pem") && text.contains("cert-chain.pem"),
        "{text}"
    );
    assert!(text.contains("--key"), "{text}");
}

#[test]
fn unreadable_and_foreign_files_are_refused_with_the_flag_to_fix() {
    let ca = TestCa::new("test-mesh");
    let files = Files::new();
    // Nothing written yet: the root is read first.
    let text = load(&files.config, None).unwrap_err().to_string();
    assert!(
        text.contains("root-cert.pem") && text.contains("--root-cert"),
        "{text}"
    );
    // A certificate of another mesh doesn't verify to this root.
    let stranger = TestCa::new("other-mesh");
    files.write(&ca, &stranger.workload("sleep"));
    let err = load(&files.config, None).unwrap_err();
    assert!(matches!(err, IdentityError::CertFile { .. }), "{err:?}");
    assert!(err.to_string().contains("root-cert.pem"), "{err}");
    // A key file without a key.
    files.write(&ca, &ca.workload("sleep"));
    std::fs::write(&files.config.key, "not a key").unwrap();
    let err = load(&files.config, None).unwrap_err();
    assert!(matches!(err, IdentityError::KeyFile { .. }), "{err:?}");
}

#[tokio::test]
async fn changed_files_are_reloaded_and_bad_ones_keep_the_old_certificate() {
    let ca = TestCa::new("test-mesh");
    let files = Files::new();
    files.write(&ca, &ca.workload("sleep"));
    let identity = spawn(files.config.clone()).unwrap();
    assert!(identity.has_certificate());
    assert_eq!(identity.id(), &sleep_id());
    let first = identity.current().unwrap().leaf.serial.clone();
    let doc = identity.certs_json(SystemTime::now());
    assert_eq!(doc["workload"]["source"], "files");
    assert_eq!(doc["workload"]["state"], "ACTIVE");
    assert!(
        doc["workload"]["cert_chain_file"]
            .as_str()
            .unwrap()
            .ends_with("cert-chain.pem")
    );

    // Poll by hand from here (the watcher spawned above doesn't run: this test never awaits
    // on its current-thread runtime).
    let mut seen = Seen::read(&files.config);
    assert!(reload_if_changed(&identity, &files.config, &mut seen).is_none());

    // A renewed certificate with its key: in use.
    files.write(&ca, &ca.workload("sleep"));
    assert!(matches!(
        reload_if_changed(&identity, &files.config, &mut seen),
        Some(Ok(()))
    ));
    let second = identity.current().unwrap().leaf.serial.clone();
    assert_ne!(second, first);

    // The certificate written, the key not yet: the old pair stays, the reason is shown.
    let next = ca.workload("sleep");
    std::fs::write(&files.config.cert_chain, &next.0).unwrap();
    let err = reload_if_changed(&identity, &files.config, &mut seen)
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, IdentityError::KeyMismatch { .. }), "{err:?}");
    assert_eq!(identity.current().unwrap().leaf.serial, second);
    let doc = identity.certs_json(SystemTime::now());
    assert!(
        doc["workload"]["last_error"]
            .as_str()
            .unwrap()
            .contains("key.pem"),
        "{doc}"
    );
    // Then the key: the pair is read again.
    std::fs::write(&files.config.key, &next.1).unwrap();
    assert!(matches!(
        reload_if_changed(&identity, &files.config, &mut seen),
        Some(Ok(()))
    ));
    assert_ne!(identity.current().unwrap().leaf.serial, second);
    assert!(
        identity.certs_json(SystemTime::now())["workload"]["last_error"].is_null(),
        "a good reload clears the error"
    );

    // Another identity: refused, the proxy keeps running as sleep.
    let serial = identity.current().unwrap().leaf.serial.clone();
    files.write(&ca, &ca.workload("web"));
    let err = reload_if_changed(&identity, &files.config, &mut seen)
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::IdentityChanged { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("restart"), "{err}");
    assert_eq!(identity.current().unwrap().leaf.serial, serial);

    // A new root with a certificate it issued: both in use together.
    let new_ca = TestCa::new("new-mesh");
    files.write(&new_ca, &new_ca.workload("sleep"));
    assert!(matches!(
        reload_if_changed(&identity, &files.config, &mut seen),
        Some(Ok(()))
    ));
    assert_eq!(identity.roots().facts[0].subject, "O=new-mesh");
    assert!(Arc::ptr_eq(
        &identity.roots(),
        &identity.current().unwrap().roots
    ));
}

/// The spawned watcher finds a change on its own.
#[tokio::test]
async fn the_watcher_polls_the_files() {
    let ca = TestCa::new("test-mesh");
    let files = Files::new();
    files.write(&ca, &ca.workload("sleep"));
    let identity = spawn(files.config.clone()).unwrap();
    let mut installed = identity.subscribe();
    let before = *installed.borrow_and_update();
    files.write(&ca, &ca.workload("sleep"));
    tokio::time::timeout(Duration::from_secs(10), installed.changed())
        .await
        .expect("the watcher reloads within its poll interval")
        .unwrap();
    assert_eq!(*installed.borrow(), before + 1);
}
