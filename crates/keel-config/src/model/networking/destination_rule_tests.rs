//! DestinationRule validation tests, written with Keel's own fixtures. Each rule has at least
//! one accepted and one rejected case; messages are asserted in part.

use crate::{LoadOptions, load_str, validate_resources};

/// All diagnostics for a DestinationRule in namespace `ns` with the given spec (written
/// unindented), as `"<level> <field>: <message>"`.
fn diags(spec: &str) -> Vec<String> {
    let body: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    let text = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: dr, namespace: ns}}\nspec:\n{body}"
    );
    let loaded = load_str(&text, "dr.yaml", &LoadOptions::default());
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

fn errors(spec: &str) -> Vec<String> {
    diags(spec)
        .into_iter()
        .filter(|d| d.starts_with("error "))
        .collect()
}

#[track_caller]
fn accepted(spec: &str) {
    let d = diags(spec);
    assert!(
        d.is_empty(),
        "expected no findings for:\n{spec}\ngot: {d:#?}"
    );
}

#[track_caller]
fn rejected(spec: &str, want: &str) {
    let e = errors(spec);
    assert!(
        e.iter().any(|m| m.contains(want)),
        "expected an error containing {want:?} for:\n{spec}\ngot: {e:#?}"
    );
}

#[track_caller]
fn warned(spec: &str, want: &str) {
    let d = diags(spec);
    assert!(
        !d.iter().any(|m| m.starts_with("error ")),
        "unexpected errors: {d:#?}"
    );
    assert!(
        d.iter()
            .any(|m| m.starts_with("warning ") && m.contains(want)),
        "expected a warning containing {want:?}, got: {d:#?}"
    );
}

/// A rule for host `shop` with the given top-level traffic policy (YAML flow or block text
/// indented under `trafficPolicy:`).
fn policy(tp: &str) -> String {
    let body: String = tp.lines().map(|l| format!("  {l}\n")).collect();
    format!("host: shop\ntrafficPolicy:\n{body}")
}

