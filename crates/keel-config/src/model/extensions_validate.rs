//! Istio's `ValidateWasmPlugin` plus the WasmPlugin CRD schema rules.

use std::collections::BTreeSet;

use super::{EnvValueSource, TrafficSelector, VmConfig, WasmPlugin};
use crate::validate::common::{
    check_list_max, parse_request_uri, reject_dry_run_annotation, validate_policy_selection,
};
use crate::validate::{Validate, Validator};

impl Validate for WasmPlugin {
    fn validate(&self, v: &mut Validator) {
        reject_dry_run_annotation(v);
        v.field("spec", |v| {
            validate_policy_selection(
                v,
                self.selector.as_ref(),
                self.target_ref.as_ref(),
                &self.target_refs,
            );
            v.field("url", |v| validate_url(v, &self.url));
            if !is_sha256(&self.sha256) {
                v.error_at(
                    "sha256",
                    "in body should match '(^$|^[a-f0-9]{64}$)': sha256 field must be 64 lower-case hex characters",
                );
            }
            if let Some(s) = &self.image_pull_secret {
                v.field("imagePullSecret", |v| check_length(v, s, 253));
            }
            if let Some(s) = &self.plugin_name {
                v.field("pluginName", |v| check_length(v, s, 256));
            }
            if let Some(vm) = &self.vm_config {
                v.field("vmConfig", |v| validate_vm_config(v, vm));
            }
            v.field("match", |v| {
                for (i, m) in self.match_.iter().enumerate() {
                    v.index(i, |v| validate_match(v, m));
                }
            });
        });
    }
}

/// The CRD's scheme rule and Istio's `validateWasmPluginURL`: a URL, or a host/path that
/// becomes one with `http://` in front; scheme http, https, file or oci.
fn validate_url(v: &mut Validator, url: &str) {
    if url.is_empty() {
        return v
            .error("Required value: url field needs to be set; e.g. oci://registry/plugin:tag");
    }
    let scheme = parse_request_uri(url).or_else(|_| parse_request_uri(&format!("http://{url}")));
    match scheme {
        Ok(s) if matches!(s.as_str(), "" | "http" | "https" | "file" | "oci") => {}
        Ok(s) => v.error(format!(
            "url must have schema one of [http, https, file, oci] (url contains unsupported scheme: {s})"
        )),
        Err(e) => v.error(format!(
            "url must have schema one of [http, https, file, oci] (failed to parse url: {e})"
        )),
    }
}

