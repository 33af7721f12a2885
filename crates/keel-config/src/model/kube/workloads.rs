//! Pods and the workloads that create them (apps/v1 Deployment, StatefulSet, ReplicaSet,
//! DaemonSet). The mesh reads a pod's labels, IP, service account and container ports, and a
//! workload's selector and pod template.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pod::{PodSpec, PodTemplateSpec};
use super::selector::LabelSelector;
use crate::validate::{Validate, Validator};

/// `corev1.Pod`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Pod {
    pub spec: PodSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<PodStatus>,
}

/// `corev1.PodStatus`: where the pod runs and whether it is ready.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodStatus {
    #[serde(
        default,
        deserialize_with = "PodPhase::deserialize_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub phase: Option<PodPhase>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PodCondition>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    #[serde(rename = "hostIPs", skip_serializing_if = "Vec::is_empty")]
    pub host_ips: Vec<PodIp>,
    #[serde(rename = "podIP", skip_serializing_if = "String::is_empty")]
    pub pod_ip: String,
    /// One address per IP family; the first equals `podIP`.
    #[serde(rename = "podIPs", skip_serializing_if = "Vec::is_empty")]
    pub pod_ips: Vec<PodIp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_container_statuses: Vec<ContainerStatus>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container_statuses: Vec<ContainerStatus>,
}

kube_enum! {
    /// `corev1.PodPhase`.
    pub enum PodPhase {
        Pending = "Pending",
        Running = "Running",
        Succeeded = "Succeeded",
        Failed = "Failed",
        Unknown = "Unknown",
    }
}

/// `corev1.PodCondition` (`Ready`, `ContainersReady`, `PodScheduled`, …).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodIp {
    pub ip: String,
}

/// `corev1.ContainerStatus`, reduced to what readiness checks need.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerStatus {
    pub name: String,
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
    pub restart_count: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_json::Value>,
}

impl Pod {
    /// The service account the pod runs as (`default` if none is named).
    pub fn service_account(&self) -> &str {
        self.spec.service_account()
    }

    /// The pod's primary IP (`status.podIP`, else the first of `status.podIPs`).
    pub fn ip(&self) -> Option<&str> {
        let s = self.status.as_ref()?;
        if !s.pod_ip.is_empty() {
            Some(&s.pod_ip)
        } else {
            s.pod_ips
                .first()
                .map(|p| p.ip.as_str())
                .filter(|ip| !ip.is_empty())
        }
    }

    /// Every IP of the pod (dual-stack pods have two).
    pub fn ips(&self) -> Vec<&str> {
        let Some(s) = &self.status else {
            return Vec::new();
        };
        let mut out: Vec<&str> = s.pod_ips.iter().map(|p| p.ip.as_str()).collect();
        if !s.pod_ip.is_empty() && !out.contains(&s.pod_ip.as_str()) {
            out.insert(0, &s.pod_ip);
        }
        out.retain(|ip| !ip.is_empty());
        out
    }

    pub fn phase(&self) -> Option<PodPhase> {
        self.status.as_ref().and_then(|s| s.phase)
    }

    /// The status of a condition (`Ready` → `True`), if reported.
    pub fn condition(&self, type_: &str) -> Option<&str> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.status.as_str())
    }

    /// Whether the pod reports `Ready: True` (and so receives traffic).
    pub fn is_ready(&self) -> bool {
        self.condition("Ready") == Some("True")
    }

    /// Succeeded or Failed: its containers will not run again.
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase(), Some(PodPhase::Succeeded | PodPhase::Failed))
    }
}

impl Validate for Pod {
    fn validate(&self, v: &mut Validator) {
        v.field("spec", |v| self.spec.validate(v));
    }
}

/// What the mesh needs from any pod-creating workload.
pub trait Workload {
    /// The selector (required in apps/v1; `None` only in objects the API server rejects).
    fn selector(&self) -> Option<&LabelSelector>;
    fn pod_template(&self) -> &PodTemplateSpec;
    /// Desired pod count; `None` means the default (1), or "one per node" for a DaemonSet.
    fn replicas(&self) -> Option<i32>;
    /// Whether a pod with these labels belongs to the workload. A missing or empty selector
    /// selects nothing (the API server rejects both).
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector()
            .is_some_and(|s| !s.is_empty() && s.matches(labels))
    }
}