#[test]
fn accepts_a_full_rule() {
    accepted(
        "host: reviews.prod.svc.cluster.local
trafficPolicy:
  loadBalancer:
    simple: LEAST_REQUEST
    localityLbSetting:
      distribute:
      - from: us-west/zone1/*
        to: {'us-west/zone1/*': 80, 'us-west/zone2/*': 20}
      enabled: true
    warmup: {duration: 300s, minimumPercent: 10, aggression: 1.5}
  connectionPool:
    tcp:
      maxConnections: 100
      connectTimeout: 30ms
      tcpKeepalive: {probes: 3, time: 7200s, interval: 75s}
      maxConnectionDuration: 1h
      idleTimeout: 10m
    http:
      http1MaxPendingRequests: 10
      http2MaxRequests: 1000
      maxRequestsPerConnection: 10
      maxRetries: 3
      idleTimeout: 30s
      h2UpgradePolicy: DO_NOT_UPGRADE
      useClientProtocol: true
      maxConcurrentStreams: 100
      http2KeepAlive: {interval: 15s, timeout: 5s}
  outlierDetection:
    consecutive5xxErrors: 7
    consecutiveGatewayErrors: 3
    splitExternalLocalOriginErrors: true
    consecutiveLocalOriginFailures: 2
    interval: 5m
    baseEjectionTime: 15m
    maxEjectionPercent: 50
    minHealthPercent: 20
  tls:
    mode: SIMPLE
    caCertificates: /etc/certs/ca.pem
    subjectAltNames: [reviews.example.com]
    sni: reviews.example.com
    caCrl: /etc/certs/crl.pem
  portLevelSettings:
  - port: {number: 9080}
    loadBalancer: {simple: ROUND_ROBIN}
  retryBudget: {percent: 25, minRetryConcurrency: 3}
subsets:
- name: v1
  labels: {version: v1}
- name: v2
  labels: {version: v2}
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie:
          name: user
          path: /
          ttl: 0s
          attributes: [{name: SameSite, value: Strict}, {name: Secure}]
        ringHash: {minimumRingSize: 2048}
exportTo: ['.', web]",
    );
    // Enum values by number, the deprecated LEAST_CONN, and old API versions.
    accepted(&policy("loadBalancer: {simple: 1}"));
    accepted(&policy("loadBalancer: {simple: LEAST_CONN}"));
    accepted("host: '*.example.com'\ntrafficPolicy: {tls: {mode: SIMPLE}}");
}

#[test]
fn host() {
    rejected("subsets: [{name: v1}]", "spec.host: Required value");
    rejected(
        "host: bad_host",
        "spec.host: domain name \"bad_host\" invalid",
    );
    rejected(
        "host: 10.0.0.1",
        "top level domain \"1\" cannot be all-numeric",
    );
    accepted("host: reviews");
    accepted("host: '*'");
}

#[test]
fn subsets() {
    rejected(
        "host: shop\nsubsets:\n- name: v1\n- name: v1",
        "spec.subsets[1].name: duplicate subset names: v1",
    );
    rejected(
        "host: shop\nsubsets:\n- labels: {version: v1}",
        "subset name cannot be empty",
    );
    rejected(
        "host: shop\nsubsets:\n- name: v1.0",
        "subset name is invalid: v1.0",
    );
    rejected(
        "host: shop\nsubsets:\n- name: v1\n  labels: {version: 'v 1'}",
        "spec.subsets[0].labels.version: invalid tag value: \"v 1\"",
    );
    rejected(
        "host: shop\nsubsets:\n- name: v1\n  trafficPolicy: {}",
        "spec.subsets[0].trafficPolicy: traffic policy must have at least one field",
    );
    // A subset without labels is legal (e.g. SNI-based subsets at an egress gateway).
    accepted(
        "host: shop\nsubsets:\n- name: Canary\n  trafficPolicy: {tls: {mode: SIMPLE, sni: a.example.com}}",
    );
}

#[test]
fn traffic_policy_shape() {
    rejected(&policy("{}"), "traffic policy must have at least one field");
    rejected(
        &policy(
            "tunnel: {targetHost: proxy.example.com, targetPort: 443}\nproxyProtocol: {version: V2}",
        ),
        "tunnel and proxyProtocol must not be set together",
    );
    accepted(&policy("proxyProtocol: {version: V2}"));
    accepted(&policy("retryBudget: {percent: 0}"));
    rejected(
        &policy("retryBudget: {percent: 100.5}"),
        "spec.trafficPolicy.retryBudget.percent: Invalid value: 100.5",
    );
    let e = errors(&policy("proxyProtocol: {version: V3}"));
    assert!(
        e.iter().any(|m| m.contains("unknown value \"V3\"")),
        "{e:?}"
    );
}

#[test]
fn tunnels() {
    accepted(&policy(
        "tunnel: {protocol: POST, targetHost: 10.0.0.5, targetPort: 8080}",
    ));
    accepted(&policy(
        "tunnel: {targetHost: egress.example.com, targetPort: 3128}",
    ));
    rejected(
        &policy("tunnel: {protocol: PUT, targetHost: a.com, targetPort: 1}"),
        "tunnel protocol must be \"CONNECT\" or \"POST\"",
    );
    rejected(
        &policy("tunnel: {targetHost: 'not a host', targetPort: 1}"),
        "tunnel target host must be valid FQDN or IP address",
    );
    rejected(
        &policy("tunnel: {targetPort: 1}"),
        "spec.trafficPolicy.tunnel.targetHost: Required value",
    );
    rejected(
        &policy("tunnel: {targetHost: a.com}"),
        "tunnel target port is invalid: port number 0 must be in the range 1..65535",
    );
}

#[test]
fn outlier_detection() {
    warned(
        &policy("outlierDetection: {consecutiveErrors: 5}"),
        "outlier detection consecutive errors is deprecated",
    );
    rejected(
        &policy("outlierDetection: {consecutiveLocalOriginFailures: 3}"),
        "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
    );
    accepted(&policy(
        "outlierDetection: {consecutiveLocalOriginFailures: 0}",
    ));
    rejected(
        &policy("outlierDetection: {maxEjectionPercent: 101}"),
        "spec.trafficPolicy.outlierDetection.maxEjectionPercent: percentage 101 is not in range 0..100",
    );
    rejected(
        &policy("outlierDetection: {minHealthPercent: -1}"),
        "percentage -1 is not in range 0..100",
    );
    rejected(
        &policy("outlierDetection: {interval: 0s}"),
        "spec.trafficPolicy.outlierDetection.interval: duration must be greater than 1ms",
    );
    rejected(
        &policy("outlierDetection: {baseEjectionTime: 1.5ms}"),
        "only durations to ms precision are supported",
    );
    let e = errors(&policy("outlierDetection: {consecutive5xxErrors: -1}"));
    assert!(
        e.iter().any(|m| m.contains("consecutive5xxErrors")),
        "{e:?}"
    );
}

#[test]
fn connection_pools() {
    rejected(
        &policy("connectionPool: {}"),
        "connection pool must have at least one field",
    );
    for field in [
        "http1MaxPendingRequests",
        "http2MaxRequests",
        "maxRequestsPerConnection",
        "maxRetries",
        "maxConcurrentStreams",
    ] {
        rejected(
            &policy(&format!("connectionPool: {{http: {{{field}: -1}}}}")),
            "must be non-negative",
        );
    }
    rejected(
        &policy("connectionPool: {tcp: {maxConnections: -1}}"),
        "max connections must be non-negative",
    );
    rejected(
        &policy("connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}"),
        "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
    );
    for field in ["connectTimeout", "maxConnectionDuration", "idleTimeout"] {
        rejected(
            &policy(&format!("connectionPool: {{tcp: {{{field}: 0s}}}}")),
            &format!(
                "spec.trafficPolicy.connectionPool.tcp.{field}: duration must be greater than 1ms"
            ),
        );
    }
    rejected(
        &policy("connectionPool: {tcp: {tcpKeepalive: {time: 0.1ms}}}"),
        "tcpKeepalive.time: duration must be greater than 1ms",
    );
    rejected(
        &policy("connectionPool: {http: {idleTimeout: 0s}}"),
        "http.idleTimeout: duration must be greater than 1ms",
    );
    rejected(
        &policy("connectionPool: {http: {http2KeepAlive: {interval: 0s}}}"),
        "http2KeepAlive.interval: duration must be greater than 1ms",
    );
    let e = errors(&policy("connectionPool: {http: {h2UpgradePolicy: ALWAYS}}"));
    assert!(
        e.iter().any(|m| m.contains("unknown value \"ALWAYS\"")),
        "{e:?}"
    );
}

#[test]
fn load_balancer_choices() {
    rejected(
        &policy("loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}"),
        "only one of simple or consistentHash",
    );
    accepted(&policy(
        "loadBalancer: {consistentHash: {httpHeaderName: x-user}}",
    ));
    accepted(&policy(
        "loadBalancer: {consistentHash: {httpQueryParameterName: user}}",
    ));
    accepted(&policy(
        "loadBalancer: {consistentHash: {useSourceIp: false, maglev: {tableSize: 65537}}}",
    ));
    rejected(
        &policy("loadBalancer: {consistentHash: {httpHeaderName: x-user, useSourceIp: true}}"),
        "only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName",
    );
    rejected(
        &policy(
            "loadBalancer: {consistentHash: {useSourceIp: true, ringHash: {}, maglev: {tableSize: 7}}}",
        ),
        "only one of ringHash or maglev",
    );
    rejected(
        &policy("loadBalancer: {consistentHash: {httpCookie: {ttl: 10s}}}"),
        "name required for HttpCookie",
    );
    rejected(
        &policy(
            "loadBalancer: {consistentHash: {httpCookie: {name: c, attributes: [{value: x}]}}}",
        ),
        "a cookie attribute needs a name",
    );
    warned(
        &policy("loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 1024}}"),
        "consistent hash MinimumRingSize is deprecated",
    );
    rejected(
        &policy(
            "loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 1024, ringHash: {minimumRingSize: 10}}}",
        ),
        "only one of MinimumRingSize or Maglev/Ringhash can be specified",
    );
    rejected(
        &policy("loadBalancer: {consistentHash: {useSourceIp: true, maglev: {}}}"),
        "tableSize must be set for maglev",
    );
    rejected(
        &policy("loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 65536}}}"),
        "tableSize must be a prime number for maglev",
    );
    rejected(
        &policy(
            "loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 5000011}}}",
        ),
        "tableSize must be less than 5000011 for maglev",
    );
}

#[test]
fn warmup() {
    accepted(&policy(
        "loadBalancer: {simple: ROUND_ROBIN, warmupDurationSecs: 60s}",
    ));
    rejected(
        &policy("loadBalancer: {warmupDurationSecs: 0s}"),
        "warmupDurationSecs: duration must be greater than 1ms",
    );
    rejected(
        &policy("loadBalancer: {warmup: {minimumPercent: 5}}"),
        "spec.trafficPolicy.loadBalancer.warmup.duration: Required value",
    );
    rejected(
        &policy("loadBalancer: {warmup: {duration: 0s}}"),
        "warmup.duration: Invalid value: 0s: must be a valid duration greater than 1ms",
    );
    rejected(
        &policy("loadBalancer: {warmup: {duration: 10s, minimumPercent: 100.1}}"),
        "warmup.minimumPercent: Invalid value: 100.1",
    );
    rejected(
        &policy("loadBalancer: {warmup: {duration: 10s, aggression: -1}}"),
        "warmup.aggression: Invalid value: -1",
    );
    accepted(&policy(
        "loadBalancer: {warmup: {duration: 10s, minimumPercent: 0, aggression: 0}}",
    ));
}

#[test]
fn locality_load_balancing() {
    accepted(&policy(
        "outlierDetection: {consecutive5xxErrors: 5}\nloadBalancer:\n  localityLbSetting:\n    failover: [{from: us-east, to: eu-west}]\n    failoverPriority: [topology.istio.io/network]",
    ));
    rejected(
        &policy(
            "loadBalancer:\n  localityLbSetting:\n    distribute: [{from: a, to: {b: 100}}]\n    failover: [{from: a, to: b}]",
        ),
        "can not simultaneously specify 'distribute' and 'failover'",
    );
    rejected(
        &policy(
            "loadBalancer:\n  localityLbSetting:\n    failover: [{from: a, to: b}]\n    failoverPriority: [topology.kubernetes.io/zone]",
        ),
        "can not simultaneously set 'failover' and topology label 'topology.kubernetes.io/zone' in 'failover_priority'",
    );
    rejected(
        &policy(
            "loadBalancer:\n  localityLbSetting:\n    distribute: [{from: a, to: {b: 60, c: 30}}]",
        ),
        "total locality weight 90 != 100",
    );
    rejected(
        &policy(
            "loadBalancer:\n  localityLbSetting:\n    distribute: [{from: a, to: {b: 0, c: 100}}]",
        ),
        "locality weight must be in range [1, 100]",
    );
    rejected(
        &policy(
            "loadBalancer:\n  localityLbSetting:\n    distribute: [{from: 'a/*/c', to: {b: 100}}]",
        ),
        "locality a/*/c wildcard '*' number can not exceed 1 and must be in the end",
    );
    rejected(
        &policy(
            "loadBalancer:\n  localityLbSetting:\n    distribute: [{from: a, to: {'b/*': 50, 'b/z1': 50}}]",
        ),
        "overlap with previous specified ones",
    );
    rejected(
        &policy(
            "loadBalancer:\n  localityLbSetting:\n    distribute: [{from: 'a//c', to: {b: 100}}]",
        ),
        "must not contain empty region/zone/subzone info",
    );
    rejected(
        &policy(
            "outlierDetection: {interval: 1s}\nloadBalancer:\n  localityLbSetting:\n    failover: [{from: us-east, to: us-east}]",
        ),
        "locality lb failover settings must specify different regions",
    );
    rejected(
        &policy(
            "outlierDetection: {interval: 1s}\nloadBalancer:\n  localityLbSetting:\n    failover: [{from: us-east/z1, to: eu}]",
        ),
        "locality lb failover only specify region",
    );
    rejected(
        &policy(
            "outlierDetection: {interval: 1s}\nloadBalancer:\n  localityLbSetting:\n    failover: [{from: 'us-*', to: eu}]",
        ),
        "should not contain '*' wildcard",
    );
    warned(
        &policy(
            "loadBalancer:\n  localityLbSetting:\n    failover: [{from: us-east, to: eu-west}]",
        ),
        "outlier detection policy must be provided for failover",
    );
}

