//! Fixtures for the evaluator's table tests: policies from YAML, requests from a builder.

use std::collections::BTreeMap;

use keel_config::{Level, LoadOptions, load_str, validate_resources};
use serde_json::Value;

use super::attributes::HeaderList;
use super::{Attributes, Evaluation, HttpAttributes, PeerIdentity, WorkloadPolicies};
use crate::compile::authz::{AuthzWorkload, for_workload};

pub const SLEEP: &str = "spiffe://cluster.local/ns/foo/sa/sleep";
pub const OTHER_NS: &str = "spiffe://cluster.local/ns/bar/sa/sleep";
pub const OTHER_TD: &str = "spiffe://example.org/ns/foo/sa/sleep";

/// The policies that apply to `httpbin` (labels `app: httpbin`) in namespace `foo`, from YAML
/// that must pass Istio's validation.
pub fn policies(yaml: &str) -> WorkloadPolicies {
    let loaded = load_str(yaml, "fixture.yaml", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let diags = validate_resources(&loaded.resources, "istio-system");
    assert!(diags.iter().all(|d| d.level != Level::Error), "{diags:#?}");
    let labels = BTreeMap::from([("app".to_string(), "httpbin".to_string())]);
    for_workload(&loaded.resources, &AuthzWorkload::new("foo", labels)).policies
}

/// A connection or request to httpbin at 10.0.0.9:8000 from 10.0.0.5.
#[derive(Clone)]
pub struct Req {
    src: &'static str,
    remote: Option<&'static str>,
    dst: &'static str,
    port: u16,
    peer: Option<&'static str>,
    sni: Option<&'static str>,
    /// (method, path, host)
    http: Option<(&'static str, &'static str, &'static str)>,
    headers: Vec<(&'static str, &'static str)>,
    jwt: Option<Value>,
}

pub fn tcp(port: u16) -> Req {
    Req {
        src: "10.0.0.5",
        remote: None,
        dst: "10.0.0.9",
        port,
        peer: None,
        sni: None,
        http: None,
        headers: Vec::new(),
        jwt: None,
    }
}

pub fn http(method: &'static str, path: &'static str) -> Req {
    Req {
        http: Some((method, path, "httpbin.foo:8000")),
        ..tcp(8000)
    }
}

pub fn get(path: &'static str) -> Req {
    http("GET", path)
}

impl Req {
    pub fn from(mut self, spiffe: &'static str) -> Self {
        self.peer = Some(spiffe);
        self
    }
    pub fn src(mut self, ip: &'static str) -> Self {
        self.src = ip;
        self
    }
    pub fn remote(mut self, ip: &'static str) -> Self {
        self.remote = Some(ip);
        self
    }
    pub fn dst(mut self, ip: &'static str) -> Self {
        self.dst = ip;
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    pub fn sni(mut self, sni: &'static str) -> Self {
        self.sni = Some(sni);
        self
    }
    pub fn host(mut self, host: &'static str) -> Self {
        if let Some(h) = &mut self.http {
            h.2 = host;
        }
        self
    }
    pub fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
    pub fn jwt(mut self, claims: Value) -> Self {
        self.jwt = Some(claims);
        self
    }
}

pub fn evaluate<'p>(policies: &'p WorkloadPolicies, r: &Req) -> Evaluation<'p> {
    let ip = |s: &str| s.parse().expect("ip");
    let headers = HeaderList(&r.headers);
    let attrs = Attributes {
        source_ip: ip(r.src),
        remote_ip: r.remote.map(ip),
        destination_ip: ip(r.dst),
        destination_port: r.port,
        peer: r.peer.and_then(PeerIdentity::from_spiffe),
        sni: r.sni,
        http: r.http.map(|(method, path, host)| HttpAttributes {
            host,
            method,
            path,
            headers: &headers,
            jwt: r.jwt.as_ref(),
        }),
    };
    policies.evaluate(&attrs)
}

/// Expected: allowed or not, and the deciding policy id (`ns[..]-policy[..]-rule[..]`).
pub type Want = (bool, Option<&'static str>);
pub const ALLOW: Want = (true, None);
pub const DENY: Want = (false, None);

/// Runs a table of `(case, request, expected)` against the policies in `yaml`.
pub fn table(yaml: &str, cases: &[(&str, Req, Want)]) {
    let p = policies(yaml);
    let mut failures = Vec::new();
    for (name, req, (allowed, policy)) in cases {
        let d = evaluate(&p, req).decision;
        let got_policy = d.policy.map(|m| m.to_string());
        if d.allowed != *allowed || got_policy.as_deref() != *policy {
            failures.push(format!(
                "{name}: want allowed={allowed} policy={policy:?}, got {d} ({got_policy:?})"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
