use super::*;
use crate::Spec;
use crate::model::kube::checks::check_yaml;
use crate::model::kube::protocol::MeshProtocol;
use crate::types::IntOrString;

fn load_one(text: &str) -> Spec {
    let loaded = crate::load_str(text, "k.yaml", &crate::LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    loaded.resources[0].spec.clone()
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1-abc
  namespace: bookinfo
  labels: {app: reviews, version: v1}
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: reviews-v1-5d, uid: "1", controller: true}
spec:
  serviceAccount: bookinfo-reviews
  nodeName: node-1
  hostNetwork: false
  volumes:
  - name: tmp
    emptyDir: {}
  initContainers:
  - name: istio-proxy
    image: proxyv2
    restartPolicy: Always
    ports:
    - {name: http-envoy-prom, containerPort: 15090, protocol: TCP}
    securityContext: {runAsUser: 1337, runAsGroup: 1337, capabilities: {drop: [ALL]}}
  containers:
  - name: reviews
    image: docker.io/istio/examples-bookinfo-reviews-v1:1.20.2
    imagePullPolicy: IfNotPresent
    env:
    - {name: LOG_DIR, value: /tmp/logs}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    ports:
    - {name: http, containerPort: 9080}
    readinessProbe:
      httpGet: {path: /health, port: http, scheme: HTTP}
      periodSeconds: 5
    livenessProbe:
      tcpSocket: {port: 9080}
    startupProbe:
      grpc: {port: 9080}
    resources: {requests: {cpu: 100m}}
    volumeMounts: [{name: tmp, mountPath: /tmp}]
    terminationMessagePath: /dev/termination-log
status:
  phase: Running
  podIP: 10.1.2.3
  podIPs: [{ip: 10.1.2.3}, {ip: "fd00::3"}]
  hostIP: 192.168.1.10
  conditions:
  - {type: Ready, status: "True"}
  - {type: PodScheduled, status: "True", lastTransitionTime: "2024-01-01T00:00:00Z"}
  qosClass: Burstable
"#;

#[test]
fn decodes_a_pod_from_the_api_server() {
    let Spec::Pod(pod) = load_one(POD) else {
        panic!("not a pod")
    };
    assert_eq!(pod.service_account(), "bookinfo-reviews");
    assert_eq!(pod.ip(), Some("10.1.2.3"));
    assert_eq!(pod.ips(), vec!["10.1.2.3", "fd00::3"]);
    assert!(pod.is_ready() && !pod.is_terminal());
    assert_eq!(pod.phase(), Some(PodPhase::Running));
    let c = &pod.spec.containers[0];
    assert_eq!(c.env_value("LOG_DIR"), Some("/tmp/logs"));
    assert_eq!(c.env_value("POD_NAME"), None);
    assert!(c.env[1].value_from.is_some());
    let probe = c.readiness_probe.as_ref().expect("probe");
    assert_eq!(
        probe.http_get.as_ref().map(|h| &h.port),
        Some(&IntOrString::String("http".into()))
    );
    assert_eq!(c.ports[0].mesh_protocol(), MeshProtocol::Http);
    // Named ports resolve through containers and native sidecars.
    assert_eq!(
        pod.spec.resolve_port(&IntOrString::String("http".into())),
        Some(9080)
    );
    assert_eq!(
        pod.spec
            .resolve_port(&IntOrString::String("http-envoy-prom".into())),
        Some(15090)
    );
    assert_eq!(
        pod.spec.resolve_port(&IntOrString::String("x".into())),
        None
    );
    assert_eq!(
        pod.spec.init_containers[0]
            .security_context
            .as_ref()
            .and_then(|s| s.run_as_user),
        Some(1337)
    );
    assert!(check_yaml(POD).is_empty(), "{:?}", check_yaml(POD));
}

#[test]
fn pod_defaults() {
    let Spec::Pod(pod) = load_one(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: i}]\n",
    ) else {
        panic!("not a pod")
    };
    assert_eq!(pod.service_account(), "default");
    assert_eq!(pod.ip(), None);
    assert!(!pod.is_ready());
    let mut named = pod.clone();
    named.spec.service_account = "old".into();
    assert_eq!(named.service_account(), "old");
    named.spec.service_account_name = "new".into();
    assert_eq!(named.service_account(), "new");
}

fn pod_spec_errors(spec: &str) -> Vec<String> {
    check_yaml(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: ns}}\nspec:\n{spec}"
    ))
}

