//! `WorkloadGroup` (networking.istio.io): the template for the `WorkloadEntry` each VM of a
//! group registers, and how its readiness is probed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::workload_entry::{AddressRule, WorkloadEntry, check_port, validate_entry};
use crate::validate::common::{check_max_items, validate_tag_labels};
use crate::validate::{Validate, Validator};

/// `istio.networking.v1alpha3.WorkloadGroup`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct WorkloadGroup {
    /// Labels and annotations copied to every generated `WorkloadEntry`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ObjectMeta>,
    /// The entry each workload gets; its address comes from the workload itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<WorkloadEntry>,
    /// How the proxy on each workload checks that the application is ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ReadinessProbe>,
}

/// `WorkloadGroup.ObjectMeta`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ObjectMeta {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `istio.networking.v1alpha3.ReadinessProbe`; exactly one health check method is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ReadinessProbe {
    #[serde(skip_serializing_if = "is_zero")]
    pub initial_delay_seconds: i32,
    #[serde(skip_serializing_if = "is_zero")]
    pub timeout_seconds: i32,
    #[serde(skip_serializing_if = "is_zero")]
    pub period_seconds: i32,
    #[serde(skip_serializing_if = "is_zero")]
    pub success_threshold: i32,
    #[serde(skip_serializing_if = "is_zero")]
    pub failure_threshold: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpHealthCheckConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpHealthCheckConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecHealthCheckConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcHealthCheckConfig>,
}

/// `istio.networking.v1alpha3.HTTPHealthCheckConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpHealthCheckConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    pub port: u32,
    /// Host to connect to; the workload's IP when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// `HTTP` (the default) or `HTTPS`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scheme: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

/// `istio.networking.v1alpha3.HTTPHeader`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpHeader {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// `istio.networking.v1alpha3.TCPHealthCheckConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TcpHealthCheckConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    pub port: u32,
}

/// `istio.networking.v1alpha3.ExecHealthCheckConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ExecHealthCheckConfig {
    pub command: Vec<String>,
}

/// `istio.networking.v1alpha3.GrpcHealthCheckConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GrpcHealthCheckConfig {
    pub port: u32,
    /// The gRPC health service name; empty checks the server as a whole.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service: String,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl Validate for WorkloadGroup {
    fn validate(&self, v: &mut Validator) {
        v.field("spec", |v| {
            if let Some(meta) = &self.metadata {
                v.field("metadata", |v| {
                    check_max_items(v, "labels", meta.labels.len(), 256);
                    check_max_items(v, "annotations", meta.annotations.len(), 256);
                    validate_tag_labels(v, "labels", &meta.labels);
                });
            }
            match &self.template {
                None => v.error_at("template", "Required value: template is required (the WorkloadEntry each workload of the group gets; {} is enough)"),
                Some(t) => v.field("template", |v| {
                    validate_entry(v, t, AddressRule::Template, None);
                    if !t.address.is_empty() {
                        v.warn_at("address", "the template's address is not used: each generated WorkloadEntry gets the address of the workload that registers");
                    }
                }),
            }
            if let Some(p) = &self.probe {
                v.field("probe", |v| validate_readiness_probe(v, p));
            }
        });
    }
}

/// Istio's `validateReadinessProbe` plus the CRD schema.
fn validate_readiness_probe(v: &mut Validator, p: &ReadinessProbe) {
    for (field, n) in [
        ("periodSeconds", p.period_seconds),
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if n < 0 {
            v.error_at(
                field,
                format!(
                    "{field} must be non-negative (should be greater than or equal to 0, got {n})"
                ),
            );
        }
    }
    let set = [
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.exec.is_some(),
        p.grpc.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if set == 0 {
        v.error("unknown health check method: set one of httpGet, tcpSocket, exec or grpc");
    } else if set > 1 {
        v.error("only one of httpGet, tcpSocket, exec or grpc may be set (the probe's health check method is a oneof)");
    }
    if let Some(h) = &p.http_get {
        v.field("httpGet", |v| {
            check_port(v, "port", h.port);
            if !matches!(h.scheme.as_str(), "" | "HTTP" | "HTTPS") {
                v.error_at(
                    "scheme",
                    format!("scheme must be one of [HTTP, HTTPS] (got \"{}\"; upper case)", h.scheme),
                );
            }
            v.each("httpHeaders", &h.http_headers, |v, hdr| {
                let name = hdr.name.as_str();
                if name.is_empty() {
                    v.error_at("name", "header name cannot be empty");
                } else if !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    v.error_at("name", format!("spec.probe.httpGet.httpHeaders.name in body should match '^[-_A-Za-z0-9]+$' (got \"{name}\")"));
                } else if name.contains('_') {
                    v.error_at("name", format!("header name {name} is not a valid header name: probe headers use letters, digits and '-'"));
                }
            });
        });
    }
    if let Some(t) = &p.tcp_socket {
        v.field("tcpSocket", |v| check_port(v, "port", t.port));
    }
    if let Some(e) = &p.exec {
        v.field("exec", |v| {
            if e.command.is_empty() {
                v.error_at(
                    "command",
                    "exec.command is required (the command to run, as a list)",
                );
            }
            v.each("command", &e.command, |v, c| {
                if c.is_empty() {
                    v.error("should be at least 1 chars long: an empty command argument");
                }
            });
        });
    }
    if let Some(g) = &p.grpc {
        v.field("grpc", |v| check_port(v, "port", g.port));
    }
}

