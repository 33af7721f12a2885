//! Mesh mTLS handshakes in memory between two workload identities issued by keel-control's
//! CA: the client checks the server's SPIFFE ID, the server requires a mesh certificate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::SystemTime;

use keel_control::ca::{Ca, CaOptions};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::identity::{KeyAlgorithm, Material, SpiffeId, TrustRoots, key};

struct Mesh {
    ca: Ca,
    _dir: tempfile::TempDir,
}

impl Mesh {
    fn new() -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        Mesh {
            ca: Ca::load_or_create(dir.path(), None, CaOptions::default()).unwrap(),
            _dir: dir,
        }
    }

    fn roots(&self) -> Arc<TrustRoots> {
        Arc::new(
            TrustRoots::from_pem(Path::new("root-cert.pem"), self.ca.root_pem().as_bytes())
                .unwrap(),
        )
    }

    /// A workload identity holding a certificate for `ns`/`sa`.
    fn workload(&self, ns: &str, sa: &str) -> Arc<MeshTls> {
        let id = SpiffeId::new("cluster.local", ns, sa);
        let identity = WorkloadIdentity::new(id.clone(), "127.0.0.1:15012", self.roots());
        let k = key::generate(KeyAlgorithm::EcdsaP256, &id).unwrap();
        let chain = self
            .ca
            .sign_csr(
                &k.csr_pem,
                &keel_control::ca::SpiffeId::new("cluster.local", ns, sa),
                None,
            )
            .unwrap();
        let material =
            Material::from_ca_response(&chain, k.key, &id, self.roots(), SystemTime::now())
                .unwrap();
        identity.install(material);
        Arc::new(MeshTls::new(identity).unwrap())
    }
}

/// Handshakes `client` (expecting `expected`) with `server` over an in-memory pipe; returns
/// the ALPN agreed and the client's identity as the server saw it, or the client's error.
async fn handshake(
    server: &MeshTls,
    client: &MeshTls,
    expected: &str,
    carries: Carries,
) -> Result<(Vec<u8>, Vec<String>), String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server.server_config());
    let served = tokio::spawn(async move {
        let mut tls = acceptor.accept(b).await.map_err(|e| e.to_string())?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| spiffe_ids(c))
            .unwrap_or_default();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let connector =
        tokio_rustls::TlsConnector::from(client.client_config(expected, carries).unwrap());
    let name = ServerName::try_from("outbound_.9080_._.reviews.default.svc.cluster.local")
        .unwrap()
        .to_owned();
    let mut tls = connector
        .connect(name, a)
        .await
        .map_err(|e| e.to_string())?;
    let alpn = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
    tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    assert_eq!(&buf, b"ping");
    let peer = served.await.unwrap()?;
    Ok((alpn, peer))
}

#[tokio::test]
async fn peers_authenticate_each_other_and_the_client_checks_the_servers_identity() {
    let mesh = Mesh::new();
    let reviews = mesh.workload("default", "bookinfo-reviews");
    let productpage = mesh.workload("default", "bookinfo-productpage");
    let want = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews";
    let (alpn, peer) = handshake(&reviews, &productpage, want, Carries::Http1)
        .await
        .unwrap();
    assert_eq!(alpn, ALPN_HTTP11);
    assert_eq!(
        peer,
        vec!["spiffe://cluster.local/ns/default/sa/bookinfo-productpage".to_string()]
    );
    let (alpn, _) = handshake(&reviews, &productpage, "", Carries::Http2)
        .await
        .unwrap();
    assert_eq!(alpn, ALPN_H2, "any mesh identity when none is expected");

    // Another identity behind the endpoint than the control plane said: refused.
    let err = handshake(
        &reviews,
        &productpage,
        "spiffe://cluster.local/ns/default/sa/bookinfo-ratings",
        Carries::Tcp,
    )
    .await
    .unwrap_err();
    assert!(err.contains("bookinfo-ratings"), "{err}");

    // A workload of another mesh (another root) is refused both ways.
    let stranger = Mesh::new().workload("default", "bookinfo-productpage");
    assert!(
        handshake(&reviews, &stranger, want, Carries::Http1)
            .await
            .is_err()
    );
    assert!(
        handshake(&stranger, &productpage, "", Carries::Http1)
            .await
            .is_err()
    );
}

#[test]
fn mesh_traffic_is_told_by_its_alpn() {
    let alpns: Vec<&[u8]> = vec![b"h2", b"istio-http/1.1"];
    assert!(is_mesh_alpn(alpns.into_iter()));
    let alpns: Vec<&[u8]> = vec![b"h2", b"http/1.1"];
    assert!(!is_mesh_alpn(alpns.into_iter()));
}

/// Roots that change under a running proxy (mounted files read again) are used from the next
/// handshake on, both to verify clients and to verify servers.
#[tokio::test]
async fn new_roots_are_followed_by_the_next_handshake() {
    let (old, new) = (Mesh::new(), Mesh::new());
    let reviews = old.workload("default", "bookinfo-reviews");
    let old_client = old.workload("default", "bookinfo-productpage");
    let new_client = new.workload("default", "bookinfo-productpage");
    handshake(&reviews, &old_client, "", Carries::Http1)
        .await
        .unwrap();
    assert!(
        handshake(&reviews, &new_client, "", Carries::Http1)
            .await
            .is_err()
    );
    // reviews' identity now holds a certificate of the new mesh, with its roots.
    let id = SpiffeId::new("cluster.local", "default", "bookinfo-reviews");
    let k = key::generate(KeyAlgorithm::EcdsaP256, &id).unwrap();
    let chain = new
        .ca
        .sign_csr(
            &k.csr_pem,
            &keel_control::ca::SpiffeId::new("cluster.local", "default", "bookinfo-reviews"),
            None,
        )
        .unwrap();
    let material =
        Material::from_ca_response(&chain, k.key, &id, new.roots(), SystemTime::now()).unwrap();
    reviews.identity().install(material);
    handshake(&reviews, &new_client, "", Carries::Http1)
        .await
        .unwrap();
    assert!(
        handshake(&reviews, &old_client, "", Carries::Http1)
            .await
            .is_err(),
        "the old mesh's clients are refused"
    );
    // As a client, reviews now verifies servers with the new roots.
    let new_server = new.workload("default", "bookinfo-ratings");
    handshake(&new_server, &reviews, "", Carries::Http1)
        .await
        .unwrap();
}
