//! Istio's `ValidateTelemetry` (pkg/config/validation) plus the Telemetry CRD schema rules.

use super::{AccessLogging, CustomTag, Metrics, ProviderRef, TagOperation, Telemetry, Tracing};
use crate::validate::common::{reject_dry_run_annotation, validate_policy_selection};
use crate::validate::{Validate, Validator};

impl Validate for Telemetry {
    fn validate(&self, v: &mut Validator) {
        reject_dry_run_annotation(v);
        v.field("spec", |v| {
            validate_policy_selection(
                v,
                self.selector.as_ref(),
                self.target_ref.as_ref(),
                &self.target_refs,
            );
            v.field("tracing", |v| {
                if self.tracing.len() > 1 {
                    v.warn(
                        "multiple tracing is not currently supported: only the first entry is used",
                    );
                }
                for (i, t) in self.tracing.iter().enumerate() {
                    v.index(i, |v| validate_tracing(v, t));
                }
            });
            v.field("metrics", |v| {
                for (i, m) in self.metrics.iter().enumerate() {
                    v.index(i, |v| validate_metrics(v, m));
                }
            });
            v.field("accessLogging", |v| {
                for (i, l) in self.access_logging.iter().enumerate() {
                    v.index(i, |v| validate_access_logging(v, l));
                }
            });
        });
    }
}

/// `validateTelemetryProviders`: every provider is named.
fn validate_providers(v: &mut Validator, providers: &[ProviderRef]) {
    v.field("providers", |v| {
        for (i, p) in providers.iter().enumerate() {
            if p.name.is_empty() {
                v.index(i, |v| {
                    v.error_at("name", "in body should be at least 1 chars long: providers.name may not be empty; name a provider from MeshConfig extensionProviders")
                });
            }
        }
    });
}

fn validate_tracing(v: &mut Validator, t: &Tracing) {
    if t.providers.len() > 1 {
        v.warn_at(
            "providers",
            "multiple providers is not currently supported: only the first is used",
        );
    }
    validate_providers(v, &t.providers);
    if let Some(p) = t.random_sampling_percentage
        && !(0.0..=100.0).contains(&p)
    {
        v.error_at(
            "randomSamplingPercentage",
            format!("randomSamplingPercentage must be in range [0.0, 100.0] (got {p})"),
        );
    }
    v.field("customTags", |v| {
        for (name, tag) in &t.custom_tags {
            if name.is_empty() {
                v.error("tag name may not be empty");
            }
            v.field(name, |v| validate_custom_tag(v, tag));
        }
    });
}

fn validate_custom_tag(v: &mut Validator, tag: &CustomTag) {
    let set = [
        tag.literal.is_some(),
        tag.environment.is_some(),
        tag.header.is_some(),
        tag.formatter.is_some(),
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        v.error("must validate one and only one schema (oneOf): set one of literal, environment, header or formatter");
    }
    let empty = "in body should be at least 1 chars long";
    if tag.literal.as_ref().is_some_and(|l| l.value.is_empty()) {
        v.field("literal", |v| {
            v.error_at(
                "value",
                format!("{empty}: literal tag value may not be empty"),
            )
        });
    }
    if tag.header.as_ref().is_some_and(|h| h.name.is_empty()) {
        v.field("header", |v| {
            v.error_at("name", format!("{empty}: header tag name may not be empty"))
        });
    }
    if tag.environment.as_ref().is_some_and(|e| e.name.is_empty()) {
        v.field("environment", |v| {
            v.error_at(
                "name",
                format!("{empty}: environment tag name may not be empty"),
            )
        });
    }
    if tag.formatter.as_ref().is_some_and(|f| f.value.is_empty()) {
        v.field("formatter", |v| {
            v.error_at(
                "value",
                format!("{empty}: formatter tag value may not be empty"),
            )
        });
    }
}

fn validate_metrics(v: &mut Validator, m: &Metrics) {
    validate_providers(v, &m.providers);
    v.field("overrides", |v| {
        for (i, o) in m.overrides.iter().enumerate() {
            v.index(i, |v| {
                v.field("tagOverrides", |v| {
                    for (name, t) in &o.tag_overrides {
                        if name.is_empty() {
                            v.warn("tagOverrides.name may not be empty");
                        }
                        let has_value = t.value.as_deref().is_some_and(|s| !s.is_empty());
                        match t.operation {
                            TagOperation::Upsert if !has_value => v.error_at(
                                name,
                                "value must be set when operation is UPSERT: give a CEL expression such as request.host",
                            ),
                            TagOperation::Remove if t.value.is_some() => v.error_at(
                                name,
                                "value must not be set when operation is REMOVE (tagOverrides.value may only be set when operation is UPSERT)",
                            ),
                            _ => {}
                        }
                    }
                });
                let Some(sel) = &o.match_ else { return };
                v.field("match", |v| {
                    if sel.metric.is_some() && sel.custom_metric.is_some() {
                        v.error("must validate one and only one schema (oneOf): set metric or customMetric, not both");
                    }
                    if sel.custom_metric.as_deref() == Some("") {
                        v.error_at(
                            "customMetric",
                            "in body should be at least 1 chars long: customMetric may not be empty",
                        );
                    }
                });
            });
        }
    });
    if let Some(d) = &m.reporting_interval
        && d.nanos < 1_000_000
    {
        v.error_at(
            "reportingInterval",
            format!("must be a valid duration greater than 1ms (got {d})"),
        );
    }
}

