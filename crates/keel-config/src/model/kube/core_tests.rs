use crate::Spec;
use crate::model::kube::checks::check_yaml;

fn load(text: &str) -> Spec {
    let loaded = crate::load_str(text, "k.yaml", &crate::LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    loaded.resources[0].spec.clone()
}

#[test]
fn namespaces() {
    let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bookinfo\n  labels: {istio-injection: enabled}\nspec: {finalizers: [kubernetes]}\nstatus: {phase: Terminating}\n";
    assert!(check_yaml(text).is_empty(), "{:?}", check_yaml(text));
    let Spec::Namespace(ns) = load(text) else {
        panic!("not a namespace")
    };
    assert!(ns.is_terminating());
    assert_eq!(
        ns.spec.map(|s| s.finalizers),
        Some(vec!["kubernetes".to_string()])
    );
    // A DNS subdomain is a fine object name, but not a namespace name.
    let e = check_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: team.prod}\n");
    assert!(
        e[0].contains(
            "metadata.name: Invalid value: \"team.prod\": a namespace name must be a DNS label"
        ),
        "{e:?}"
    );
}

#[test]
fn service_accounts() {
    let text = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: bookinfo-reviews, labels: {account: reviews}}\nautomountServiceAccountToken: false\nsecrets: [{name: tok}]\nimagePullSecrets: [{name: regcred}]\n";
    assert!(check_yaml(text).is_empty(), "{:?}", check_yaml(text));
    let Spec::ServiceAccount(sa) = load(text) else {
        panic!("not a service account")
    };
    assert_eq!(sa.automount_service_account_token, Some(false));
    assert_eq!(sa.secrets[0].name, "tok");
    assert_eq!(sa.image_pull_secrets[0].name, "regcred");
}

#[test]
fn config_maps() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |-\n    defaultConfig:\n      discoveryAddress: istiod:15012\n  meshNetworks: 'networks: {}'\nbinaryData:\n  blob: aGk=\n";
    assert!(check_yaml(text).is_empty(), "{:?}", check_yaml(text));
    let Spec::ConfigMap(cm) = load(text) else {
        panic!("not a config map")
    };
    assert!(cm.get("mesh").is_some_and(|m| m.contains("istiod:15012")));
    assert_eq!(cm.get_binary("blob"), Some(Ok(b"hi".to_vec())));
    assert_eq!(cm.get_binary("none"), None);

    let e = check_yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  a/b: x\n  same: z\nbinaryData:\n  same: aGk=\n  bad: '!!'\n",
    );
    assert!(
        e[0].contains("k.yaml:5:8")
            && e[0].contains("data.a/b: Invalid value: \"a/b\": a valid config key"),
        "{e:?}"
    );
    assert!(
        e[1].contains("binaryData.bad: illegal base64 data at input byte 0"),
        "{e:?}"
    );
    assert!(
        e[2].contains("binaryData.same: Invalid value: \"same\": duplicate of key present in data"),
        "{e:?}"
    );
    // Values must be strings, as in Kubernetes.
    let e =
        check_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {port: 8080}\n");
    assert!(
        e[0].contains("data.port") && e[0].contains("quote it"),
        "{e:?}"
    );
}
