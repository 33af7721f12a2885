//! The tables `keel get` prints: the columns `kubectl get` shows for each kind (Istio's CRD
//! printer columns, Kubernetes' built-in ones), aligned the way kubectl aligns them.

use std::time::SystemTime;

use keel_config::Kind;
use keel_control::time::{human_duration, parse_rfc3339};
use serde_json::Value;

/// A column's value for one object.
type Cell = fn(&Value) -> String;

enum Col {
    Field(&'static str, Cell),
    Age,
}

/// Columns after NAME (and NAMESPACE): the default ones, then the `-o wide` extras.
fn columns(kind: Kind) -> (Vec<Col>, Vec<Col>) {
    use Col::{Age, Field};
    match kind {
        Kind::VirtualService => (
            vec![
                Field("GATEWAYS", |o| json_list(&o["spec"]["gateways"])),
                Field("HOSTS", |o| json_list(&o["spec"]["hosts"])),
                Age,
            ],
            vec![],
        ),
        Kind::DestinationRule => (
            vec![Field("HOST", |o| string(&o["spec"]["host"])), Age],
            vec![],
        ),
        Kind::ServiceEntry => (
            vec![
                Field("HOSTS", |o| json_list(&o["spec"]["hosts"])),
                Field("LOCATION", |o| string(&o["spec"]["location"])),
                Field("RESOLUTION", |o| string(&o["spec"]["resolution"])),
                Age,
            ],
            vec![],
        ),
        Kind::WorkloadEntry => (
            vec![Age, Field("ADDRESS", |o| string(&o["spec"]["address"]))],
            vec![],
        ),
        Kind::PeerAuthentication => (
            vec![Field("MODE", |o| string(&o["spec"]["mtls"]["mode"])), Age],
            vec![],
        ),
        Kind::AuthorizationPolicy => (
            vec![Field("ACTION", |o| string(&o["spec"]["action"])), Age],
            vec![],
        ),
        Kind::HttpRoute | Kind::GrpcRoute | Kind::TlsRoute => (
            vec![
                Field("HOSTNAMES", |o| json_list(&o["spec"]["hostnames"])),
                Age,
            ],
            vec![],
        ),
        Kind::KubernetesGateway => (
            vec![
                Field("CLASS", |o| string(&o["spec"]["gatewayClassName"])),
                Field("ADDRESS", |o| string(&o["status"]["addresses"][0]["value"])),
                Field("PROGRAMMED", |o| condition(o, "Programmed")),
                Age,
            ],
            vec![],
        ),
        Kind::GatewayClass => (
            vec![
                Field("CONTROLLER", |o| string(&o["spec"]["controllerName"])),
                Field("ACCEPTED", |o| condition(o, "Accepted")),
                Age,
            ],
            vec![],
        ),
        Kind::Service => (
            vec![
                Field("TYPE", |o| or(string(&o["spec"]["type"]), "ClusterIP")),
                Field("CLUSTER-IP", |o| {
                    or(string(&o["spec"]["clusterIP"]), "<none>")
                }),
                Field("EXTERNAL-IP", |o| {
                    or(joined(&o["spec"]["externalIPs"]), "<none>")
                }),
                Field("PORT(S)", service_ports),
                Age,
            ],
            vec![Field("SELECTOR", |o| {
                or(labels(&o["spec"]["selector"]), "<none>")
            })],
        ),
        Kind::Deployment | Kind::StatefulSet | Kind::ReplicaSet => (
            vec![
                Field("READY", |o| {
                    format!(
                        "{}/{}",
                        o["status"]["readyReplicas"].as_i64().unwrap_or(0),
                        o["spec"]["replicas"].as_i64().unwrap_or(1)
                    )
                }),
                Field("UP-TO-DATE", |o| count(&o["status"]["updatedReplicas"])),
                Field("AVAILABLE", |o| count(&o["status"]["availableReplicas"])),
                Age,
            ],
            vec![
                Field("CONTAINERS", |o| containers(o, "name")),
                Field("IMAGES", |o| containers(o, "image")),
                Field("SELECTOR", |o| {
                    or(labels(&o["spec"]["selector"]["matchLabels"]), "<none>")
                }),
            ],
        ),
        Kind::Pod => (
            vec![
                Field("READY", |o| {
                    let n = o["spec"]["containers"].as_array().map_or(0, Vec::len);
                    format!("0/{n}")
                }),
                Field("STATUS", |o| or(string(&o["status"]["phase"]), "Pending")),
                Age,
            ],
            vec![],
        ),
        Kind::Namespace => (
            vec![
                Field("STATUS", |o| or(string(&o["status"]["phase"]), "Active")),
                Age,
            ],
            vec![],
        ),
        Kind::ServiceAccount => (
            vec![
                Field("SECRETS", |o| {
                    o["secrets"].as_array().map_or(0, Vec::len).to_string()
                }),
                Age,
            ],
            vec![],
        ),
        Kind::ConfigMap => (vec![Field("DATA", data_count), Age], vec![]),
        Kind::Secret => (
            vec![
                Field("TYPE", |o| or(string(&o["type"]), "Opaque")),
                Field("DATA", data_count),
                Age,
            ],
            vec![],
        ),
        Kind::Endpoints => (vec![Field("ENDPOINTS", endpoints), Age], vec![]),
        _ => (vec![Age], vec![]),
    }
}

/// The table for `items` (objects of one kind), `now` for AGE.
pub fn render(
    kind: Kind,
    items: &[Value],
    wide: bool,
    with_namespace: bool,
    now: SystemTime,
) -> String {
    let (mut cols, extra) = columns(kind);
    if wide {
        cols.extend(extra);
    }
    let mut header: Vec<String> = Vec::new();
    if with_namespace {
        header.push("NAMESPACE".into());
    }
    header.push("NAME".into());
    header.extend(cols.iter().map(|c| match c {
        Col::Field(h, _) => h.to_string(),
        Col::Age => "AGE".to_string(),
    }));
    let mut rows = vec![header];
    for o in items {
        let mut row = Vec::new();
        if with_namespace {
            row.push(string(&o["metadata"]["namespace"]));
        }
        row.push(string(&o["metadata"]["name"]));
        for c in &cols {
            row.push(match c {
                Col::Field(_, cell) => cell(o),
                Col::Age => age(o, now),
            });
        }
        rows.push(row);
    }
    align(&rows)
}

/// kubectl's tabwriter settings: three spaces between columns, cells at least six wide.
pub fn align(rows: &[Vec<String>]) -> String {
    let n = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            let longest = rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
            (longest + 3).max(6)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < n {
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn age(o: &Value, now: SystemTime) -> String {
    o["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(parse_rfc3339)
        .map_or("<unknown>".to_string(), |t| {
            human_duration(now.duration_since(t).unwrap_or_default())
        })
}

fn string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn or(s: String, default: &str) -> String {
    if s.is_empty() { default.to_string() } else { s }
}

/// A list as CRD printer columns show it: `["reviews","ratings"]`; empty when absent.
fn json_list(v: &Value) -> String {
    if v.is_null() {
        String::new()
    } else {
        v.to_string()
    }
}

fn joined(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(string).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn count(v: &Value) -> String {
    v.as_i64().unwrap_or(0).to_string()
}

fn labels(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", string(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn service_ports(o: &Value) -> String {
    let ports = o["spec"]["ports"].as_array().cloned().unwrap_or_default();
    if ports.is_empty() {
        return "<none>".into();
    }
    ports
        .iter()
        .map(|p| {
            let proto = or(string(&p["protocol"]), "TCP");
            match p["nodePort"].as_i64() {
                Some(node) => format!("{}:{node}/{proto}", string(&p["port"])),
                None => format!("{}/{proto}", string(&p["port"])),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn containers(o: &Value, field: &str) -> String {
    joined(&Value::Array(
        o["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(|cs| cs.iter().map(|c| c[field].clone()).collect())
            .unwrap_or_default(),
    ))
}

fn data_count(o: &Value) -> String {
    let n = |k: &str| o[k].as_object().map_or(0, serde_json::Map::len);
    (n("data") + n("binaryData") + n("stringData")).to_string()
}

fn endpoints(o: &Value) -> String {
    let mut eps = Vec::new();
    for subset in o["subsets"].as_array().into_iter().flatten() {
        for addr in subset["addresses"].as_array().into_iter().flatten() {
            for port in subset["ports"].as_array().into_iter().flatten() {
                eps.push(format!("{}:{}", string(&addr["ip"]), string(&port["port"])));
            }
        }
    }
    match eps.len() {
        0 => "<none>".into(),
        1..=3 => eps.join(","),
        n => format!("{} + {} more...", eps[..3].join(","), n - 3),
    }
}

fn condition(o: &Value, wanted: &str) -> String {
    o["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == wanted))
        .map_or("Unknown".to_string(), |c| string(&c["status"]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn virtual_services_like_kubectl() {
        let now = parse_rfc3339("2024-05-01T12:10:00Z").expect("time");
        let items = vec![
            json!({"metadata": {"name": "bookinfo", "namespace": "default", "creationTimestamp": "2024-05-01T12:00:00Z"},
                   "spec": {"gateways": ["bookinfo-gateway"], "hosts": ["*"]}}),
            json!({"metadata": {"name": "reviews", "namespace": "default", "creationTimestamp": "2024-05-01T12:09:15Z"},
                   "spec": {"hosts": ["reviews"]}}),
        ];
        assert_eq!(
            render(Kind::VirtualService, &items, false, false, now),
            "NAME       GATEWAYS               HOSTS         AGE\n\
             bookinfo   [\"bookinfo-gateway\"]   [\"*\"]         10m\n\
             reviews                           [\"reviews\"]   45s\n"
        );
        let with_ns = render(
            Kind::VirtualService,
            &items[..1],
            false,
            true,
            now + Duration::from_secs(7200),
        );
        assert!(
            with_ns.starts_with("NAMESPACE   NAME       GATEWAYS"),
            "{with_ns}"
        );
        assert!(with_ns.ends_with("130m\n"), "{with_ns}");
    }

    #[test]
    fn services_and_wide_columns() {
        let svc = json!({"metadata": {"name": "reviews"}, "spec": {"selector": {"app": "reviews"},
            "ports": [{"port": 9080, "name": "http"}, {"port": 80, "nodePort": 31380, "protocol": "UDP"}]}});
        let table = render(Kind::Service, &[svc], true, false, SystemTime::now());
        assert_eq!(
            table,
            "NAME      TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)                   AGE         SELECTOR\n\
             reviews   ClusterIP   <none>       <none>        9080/TCP,80:31380/UDP   <unknown>   app=reviews\n"
                .replace("PORT(S)                   AGE", "PORT(S)                 AGE")
        );
    }
}