fn validate_access_logging(v: &mut Validator, l: &AccessLogging) {
    if let Some(f) = &l.filter
        && let Err(e) = check_cel_syntax(&f.expression)
    {
        v.field("filter", |v| {
            v.error_at("expression", format!("must be a valid CEL expression, {e}"))
        });
    }
    validate_providers(v, &l.providers);
}

/// A syntax check of a CEL expression, as far as Istio's `cel.Parse` goes in catching typos:
/// not empty, known characters and operators, closed strings, balanced brackets, and no
/// dangling operator at the end. Expressions that pass may still be rejected by the proxy.
pub(crate) fn check_cel_syntax(expr: &str) -> Result<(), String> {
    let bytes = expr.as_bytes();
    let mut stack: Vec<u8> = Vec::new();
    let mut last_is_operator = true;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'"' || c == b'\'' {
            let raw = i > 0 && matches!(bytes[i - 1], b'r' | b'R');
            i = skip_string(bytes, i, raw)?;
            last_is_operator = false;
            continue;
        }
        if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            i += 1;
            last_is_operator = false;
            continue;
        }
        let two = &bytes[i..(i + 2).min(bytes.len())];
        if matches!(two, b"&&" | b"||" | b"==" | b"!=" | b"<=" | b">=") {
            i += 2;
            last_is_operator = true;
            continue;
        }
        match c {
            b'(' | b'[' | b'{' => {
                stack.push(c);
                last_is_operator = true;
            }
            b')' | b']' | b'}' => {
                let open = match c {
                    b')' => b'(',
                    b']' => b'[',
                    _ => b'{',
                };
                if stack.pop() != Some(open) {
                    return Err(format!("Syntax error: extraneous input '{}'", c as char));
                }
                last_is_operator = false;
            }
            b'<' | b'>' | b'!' | b'+' | b'-' | b'*' | b'/' | b'%' | b'?' | b':' | b'.' | b',' => {
                last_is_operator = true
            }
            _ => {
                return Err(format!(
                    "Syntax error: token recognition error at: '{}'",
                    expr[i..].chars().next().unwrap_or(' ')
                ));
            }
        }
        i += 1;
    }
    if let Some(open) = stack.pop() {
        return Err(format!(
            "Syntax error: missing closing bracket for '{}'",
            open as char
        ));
    }
    if last_is_operator {
        return Err("Syntax error: mismatched input '<EOF>'".into());
    }
    Ok(())
}

/// Skips a CEL string literal starting at `start` (a quote); returns the index after it.
fn skip_string(bytes: &[u8], start: usize, raw: bool) -> Result<usize, String> {
    let q = bytes[start];
    let triple = bytes.get(start..start + 3) == Some(&[q, q, q][..]);
    let mut i = start + if triple { 3 } else { 1 };
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\\' && !raw {
            i += 2;
            continue;
        }
        if triple {
            if bytes.get(i..i + 3) == Some(&[q, q, q][..]) {
                return Ok(i + 3);
            }
        } else if c == q {
            return Ok(i + 1);
        } else if c == b'\n' {
            break;
        }
        i += 1;
    }
    Err("Syntax error: unterminated string literal".into())
}

#[cfg(test)]
mod tests {
    use super::check_cel_syntax;
    use crate::validate::common::check_spec;

    fn check(spec: &str) -> (Vec<String>, Vec<String>) {
        check_spec("telemetry.istio.io/v1", "Telemetry", spec)
    }

    #[track_caller]
    fn rejects(spec: &str, want: &str) {
        let e = check(spec).0;
        assert!(e.iter().any(|m| m.contains(want)), "want {want:?} in {e:?}");
    }

