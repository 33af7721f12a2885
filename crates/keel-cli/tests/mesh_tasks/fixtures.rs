//! Keel's own manifests and routing rules for the tasks of `mesh_tasks.rs`, so that a clone
//! without Istio's samples still runs them. Written for these tests, in flow-style YAML.

use std::path::PathBuf;

/// Writes fixtures to a temporary directory, for `keel up -f`.
pub(crate) struct Fixtures(tempfile::TempDir);

impl Fixtures {
    pub(crate) fn new() -> Fixtures {
        Fixtures(tempfile::tempdir().unwrap())
    }

    pub(crate) fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Services, ServiceAccounts and Deployments for Bookinfo (Istio's identities:
/// `bookinfo-<app>`); `productpage_env` is added to productpage's
/// container (`REVIEWS_TIMEOUT_MS` shortens its 3 s timeout on each of its two reviews calls).
pub(crate) fn bookinfo(productpage_env: &[(&str, &str)]) -> String {
    let mut out = String::from("# Bookinfo for Keel's local-mesh tests: one pod per version.\n");
    for (app, versions) in [
        ("productpage", &["v1"][..]),
        ("details", &["v1"]),
        ("reviews", &["v1", "v2"]),
        ("ratings", &["v1"]),
    ] {
        out += &format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {app}}}\nspec:\n  \
             selector: {{app: {app}}}\n  ports: [{{name: http, port: 9080}}]\n\
             ---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: bookinfo-{app}}}\n"
        );
        for v in versions {
            let env: String = if app == "productpage" {
                productpage_env
                    .iter()
                    .map(|(k, v)| format!("        - {{name: {k}, value: \"{v}\"}}\n"))
                    .collect()
            } else {
                String::new()
            };
            let env = if env.is_empty() {
                env
            } else {
                format!("        env:\n{env}")
            };
            out += &format!(
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}-{v}}}\n\
                 spec:\n  selector: {{matchLabels: {{app: {app}, version: {v}}}}}\n  template:\n    \
                 metadata: {{labels: {{app: {app}, version: {v}}}}}\n    spec:\n      \
                 serviceAccountName: bookinfo-{app}\n      containers:\n      \
                 - name: {app}\n        image: docker.io/istio/examples-bookinfo-{app}-{v}:1.20.2\n        \
                 ports: [{{containerPort: 9080}}]\n{env}"
            );
        }
    }
    out
}

/// Named versions of reviews and ratings, and every request on v1 of both.
pub(crate) const VERSIONS_AND_V1: &str = r#"# The versions the routes below name, by pod label.
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings, subset: v1}}]
"#;

/// jason tries reviews v2 (which calls ratings); everyone else stays on v1.
pub(crate) const JASON_ON_REVIEWS_V2: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason-tries-v2
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: everyone-else
    route: [{destination: {host: reviews, subset: v1}}]
"#;

/// The ratings route with `fault` (flow-style YAML) on jason's requests only.
pub(crate) fn ratings_fault_for_jason(fault: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ratings}}
spec:
  hosts: [ratings]
  http:
  - name: jason-gets-a-fault
    match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    fault: {fault}
    route: [{{destination: {{host: ratings, subset: v1}}}}]
  - route: [{{destination: {{host: ratings, subset: v1}}}}]
"#
    )
}

/// httpbin Deployments (`httpbin-VERSION`) behind one Service, and a sleep client.
pub(crate) fn httpbin_and_client(versions: &[&str]) -> String {
    let mut out = String::from(
        "# httpbin on port 8000, and a client pod that only sends requests.\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: httpbin}\nspec:\n  selector: {app: httpbin}\n  \
         ports: [{name: http, port: 8000, targetPort: 8080}]\n\
         ---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: sleep}\nspec:\n  \
         selector: {matchLabels: {app: sleep}}\n  template:\n    metadata: {labels: {app: sleep}}\n    \
         spec:\n      containers: [{name: sleep, image: curlimages/curl}]\n",
    );
    for v in versions {
        out += &format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: httpbin-{v}}}\nspec:\n  \
             selector: {{matchLabels: {{app: httpbin, version: {v}}}}}\n  template:\n    \
             metadata: {{labels: {{app: httpbin, version: {v}}}}}\n    spec:\n      containers:\n      \
             - {{name: httpbin, image: docker.io/mccutchen/go-httpbin:v2.15.0, ports: [{{containerPort: 8080}}]}}\n"
        );
    }
    out
}
