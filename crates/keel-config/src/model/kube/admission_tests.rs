use super::*;
use crate::Spec;
use crate::model::kube::checks::check_yaml;

fn load(text: &str) -> crate::Resource {
    let loaded = crate::load_str(text, "k.yaml", &crate::LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    loaded.resources[0].clone()
}

const INJECTOR: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: istio-sidecar-injector
  labels: {istio.io/rev: default}
webhooks:
- name: rev.namespace.sidecar-injector.istio.io
  admissionReviewVersions: [v1, v1beta1]
  clientConfig:
    service: {name: istiod, namespace: istio-system, path: /inject, port: 443}
    caBundle: Y2E=
  failurePolicy: Fail
  sideEffects: None
  timeoutSeconds: 10
  reinvocationPolicy: Never
  namespaceSelector:
    matchExpressions:
    - {key: istio.io/rev, operator: In, values: [default]}
    - {key: istio-injection, operator: DoesNotExist}
  objectSelector:
    matchExpressions:
    - {key: sidecar.istio.io/inject, operator: NotIn, values: ["false"]}
  rules:
  - operations: [CREATE]
    apiGroups: [""]
    apiVersions: [v1]
    resources: [pods]
  matchConditions:
  - {name: not-kube-system, expression: "request.namespace != 'kube-system'"}
  someFutureField: ignored
"#;

#[test]
fn mutating_webhook_configurations() {
    assert!(
        check_yaml(INJECTOR).is_empty(),
        "{:?}",
        check_yaml(INJECTOR)
    );
    let r = load(INJECTOR);
    assert_eq!(r.namespace(), "", "cluster-scoped: no default namespace");
    let Spec::MutatingWebhookConfiguration(m) = &r.spec else {
        panic!("not a mutating webhook configuration")
    };
    let h = &m.webhooks[0];
    assert_eq!(h.name, "rev.namespace.sidecar-injector.istio.io");
    let svc = h.client_config.service.as_ref().expect("service");
    assert_eq!(
        (svc.namespace.as_str(), svc.name.as_str()),
        ("istio-system", "istiod")
    );
    assert_eq!(svc.port, Some(443));
    assert_eq!(h.client_config.ca_bundle.as_deref(), Some("Y2E="));
    assert_eq!(h.rules[0].resources, vec!["pods".to_string()]);
    assert_eq!(h.admission_review_versions, vec!["v1", "v1beta1"]);

    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(h.selects(&labels(&[("istio.io/rev", "default")]), &labels(&[])));
    assert!(!h.selects(
        &labels(&[("istio.io/rev", "default")]),
        &labels(&[("sidecar.istio.io/inject", "false")])
    ));
    assert!(!h.selects(
        &labels(&[("istio.io/rev", "default"), ("istio-injection", "enabled")]),
        &labels(&[])
    ));
    assert!(!h.selects(&labels(&[]), &labels(&[])));
    // No selector selects everything; an invalid one (In without values) nothing.
    let open = Webhook::default();
    assert!(open.selects(&labels(&[]), &labels(&[("a", "b")])));
    let mut broken = LabelSelector::default();
    broken
        .match_expressions
        .push(crate::model::kube::LabelSelectorRequirement {
            key: "istio-injection".into(),
            operator: Some(crate::model::kube::SelectorOperator::NotIn),
            values: vec![],
        });
    assert!(!selector_matches(Some(&broken), &labels(&[])));
    assert!(selector_matches(None, &labels(&[])));
}

#[test]
fn validating_webhook_configurations() {
    let text = "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: istio-validator-istio-system}\nwebhooks:\n- name: rev.validation.istio.io\n  clientConfig: {url: 'https://istiod.example.com:15017/validate'}\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  failurePolicy: Ignore\n";
    assert!(check_yaml(text).is_empty(), "{:?}", check_yaml(text));
    let Spec::ValidatingWebhookConfiguration(v) = load(text).spec else {
        panic!("not a validating webhook configuration")
    };
    assert_eq!(
        v.webhooks[0].client_config.url.as_deref(),
        Some("https://istiod.example.com:15017/validate")
    );
    // Only v1 is served.
    let old = text.replace(
        "admissionregistration.k8s.io/v1\n",
        "admissionregistration.k8s.io/v1beta1\n",
    );
    let e = check_yaml(&old);
    assert!(
        e[0].contains("not served at apiVersion \"admissionregistration.k8s.io/v1beta1\""),
        "{e:?}"
    );
}

fn mwc(hook: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: m}}\nwebhooks:\n- {hook}\n"
    )
}

