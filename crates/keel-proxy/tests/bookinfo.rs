//! Istio's own Bookinfo gateway sample, served by keel-proxy: the sample's Gateway and
//! VirtualService as shipped, plus a ServiceEntry of ours putting `productpage` on a local
//! upstream. Skipped (with the reason printed) when the samples are not checked out.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use std::path::PathBuf;

use keel_config::Spec;
use support::*;

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-samples")
}

#[tokio::test]
async fn bookinfo_gateway_routes_productpage() {
    let file = samples().join("samples/bookinfo/networking/bookinfo-gateway.yaml");
    let Ok(sample) = std::fs::read_to_string(&file) else {
        println!(
            "skipped: {} is not present (Istio's samples live in shared/istio-samples)",
            file.display()
        );
        return;
    };
    let productpage = echo("productpage").await;
    // `productpage` in the sample's VirtualService is productpage.default.svc.cluster.local.
    let entry = format!(
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: productpage, namespace: default}}\nspec:\n  hosts: [productpage.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{{number: 9080, name: http, protocol: HTTP}}]\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]\n",
        productpage.port()
    );
    let yaml = format!("{sample}\n{entry}");
    let p = Proxy::start_resources(|port| {
        let mut res = resources(&yaml);
        // The sample listens on 8080; serve it on a free port instead.
        for r in &mut res {
            if let Spec::Gateway(g) = &mut r.spec {
                for s in &mut g.servers {
                    if let Some(sp) = s.port.as_mut() {
                        sp.number = u32::from(port);
                    }
                }
            }
        }
        res
    })
    .await;
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    for path in [
        "/productpage",
        "/static/style.css",
        "/login",
        "/logout",
        "/api/v1/products/1",
    ] {
        let r = fetch(p.port, "bookinfo.example", path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.error());
        assert_eq!(r.upstream(), "productpage");
        assert_eq!(r.json()["path"], path);
    }
    // Only the sample's paths are routed.
    let r = fetch(p.port, "bookinfo.example", "/productpage/extra").await;
    assert_eq!(r.status, 404);
    assert!(r.error().starts_with("NR "), "{}", r.error());
}