#[test]
fn client_tls() {
    accepted(&policy(
        "tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}",
    ));
    accepted(&policy("tls: {mode: MUTUAL, credentialName: client-cert}"));
    accepted(&policy(
        "tls: {mode: ISTIO_MUTUAL, sni: shop.example.com, subjectAltNames: [spiffe://td/ns/a/sa/b]}",
    ));
    accepted(&policy("tls: {mode: SIMPLE, insecureSkipVerify: true}"));
    accepted(&policy("tls: {mode: DISABLE}"));
    rejected(
        &policy("tls: {mode: MUTUAL}"),
        "client certificate required for mutual tls",
    );
    rejected(
        &policy("tls: {mode: MUTUAL, clientCertificate: /c.pem}"),
        "spec.trafficPolicy.tls.privateKey: private key required for mutual tls",
    );
    rejected(
        &policy("tls: {mode: SIMPLE, credentialName: c, caCertificates: /ca.pem}"),
        "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
    );
    rejected(
        &policy("tls: {mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [a]}"),
        "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
    );
    rejected(
        &policy(
            "tls: {mode: MUTUAL, insecureSkipVerify: true, credentialName: c, caCertificates: /ca.pem}",
        ),
        "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true",
    );
    warned(
        &policy("tls: {mode: ISTIO_MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}"),
        "ISTIO_MUTUAL uses Istio's own workload certificates; clientCertificate, privateKey will be ignored",
    );
    let e = errors(&policy("tls: {mode: MUTAL}"));
    assert!(
        e.iter().any(|m| m.contains("did you mean \"MUTUAL\"")),
        "{e:?}"
    );
}