/// The one diagnostic for `hook`.
fn one(hook: &str) -> String {
    let e = check_yaml(&mwc(hook));
    assert_eq!(e.len(), 1, "{hook}: {e:?}");
    e[0].clone()
}

const OK: &str = "sideEffects: None\n  admissionReviewVersions: [v1]\n  ";

#[test]
fn webhook_rules() {
    let ok = format!("name: a.b.io\n  {OK}clientConfig: {{service: {{name: s, namespace: ns}}}}");
    assert!(
        check_yaml(&mwc(&ok)).is_empty(),
        "{:?}",
        check_yaml(&mwc(&ok))
    );

    let e = one(&format!(
        "name: injector.io\n  {OK}clientConfig: {{url: 'https://h/'}}"
    ));
    assert!(
        e.contains("k.yaml:5:9: warning: MutatingWebhookConfiguration m: webhooks[0].name: Invalid value: \"injector.io\": should be a domain with at least three segments"),
        "{e}"
    );
    let e = one(&format!(
        "name: A.b.io\n  {OK}clientConfig: {{url: 'https://h/'}}"
    ));
    assert!(
        e.contains("webhooks[0].name: Invalid value: \"A.b.io\": a lowercase RFC 1123 subdomain"),
        "{e}"
    );
    let e = one(&format!("{OK}clientConfig: {{url: 'https://h/'}}"));
    assert!(e.contains("webhooks[0].name: Required value"), "{e}");
    let e = check_yaml(&format!(
        "{}- name: a.b.io\n  {OK}clientConfig: {{url: 'https://h/'}}\n",
        mwc(&format!(
            "name: a.b.io\n  {OK}clientConfig: {{url: 'https://h/'}}"
        ))
    ));
    assert!(
        e.len() == 1 && e[0].contains("webhooks[1].name: Duplicate value: \"a.b.io\""),
        "{e:?}"
    );

    let e =
        one("name: a.b.io\n  admissionReviewVersions: [v1]\n  clientConfig: {url: 'https://h/'}");
    assert!(
        e.contains(
            "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun"
        ),
        "{e}"
    );
    let e = one(&format!(
        "name: a.b.io\n  {OK}failurePolicy: fail\n  clientConfig: {{url: 'https://h/'}}"
    ));
    assert!(
        e.contains("webhooks[0].failurePolicy: Unsupported value: \"fail\" (did you mean \"Fail\"?); supported values: \"Fail\", \"Ignore\""),
        "{e}"
    );
    let e = one(&format!(
        "name: a.b.io\n  {OK}timeoutSeconds: 31\n  clientConfig: {{url: 'https://h/'}}"
    ));
    assert!(
        e.contains(
            "timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds"
        ),
        "{e}"
    );

    let e = one("name: a.b.io\n  sideEffects: None\n  clientConfig: {url: 'https://h/'}");
    assert!(
        e.contains("admissionReviewVersions: Required value: must specify one of v1, v1beta1"),
        "{e}"
    );
    let e = check_yaml(&mwc(
        "name: a.b.io\n  sideEffects: None\n  admissionReviewVersions: [v2, v2]\n  clientConfig: {url: 'https://h/'}",
    ));
    assert!(
        e[0].contains("admissionReviewVersions[1]: Invalid value: \"v2\": duplicate version"),
        "{e:?}"
    );
    assert!(
        e[1].contains(
            "admissionReviewVersions: Invalid value: must include at least one of v1, v1beta1"
        ),
        "{e:?}"
    );

    let e = one(&format!(
        "name: a.b.io\n  {OK}rules: [{{operations: [create], apiGroups: [''], apiVersions: [v1], resources: [pods]}}]\n  clientConfig: {{url: 'https://h/'}}"
    ));
    assert!(
        e.contains(
            "rules[0].operations[0]: Unsupported value: \"create\" (did you mean \"CREATE\"?)"
        ),
        "{e}"
    );
    let e = one(&format!(
        "name: a.b.io\n  {OK}rules: [{{operations: ['*'], apiVersions: [v1], resources: [pods], scope: Namespaced}}]\n  clientConfig: {{url: 'https://h/'}}"
    ));
    assert!(e.contains("rules[0].apiGroups: Required value"), "{e}");
}