    #[track_caller]
    fn accepts(spec: &str) {
        let e = check(spec).0;
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn accepts_istio_shapes() {
        accepts("  {}\n");
        accepts(
            "  metrics:\n  - providers: [{name: prometheus}]\n    reportingInterval: 5s\n    overrides:\n    - tagOverrides:\n        request_method: {value: request.method}\n        foo: {operation: REMOVE}\n      match: {customMetric: foo}\n      disabled: false\n    - match: {metric: GRPC_REQUEST_MESSAGES, mode: CLIENT}\n      disabled: true\n",
        );
        accepts(
            "  accessLogging:\n  - providers: [{name: envoy}]\n    filter: {expression: 'response.code >= 400 && request.headers[\"x\"] == \"y\"'}\n    match: {mode: SERVER}\n",
        );
        accepts(
            "  tracing:\n  - providers: [{name: otlp}]\n    randomSamplingPercentage: 54.54\n    useRequestIdForTraceSampling: true\n    enableIstioTags: false\n    customTags:\n      env: {environment: {name: NAME, defaultValue: d}}\n      hdr: {header: {name: x-name}}\n      lit: {literal: {value: v}}\n      fmt: {formatter: {value: \"%REQ(x)%\"}}\n",
        );
        accepts(
            "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]\n  tracing: [{randomSamplingPercentage: 0}]\n",
        );
    }

    #[test]
    fn providers_and_metrics() {
        rejects(
            "  metrics:\n  - providers: [{name: \"\"}]\n",
            "metrics[0].providers[0].name: in body should be at least 1 chars long",
        );
        rejects(
            "  accessLogging:\n  - providers: [{}]\n",
            "providers.name may not be empty",
        );
        rejects(
            "  tracing:\n  - providers: [{name: \"\"}]\n",
            "tracing[0].providers[0].name",
        );
        rejects(
            "  metrics:\n  - overrides:\n    - match: {customMetric: \"\"}\n",
            "customMetric may not be empty",
        );
        rejects(
            "  metrics:\n  - overrides:\n    - match: {customMetric: a, metric: REQUEST_COUNT}\n",
            "one and only one schema",
        );
        rejects(
            "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_CNT}\n",
            "did you mean \"REQUEST_COUNT\"",
        );
        rejects(
            "  metrics:\n  - overrides:\n    - tagOverrides:\n        foo: {operation: UPSERT}\n",
            "tagOverrides.foo: value must be set when operation is UPSERT",
        );
        rejects(
            "  metrics:\n  - overrides:\n    - tagOverrides:\n        foo: {}\n",
            "value must be set when operation is UPSERT",
        );
        rejects(
            "  metrics:\n  - overrides:\n    - tagOverrides:\n        foo: {operation: REMOVE, value: oops}\n",
            "value must not be set when operation is REMOVE",
        );
        rejects(
            "  metrics:\n  - reportingInterval: 0.5ms\n",
            "reportingInterval: must be a valid duration greater than 1ms",
        );
        let w =
            check("  metrics:\n  - overrides:\n    - tagOverrides:\n        \"\": {value: x}\n").1;
        assert!(
            w.iter()
                .any(|m| m.contains("tagOverrides.name may not be empty")),
            "{w:?}"
        );
    }

    #[test]
    fn tracing() {
        rejects(
            "  tracing:\n  - randomSamplingPercentage: 100.5\n",
            "randomSamplingPercentage must be in range [0.0, 100.0]",
        );
        rejects(
            "  tracing:\n  - randomSamplingPercentage: -1\n",
            "randomSamplingPercentage must be in range",
        );
        rejects(
            "  tracing:\n  - customTags:\n      a: {literal: {value: \"\"}}\n",
            "customTags.a.literal.value: in body should be at least 1 chars long",
        );
        rejects(
            "  tracing:\n  - customTags:\n      a: {header: {}}\n",
            "header tag name may not be empty",
        );
        rejects(
            "  tracing:\n  - customTags:\n      a: {environment: {defaultValue: x}}\n",
            "environment tag name may not be empty",
        );
        rejects(
            "  tracing:\n  - customTags:\n      a: {formatter: {value: \"\"}}\n",
            "formatter tag value may not be empty",
        );
        rejects(
            "  tracing:\n  - customTags:\n      a: {literal: {value: x}, header: {name: z}}\n",
            "one and only one schema",
        );
        let w = check("  tracing:\n  - providers: [{name: a}, {name: b}]\n  - {}\n").1;
        assert!(
            w.iter()
                .any(|m| m.contains("multiple tracing is not currently supported")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|m| m.contains("multiple providers is not currently supported")),
            "{w:?}"
        );
    }

    #[test]
    fn access_log_filters() {
        rejects(
            "  accessLogging:\n  - filter: {}\n",
            "filter.expression: must be a valid CEL expression",
        );
        rejects(
            "  accessLogging:\n  - filter: {expression: \"response.code >=\"}\n",
            "mismatched input '<EOF>'",
        );
        rejects(
            "  accessLogging:\n  - filter: {expression: \"(a == b\"}\n",
            "missing closing bracket",
        );
        for ok in [
            "true",
            "response.code >= 400",
            "!has(request.headers['x'])",
            "a in [1, 2] ? 'x' : \"y\"",
            "r'\\d' == x",
            "{'a': 1}.a == 1",
            "'''multi\nline''' != ''",
        ] {
            assert!(check_cel_syntax(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "  ", "a = b", "a & b", "a ==", "'open", "a)", "a # b", "[1, 2",
        ] {
            assert!(check_cel_syntax(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets() {
        rejects(
            "  selector: {matchLabels: {a: b}}\n  targetRefs: [{kind: Service, name: s}]\n",
            "only one of targetRefs or selector can be set",
        );
        rejects(
            "  targetRef: {kind: Service, name: s, namespace: x}\n",
            "cross namespace referencing",
        );
    }
}