#[test]
fn port_level_settings() {
    rejected(
        &policy("portLevelSettings:\n- loadBalancer: {simple: RANDOM}"),
        "spec.trafficPolicy.portLevelSettings[0]: portTrafficPolicy must have valid port",
    );
    rejected(
        &policy("portLevelSettings:\n- port: {number: 80}"),
        "port traffic policy must have at least one field",
    );
    warned(
        &policy("portLevelSettings:\n- port: {number: 0}\n  tls: {mode: SIMPLE}"),
        "port number 0 must be in the range 1..65535; this port-level setting never applies",
    );
    rejected(
        &policy("portLevelSettings:\n- port: {number: 443}\n  tls: {mode: MUTUAL}"),
        "portLevelSettings[0].tls.clientCertificate: client certificate required",
    );
    rejected(
        &policy("portLevelSettings:\n- port: {number: 443}\n  connectionPool: {}"),
        "portLevelSettings[0].connectionPool: connection pool must have at least one field",
    );
    // Tunnel settings do not exist per port.
    let e = errors(&policy(
        "portLevelSettings:\n- port: {number: 443}\n  tunnel: {targetHost: a, targetPort: 1}",
    ));
    assert!(
        e.iter().any(|m| m.contains("unknown field \"tunnel\"")),
        "{e:?}"
    );
}

#[test]
fn export_to_and_workload_selector() {
    accepted("host: shop\nexportTo: ['*']");
    rejected(
        "host: shop\nexportTo: ['*', '.']",
        "cannot have both public (*) and non-public exportTo values",
    );
    accepted("host: shop\nworkloadSelector: {matchLabels: {app: web}}\nexportTo: ['.']");
    accepted("host: shop\nworkloadSelector: {matchLabels: {app: web}}\nexportTo: [ns]");
    rejected(
        "host: shop\nworkloadSelector: {matchLabels: {app: web}}\nexportTo: ['.', other]",
        "destination rule with workload selector cannot have multiple entries in exportTo",
    );
    rejected(
        "host: shop\nworkloadSelector: {matchLabels: {app: web}}\nexportTo: ['*']",
        "destination rule with workload selector cannot have exportTo beyond current namespace",
    );
    rejected(
        "host: shop\nworkloadSelector: {matchLabels: {app: 'web*'}}",
        "wildcard not allowed in label value match",
    );
    warned(
        "host: shop\nworkloadSelector: {}",
        "workload selector specified without labels",
    );
}
