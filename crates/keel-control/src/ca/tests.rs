//! The CA's material, signing rules and API, checked with real certificates: every issued
//! chain is verified by rustls' own WebPKI verifier, as a peer sidecar would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};

use super::token::LocalTokens;
use super::*;

fn csr_for(uri: Option<&str>) -> String {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    if let Some(u) = uri {
        params.subject_alt_names = vec![SanType::URI(u.try_into().unwrap())];
    }
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Verifies `chain` (Istio's `cert_chain`: leaf first, root last) with WebPKI against its
/// last element as the only root, as a peer would; returns the leaf.
fn verify(chain: &[String]) -> x509_parser::certificate::X509Certificate<'static> {
    let root_pem = chain.last().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(root_pem) {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
    let all: Vec<CertificateDer<'static>> = chain[..chain.len() - 1]
        .iter()
        .flat_map(|p| certs(p))
        .collect();
    verifier
        .verify_client_cert(&all[0], &all[1..], UnixTime::now())
        .expect("the chain verifies against the root");
    let der: &'static [u8] = Box::leak(all[0].to_vec().into_boxed_slice());
    x509_parser::parse_x509_certificate(der).unwrap().1
}

fn uri_sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

fn sleep_id() -> SpiffeId {
    SpiffeId::new("cluster.local", "default", "sleep")
}

#[test]
fn a_self_signed_root_is_created_once_and_signs_workload_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path(), None, CaOptions::default()).unwrap();
    assert_eq!(ca.source(), &CaSource::SelfSigned(dir.path().to_path_buf()));
    let again = Ca::load_or_create(dir.path(), None, CaOptions::default()).unwrap();
    assert_eq!(ca.root_pem(), again.root_pem(), "a restart keeps the root");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("root-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let chain = ca
        .sign_csr(
            &csr_for(Some("spiffe://cluster.local/ns/default/sa/sleep")),
            &sleep_id(),
            None,
        )
        .unwrap();
    assert_eq!(chain.len(), 2, "leaf, root");
    let leaf = verify(&chain);
    assert_eq!(uri_sans(&leaf), vec![sleep_id().to_string()]);
    let v = leaf.validity();
    let lifetime = v.not_after.timestamp() - v.not_before.timestamp();
    assert_eq!(
        lifetime,
        24 * 3600 + 60,
        "24 h, plus a minute's grace before now"
    );
    assert!(!leaf.is_ca());
    let root = x509_parser::pem::parse_x509_pem(ca.root_pem().as_bytes())
        .unwrap()
        .1;
    let root = root.parse_x509().unwrap();
    assert!(root.is_ca());
    let years = (root.validity().not_after.timestamp() - root.validity().not_before.timestamp())
        / (365 * 24 * 3600);
    assert_eq!(years, 10);
}

#[test]
fn the_certificate_names_the_callers_identity_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path(), None, CaOptions::default()).unwrap();
    // A CSR without a SAN gets the caller's identity.
    let chain = ca.sign_csr(&csr_for(None), &sleep_id(), None).unwrap();
    assert_eq!(uri_sans(&verify(&chain)), vec![sleep_id().to_string()]);
    // One asking for another identity is refused.
    let err = ca
        .sign_csr(
            &csr_for(Some("spiffe://cluster.local/ns/default/sa/httpbin")),
            &sleep_id(),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, SignError::NotAllowed(_)), "{err}");
    assert!(err.to_string().contains("sa/httpbin"), "{err}");
    // Lifetimes: as asked, refused above the maximum.
    let chain = ca
        .sign_csr(&csr_for(None), &sleep_id(), Some(Duration::from_secs(3600)))
        .unwrap();
    let v = verify(&chain).validity().clone();
    assert_eq!(
        v.not_after.timestamp() - v.not_before.timestamp(),
        3600 + 60
    );
    let err = ca
        .sign_csr(
            &csr_for(None),
            &sleep_id(),
            Some(Duration::from_secs(91 * 24 * 3600)),
        )
        .unwrap_err();
    assert!(matches!(err, SignError::BadLifetime(_)), "{err}");
    let err = ca.sign_csr("not a csr", &sleep_id(), None).unwrap_err();
    assert!(matches!(err, SignError::InvalidCsr(_)), "{err}");
}