#[test]
fn pod_rules() {
    assert!(pod_spec_errors("  containers: [{name: a, image: i}]\n").is_empty());
    let e = pod_spec_errors(
        "  containers:\n  - name: a\n    ports:\n    - {name: http, containerPort: 70000}\n    - {name: http, containerPort: 80}\n    - {containerPort: 0}\n    - {containerPort: 81, hostPort: 65536}\n    - {name: HTTP_1, containerPort: 82}\n",
    );
    assert!(
        e[0].contains("k.yaml:8:35")
            && e[0].contains("spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535"),
        "{e:?}"
    );
    assert!(
        e[1].contains("ports[1].name: Duplicate value: \"http\""),
        "{e:?}"
    );
    assert!(
        e[2].contains("ports[2].containerPort: Required value"),
        "{e:?}"
    );
    assert!(
        e[3].contains("ports[3].hostPort: Invalid value: 65536"),
        "{e:?}"
    );
    assert!(
        e[4].contains("ports[4].name: Invalid value: \"HTTP_1\": a port name must contain only"),
        "{e:?}"
    );
    let e = pod_spec_errors("  containers: [{name: a}, {name: a}, {name: Bad}, {image: x}]\n");
    assert!(
        e[0].contains("containers[1].name: Duplicate value: \"a\""),
        "{e:?}"
    );
    assert!(
        e[1].contains("containers[2].name: Invalid value: \"Bad\": a lowercase RFC 1123 label"),
        "{e:?}"
    );
    assert!(e[2].contains("containers[3].name: Required value"), "{e:?}");
    // Init container and container names share one namespace.
    let e = pod_spec_errors("  initContainers: [{name: a}]\n  containers: [{name: a}]\n");
    assert!(
        e[0].contains("containers[0].name: Duplicate value"),
        "{e:?}"
    );

    let e = pod_spec_errors("  serviceAccountName: Bad_SA\n  containers: [{name: a}]\n");
    assert!(
        e[0].contains("spec.serviceAccountName: Invalid value: \"Bad_SA\""),
        "{e:?}"
    );
    let e = pod_spec_errors(
        "  serviceAccountName: a\n  serviceAccount: b\n  containers: [{name: a}]\n",
    );
    assert!(
        e[0].contains("warning") && e[0].contains("serviceAccountName wins"),
        "{e:?}"
    );
    let e = pod_spec_errors("  hostname: Web_0\n  subdomain: x.y\n  containers: [{name: a}]\n");
    assert!(e[0].contains("spec.hostname: Invalid value"), "{e:?}");
    assert!(e[1].contains("spec.subdomain: Invalid value"), "{e:?}");
}

#[test]
fn pods_without_containers_only_warn() {
    // `istioctl analyze` fixtures use metadata-only pods; the mesh needs just the labels.
    let e = check_yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: a}}\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("warning") && e[0].contains("spec.containers: Required value"),
        "{e:?}"
    );
}

#[test]
fn probe_rules() {
    let probe = |p: &str| {
        pod_spec_errors(&format!(
            "  containers:\n  - name: a\n    readinessProbe: {p}\n"
        ))
    };
    assert!(probe("{httpGet: {port: 8080, path: /}}").is_empty());
    assert!(probe("{exec: {command: [cat, /tmp/ok]}}").is_empty());
    let e = probe("{periodSeconds: 3}");
    assert!(
        e[0].contains("readinessProbe: Required value: must specify a handler type"),
        "{e:?}"
    );
    let e = probe("{httpGet: {port: 80}, tcpSocket: {port: 80}}");
    assert!(
        e[0].contains("Forbidden: may not specify more than 1 handler type"),
        "{e:?}"
    );
    let e = probe("{httpGet: {port: 0}}");
    assert!(
        e[0].contains("readinessProbe.httpGet.port: Invalid value: 0"),
        "{e:?}"
    );
    let e = probe("{tcpSocket: {port: -web}}");
    assert!(
        e[0].contains("tcpSocket.port: Invalid value: \"-web\""),
        "{e:?}"
    );
    let e = probe("{grpc: {port: 99999}}");
    assert!(e[0].contains("grpc.port: Invalid value: 99999"), "{e:?}");
}

#[test]
fn decoding_is_lenient_but_typed() {
    // Unknown fields anywhere are ignored.
    assert!(
        pod_spec_errors("  futureField: {x: 1}\n  containers: [{name: a, newThing: 2}]\n")
            .is_empty()
    );
    // Wrong types and unknown enum values are still errors (the API server rejects them).
    let e =
        pod_spec_errors("  containers: [{name: a, ports: [{containerPort: 80, protocol: TPC}]}]\n");
    assert!(
        e[0].contains("Unsupported value: \"TPC\" (did you mean \"TCP\"?)"),
        "{e:?}"
    );
    let e = pod_spec_errors("  containers: [{name: a, env: [{name: PORT, value: 8080}]}]\n");
    assert!(e[0].contains("quote it"), "{e:?}");
}

