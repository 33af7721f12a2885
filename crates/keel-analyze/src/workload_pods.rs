//! Pods implied by workloads: Keel's offline analysis treats each Deployment, StatefulSet,
//! ReplicaSet or DaemonSet in the files as the pods it will run.
//!
//! `istioctl analyze` on files sees only the Pod objects in them, so a Bookinfo manifest
//! (Deployments, no Pods) gets "subset selects no pods" and "no matching workloads" messages
//! that are wrong once the manifest is applied. Keel runs those very manifests (`keel up`), so
//! it analyzes what they will create: one pod per workload whose pods aren't already given,
//! carrying the template's labels, annotations and spec. Messages about such a pod point at the
//! workload's file and line.

use keel_config::model::kube::{Pod, PodTemplateSpec, Workload};
use keel_config::{Resource, Spec};

/// Annotation marking a pod synthesised from a workload template (value: `Kind/name`).
pub const TEMPLATE_ANNOTATION: &str = "keel.io/from-template";

/// The pods the workloads in `resources` would run, for workloads none of whose pods are
/// already among `resources`.
pub fn template_pods(resources: &[Resource]) -> Vec<Resource> {
    let pods: Vec<&Resource> = resources
        .iter()
        .filter(|r| matches!(r.spec, Spec::Pod(_)))
        .collect();
    let mut out = Vec::new();
    for r in resources {
        let workload: &dyn Workload = match &r.spec {
            Spec::Deployment(d) => &**d,
            Spec::StatefulSet(s) => &**s,
            Spec::ReplicaSet(s) => &**s,
            Spec::DaemonSet(d) => &**d,
            _ => continue,
        };
        if workload.replicas() == Some(0) {
            continue;
        }
        let has_pods = pods
            .iter()
            .any(|p| p.meta.namespace == r.meta.namespace && workload.selects(&p.meta.labels));
        if has_pods {
            continue;
        }
        out.push(pod_from_template(r, workload.pod_template()));
    }
    out
}

fn pod_from_template(owner: &Resource, template: &PodTemplateSpec) -> Resource {
    let mut meta = owner.meta.clone();
    meta.labels = template.metadata.labels.clone();
    meta.annotations = template.metadata.annotations.clone();
    meta.annotations.insert(
        TEMPLATE_ANNOTATION.to_string(),
        format!("{}/{}", owner.kind(), owner.meta.name),
    );
    let pod = Pod {
        spec: template.spec.clone(),
        ..Default::default()
    };
    Resource {
        api_version: "v1".to_string(),
        meta,
        spec: Spec::Pod(Box::new(pod)),
        origin: owner.origin.clone(),
    }
}

/// Whether a pod was synthesised from a workload template.
pub fn is_template_pod(r: &Resource) -> bool {
    r.meta.annotations.contains_key(TEMPLATE_ANNOTATION)
}

#[cfg(test)]
mod tests {
    use keel_config::{LoadOptions, load_str};

    use super::*;

    #[test]
    fn one_pod_per_workload_without_pods() {
        let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1}
spec:
  selector: {matchLabels: {app: reviews, version: v1}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec: {containers: [{name: r, image: r}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ratings}
spec:
  selector: {matchLabels: {app: ratings}}
  template:
    metadata: {labels: {app: ratings}}
    spec: {containers: [{name: r, image: r}]}
---
apiVersion: v1
kind: Pod
metadata: {name: ratings-abc, labels: {app: ratings}}
spec: {containers: [{name: r, image: r}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: idle}
spec:
  replicas: 0
  selector: {matchLabels: {app: idle}}
  template:
    metadata: {labels: {app: idle}}
    spec: {containers: [{name: r, image: r}]}
"#;
        let loaded = load_str(text, "d.yaml", &LoadOptions::default());
        let pods = template_pods(&loaded.resources);
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].meta.name, "reviews-v1");
        assert_eq!(
            pods[0].meta.labels.get("version").map(String::as_str),
            Some("v1")
        );
        assert!(is_template_pod(&pods[0]));
        assert_eq!(pods[0].origin.pos.line, 2);
    }
}