/// Istio's plug-in layout: a root, an intermediate under it, and `cert-chain.pem`.
fn plug_in_dir(dir: &std::path::Path) {
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut root = CertificateParams::default();
    root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    root.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    root.distinguished_name
        .push(rcgen::DnType::CommonName, "Root CA");
    let root_cert = root.self_signed(&root_key).unwrap();
    let root_issuer = rcgen::Issuer::new(root, root_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut inter = CertificateParams::default();
    inter.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    inter.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    inter
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Intermediate CA");
    let inter_cert = inter.signed_by(&key, &root_issuer).unwrap();
    std::fs::write(dir.join("ca-cert.pem"), inter_cert.pem()).unwrap();
    std::fs::write(dir.join("ca-key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("root-cert.pem"), root_cert.pem()).unwrap();
    std::fs::write(
        dir.join("cert-chain.pem"),
        format!("{}{}", inter_cert.pem(), root_cert.pem()),
    )
    .unwrap();
}

#[test]
fn istios_plug_in_layout_signs_as_an_intermediate() {
    let state = tempfile::tempdir().unwrap();
    let plug = tempfile::tempdir().unwrap();
    plug_in_dir(plug.path());
    let ca = Ca::load_or_create(state.path(), Some(plug.path()), CaOptions::default()).unwrap();
    assert_eq!(ca.source(), &CaSource::PlugIn(plug.path().to_path_buf()));
    assert!(
        !state.path().join("root-cert.pem").exists(),
        "no self-signed root when plugged in"
    );
    let chain = ca.sign_csr(&csr_for(None), &sleep_id(), None).unwrap();
    assert_eq!(chain.len(), 3, "leaf, cert-chain.pem, root");
    verify(&chain);

    // Some files but not all: the error names what is missing.
    std::fs::remove_file(plug.path().join("cert-chain.pem")).unwrap();
    let err = Ca::load_or_create(state.path(), Some(plug.path()), CaOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("missing cert-chain.pem"), "{err}");
    // An empty plug-in directory means "no plug-in": the self-signed root.
    let empty = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(state.path(), Some(empty.path()), CaOptions::default()).unwrap();
    assert!(matches!(ca.source(), CaSource::SelfSigned(_)));
}

#[test]
fn a_pkcs1_key_gets_the_conversion_command() {
    let plug = tempfile::tempdir().unwrap();
    plug_in_dir(plug.path());
    std::fs::write(
        plug.path().join("ca-key.pem"),
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let err = Ca::load_or_create(state.path(), Some(plug.path()), CaOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
}

/// A gRPC channel to `addr` over TLS trusting only `root`.
async fn channel(addr: std::net::SocketAddr, root: &str) -> tonic::transport::Channel {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(root) {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    tonic::transport::Endpoint::from_static("http://istiod.istio-system.svc:15012")
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let name = rustls::pki_types::ServerName::try_from("istiod.istio-system.svc")
                    .map_err(std::io::Error::other)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_certificate_api_serves_over_tls_to_proven_callers_only() {
    use keel_xds::pb::istio::v1::auth::IstioCertificateRequest;
    use keel_xds::pb::istio::v1::auth::istio_certificate_service_client::IstioCertificateServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::load_or_create(dir.path(), None, CaOptions::default()).unwrap());
    let tokens = Arc::new(LocalTokens::from_secret(&[1u8; 32], "cluster.local"));
    let token = tokens.issue("default", "sleep");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = service::tls_config(&ca, &["127.0.0.1"]).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(service::serve(
        listener,
        config,
        service::CertificateService::new(ca.clone(), tokens),
        async {
            let _ = stopped.await;
        },
    ));
    let mut client = IstioCertificateServiceClient::new(channel(addr, ca.root_pem()).await);
    let request = |token: Option<&str>, csr: String| {
        let mut r = tonic::Request::new(IstioCertificateRequest {
            csr,
            validity_duration: 3600,
            metadata: None,
        });
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    };
    let chain = client
        .create_certificate(request(Some(&token), csr_for(None)))
        .await
        .unwrap()
        .into_inner()
        .cert_chain;
    assert_eq!(uri_sans(&verify(&chain)), vec![sleep_id().to_string()]);

    let no_token = client
        .create_certificate(request(None, csr_for(None)))
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), tonic::Code::Unauthenticated);
    let forged = client
        .create_certificate(request(
            Some(&token.replace(":sleep:", ":httpbin:")),
            csr_for(None),
        ))
        .await
        .unwrap_err();
    assert_eq!(forged.code(), tonic::Code::Unauthenticated);
    let other = client
        .create_certificate(request(
            Some(&token),
            csr_for(Some("spiffe://cluster.local/ns/default/sa/httpbin")),
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other:?}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