fn deployment(spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d, namespace: ns}}\nspec:\n{spec}"
    )
}

const TEMPLATE: &str = "  template:\n    metadata:\n      labels: {app: a, version: v1}\n      annotations: {sidecar.istio.io/inject: \"true\"}\n    spec:\n      serviceAccountName: sa\n      containers: [{name: a, image: i}]\n";

#[test]
fn deployment_model_and_helpers() {
    let text = deployment(&format!(
        "  replicas: 2\n  selector:\n    matchLabels: {{app: a}}\n    matchExpressions: [{{key: version, operator: In, values: [v1, v2]}}]\n  strategy: {{type: RollingUpdate}}\n{TEMPLATE}status: {{replicas: 2}}\n"
    ));
    let Spec::Deployment(d) = load_one(&text) else {
        panic!("not a deployment")
    };
    assert_eq!(Workload::replicas(d.as_ref()), Some(2));
    assert_eq!(d.service_account(), "sa");
    assert_eq!(
        d.pod_template().metadata.annotations["sidecar.istio.io/inject"],
        "true"
    );
    assert!(d.selects(&d.pod_template().metadata.labels));
    let mut other = d.pod_template().metadata.labels.clone();
    other.insert("version".into(), "v3".into());
    assert!(!d.selects(&other));
    assert!(check_yaml(&text).is_empty(), "{:?}", check_yaml(&text));
}

#[test]
fn workload_rules() {
    let e = check_yaml(&deployment(&format!(
        "  replicas: -1\n  selector: {{matchLabels: {{app: a}}}}\n{TEMPLATE}"
    )));
    assert!(
        e[0].contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        "{e:?}"
    );
    let e = check_yaml(&deployment(TEMPLATE));
    assert!(e[0].contains("spec.selector: Required value"), "{e:?}");
    let e = check_yaml(&deployment(&format!("  selector: {{}}\n{TEMPLATE}")));
    assert!(
        e[0].contains("spec.selector: Invalid value: empty selector is invalid for deployment"),
        "{e:?}"
    );
    let e = check_yaml(&deployment(&format!(
        "  selector: {{matchLabels: {{app: b}}}}\n{TEMPLATE}"
    )));
    assert!(
        e[0].contains("k.yaml:8:7")
            && e[0].contains("spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`"),
        "{e:?}"
    );
    let e = check_yaml(&deployment(&format!(
        "  selector: {{matchExpressions: [{{key: app, operator: Exists, values: [a]}}]}}\n{TEMPLATE}"
    )));
    assert!(
        e[0].contains("spec.selector.matchExpressions[0].values: Forbidden"),
        "{e:?}"
    );
    let e = check_yaml(&deployment(&format!(
        "  selector: {{matchExpressions: [{{key: app, operator: in, values: [a]}}]}}\n{TEMPLATE}"
    )));
    assert!(
        e[0].contains("Unsupported value: \"in\" (did you mean \"In\"?)"),
        "{e:?}"
    );
    // Template pod specs are checked like pods.
    let e = check_yaml(&deployment(
        "  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: a}}\n    spec:\n      containers: [{name: a, ports: [{containerPort: 0}]}]\n",
    ));
    assert!(
        e[0].contains("spec.template.spec.containers[0].ports[0].containerPort: Required value"),
        "{e:?}"
    );
}

#[test]
fn other_workloads() {
    let body = format!("  selector: {{matchLabels: {{app: a}}}}\n{TEMPLATE}");
    for (api, kind) in [
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "DaemonSet"),
    ] {
        let text = format!(
            "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: w}}\nspec:\n  serviceName: svc\n{body}"
        );
        assert!(
            check_yaml(&text).is_empty(),
            "{kind}: {:?}",
            check_yaml(&text)
        );
        let bad = format!(
            "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: w}}\nspec:\n  selector: {{}}\n{TEMPLATE}"
        );
        let e = check_yaml(&bad);
        assert!(
            e[0].contains(&format!(
                "empty selector is invalid for {}",
                kind.to_lowercase()
            )),
            "{e:?}"
        );
    }
    let Spec::StatefulSet(s) = load_one(&format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: w}}\nspec:\n  serviceName: svc\n  replicas: 3\n{body}"
    )) else {
        panic!("not a statefulset")
    };
    assert_eq!(s.spec.service_name, "svc");
    assert_eq!(Workload::replicas(s.as_ref()), Some(3));
    let Spec::DaemonSet(d) = load_one(&format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: w}}\nspec:\n{body}"
    )) else {
        panic!("not a daemonset")
    };
    assert_eq!(Workload::replicas(d.as_ref()), None);
    assert!(d.selector().is_some());
}
