//! VirtualService validation tests, written with Keel's own fixtures. Each rule has at least
//! one accepted and one rejected case; messages are asserted in part.

use crate::{Level, LoadOptions, load_str, validate_resources};

/// All diagnostics for a VirtualService with the given spec (written unindented), as
/// `"<level> <field>: <message>"`.
pub(super) fn diags_with(meta: &str, spec: &str) -> Vec<String> {
    let body: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    let text = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {meta}\nspec:\n{body}"
    );
    let loaded = load_str(&text, "vs.yaml", &LoadOptions::default());
    let mut out: Vec<String> = loaded
        .diagnostics
        .iter()
        .map(|d| {
            let field = d.field.as_ref().map(|f| f.to_string()).unwrap_or_default();
            format!("{} {}: {}", d.level, field, d.message)
        })
        .collect();
    for d in validate_resources(&loaded.resources, "istio-system") {
        let field = d.field.map(|f| f.to_string()).unwrap_or_default();
        out.push(format!("{} {}: {}", d.level, field, d.message));
    }
    out
}

pub(super) fn diags(spec: &str) -> Vec<String> {
    diags_with("{name: vs, namespace: ns}", spec)
}

pub(super) fn errors(spec: &str) -> Vec<String> {
    let prefix = format!("{} ", Level::Error);
    diags(spec)
        .into_iter()
        .filter(|d| d.starts_with(&prefix))
        .collect()
}

pub(super) fn warnings(spec: &str) -> Vec<String> {
    diags(spec)
        .into_iter()
        .filter(|d| d.starts_with("warning "))
        .collect()
}

#[track_caller]
pub(super) fn accepted(spec: &str) {
    let d = diags(spec);
    assert!(
        d.is_empty(),
        "expected no findings for:\n{spec}\ngot: {d:#?}"
    );
}

#[track_caller]
pub(super) fn rejected(spec: &str, want: &str) {
    let e = errors(spec);
    assert!(
        e.iter().any(|m| m.contains(want)),
        "expected an error containing {want:?} for:\n{spec}\ngot: {e:#?}"
    );
}

#[track_caller]
pub(super) fn warned(spec: &str, want: &str) {
    assert!(errors(spec).is_empty(), "{:#?}", errors(spec));
    let w = warnings(spec);
    assert!(
        w.iter().any(|m| m.contains(want)),
        "expected a warning containing {want:?}, got: {w:#?}"
    );
}

pub(super) const ROUTE: &str = "  route:\n  - destination: {host: shop}\n";

/// A VirtualService for host `shop` with the given HTTP rules (each starting with `- `).
pub(super) fn http(rules: &str) -> String {
    format!("hosts: [shop]\nhttp:\n{rules}")
}

#[test]
fn accepts_everyday_routes() {
    accepted(
        "hosts: [shop]
http:
- name: canary
  match:
  - uri: {prefix: /api}
    headers:
      x-user: {exact: alice}
      x-present: {}
    queryParams:
      debug: {regex: '^(1|true)$'}
    ignoreUriCase: true
    port: 8080
    sourceLabels: {app: web}
    sourceNamespace: front
    statPrefix: canary
  route:
  - destination: {host: shop, subset: v2, port: {number: 8080}}
    weight: 10
  - destination: {host: shop.prod.svc.cluster.local, subset: v1}
    weight: 90
  timeout: 3s
  retries: {attempts: 3, perTryTimeout: 500ms, retryOn: 'gateway-error,connect-failure,503', backoff: 25ms}
- route:
  - destination: {host: shop}",
    );
    // Weights that do not sum to 100, and zero beside non-zero, are fine.
    accepted(
        "hosts: [shop]\nhttp:\n- route:\n  - {destination: {host: a}, weight: 55}\n  - {destination: {host: b}, weight: 50}\n  - {destination: {host: c}, weight: 0}",
    );
    // An IP is a legal host; so is a short name and a wildcard for gateways.
    accepted("hosts: [10.0.0.1, shop]\ntcp:\n- route:\n  - destination: {host: shop}");
}

