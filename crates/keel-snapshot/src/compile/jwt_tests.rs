//! Which RequestAuthentications apply to which proxy, and the defaults their rules get.

use std::collections::BTreeMap;
use std::path::Path;

use keel_config::{LoadOptions, Resource, load_paths, load_str};

use super::{NOT_FETCHED_HERE, for_workload, for_workload_with};
use crate::compile::authz::{AuthzWorkload, GATEWAY_NAME_LABEL};
use crate::jwt::{JwksSource, RemoteJwks, RemoteKeys, TokenLocation, WantedJwks};

const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: mesh-wide, namespace: istio-system}
spec:
  jwtRules: [{issuer: mesh, jwks: '{"keys":[]}'}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: issuer-a
    audiences: [svc-a]
    jwks: '{"keys":[]}'
    fromHeaders: [{name: X-Jwt, prefix: "Token "}]
    fromParams: [tok]
    fromCookies: [session]
    outputPayloadToHeader: X-Payload
    outputClaimToHeaders: [{header: X-Sub, claim: sub}]
    forwardOriginalToken: true
    spaceDelimitedClaims: [roles, scope]
    presence: REQUIRED
  - issuer: issuer-b
    jwksUri: https://example.com/jwks.json
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: other-app, namespace: foo}
spec:
  selector: {matchLabels: {app: other}}
  jwtRules: [{issuer: other, jwks: '{"keys":[]}'}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: bar-wide, namespace: bar}
spec:
  jwtRules: [{issuer: bar, jwks: '{"keys":[]}'}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: to-gateway, namespace: foo}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: web}]
  jwtRules: [{issuer: gw, jwks: '{"keys":[]}'}]
"#;

