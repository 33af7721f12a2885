//! `PodSpec` and its parts, shared by Pods and the pod templates of workloads.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::checks::{
    check_dns1123_label, check_dns1123_subdomain, check_port_name, check_port_num,
    check_port_num_or_name,
};
use super::protocol::{MeshProtocol, Protocol, convert_protocol};
use crate::types::IntOrString;
use crate::validate::Validator;

/// `corev1.PodSpec`: the fields the mesh reads (containers and their ports, probes and
/// security context; identity; networking). Volumes, scheduling and the like are opaque.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<serde_json::Value>,
    /// Run in order before `containers`; Istio's native sidecar is an init container with
    /// `restartPolicy: Always`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The workload's identity (`spiffe://<trust domain>/ns/<ns>/sa/<name>`); empty means
    /// `default`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
    /// Deprecated alias of `serviceAccountName`, used when that is empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// Shares the node's network namespace; the mesh does not capture such pods' traffic.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub host_network: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_process_namespace: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// With `subdomain`, gives the pod a DNS name (`<hostname>.<subdomain>.<ns>.svc…`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subdomain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_aliases: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
}

/// `corev1.Container`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// On init containers, `Always` makes a native sidecar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
}

/// `corev1.ContainerPort`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerPort {
    /// An IANA service name (≤ 15 characters), which a Service's `targetPort` may refer to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    pub container_port: i32,
    #[serde(
        default,
        deserialize_with = "Protocol::deserialize_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol: Option<Protocol>,
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

impl ContainerPort {
    pub fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or_default()
    }

    /// The mesh protocol Istio infers from the port's name.
    pub fn mesh_protocol(&self) -> MeshProtocol {
        convert_protocol(self.container_port, &self.name, self.protocol(), None)
    }
}

/// `corev1.EnvVar`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVar {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A reference to a field, resource, ConfigMap or Secret (kept opaque).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<serde_json::Value>,
}

/// `corev1.Probe`. The mesh rewrites HTTP, TCP and gRPC probes to go through the sidecar.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Probe {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExecAction {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpGetAction {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// A container port number or name.
    pub port: IntOrString,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// `HTTP` (default) or `HTTPS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpSocketAction {
    pub port: IntOrString,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpcAction {
    pub port: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// `corev1.SecurityContext` (per container). Istio's proxy runs as UID 1337, and its init
/// container needs `NET_ADMIN`/`NET_RAW`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Capabilities {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// `corev1.PodSecurityContext`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSecurityContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysctls: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<serde_json::Value>,
}

/// A reference by name to an object in the same namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LocalObjectReference {
    pub name: String,
}

/// `corev1.PodTemplateSpec`: the pods a workload creates.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodTemplateSpec {
    pub metadata: PodTemplateMeta,
    pub spec: PodSpec,
}

/// The metadata of a pod template: labels (which the workload's selector must match, and
/// which Istio policies select) and annotations (e.g. `sidecar.istio.io/inject`). Other
/// metadata fields are ignored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodTemplateMeta {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub generate_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl PodSpec {
    /// The service account pods run as: `serviceAccountName`, else the deprecated
    /// `serviceAccount`, else `default`.
    pub fn service_account(&self) -> &str {
        if !self.service_account_name.is_empty() {
            &self.service_account_name
        } else if !self.service_account.is_empty() {
            &self.service_account
        } else {
            "default"
        }
    }

    /// Init containers, then containers.
    pub fn all_containers(&self) -> impl Iterator<Item = &Container> {
        self.init_containers.iter().chain(&self.containers)
    }

    /// The container (or native sidecar) port a name refers to, as a Service's named
    /// `targetPort` is resolved. Ports of plain init containers don't count.
    pub fn port_by_name(&self, name: &str) -> Option<&ContainerPort> {
        self.containers
            .iter()
            .chain(
                self.init_containers
                    .iter()
                    .filter(|c| c.restart_policy.as_deref() == Some("Always")),
            )
            .flat_map(|c| &c.ports)
            .find(|p| p.name == name)
    }

    /// Resolves a target port (number, or name of a container port) to a number.
    pub fn resolve_port(&self, port: &IntOrString) -> Option<i32> {
        match port {
            IntOrString::Int(p) => i32::try_from(*p).ok(),
            IntOrString::String(name) => self.port_by_name(name).map(|p| p.container_port),
        }
    }

    /// Kubernetes' pod spec rules that matter to the mesh, at the current path (`spec`).
    pub(crate) fn validate(&self, v: &mut Validator) {
        let mut names = BTreeSet::new();
        v.each("initContainers", &self.init_containers, |v, c| {
            c.validate(v, &mut names)
        });
        v.each("containers", &self.containers, |v, c| {
            c.validate(v, &mut names)
        });
        if self.containers.is_empty() {
            v.field("containers", |v| {
                v.warn("Required value: a pod needs at least one container; the API server rejects this object")
            });
        }
        for (field, sa) in [
            ("serviceAccountName", &self.service_account_name),
            ("serviceAccount", &self.service_account),
        ] {
            if !sa.is_empty() {
                v.field(field, |v| check_dns1123_subdomain(v, sa));
            }
        }
        if !self.service_account_name.is_empty()
            && !self.service_account.is_empty()
            && self.service_account_name != self.service_account
        {
            v.warn_at(
                "serviceAccount",
                format!(
                    "the deprecated serviceAccount \"{}\" differs from serviceAccountName \"{}\"; serviceAccountName wins",
                    self.service_account, self.service_account_name
                ),
            );
        }
        if !self.hostname.is_empty() {
            v.field("hostname", |v| check_dns1123_label(v, &self.hostname));
        }
        if !self.subdomain.is_empty() {
            v.field("subdomain", |v| check_dns1123_label(v, &self.subdomain));
        }
    }
}

