//! Istio's analyzer table tests (`analyzers_test.go`) for the destination-rule,
//! service-entry, envoy-filter, authorization-policy, telemetry and condition analyzers, over
//! Istio's testdata in `../shared`. Like Istio, each case compares the multiset of
//! (code, `Kind ns/name`).
//!
//! Cases marked `gap` expect less than Istio does because Keel cannot read what the
//! message needs; the reason is given and the upstream expectation kept beside it.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod an2_common;

use an2_common::{load, origins, testdata};
use keel_analyze::analyzers::run_only;
use keel_analyze::{AnalysisContext, MeshConfig};

struct Case {
    name: &'static str,
    analyzer: &'static str,
    files: &'static [&'static str],
    mesh: fn() -> MeshConfig,
    /// Istio's expectation: `CODE Kind ns/name`.
    want: &'static [&'static str],
    /// Keel's expectation where it differs from Istio's, and why.
    gap: Option<(&'static str, &'static [&'static str])>,
}

fn default_mesh() -> MeshConfig {
    MeshConfig::default()
}

fn dns_auto_allocate() -> MeshConfig {
    let mut m = MeshConfig::default();
    m.proxy_metadata
        .insert("ISTIO_META_DNS_CAPTURE".into(), "true".into());
    m.proxy_metadata
        .insert("ISTIO_META_DNS_AUTO_ALLOCATE".into(), "true".into());
    m
}

fn dns_capture() -> MeshConfig {
    let mut m = MeshConfig::default();
    m.proxy_metadata
        .insert("ISTIO_META_DNS_CAPTURE".into(), "true".into());
    m
}

fn lightstep() -> MeshConfig {
    MeshConfig {
        lightstep_providers: vec!["lightstep".into()],
        ..Default::default()
    }
}

const CA: &str = "destinationrule.CaCertificateAnalyzer";
const SUBSET: &str = "destinationrule.SubsetSelectPodAnalyzer";
const SE: &str = "serviceentry.Analyzer";
const SE_CONFLICT: &str = "serviceentry.ConflictingServiceEntryProtocolAnalyzer";
const EF: &str = "envoyfilter.EnvoyPatchAnalyzer";

macro_rules! case {
    ($name:literal, $an:expr, [$($f:literal),+], $mesh:expr, [$($w:literal),*]) => {
        Case { name: $name, analyzer: $an, files: &[$($f),+], mesh: $mesh, want: &[$($w),*], gap: None }
    };
    ($name:literal, $an:expr, [$($f:literal),+], $mesh:expr, [$($w:literal),*], gap $why:literal [$($k:literal),*]) => {
        Case { name: $name, analyzer: $an, files: &[$($f),+], mesh: $mesh, want: &[$($w),*], gap: Some(($why, &[$($k),*])) }
    };
}

const CASES: &[Case] = &[
    case!(
        "destinationrule with no cacert, simple at destinationlevel",
        CA,
        ["destinationrule-simple-destination.yaml"],
        default_mesh,
        ["IST0128 DestinationRule db-tls"]
    ),
    case!(
        "destinationrule with no cacert, mutual at destinationlevel",
        CA,
        ["destinationrule-mutual-destination.yaml"],
        default_mesh,
        ["IST0128 DestinationRule db-mtls"]
    ),
    case!(
        "destinationrule with no cacert, simple at portlevel",
        CA,
        ["destinationrule-simple-port.yaml"],
        default_mesh,
        ["IST0129 DestinationRule db-tls"]
    ),
    case!(
        "destinationrule with credentialname, simple at destinationlevel, no workloadSelector",
        CA,
        ["destinationrule-simple-destination-credentialname.yaml"],
        default_mesh,
        ["IST0128 DestinationRule db-tls"]
    ),
    case!(
        "destinationrule with credentialname, simple at destinationlevel, workloadSelector",
        CA,
        ["destinationrule-simple-destination-credentialname-selector.yaml"],
        default_mesh,
        []
    ),
    case!(
        "destinationrule with credentialname, simple at portlevel, no workloadSelector",
        CA,
        ["destinationrule-simple-port-credentialname.yaml"],
        default_mesh,
        ["IST0129 DestinationRule db-tls"]
    ),
    case!(
        "destinationrule with credentialname, simple at portlevel, workloadSelector",
        CA,
        ["destinationrule-simple-port-credentialname-selector.yaml"],
        default_mesh,
        []
    ),
    case!(
        "destinationrule with no cacert, mutual at portlevel",
        CA,
        ["destinationrule-mutual-port.yaml"],
        default_mesh,
        ["IST0129 DestinationRule db-mtls"]
    ),
    case!(
        "destinationrule with no cacert, mutual at destinationlevel and simple at port level",
        CA,
        ["destinationrule-compound-simple-mutual.yaml"],
        default_mesh,
        [
            "IST0128 DestinationRule db-mtls",
            "IST0129 DestinationRule db-mtls"
        ]
    ),
    case!(
        "destinationrule with no cacert, simple at destinationlevel and mutual at port level",
        CA,
        ["destinationrule-compound-mutual-simple.yaml"],
        default_mesh,
        [
            "IST0129 DestinationRule db-mtls",
            "IST0128 DestinationRule db-mtls"
        ]
    ),
    case!(
        "destinationrule with both cacerts",
        CA,
        ["destinationrule-with-ca.yaml"],
        default_mesh,
        []
    ),
    case!(
        "DestinationRuleWithFakeHost",
        SUBSET,
        ["destinationrule-with-fake-host.yaml"],
        default_mesh,
        ["IST0174 DestinationRule default/fake-host"]
    ),
    case!(
        "DestinationRuleSubsetsNotSelectPods",
        SUBSET,
        ["destinationrule-subsets-not-select-pods.yaml"],
        default_mesh,
        ["IST0173 DestinationRule default/subsets-not-select-pods"]
    ),
    case!(
        "DestinationRuleSubsetsWithTopologyLabels",
        SUBSET,
        ["destinationrule-subsets-with-topology-labels.yaml"],
        default_mesh,
        []
    ),
    case!(
        "DestinationRuleEmptyTopologyLabels",
        SUBSET,
        ["destinationrule-empty-topology-labels.yaml"],
        default_mesh,
        ["IST0173 DestinationRule default/empty-topology-labels"]
    ),
    case!(
        "missing Addresses and Protocol in Service Entry",
        SE,
        ["serviceentry-missing-addresses-protocol.yaml"],
        default_mesh,
        [
            "IST0134 ServiceEntry default/service-entry-test-03",
            "IST0134 ServiceEntry default/service-entry-test-04",
            "IST0134 ServiceEntry default/service-entry-test-07"
        ]
    ),
    case!(
        "missing Addresses and Protocol in Service Entry with ISTIO_META_DNS_AUTO_ALLOCATE enabled",
        SE,
        ["serviceentry-missing-addresses-protocol.yaml"],
        dns_auto_allocate,
        []
    ),
    case!(
        "ServiceEntry Addresses Required Lowercase Protocol",
        SE,
        ["serviceentry-address-required-lowercase.yaml"],
        default_mesh,
        ["IST0134 ServiceEntry address-missing-lowercase"]
    ),
    case!(
        "ServiceEntry Addresses Required Uppercase Protocol",
        SE,
        ["serviceentry-address-required-uppercase.yaml"],
        default_mesh,
        ["IST0134 ServiceEntry address-missing-uppercase"]
    ),
    case!(
        "ServiceEntry Addresses Allocated",
        SE,
        ["serviceentry-address-allocated.yaml"],
        dns_capture,
        []
    ),
    // No upstream table entry yet: expectations derived from the analyzer and the files' comments.
    case!(
        "serviceentry conflicting protocol (derived)",
        SE_CONFLICT,
        ["serviceentry-conflicting-protocol.yaml"],
        default_mesh,
        [
            "IST0177 ServiceEntry default/se-https",
            "IST0177 ServiceEntry default/se-http"
        ]
    ),
    case!(
        "serviceentry no conflict (derived)",
        SE_CONFLICT,
        ["serviceentry-no-conflict-protocol.yaml"],
        default_mesh,
        []
    ),
    case!(
        "serviceentry conflicting exportTo (derived)",
        SE_CONFLICT,
        ["serviceentry-conflicting-exportto.yaml"],
        default_mesh,
        []
    ),
    case!(
        "EnvoyFilterUsesRelativeOperation",
        EF,
        ["relative-envoy-filter-operation.yaml"],
        default_mesh,
        [
            "IST0151 EnvoyFilter bookinfo/test-relative-1",
            "IST0151 EnvoyFilter bookinfo/test-relative-2",
            "IST0151 EnvoyFilter bookinfo/test-relative-3",
            "IST0155 EnvoyFilter bookinfo/test-relative-3"
        ]
    ),
    case!(
        "EnvoyFilterFilterChainMatch",
        EF,
        ["envoy-filter-filterchain.yaml"],
        default_mesh,
        []
    ),
    case!(
        "EnvoyFilterUsesAbsoluteOperation",
        EF,
        ["absolute-envoy-filter-operation.yaml"],
        default_mesh,
        []
    ),
    case!(
        "EnvoyFilterUsesReplaceOperation",
        EF,
        ["envoy-filter-replace-operation.yaml"],
        default_mesh,
        [
            "IST0152 EnvoyFilter bookinfo/test-replace-1",
            "IST0155 EnvoyFilter bookinfo/test-replace-3",
            "IST0151 EnvoyFilter bookinfo/test-replace-3"
        ]
    ),
    case!(
        "EnvoyFilterUsesAddOperation",
        EF,
        ["envoy-filter-add-operation.yaml"],
        default_mesh,
        [
            "IST0153 EnvoyFilter bookinfo/test-auth-2",
            "IST0153 EnvoyFilter bookinfo/test-auth-3"
        ]
    ),
    case!(
        "EnvoyFilterUsesRemoveOperation",
        EF,
        ["envoy-filter-remove-operation.yaml"],
        default_mesh,
        [
            "IST0151 EnvoyFilter bookinfo/test-remove-1",
            "IST0154 EnvoyFilter bookinfo/test-remove-2",
            "IST0154 EnvoyFilter bookinfo/test-remove-3",
            "IST0151 EnvoyFilter bookinfo/test-remove-5"
        ]
    ),
    case!(
        "EnvoyFilter patch operation (derived)",
        EF,
        ["envoy-filter-patch-operation.yaml"],
        default_mesh,
        [
            "IST0152 EnvoyFilter bookinfo/test-patch-1",
            "IST0151 EnvoyFilter bookinfo/test-patch-2"
        ]
    ),
    case!(
        "authorizationpolicies",
        "auth.AuthorizationPoliciesAnalyzer",
        ["authorizationpolicies.yaml"],
        default_mesh,
        [
            "IST0127 AuthorizationPolicy istio-system/meshwide-httpbin-v1",
            "IST0127 AuthorizationPolicy httpbin-empty/httpbin-empty-namespace-wide",
            "IST0127 AuthorizationPolicy httpbin/httpbin-nopods",
            "IST0101 AuthorizationPolicy httpbin/httpbin-bogus-ns",
            "IST0101 AuthorizationPolicy httpbin/httpbin-bogus-ns",
            "IST0101 AuthorizationPolicy httpbin/httpbin-bogus-not-ns",
            "IST0101 AuthorizationPolicy httpbin/httpbin-bogus-not-ns",
            "IST0127 AuthorizationPolicy test-ambient/no-workload"
        ]
    ),
    case!(
        "Analyze invalid telemetry",
        "telemetry.ProviderAnalyzer",
        ["telemetry-invalid-provider.yaml"],
        default_mesh,
        ["IST0157 Telemetry istio-system/mesh-default"]
    ),
    case!(
        "Analyze invalid telemetry (disabled)",
        "telemetry.ProviderAnalyzer",
        ["telemetry-disable-provider.yaml"],
        default_mesh,
        []
    ),
    case!(
        "telemetrySelector",
        "telemetry.SelectorAnalyzer",
        ["telemetry-selector.yaml"],
        default_mesh,
        [
            "IST0101 Telemetry default/maps-to-nonexistent",
            "IST0101 Telemetry other/maps-to-different-ns",
            "IST0159 Telemetry default/dupe-1",
            "IST0159 Telemetry default/dupe-2",
            "IST0159 Telemetry default/overlap-1",
            "IST0159 Telemetry default/overlap-2"
        ]
    ),
    case!(
        "telemetryDefaultSelector",
        "telemetry.DefaultSelectorAnalyzer",
        ["telemetry-default-selector.yaml"],
        default_mesh,
        [
            "IST0160 Telemetry ns2/has-conflict-2",
            "IST0160 Telemetry ns2/has-conflict-1"
        ]
    ),
    case!(
        "Telemetry Lightstep",
        "telemetry.LightstepAnalyzer",
        ["telemetry-lightstep.yaml"],
        lightstep,
        ["IST0002 Telemetry istio-system/mesh-default"]
    ),
    case!(
        "Condition Analyzer",
        "conditions.ConditionAnalyzer",
        ["condition-analyzer.yaml"],
        default_mesh,
        [
            "IST0171 Service default/negative-condition-svc",
            "IST0171 ServiceEntry default/negative-condition-svcEntry",
            "IST0171 AuthorizationPolicy default/negative-condition-authz",
            "IST0171 Gateway default/negative-condition-gateway",
            "IST0171 HTTPRoute default/negative-condition-httproute",
            "IST0171 GRPCRoute default/negative-condition-grpcroute",
            "IST0171 AuthorizationPolicy default/negative-condition-authz-partially-invalid"
        ]
    ),
];

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(ToString::to_string).collect();
    v.sort();
    v
}

#[test]
fn istio_table() {
    let Some(dir) = testdata() else {
        eprintln!("skipping: ../shared/istio-samples is not checked out");
        return;
    };
    let mut failures = Vec::new();
    for case in CASES {
        let texts: Vec<(String, String)> = case
            .files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
                (f.to_string(), text)
            })
            .collect();
        let files: Vec<(&str, &str)> = texts
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let (resources, problems) = load(&files);
        let ctx = AnalysisContext::new(&resources, (case.mesh)());
        let got = origins(&run_only(&ctx, &[case.analyzer]));
        let want = sorted(case.gap.map_or(case.want, |(_, keel)| keel));
        if got != want {
            failures.push(format!(
                "{}:\n  got  {got:?}\n  want {want:?}\n  load errors: {problems:#?}",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn gaps_are_documented() {
    for case in CASES {
        if let Some((why, keel)) = case.gap {
            assert!(!why.is_empty(), "{}", case.name);
            assert_ne!(
                sorted(keel),
                sorted(case.want),
                "{}: no longer a gap",
                case.name
            );
        }
    }
}