fn resources(yaml: &str) -> Vec<Resource> {
    let loaded = load_str(yaml, "fixture.yaml", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    loaded.resources
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn issuers(resources: &[Resource], w: &AuthzWorkload) -> Vec<String> {
    for_workload(resources, w)
        .rules
        .rules
        .iter()
        .map(|r| r.issuer.clone().unwrap_or_default())
        .collect()
}

#[test]
fn selection_follows_authorization_policy() {
    let rs = resources(POLICIES);
    let httpbin = AuthzWorkload::new("foo", labels(&[("app", "httpbin")]));
    // Ordered by namespace then name: foo/httpbin before istio-system/mesh-wide.
    assert_eq!(
        issuers(&rs, &httpbin),
        ["issuer-a", "issuer-b", "mesh"],
        "namespace policy by selector plus the mesh-wide one"
    );
    let other_ns = AuthzWorkload::new("bar", labels(&[("app", "httpbin")]));
    assert_eq!(issuers(&rs, &other_ns), ["bar", "mesh"]);
    let gateway = AuthzWorkload::new("foo", labels(&[(GATEWAY_NAME_LABEL, "web")]));
    assert_eq!(
        issuers(&rs, &gateway),
        ["gw", "mesh"],
        "a Gateway API proxy takes its targetRef'd policy and the selector-less ones"
    );
    let sidecar = AuthzWorkload::new("foo", labels(&[("app", "sleep")]));
    assert_eq!(
        issuers(&rs, &sidecar),
        ["mesh"],
        "targetRefs never attach to a sidecar"
    );
}

#[test]
fn rule_fields_and_defaults() {
    let rs = resources(POLICIES);
    let w = AuthzWorkload::new("foo", labels(&[("app", "httpbin")]));
    let compiled = for_workload(&rs, &w);
    let a = &compiled.rules.rules[0];
    assert_eq!(a.policy, "foo/httpbin");
    assert_eq!(a.audiences, ["svc-a"]);
    assert_eq!(a.jwks.as_deref(), Some(r#"{"keys":[]}"#));
    assert_eq!(
        a.locations,
        [
            TokenLocation::Header {
                name: "x-jwt".into(),
                prefix: "Token ".into()
            },
            TokenLocation::QueryParam { name: "tok".into() },
            TokenLocation::Cookie {
                name: "session".into()
            },
        ]
    );
    assert_eq!(a.output_payload_to_header.as_deref(), Some("x-payload"));
    assert_eq!(a.output_claim_to_headers[0].header, "x-sub");
    assert!(a.forward_original_token);
    assert!(a.required);
    assert_eq!(
        a.space_delimited_claims,
        ["scope", "permission", "roles"],
        "Istio's two defaults always, no duplicates"
    );

    let b = &compiled.rules.rules[1];
    assert_eq!(b.locations, TokenLocation::defaults());
    assert_eq!(b.jwks, None);
    assert_eq!(b.jwks_uri.as_deref(), Some("https://example.com/jwks.json"));
    assert!(!b.forward_original_token && !b.required);
    assert_eq!(compiled.warnings.len(), 1, "{:?}", compiled.warnings);
    assert_eq!(
        compiled.warnings[0].resource,
        "RequestAuthentication foo/httpbin"
    );
    assert!(compiled.warnings[0].message.contains(NOT_FETCHED_HERE));
}

#[test]
fn cookies_alone_get_no_default_locations() {
    let rs = resources(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: c, namespace: foo}
spec:
  jwtRules: [{issuer: c, jwks: '{"keys":[]}', fromCookies: [token]}]
"#,
    );
    let compiled = for_workload(&rs, &AuthzWorkload::new("foo", BTreeMap::new()));
    assert_eq!(
        compiled.rules.rules[0].locations,
        [TokenLocation::Cookie {
            name: "token".into()
        }]
    );
}

/// Istio's own task YAML (end-user authentication at the ingress gateway, and the JWT
/// authorization task): selected by their selectors, and their `jwksUri` reported.
#[test]
fn istio_task_samples() {
    let base = Path::new("../../../shared/istio-samples/istio.io/content/en/docs/tasks/security");
    let files = [
        base.join("authentication/authn-policy/snip_enduser_authentication_4.yaml"),
        base.join("authorization/authz-jwt/snip_allow_requests_with_valid_jwt_and_listtyped_claims_1.yaml"),
    ];
    if let Some(missing) = files.iter().find(|f| !f.exists()) {
        println!("skipped: {} is not present", missing.display());
        return;
    }
    let loaded = load_paths(&files, &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let mut gateway = AuthzWorkload::new("istio-system", labels(&[("istio", "ingressgateway")]));
    gateway.root_namespace = "istio-system".into();
    let compiled = for_workload(&loaded.resources, &gateway);
    assert_eq!(compiled.rules.rules.len(), 1);
    let rule = &compiled.rules.rules[0];
    assert_eq!(rule.issuer.as_deref(), Some("testing@secure.istio.io"));
    assert_eq!(rule.locations, TokenLocation::defaults());
    assert!(compiled.warnings[0].message.contains(NOT_FETCHED_HERE));
    let httpbin = AuthzWorkload::new("foo", labels(&[("app", "httpbin")]));
    let compiled = for_workload(&loaded.resources, &httpbin);
    assert_eq!(
        compiled.rules.rules.len(),
        1,
        "only the foo one (the other selects the gateway)"
    );
}

/// The sidecar's inbound listeners and a gateway's listeners carry their workload's rules;
/// outbound listeners carry none; the jwksUri warning reaches the compile result.
#[test]
fn listeners_carry_the_rules() {
    let yaml = format!(
        "{POLICIES}---\n{}",
        r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"#
    );
    let rs = resources(&yaml);
    let opts = crate::compile::sidecar::SidecarOptions {
        namespace: "foo".into(),
        labels: labels(&[("app", "httpbin")]),
        ..Default::default()
    };
    let sidecar = crate::compile::sidecar::compile(&rs, &opts);
    let inbound = sidecar.snapshot.listener("virtualInbound").unwrap();
    let rules = &inbound.jwt.as_ref().unwrap().rules;
    assert_eq!(rules.len(), 3);
    assert!(
        sidecar
            .snapshot
            .listener("virtualOutbound")
            .is_none_or(|l| l.jwt.is_none())
    );
    assert!(
        sidecar.warnings.iter().any(|w| w
            .message
            .contains("no keys from jwksUri https://example.com/jwks.json yet (not fetched yet)")),
        "{:?}",
        sidecar.warnings
    );

    let gw = crate::compile::gateway::compile(
        &rs,
        &crate::compile::gateway::GatewayOptions {
            namespace: "istio-system".into(),
            labels: labels(&[("istio", "ingressgateway")]),
            ..Default::default()
        },
    );
    let listener = &gw.snapshot.listeners[0];
    let issuers: Vec<_> = listener
        .jwt
        .as_ref()
        .unwrap()
        .rules
        .iter()
        .map(|r| r.issuer.clone())
        .collect();
    assert_eq!(issuers, [Some("mesh".to_string())]);

    // Serialised with the listener, and read back.
    let json = serde_json::to_string(inbound).unwrap();
    let back: crate::listener::Listener = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, inbound);
}

#[test]
fn jwks_uri_is_resolved_when_a_resolver_knows_it() {
    let rs = resources(POLICIES);
    let w = AuthzWorkload::new("foo", labels(&[("app", "httpbin")]));
    let known: BTreeMap<String, String> = [(
        "https://example.com/jwks.json".to_string(),
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"}]}"#.to_string(),
    )]
    .into();
    let compiled = for_workload_with(&rs, &w, &known);
    let b = &compiled.rules.rules[1];
    assert_eq!(b.jwks.as_deref(), known.values().next().map(String::as_str));
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    let compiled = for_workload_with(&rs, &w, &BTreeMap::new());
    assert!(
        compiled.warnings[0]
            .message
            .contains("no key set known for this jwksUri")
    );
}

/// The remote key sets a configuration needs: `jwksUri`, or the issuer when a rule has
/// neither keys nor URI (OpenID discovery); never for inline keys; the longest `timeout`.
#[test]
fn remote_sources_name_uris_and_issuers_to_discover() {
    let rs = resources(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: a, namespace: foo}
spec:
  jwtRules:
  - {issuer: inline, jwks: '{"keys":[]}'}
  - {issuer: remote, jwksUri: "https://keys.example/jwks", timeout: 2s}
  - {issuer: "https://accounts.example"}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: b, namespace: bar}
spec:
  jwtRules:
  - {issuer: other, jwks_uri: "https://keys.example/jwks", timeout: 3s}
"#,
    );
    let wanted = super::remote_sources(&rs);
    assert_eq!(
        wanted,
        [
            WantedJwks {
                source: JwksSource::Uri("https://keys.example/jwks".into()),
                timeout_ms: Some(3000),
            },
            WantedJwks {
                source: JwksSource::Issuer("https://accounts.example".into()),
                timeout_ms: None,
            },
        ]
    );
    // As the compile child gets them: `{"uri": ..., "timeout_ms": ...}`.
    let json = serde_json::to_value(&wanted).unwrap();
    assert_eq!(json[0]["uri"], "https://keys.example/jwks");
    assert_eq!(json[1]["issuer"], "https://accounts.example");
}

/// Fetched key sets reach the rules: by URI, and by issuer with the discovered URI shown;
/// a source whose fetch failed is reported with its error and gets no keys.
#[test]
fn fetched_key_sets_reach_the_rules() {
    let rs = resources(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: a, namespace: foo}
spec:
  jwtRules:
  - {issuer: remote, jwksUri: "https://keys.example/jwks"}
  - {issuer: "https://accounts.example"}
  - {issuer: down, jwksUri: "https://down.example/jwks"}
"#,
    );
    let mut remote = RemoteJwks::default();
    remote.uris.insert(
        "https://keys.example/jwks".into(),
        RemoteKeys {
            jwks: Some("{\"keys\":[1]}".into()),
            ..Default::default()
        },
    );
    remote.issuers.insert(
        "https://accounts.example".into(),
        RemoteKeys {
            jwks: Some("{\"keys\":[2]}".into()),
            jwks_uri: Some("https://accounts.example/certs".into()),
            error: None,
        },
    );
    remote.uris.insert(
        "https://down.example/jwks".into(),
        RemoteKeys {
            error: Some("GET https://down.example/jwks: status 503".into()),
            ..Default::default()
        },
    );
    let compiled = for_workload_with(&rs, &AuthzWorkload::new("foo", BTreeMap::new()), &remote);
    let rules = &compiled.rules.rules;
    assert_eq!(rules[0].jwks.as_deref(), Some("{\"keys\":[1]}"));
    assert_eq!(rules[1].jwks.as_deref(), Some("{\"keys\":[2]}"));
    assert_eq!(
        rules[1].jwks_uri.as_deref(),
        Some("https://accounts.example/certs")
    );
    assert_eq!(rules[2].jwks, None);
    assert_eq!(compiled.warnings.len(), 1, "{:?}", compiled.warnings);
    assert_eq!(
        compiled.warnings[0].message,
        "issuer down: no keys from jwksUri https://down.example/jwks yet (GET https://down.example/jwks: status 503); tokens from this issuer are refused with 401 until they are fetched"
    );
}