impl Container {
    /// The container port with this name.
    pub fn port_by_name(&self, name: &str) -> Option<&ContainerPort> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// The value of a plain (`value:`) environment variable.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.as_deref())
    }

    fn validate(&self, v: &mut Validator, names: &mut BTreeSet<String>) {
        if self.name.is_empty() {
            v.error_at("name", "Required value: every container needs a name");
        } else {
            v.field("name", |v| {
                check_dns1123_label(v, &self.name);
                if !names.insert(self.name.clone()) {
                    v.error(format!("Duplicate value: \"{}\"", self.name));
                }
            });
        }
        let mut port_names = BTreeSet::new();
        v.each("ports", &self.ports, |v, p| {
            check_port_name(v, "name", &p.name, &mut port_names);
            if p.container_port == 0 {
                v.error_at(
                    "containerPort",
                    "Required value: the port the container listens on",
                );
            } else {
                check_port_num(v, "containerPort", i64::from(p.container_port));
            }
            if let Some(h) = p.host_port
                && h != 0
            {
                check_port_num(v, "hostPort", i64::from(h));
            }
        });
        for (field, probe) in [
            ("livenessProbe", &self.liveness_probe),
            ("readinessProbe", &self.readiness_probe),
            ("startupProbe", &self.startup_probe),
        ] {
            if let Some(p) = probe {
                v.field(field, |v| p.validate(v));
            }
        }
    }
}

impl Probe {
    /// How many of `exec`, `httpGet`, `tcpSocket`, `grpc` are set.
    pub fn handler_count(&self) -> usize {
        usize::from(self.exec.is_some())
            + usize::from(self.http_get.is_some())
            + usize::from(self.tcp_socket.is_some())
            + usize::from(self.grpc.is_some())
    }

    fn validate(&self, v: &mut Validator) {
        match self.handler_count() {
            0 => v.error(
                "Required value: must specify a handler type (exec, httpGet, tcpSocket or grpc)",
            ),
            1 => {}
            _ => v.error("Forbidden: may not specify more than 1 handler type"),
        }
        if let Some(h) = &self.http_get {
            v.field("httpGet", |v| {
                v.field("port", |v| check_port_num_or_name(v, &h.port))
            });
        }
        if let Some(t) = &self.tcp_socket {
            v.field("tcpSocket", |v| {
                v.field("port", |v| check_port_num_or_name(v, &t.port))
            });
        }
        if let Some(g) = &self.grpc {
            v.field("grpc", |v| check_port_num(v, "port", i64::from(g.port)));
        }
    }
}

impl PodTemplateSpec {
    /// Template rules at the current path (`spec.template`).
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.field("metadata", |v| {
            crate::validate::common::validate_labels(v, "labels", &self.metadata.labels);
        });
        v.field("spec", |v| self.spec.validate(v));
    }
}