#[test]
fn hosts() {
    rejected(
        "hosts: [bad_host]\nhttp:\n- route:\n  - destination: {host: shop}",
        "spec.hosts[0]: domain name \"bad_host\" invalid",
    );
    rejected(
        "hosts: ['*']\nhttp:\n- route:\n  - destination: {host: shop}",
        "wildcard host * is not allowed for virtual services bound to the mesh gateway",
    );
    rejected(
        "hosts: ['*']\ngateways: [mesh, ns/gw]\nhttp:\n- route:\n  - destination: {host: shop}",
        "bound to the mesh gateway",
    );
    accepted("hosts: ['*']\ngateways: [ns/gw]\nhttp:\n- route:\n  - destination: {host: shop}");
    accepted("hosts: ['*.example.com']\nhttp:\n- route:\n  - destination: {host: shop}");
    rejected(
        "hosts: ['*.example.com', a.example.com]\nhttp:\n- route:\n  - destination: {host: shop}",
        "spec.hosts[1]: duplicate hosts in virtual service: *.example.com & a.example.com",
    );
    rejected(
        "hosts: [shop, shop]\nhttp:\n- route:\n  - destination: {host: shop}",
        "duplicate hosts",
    );
    rejected(
        "hosts: ['foo.*.com']\nhttp:\n- route:\n  - destination: {host: shop}",
        "invalid",
    );
}