fn is_sha256(s: &str) -> bool {
    s.is_empty() || (s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// `minLength: 1` and `maxLength` of an optional string that is present.
fn check_length(v: &mut Validator, s: &str, max: usize) {
    if s.is_empty() {
        v.error("in body should be at least 1 chars long");
    } else if s.len() > max {
        v.error(format!("Too long: may not be longer than {max}"));
    }
}

fn validate_vm_config(v: &mut Validator, vm: &VmConfig) {
    v.field("env", |v| {
        check_list_max(v, vm.env.len(), 256);
        let mut seen = BTreeSet::new();
        for (i, env) in vm.env.iter().enumerate() {
            v.index(i, |v| {
                if env.name.is_empty() {
                    v.error_at("name", "in body should be at least 1 chars long: name the environment variable");
                } else if env.name.len() > 256 {
                    v.error_at("name", "Too long: may not be longer than 256");
                } else if !seen.insert(env.name.as_str()) {
                    v.error(format!(
                        "Duplicate value: {{\"name\":\"{}\"}}: environment variable names must be unique",
                        env.name
                    ));
                }
                let Some(value) = &env.value else { return };
                if value.len() > 2048 {
                    v.error_at("value", "Too long: may not be longer than 2048");
                }
                if env.value_from == EnvValueSource::Host {
                    v.error_at(
                        "value",
                        "value may only be set when valueFrom is INLINE: remove value to take it from the proxy's environment",
                    );
                }
            });
        }
    });
}

fn validate_match(v: &mut Validator, m: &TrafficSelector) {
    v.field("ports", |v| {
        let mut seen = BTreeSet::new();
        for (i, p) in m.ports.iter().enumerate() {
            v.index(i, |v| match p.number {
                None => v.error_at("number", "Required value: give the destination port"),
                Some(n) if !(1..=65535).contains(&n) => v.error_at(
                    "number",
                    format!("port must be between 1-65535 (spec.Match.Ports is out of range: {n})"),
                ),
                Some(n) if !seen.insert(n) => {
                    v.error(format!("Duplicate value: {{\"number\":{n}}}"))
                }
                Some(_) => {}
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use crate::validate::common::check_spec;

    fn errors(spec: &str) -> Vec<String> {
        check_spec("extensions.istio.io/v1alpha1", "WasmPlugin", spec).0
    }

    #[track_caller]
    fn rejects(spec: &str, want: &str) {
        let e = errors(spec);
        assert!(e.iter().any(|m| m.contains(want)), "want {want:?} in {e:?}");
    }

    #[track_caller]
    fn accepts(spec: &str) {
        let e = errors(spec);
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn accepts_istio_shapes() {
        accepts(
            "  selector: {matchLabels: {istio: ingressgateway}}\n  url: file:///opt/filters/openid.wasm\n  sha256: 1ef0c9a92b0420cf25f7fe5d481b231464bc88f486ca3b9c83ed5cc21d2f6210\n  phase: AUTHN\n  pluginConfig:\n    openid_server: authn\n    nested: {a: [1, 2]}\n",
        );
        accepts("  url: test\n");
        accepts(
            "  url: oci://ghcr.io/x/y:v1\n  imagePullPolicy: IfNotPresent\n  imagePullSecret: s\n  pluginName: p\n  priority: -10\n  failStrategy: FAIL_OPEN\n  type: HTTP\n  verificationKey: k\n",
        );
        accepts(
            "  url: http://test\n  vmConfig:\n    env:\n    - {name: a, valueFrom: HOST}\n    - {name: b, valueFrom: INLINE, value: x}\n    - {name: c, value: x}\n",
        );
        accepts(
            "  url: https://x/y.wasm\n  match:\n  - mode: SERVER\n    ports: [{number: 80}, {number: 8080}]\n",
        );
        accepts(
            "  url: http://test\n  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]\n",
        );
    }

    #[test]
    fn url_and_digest() {
        rejects("  url: \"\"\n", "spec.url: Required value");
        rejects("  url:\n", "spec.url: Required value");
        rejects("  {}\n", "spec.url: Required value");
        rejects(
            "  url: \"#%blah$#@\"\n",
            "url must have schema one of [http, https, file, oci]",
        );
        rejects("  url: fake://example.com\n", "unsupported scheme: fake");
        rejects(
            "  url: http://test\n  sha256: foo\n",
            "spec.sha256: in body should match",
        );
        rejects(
            &format!("  url: http://test\n  sha256: {}\n", "A".repeat(64)),
            "spec.sha256",
        );
        rejects(
            "  url: http://test\n  imagePullSecret: \"\"\n",
            "spec.imagePullSecret: in body should be at least 1 chars long",
        );
        rejects(
            &format!(
                "  url: http://test\n  imagePullSecret: {}\n",
                "a".repeat(254)
            ),
            "may not be longer than 253",
        );
        rejects(
            "  url: http://test\n  pluginName: \"\"\n",
            "spec.pluginName: in body should be at least 1 chars long",
        );
        rejects("  url: http://test\n  phase: AUTH\n", "did you mean");
    }

    #[test]
    fn env_and_match() {
        rejects(
            "  url: http://test\n  vmConfig:\n    env: [{name: a}, {name: a}]\n",
            "env[1]: Duplicate value",
        );
        rejects(
            "  url: http://test\n  vmConfig:\n    env: [{name: \"\"}]\n",
            "env[0].name: in body should be at least 1 chars long",
        );
        rejects(
            "  url: http://test\n  vmConfig:\n    env: [{name: t, valueFrom: HOST, value: v}]\n",
            "value may only be set when valueFrom is INLINE",
        );
        rejects(
            "  url: http://test\n  vmConfig:\n    env: [{name: t, valueFrom: HOST, value: \"\"}]\n",
            "value may only be set when valueFrom is INLINE",
        );
        rejects(
            &format!(
                "  url: http://test\n  vmConfig:\n    env: [{{name: t, value: {}}}]\n",
                "v".repeat(2049)
            ),
            "longer than 2048",
        );
        rejects(
            "  url: http://test\n  match:\n  - ports:\n    - {}\n",
            "spec.match[0].ports[0].number: Required value",
        );
        rejects(
            "  url: http://test\n  match:\n  - ports: [{number: 0}]\n",
            "port must be between 1-65535",
        );
        rejects(
            "  url: http://test\n  match:\n  - ports: [{number: 70000}]\n",
            "port must be between 1-65535",
        );
        rejects(
            "  url: http://test\n  match:\n  - ports: [{number: 80}, {number: 80}]\n",
            "Duplicate value: {\"number\":80}",
        );
    }

    /// Cases from Istio's `TestValidateWasmPlugin`.
    #[test]
    fn istio_table_cases() {
        rejects("  url: ftp://test.com/test\n", "unsupported scheme: ftp");
        accepts("  url: http://test.com/test\n");
        accepts(
            "  url: http://test.com/test\n  sha256: 01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b\n",
        );
        rejects(
            "  url: http://test.com/test\n  sha256: 01ba47\n",
            "sha256 field must be 64 lower-case hex characters",
        );
        rejects(
            "  url: http://test.com/test\n  sha256: 01Ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b\n",
            "spec.sha256",
        );
        accepts("  url: oci://test.com/test\n");
        accepts("  url: test.com/test\n");
    }

    #[test]
    fn selection() {
        rejects(
            "  url: http://test\n  selector: {matchLabels: {istio: \"bar*\"}}\n",
            "wildcard not allowed in label value match",
        );
        rejects(
            "  url: http://test\n  selector: {matchLabels: {\"istio*\": bar}}\n",
            "wildcard not allowed in label key match",
        );
        rejects(
            "  url: http://test\n  selector: {matchLabels: {a: b}}\n  targetRefs: [{kind: Service, name: s}]\n",
            "only one of targetRefs or selector",
        );
    }
}