/// Kubernetes' apps/v1 rules shared by the workloads, at the root.
fn validate_workload(
    v: &mut Validator,
    kind: &str,
    replicas: Option<i32>,
    selector: Option<&LabelSelector>,
    template: &PodTemplateSpec,
) {
    v.field("spec", |v| {
        if let Some(r) = replicas
            && r < 0
        {
            v.error_at(
                "replicas",
                format!("Invalid value: {r}: must be greater than or equal to 0"),
            );
        }
        match selector {
            None => v.error_at(
                "selector",
                "Required value: apps/v1 workloads must say which pods are theirs, e.g. selector: {matchLabels: {app: <name>}}",
            ),
            Some(sel) => {
                v.field("selector", |v| {
                    if sel.is_empty() {
                        v.error(format!("Invalid value: empty selector is invalid for {kind}"));
                    }
                    sel.validate(v);
                });
                if !sel.is_empty() && !sel.matches(&template.metadata.labels) {
                    v.field("template", |v| {
                        v.field("metadata", |v| {
                            v.error_at(
                                "labels",
                                "Invalid value: `selector` does not match template `labels`: every label in spec.selector must be set on the pod template",
                            )
                        })
                    });
                }
            }
        }
        v.field("template", |v| template.validate(v));
    });
}

macro_rules! workload {
    ($(#[$meta:meta])* $name:ident, $spec:ident, $kind:literal, $replicas:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase", default)]
        pub struct $name {
            pub spec: $spec,
            /// Reported by the controller; not used by the mesh.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub status: Option<serde_json::Value>,
        }

        impl $name {
            /// The pods this workload creates.
            pub fn pod_template(&self) -> &PodTemplateSpec {
                &self.spec.template
            }

            pub fn selector(&self) -> Option<&LabelSelector> {
                self.spec.selector.as_ref()
            }

            /// The service account its pods run as.
            pub fn service_account(&self) -> &str {
                self.spec.template.spec.service_account()
            }
        }

        impl Workload for $name {
            fn selector(&self) -> Option<&LabelSelector> {
                self.spec.selector.as_ref()
            }
            fn pod_template(&self) -> &PodTemplateSpec {
                &self.spec.template
            }
            fn replicas(&self) -> Option<i32> {
                let f: fn(&$spec) -> Option<i32> = $replicas;
                f(&self.spec)
            }
        }

        impl Validate for $name {
            fn validate(&self, v: &mut Validator) {
                validate_workload(
                    v,
                    $kind,
                    Workload::replicas(self),
                    self.spec.selector.as_ref(),
                    &self.spec.template,
                );
            }
        }
    };
}

workload!(
    /// `apps/v1` Deployment.
    Deployment, DeploymentSpec, "deployment", |s| s.replicas
);
workload!(
    /// `apps/v1` StatefulSet: pods with stable names, addressable through `serviceName`.
    StatefulSet, StatefulSetSpec, "statefulset", |s| s.replicas
);
workload!(
    /// `apps/v1` ReplicaSet.
    ReplicaSet, ReplicaSetSpec, "replicaset", |s| s.replicas
);
workload!(
    /// `apps/v1` DaemonSet: one pod per (matching) node.
    DaemonSet, DaemonSetSpec, "daemonset", |_| None
);

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeploymentSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    pub template: PodTemplateSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StatefulSetSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    pub template: PodTemplateSpec,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_claim_templates: Vec<serde_json::Value>,
    /// The headless Service that gives each pod a DNS name (`<pod>.<serviceName>.<ns>.svc…`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_management_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_retention_policy: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordinals: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicaSetSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    pub template: PodTemplateSpec,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DaemonSetSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    pub template: PodTemplateSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
}

#[cfg(test)]
#[path = "workloads_tests.rs"]
mod tests;