#[test]
fn gateways() {
    accepted(
        "hosts: [shop.example.com]\ngateways: [mesh, ingress/public]\nhttp:\n- route:\n  - destination: {host: shop}",
    );
    warned(
        "hosts: [shop.example.com]\ngateways: [public.ingress]\nhttp:\n- route:\n  - destination: {host: shop}",
        "using legacy gatewayName format \"public.ingress\"; prefer the <namespace>/<name> format: \"ingress/public\"",
    );
    rejected(
        "hosts: [shop.example.com]\ngateways: [ingress/Bad_Name]\nhttp:\n- route:\n  - destination: {host: shop}",
        "spec.gateways[0]: invalid value for gateway name: \"Bad_Name\"",
    );
    rejected(
        "hosts: [shop.example.com]\ngateways: [/gw]\nhttp:\n- route:\n  - destination: {host: shop}",
        "config namespace and gateway name cannot be empty",
    );
    rejected(
        "hosts: [shop.example.com]\ngateways: [bad_gw]\nhttp:\n- route:\n  - destination: {host: shop}",
        "domain name \"bad_gw\" invalid",
    );
    // Gateway API routes translated by Istio may use gateway names that are not DNS labels.
    let d = diags_with(
        "{name: vs, namespace: ns, annotations: {internal.istio.io/route-semantics: gateway}}",
        "hosts: [shop.example.com]\ngateways: ['ns/gateway~istio-autogenerated-k8s-gateway~foo']\nhttp:\n- route:\n  - destination: {host: shop}",
    );
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn delegates() {
    // Root: a route that delegates, and nothing else.
    accepted(
        "hosts: [shop.example.com]\ngateways: [ns/gw]\nhttp:\n- match:\n  - uri: {prefix: /cart}\n  delegate: {name: cart, namespace: cart}",
    );
    rejected(
        "hosts: [shop]\nhttp:\n- delegate: {name: cart}\n  route:\n  - destination: {host: shop}",
        "root HTTP route  must not specify route",
    );
    rejected(
        "hosts: [shop]\nhttp:\n- name: r\n  delegate: {name: cart}\n  redirect: {uri: /x}",
        "root HTTP route r must not specify redirect",
    );
    // Delegate: no hosts, no gateways, HTTP only, no nested delegation.
    accepted(
        "http:\n- match:\n  - uri: {prefix: /cart/items}\n    sourceNamespace: web\n  route:\n  - destination: {host: items}",
    );
    rejected(
        "gateways: [ns/gw]\nhttp:\n- route:\n  - destination: {host: a}",
        "delegate virtual service must have no gateways specified",
    );
    rejected(
        "tcp:\n- route:\n  - destination: {host: a}",
        "delegate virtual service must have no tcp route specified",
    );
    rejected(
        "tls:\n- match: [{sniHosts: [a.com]}]\n  route:\n  - destination: {host: a}",
        "delegate virtual service must have no tls route specified",
    );
    rejected(
        "http:\n- delegate: {name: deeper}",
        "delegate HTTP route cannot contain delegate",
    );
    rejected(
        "http:\n- {}",
        "HTTP route, redirect or direct_response is required",
    );
}

#[test]
fn needs_some_routes() {
    rejected(
        "hosts: [shop]",
        "http, tcp or tls must be provided in virtual service",
    );
    rejected(
        &http("- timeout: 1s"),
        "HTTP route, redirect or direct_response is required",
    );
}

#[test]
fn route_destinations_and_weights() {
    rejected(
        &http("- route:\n  - weight: 10"),
        "spec.http[0].route[0]: destination is required",
    );
    rejected(
        &http("- route:\n  - {destination: {host: a}, weight: -1}"),
        "spec.http[0].route[0].weight: weight -1 < 0",
    );
    rejected(
        &http("- route:\n  - {destination: {host: a}}\n  - {destination: {host: b}}"),
        "total destination weight = 0",
    );
    rejected(
        &http("- route:\n  - destination: {host: '*'}"),
        "invalid destination host *",
    );
    rejected(
        &http("- route:\n  - destination: {host: 10.1.2.3}"),
        "top level domain \"3\" cannot be all-numeric",
    );
    rejected(
        &http("- route:\n  - destination: {host: a, subset: V_1}"),
        "subset name is invalid: V_1",
    );
    rejected(
        &http("- route:\n  - destination: {host: a, port: {number: 70000}}"),
        "port number 70000 must be in the range 1..65535",
    );
    rejected(
        &http("- route:\n  - destination: {subset: v1}"),
        "destination host is required",
    );
}

#[test]
fn header_operations() {
    accepted(&http(
        "- headers:
    request:
      set: {':authority': shop.internal, x-env: '%ENVIRONMENT(POD_NAME)%'}
      add: {x-trace: 'on'}
      remove: [x-internal]
    response:
      set: {cache-control: no-store, x-pct: 100%%}
      remove: [server]
  route:
  - destination: {host: shop}
    headers:
      request: {set: {x-dest: v1}}",
    ));
    rejected(
        &(http("- headers: {request: {set: {':path': /x}}}\n") + ROUTE),
        "invalid header \":path\": header cannot have \":\" prefix",
    );
    rejected(
        &(http("- headers: {response: {set: {host: x}}}\n") + ROUTE),
        "invalid header \"host\": cannot set Host header",
    );
    rejected(
        &(http("- headers: {request: {remove: [':authority']}}\n") + ROUTE),
        "header cannot have \":\" prefix",
    );
    rejected(
        &(http("- headers: {request: {add: {'': x}}}\n") + ROUTE),
        "header name cannot be empty",
    );
    rejected(
        &(http("- headers: {response: {add: {x-a: 'abc%123'}}}\n") + ROUTE),
        "header value configuration: invalid header configuration",
    );
    rejected(
        &http("- route:\n  - destination: {host: a}\n    headers: {response: {remove: ['']}}"),
        "spec.http[0].route[0].headers.response.remove[0]: header name cannot be empty",
    );
    // The authority may be rewritten in one place only.
    rejected(
        &(http("- rewrite: {authority: a.com}\n  headers: {request: {set: {host: b.com}}}\n")
            + ROUTE),
        "authority header cannot be set multiple times",
    );
}

#[test]
fn match_requests() {
    rejected(
        &(http("- match:\n  - uri: {regex: '(?=lookahead)'}\n") + ROUTE),
        "\"uri\": ",
    );
    rejected(
        &(http("- match:\n  - uri: {regex: ''}\n") + ROUTE),
        "\"uri\": regex string match should not be empty",
    );
    // An empty URI prefix is legal; an empty method prefix is not.
    accepted(&(http("- match:\n  - uri: {prefix: ''}\n") + ROUTE));
    rejected(
        &(http("- match:\n  - method: {prefix: ''}\n") + ROUTE),
        "\"method\": prefix string match should not be empty",
    );
    rejected(
        &(http("- match:\n  - scheme: {regex: '['}\n") + ROUTE),
        "\"scheme\": ",
    );
    rejected(
        &(http("- match:\n  - uri: {exact: /a, prefix: /b}\n") + ROUTE),
        "only one of exact, prefix or regex",
    );
    rejected(
        &(http("- match:\n  - headers: {'x user': {exact: a}}\n") + ROUTE),
        "header name x user is not a valid header name",
    );
    rejected(
        &(http("- match:\n  - queryParams: {q: {regex: ''}}\n") + ROUTE),
        "\"queryParams\": regex string match should not be empty",
    );
    rejected(
        &(http("- match:\n  - authority: {regex: 'a{3,2}'}\n") + ROUTE),
        "\"authority\": error parsing regexp: invalid repeat count: `{3,2}`",
    );
    rejected(
        &(http(&format!(
            "- match:\n  - uri: {{regex: '{}'}}\n",
            "a".repeat(1100)
        )) + ROUTE),
        "regex is too large, max length allowed is 1024",
    );
    // `*` in withoutHeaders means "present", not a regex.
    accepted(&(http("- match:\n  - withoutHeaders: {x-canary: {regex: '*'}}\n") + ROUTE));
    rejected(
        &(http("- match:\n  - withoutHeaders: {x-canary: {regex: '+'}}\n") + ROUTE),
        "\"withoutHeaders\": ",
    );
    rejected(
        &(http("- match:\n  - port: 0\n    sourceNamespace: Not_A_Label\n") + ROUTE),
        "sourceNamespace match Not_A_Label is invalid",
    );
    rejected(
        &(http("- match:\n  - port: 99999\n") + ROUTE),
        "spec.http[0].match[0].port: port number 99999 must be in the range 1..65535",
    );
    rejected(
        &(http("- match:\n  - sourceLabels: {'-bad': x}\n") + ROUTE),
        "invalid tag key: \"-bad\"",
    );
    rejected(
        &(http("- match:\n  - gateways: [ns/Bad_Gw]\n") + ROUTE),
        "invalid value for gateway name",
    );
}

#[test]
fn jwt_claim_routing_is_for_gateways() {
    let spec = "hosts: [shop.example.com]\n{gw}http:\n- match:\n  - headers: {'@request.auth.claims.group': {exact: admin}}\n  route:\n  - destination: {host: shop}";
    accepted(&spec.replace("{gw}", "gateways: [ns/gw]\n"));
    rejected(
        &spec.replace("{gw}", ""),
        "JWT claim based routing (key: @request.auth.claims.group) is only supported for gateway",
    );
    rejected(
        &spec
            .replace("{gw}", "")
            .replace("headers", "withoutHeaders"),
        "is only supported for gateway",
    );
}

#[test]
fn tls_routes() {
    accepted(
        "hosts: ['*.example.com']\ngateways: [ns/gw]\ntls:\n- match:\n  - sniHosts: [a.example.com]\n    port: 443\n    destinationSubnets: [10.0.0.0/8]\n  route:\n  - destination: {host: a.example.com, port: {number: 443}}",
    );
    rejected(
        "hosts: [a.example.com]\ntls:\n- route:\n  - destination: {host: a}",
        "TLS route must have at least one match condition",
    );
    rejected(
        "hosts: [a.example.com]\ntls:\n- match:\n  - port: 443\n  route:\n  - destination: {host: a}",
        "TLS match must have at least one SNI host",
    );
    rejected(
        "hosts: [a.example.com]\ntls:\n- match:\n  - sniHosts: [b.example.com]\n  route:\n  - destination: {host: a}",
        "SNI host \"b.example.com\" is not a compatible subset of any of the virtual service hosts: [a.example.com]",
    );
    rejected(
        "hosts: [a.example.com]\ntls:\n- match:\n  - sniHosts: [a.example.com]",
        "TLS route is required",
    );
    rejected(
        "hosts: [a.example.com]\ntls:\n- match:\n  - sniHosts: [a.example.com]\n    destinationSubnets: [10.0.0.0/40]\n  route:\n  - destination: {host: a}",
        "10.0.0.0/40 is not a valid CIDR block",
    );
    warned(
        "hosts: ['*']\ngateways: [ns/gw]\ntls:\n- match:\n  - sniHosts: [10.1.1.1]\n  route:\n  - destination: {host: a}",
        "goes against SNI spec",
    );
    // Istio's generated SNI names are accepted on gateways.
    accepted(
        "hosts: ['*.global']\ngateways: [ns/gw]\ntls:\n- match:\n  - sniHosts: ['outbound_.80_._.a.global']\n  route:\n  - destination: {host: a}",
    );
}

#[test]
fn tcp_routes() {
    accepted(
        "hosts: [db]\ntcp:\n- match:\n  - port: 5432\n    destinationSubnets: [10.1.0.0/16, 10.2.0.1]\n    sourceLabels: {app: api}\n    sourceSubnet: 10.0.0.0/8\n  route:\n  - destination: {host: db, port: {number: 5432}}\n    weight: 100",
    );
    rejected(
        "hosts: [db]\ntcp:\n- match: [{port: 5432}]",
        "TCP route is required",
    );
    rejected(
        "hosts: [db]\ntcp:\n- match: [{destinationSubnets: [not-an-ip]}]\n  route:\n  - destination: {host: db}",
        "not-an-ip is not a valid IP",
    );
    rejected(
        "hosts: [db]\ntcp:\n- match: [{port: 0}]\n  route:\n  - destination: {host: db, port: {number: 0}}",
        "port number 0 must be in the range 1..65535",
    );
    rejected(
        "hosts: [db]\ntcp:\n- route:\n  - {destination: {host: a}, weight: 0}\n  - {destination: {host: b}, weight: 0}",
        "total destination weight = 0",
    );
}

#[test]
fn export_to() {
    let base = "hosts: [shop]\nhttp:\n- route:\n  - destination: {host: shop}\nexportTo: ";
    accepted(&format!("{base}['*']"));
    accepted(&format!("{base}['.', other-ns]"));
    rejected(
        &format!("{base}[ns, '.']"),
        "duplicate entries in exportTo: . and current namespace ns",
    );
    rejected(
        &format!("{base}[a, a]"),
        "duplicate entries in exportTo for entry a",
    );
    rejected(
        &format!("{base}['*', a]"),
        "cannot have both public (*) and non-public exportTo values for a resource",
    );
    rejected(
        &format!("{base}['~']"),
        "exportTo ~ (none) is not allowed for Istio configuration objects",
    );
    rejected(
        &format!("{base}[Bad_Ns]"),
        "only ., *, or a valid DNS 1123 label is allowed as exportTo entry",
    );
}

#[test]
fn unreachable_rule_warnings() {
    warned(
        "hosts: [shop]\nhttp:\n- route:\n  - destination: {host: a}\n- route:\n  - destination: {host: b}",
        "virtualService rule #1 not used (only the last rule can have no matches)",
    );
    warned(
        "hosts: [shop]\nhttp:\n- name: first\n  match: [{uri: {exact: /a}}]\n  route:\n  - destination: {host: a}\n- name: second\n  match: [{name: dup, uri: {exact: /a}}]\n  route:\n  - destination: {host: b}",
        "virtualService rule \"second\" match \"dup\" is not used (duplicate/overlapping match in rule \"first\")",
    );
    warned(
        "hosts: [shop]\nhttp:\n- match: [{uri: {exact: /a}}]\n  route:\n  - destination: {host: a}\n- match: [{uri: {exact: /a}}]\n  route:\n  - destination: {host: b}",
        "virtualService rule #1 not used (all matches used by prior rules)",
    );
    warned(
        "hosts: [shop]\nhttp:\n- match: [{uri: {prefix: /api}}]\n  route:\n  - destination: {host: a}\n- match: [{uri: {prefix: /api/v2}}]\n  route:\n  - destination: {host: b}",
        "virtualService rule #1 match #0 of prefix /api/v2 is not used (duplicate/overlapping match in rule #0 of prefix /api on #0)",
    );
    // A more specific earlier prefix does not hide a shorter later one.
    accepted(
        "hosts: [shop]\nhttp:\n- match: [{uri: {prefix: /api/v2}}]\n  route:\n  - destination: {host: a}\n- match: [{uri: {prefix: /api}}]\n  route:\n  - destination: {host: b}",
    );
    // Different methods do not overlap.
    accepted(
        "hosts: [shop]\nhttp:\n- match: [{uri: {prefix: /api}, method: {exact: POST}}]\n  route:\n  - destination: {host: a}\n- match: [{uri: {prefix: /api/v2}}]\n  route:\n  - destination: {host: b}",
    );
    warned(
        "hosts: [db]\ntcp:\n- match: [{port: 1}]\n  route:\n  - destination: {host: a}\n- match: [{port: 1}]\n  route:\n  - destination: {host: b}",
        "virtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0)",
    );
    warned(
        "hosts: [a.com]\ntls:\n- match: [{sniHosts: [a.com]}]\n  route:\n  - destination: {host: a}\n- match: [{sniHosts: [a.com]}]\n  route:\n  - destination: {host: b}",
        "virtualService rule #1 not used (all matches used by prior rules)",
    );
}

#[test]
fn decoding_is_strict_and_positioned() {
    let e = errors("hosts: [shop]\nhttp:\n- route:\n  - destination: {host: shop}\n    wieght: 5");
    assert!(
        e.iter()
            .any(|m| m.contains("unknown field \"wieght\" (did you mean \"weight\"?)")),
        "{e:?}"
    );
    let e = errors("hosts: shop\nhttp: []");
    assert!(e.iter().any(|m| m.contains("expected a list")), "{e:?}");
    // Positions point at the offending field.
    let text = "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [shop]\n  http:\n  - route:\n    - destination: {host: shop}\n      weight: -5\n";
    let loaded = load_str(text, "vs.yaml", &LoadOptions::default());
    let d = validate_resources(&loaded.resources, "istio-system");
    assert!(
        d.iter()
            .any(|d| d.to_string().starts_with("vs.yaml:9:15: error: VirtualService default/vs: spec.http[0].route[0].weight: weight -5 < 0")),
        "{d:#?}"
    );
}

#[test]
fn old_api_versions_read_the_same() {
    for version in ["v1alpha3", "v1beta1", "v1"] {
        let text = format!(
            "apiVersion: networking.istio.io/{version}\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [shop]\n  http:\n  - route:\n    - destination: {{host: shop}}\n"
        );
        let loaded = load_str(&text, "vs.yaml", &LoadOptions::default());
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        assert!(validate_resources(&loaded.resources, "istio-system").is_empty());
    }
}

#[test]
fn serializes_in_protobuf_json_names() {
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [shop]\n  http:\n  - match: [{uri: {prefix: /a}, ignoreUriCase: true}]\n    route:\n    - destination: {host: shop}\n    retries: {attempts: 2, perTryTimeout: 1.5s}\n    mirrorPercentage: {value: 5}\n";
    let loaded = load_str(text, "vs.yaml", &LoadOptions::default());
    let json = loaded.resources[0].spec.to_json();
    assert_eq!(json["http"][0]["match"][0]["ignoreUriCase"], true);
    assert_eq!(json["http"][0]["retries"]["perTryTimeout"], "1.5s");
    assert_eq!(json["http"][0]["mirrorPercentage"]["value"], 5.0);
    assert!(json["http"][0].get("timeout").is_none());
}