#[test]
fn validating_webhooks_have_no_reinvocation_policy() {
    let text = format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: v}}\nwebhooks:\n- name: a.b.io\n  {OK}reinvocationPolicy: IfNeeded\n  clientConfig: {{url: 'https://h/'}}\n"
    );
    let e = check_yaml(&text);
    assert!(
        e.len() == 1 && e[0].contains("reinvocationPolicy: unknown field"),
        "{e:?}"
    );
}

#[test]
fn selectors_must_be_valid() {
    let e = check_yaml(&mwc(&format!(
        "name: a.b.io\n  {OK}clientConfig: {{url: 'https://h/'}}\n  namespaceSelector:\n    matchExpressions: [{{key: istio-injection, operator: In}}]"
    )));
    assert!(
        e.len() == 1
            && e[0].contains("error")
            && e[0].contains("namespaceSelector.matchExpressions[0].values: Required value"),
        "{e:?}"
    );
    let e = check_yaml(&mwc(&format!(
        "name: a.b.io\n  {OK}clientConfig: {{url: 'https://h/'}}\n  objectSelector: {{matchLabels: {{'bad key!': x}}}}"
    )));
    assert!(
        e.len() == 1 && e[0].contains("objectSelector.matchLabels.bad key!: invalid label key"),
        "{e:?}"
    );
}

#[test]
fn client_configs() {
    let e = one(&format!("name: a.b.io\n  {OK}clientConfig: {{}}"));
    assert!(
        e.contains("k.yaml:8:3: warning: MutatingWebhookConfiguration m: webhooks[0].clientConfig: Required value: exactly one of url or service is required"),
        "{e}"
    );
    let e = one(&format!(
        "name: a.b.io\n  {OK}clientConfig: {{url: 'https://h/', service: {{name: s, namespace: ns}}}}"
    ));
    assert!(e.contains("exactly one of url or service"), "{e}");

    let url = |u: &str| {
        check_yaml(&mwc(&format!(
            "name: a.b.io\n  {OK}clientConfig: {{url: '{u}'}}"
        )))
    };
    assert!(url("https://istiod.example.com:15017/inject").is_empty());
    let e = url("http://h/");
    assert!(e.len() == 1 && e[0].contains("clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]"), "{e:?}");
    let e = url("https:///inject");
    assert!(
        e.len() == 1 && e[0].contains("host must be specified"),
        "{e:?}"
    );
    let e = url("https://u@h/?a=b#c");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].contains("user information is not permitted"), "{e:?}");
    assert!(
        e[1].contains("Invalid value: \"c\": fragments are not permitted"),
        "{e:?}"
    );
    assert!(
        e[2].contains("Invalid value: \"a=b\": query parameters are not permitted"),
        "{e:?}"
    );
    let e = url("https://h:x/");
    assert!(
        e.len() == 1 && e[0].contains("Required value: url must be a valid URL: parse \"https://h:x/\": invalid port \":x\" after host"),
        "{e:?}"
    );

    let svc = |s: &str| {
        check_yaml(&mwc(&format!(
            "name: a.b.io\n  {OK}clientConfig: {{service: {s}}}"
        )))
    };
    assert!(
        svc(
            "{name: istiod, namespace: istio-system, path: /inject/cluster/c1/net/n1, port: 15017}"
        )
        .is_empty()
    );
    let e = svc("{port: 0}");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].contains("clientConfig.service.name: Required value: service name is required"),
        "{e:?}"
    );
    assert!(
        e[1].contains("clientConfig.service.namespace: Required value"),
        "{e:?}"
    );
    assert!(
        e[2].contains("clientConfig.service.port: Invalid value: 0: port is not valid"),
        "{e:?}"
    );
    let e = svc("{name: s, namespace: ns, path: inject}");
    assert!(
        e.len() == 1 && e[0].contains("path: Invalid value: \"inject\": must start with a '/'"),
        "{e:?}"
    );
    let e = svc("{name: s, namespace: ns, path: '/a//B/'}");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].contains("segment[1] may not be empty"), "{e:?}");
    assert!(
        e[1].contains("segment[2]: a lowercase RFC 1123 subdomain"),
        "{e:?}"
    );
    let e = svc("{name: s, namespace: ns, path: '//'}");
    assert!(
        e.len() == 1 && e[0].contains("segment[0] may not be empty"),
        "{e:?}"
    );
}