#[cfg(test)]
mod tests {
    use crate::{LoadOptions, load_str, validate_resources};

    fn check(spec: &str) -> Vec<String> {
        let text = format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {{name: g, namespace: ns}}\nspec:\n{spec}"
        );
        let loaded = load_str(&text, "wg.yaml", &LoadOptions::default());
        let mut out: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        out.extend(
            validate_resources(&loaded.resources, "istio-system")
                .iter()
                .map(|d| d.to_string()),
        );
        out
    }

    const TEMPLATE: &str = "  template: {serviceAccount: sa, network: net}\n";

    #[test]
    fn accepts_istio_shapes() {
        for ok in [
            "  metadata: {labels: {foo: bar}, annotations: {foo: bar}}\n  probe:\n    failureThreshold: 2\n    initialDelaySeconds: 1\n    periodSeconds: 1\n    successThreshold: 1\n    timeoutSeconds: 1\n    httpGet: {port: 8080, host: bar, scheme: HTTPS, path: /bar, httpHeaders: [{name: foo, value: bar}]}\n  template: {serviceAccount: sa, network: net, labels: {app: a}, ports: {http: 1}, weight: 2, locality: foo/bar/baz}\n",
            "  probe: {tcpSocket: {port: 8080}}\n  template: {serviceAccount: sa, network: net}\n",
            "  probe: {exec: {command: [cat, /tmp/ready]}}\n  template: {}\n",
            "  probe: {grpc: {port: 9090, service: health}}\n  template: {}\n",
            "  template: {}\n",
        ] {
            assert!(check(ok).is_empty(), "{ok}: {:?}", check(ok));
        }
        let w = check("  template: {address: 1.2.3.4}\n");
        assert!(w.len() == 1 && w[0].contains("warning"), "{w:?}");
    }

    #[test]
    fn rejects_what_istio_rejects() {
        let cases: &[(&str, &str)] = &[
            (
                "  probe: {tcpSocket: {port: 65536}}\n",
                "spec.probe.tcpSocket.port: port number 65536 must be in the range 1..65535",
            ),
            (
                "  probe: {httpGet: {port: 80, httpHeaders: [{name: \"**\"}]}}\n",
                "spec.probe.httpGet.httpHeaders[0].name: spec.probe.httpGet.httpHeaders.name in body should match",
            ),
            (
                "  probe: {httpGet: {port: 80, httpHeaders: [{name: x_y}]}}\n",
                "header name x_y is not a valid header name",
            ),
            (
                "  probe: {httpGet: {port: 80, httpHeaders: [{value: z}]}}\n",
                "header name cannot be empty",
            ),
            (
                "  probe: {httpGet: {port: 80, scheme: ftp}}\n",
                "scheme must be one of [HTTP, HTTPS]",
            ),
            (
                "  probe: {httpGet: {path: /}}\n",
                "spec.probe.httpGet.port: port number 0",
            ),
            (
                "  probe: {exec: {command: []}}\n",
                "exec.command is required",
            ),
            ("  probe: {exec: {command: [\"\"]}}\n", "at least 1 chars"),
            (
                "  probe: {grpc: {port: 0}}\n",
                "spec.probe.grpc.port: port number 0",
            ),
            (
                "  probe: {periodSeconds: -1, tcpSocket: {port: 1}}\n",
                "periodSeconds must be non-negative",
            ),
            (
                "  probe: {timeoutSeconds: 1}\n",
                "unknown health check method",
            ),
            (
                "  probe: {tcpSocket: {port: 1}, exec: {command: [a]}}\n",
                "only one of httpGet, tcpSocket, exec or grpc",
            ),
            ("  metadata: {labels: {\"a b\": c}}\n", "invalid tag key"),
            (
                "  template: {address: \"unix://x\"}\n",
                "UDS must be an absolute path",
            ),
            (
                "  template: {address: \"unix://@x\", ports: {http: 80}}\n",
                "UDS may not include ports",
            ),
        ];
        for (spec, want) in cases {
            let spec = if spec.contains("template") {
                spec.to_string()
            } else {
                format!("{spec}{TEMPLATE}")
            };
            let e = check(&spec);
            assert!(
                e.iter().any(|m| m.contains("error") && m.contains(want)),
                "{spec}: want {want}: {e:?}"
            );
        }
        let e = check("  probe: {tcpSocket: {port: 1}}\n");
        assert!(e[0].contains("spec.template: Required value"), "{e:?}");
    }
}
