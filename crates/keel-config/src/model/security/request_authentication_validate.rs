//! Istio's `ValidateRequestAuthentication` / `validateJwtRule` plus the CRD schema rules.

use std::sync::OnceLock;

use regex::Regex;

use super::{JwtRule, RequestAuthentication};
use crate::validate::common::{
    check_list_max, check_not_empty, parse_request_uri, reject_dry_run_annotation,
    validate_duration, validate_policy_selection,
};
use crate::validate::{Validate, Validator};

impl Validate for RequestAuthentication {
    fn validate(&self, v: &mut Validator) {
        reject_dry_run_annotation(v);
        v.field("spec", |v| {
            validate_policy_selection(
                v,
                self.selector.as_ref(),
                self.target_ref.as_ref(),
                &self.target_refs,
            );
            v.field("jwtRules", |v| {
                check_list_max(v, self.jwt_rules.len(), 4096);
                for (i, rule) in self.jwt_rules.iter().enumerate() {
                    v.index(i, |v| validate_jwt_rule(v, rule));
                }
            });
        });
    }
}

fn validate_jwt_rule(v: &mut Validator, rule: &JwtRule) {
    if let Some(issuer) = &rule.issuer {
        check_not_empty(v, "issuer", issuer);
    }
    let uri = rule.jwks_uri();
    if rule.issuer.as_deref().unwrap_or_default().is_empty() && uri.is_none_or(str::is_empty) {
        v.error("issuer or jwksUri must be non-empty string: set issuer to the token's `iss`");
    }
    each_not_empty(v, "audiences", &rule.audiences);
    for (field, value) in [
        ("jwksUri", &rule.jwks_uri),
        ("jwks_uri", &rule.jwks_uri_proto_name),
    ] {
        if let Some(u) = value {
            v.field(field, |v| validate_jwks_uri(v, u));
        }
    }
    let key_sources = [
        rule.jwks_uri.is_some(),
        rule.jwks_uri_proto_name.is_some(),
        rule.jwks.is_some(),
    ];
    if key_sources.iter().filter(|s| **s).count() > 1 {
        v.error("only one of jwks or jwksUri can be set: give the keys inline or where to fetch them, not both");
    }
    if let Some(jwks) = rule.jwks.as_deref().filter(|j| !j.is_empty())
        && let Err(e) = check_jwks(jwks)
    {
        v.error_at("jwks", format!("jwks parse error: {e}"));
    }
    v.field("fromHeaders", |v| {
        for (i, h) in rule.from_headers.iter().enumerate() {
            if h.name.is_empty() {
                v.index(i, |v| {
                    v.error_at(
                        "name",
                        "Required value: location header name must be non-empty string",
                    )
                });
            }
        }
    });
    each_not_empty(v, "fromParams", &rule.from_params);
    each_not_empty(v, "fromCookies", &rule.from_cookies);
    v.field("outputClaimToHeaders", |v| {
        for (i, c) in rule.output_claim_to_headers.iter().enumerate() {
            v.index(i, |v| validate_claim_to_header(v, &c.header, &c.claim));
        }
    });
    v.field("spaceDelimitedClaims", |v| {
        check_list_max(v, rule.space_delimited_claims.len(), 64);
    });
    each_not_empty(v, "spaceDelimitedClaims", &rule.space_delimited_claims);
    if let Some(t) = &rule.timeout
        && let Err(e) = validate_duration(t)
    {
        v.error_at(
            "timeout",
            format!("must be a valid duration greater than 1ms: {e}"),
        );
    }
}

/// Every item of a string list is non-empty (the CRD's `items.minLength: 1`).
fn each_not_empty(v: &mut Validator, field: &str, items: &[String]) {
    v.field(field, |v| {
        for (i, s) in items.iter().enumerate() {
            if s.is_empty() {
                v.index(i, |v| v.error("in body should be at least 1 chars long"));
            }
        }
    });
}

/// The CRD's `url(self).getScheme() in ["http", "https"]` and Istio's `ParseJwksURI`.
fn validate_jwks_uri(v: &mut Validator, uri: &str) {
    if uri.is_empty() {
        return v.error("in body should be at least 1 chars long");
    }
    if uri.len() > 2048 {
        return v.error("Too long: may not be longer than 2048");
    }
    match parse_request_uri(uri) {
        Ok(scheme) if scheme == "http" || scheme == "https" => {}
        Ok(scheme) => v.error(format!(
            "url must have scheme http:// or https:// (URI scheme \"{scheme}\" is not supported)"
        )),
        Err(e) => v.error(format!("url must have scheme http:// or https://: {e}")),
    }
}

fn validate_claim_to_header(v: &mut Validator, header: &str, claim: &str) {
    static HEADER: OnceLock<Option<Regex>> = OnceLock::new();
    let header_ok = |h: &str| crate::validate::common::matches(&HEADER, "^[-_A-Za-z0-9]+$", h);
    if header.is_empty() {
        v.error_at("header", "in body should be at least 1 chars long: outputClaimToHeaders header and claim value must be non-empty string");
    } else if !header_ok(header) {
        v.error_at(
            "header",
            format!("in body should match '^[-_A-Za-z0-9]+$': header name {header} is not a valid header name"),
        );
    }
    if claim.is_empty() {
        v.error_at("claim", "in body should be at least 1 chars long: outputClaimToHeaders header and claim value must be non-empty string");
    }
}

/// What `jwk.Parse` needs: a JSON key, or a key set `{"keys": [...]}`, each with a `kty`.
fn check_jwks(jwks: &str) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_str(jwks).map_err(|e| format!("not valid JSON: {e}"))?;
    let keys = match value.get("keys") {
        Some(serde_json::Value::Array(keys)) => keys.iter().collect(),
        Some(_) => return Err("\"keys\" must be a list of keys".into()),
        None => vec![&value],
    };
    for key in keys {
        match key.get("kty").and_then(|k| k.as_str()) {
            Some("RSA" | "EC" | "oct" | "OKP") => {}
            Some(other) => return Err(format!("invalid key type from JSON ({other})")),
            None => return Err("a key without \"kty\"".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::validate::common::check_spec;

    fn errors(spec: &str) -> Vec<String> {
        check_spec("security.istio.io/v1", "RequestAuthentication", spec).0
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
        accepts("  {}\n");
        accepts(
            "  selector: {matchLabels: {app: httpbin}}\n  jwtRules:\n  - issuer: issuer-foo\n    jwksUri: https://example.com/.well-known/jwks.json\n",
        );
        accepts("  jwtRules:\n  - jwksUri: http://example.com/jwks\n");
        accepts("  jwtRules:\n  - issuer: a\n    jwks_uri: https://example.com/jwks\n");
        accepts(
            "  targetRefs: [{kind: Service, name: foo}]\n  jwtRules:\n  - issuer: example.com\n    forwardOriginalToken: true\n    fromCookies: [foo]\n    fromHeaders: [{name: foo, prefix: baz}]\n    outputClaimToHeaders: [{claim: abc, header: def}]\n    timeout: 5s\n    outputPayloadToHeader: header\n    spaceDelimitedClaims: [custom_scope]\n    presence: REQUIRED\n",
        );
        accepts(
            "  jwtRules:\n  - issuer: a\n    jwks: '{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\",\"n\":\"xyz\"}]}'\n",
        );
    }

    #[test]
    fn issuer_and_keys() {
        rejects(
            "  jwtRules:\n  -\n",
            "issuer or jwksUri must be non-empty string",
        );
        rejects(
            "  jwtRules:\n  - issuer: \"\"\n    jwksUri: https://a/b\n",
            "jwtRules[0].issuer: in body should be at least 1 chars long",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    jwksUri: \"hTPp\\\\\\blah\"\n",
            "url must have scheme http:// or https://",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    jwksUri: ftp://example.com/jwks\n",
            "URI scheme \"ftp\" is not supported",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    jwksUri: example.com/jwks\n",
            "url must have scheme",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    jwksUri: \"\"\n",
            "jwksUri: in body should be at least 1 chars long",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    jwks_uri: ftp://x/y\n",
            "jwks_uri: url must have scheme",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    jwksUri: https://a/b\n    jwks: '{}'\n",
            "only one of jwks or jwksUri can be set",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    jwks: 'not json'\n",
            "jwks parse error: not valid JSON",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    jwks: '{\"keys\":[{\"kty\":\"XX\"}]}'\n",
            "jwks parse error: invalid key type",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    audiences: [\"\"]\n",
            "audiences[0]: in body should be at least 1 chars long",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    presence: MANDATORY\n",
            "unknown value \"MANDATORY\"",
        );
    }

    #[test]
    fn token_locations_and_outputs() {
        rejects(
            "  jwtRules:\n  - issuer: a\n    fromHeaders: [{prefix: baz}]\n",
            "fromHeaders[0].name: Required value",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    fromParams: [\"\"]\n",
            "fromParams[0]: in body should be at least 1 chars long",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    fromCookies: [\"\"]\n",
            "fromCookies[0]: in body should be at least 1 chars long",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    outputClaimToHeaders:\n    - ~\n",
            "outputClaimToHeaders[0].header: in body should be at least 1 chars long",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    outputClaimToHeaders: [{claim: \"\", header: h}]\n",
            "outputClaimToHeaders[0].claim: in body should be at least 1 chars long",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    outputClaimToHeaders: [{claim: x, header: \":authority\"}]\n",
            "header: in body should match",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    spaceDelimitedClaims: [\"\"]\n",
            "spaceDelimitedClaims[0]: in body should be at least 1 chars long",
        );
        let many: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
        rejects(
            &format!(
                "  jwtRules:\n  - issuer: a\n    spaceDelimitedClaims: [{}]\n",
                many.join(",")
            ),
            "Too many: 65",
        );
    }

    #[test]
    fn timeouts() {
        rejects(
            "  jwtRules:\n  - issuer: a\n    timeout: apple\n",
            "invalid duration",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    timeout: 0.5ms\n",
            "must be a valid duration greater than 1ms",
        );
        rejects(
            "  jwtRules:\n  - issuer: a\n    timeout: 1.0005s\n",
            "ms precision",
        );
        accepts("  jwtRules:\n  - issuer: a\n    timeout: 1ms\n");
    }

    /// Cases from Istio's `TestValidateRequestAuthentication`.
    #[test]
    fn istio_table_cases() {
        accepts("  selector: {}\n");
        accepts(
            "  selector: {matchLabels: {app: httpbin, version: \"\"}}\n  jwtRules:\n  - {issuer: foo.com, jwksUri: \"https://foo.com/cert\"}\n",
        );
        accepts(
            "  jwtRules:\n  - issuer: foo.com\n    jwksUri: https://foo.com\n    fromHeaders: [{name: x-foo, prefix: \"Bearer \"}]\n",
        );
        rejects(
            "  jwtRules:\n  - {}\n",
            "issuer or jwksUri must be non-empty string",
        );
        rejects(
            "  jwtRules:\n  - {issuer: foo.com, jwksUri: foo.com}\n",
            "url must have scheme",
        );
        rejects(
            "  jwtRules:\n  - {issuer: foo.com, jwksUri: \"https://foo.com:not-a-number\"}\n",
            "invalid port",
        );
        rejects(
            "  selector: {matchLabels: {app: httpbin, \"\": v1}}\n",
            "key must not be empty",
        );
        rejects(
            "  jwtRules:\n  - {issuer: foo.com, jwksUri: \"https://foo.com\", fromHeaders: [{name: \"\", prefix: \"Bearer \"}]}\n",
            "fromHeaders[0].name: Required value",
        );
        rejects(
            "  jwtRules:\n  - {issuer: foo.com, jwks: foo}\n",
            "jwks parse error",
        );
    }

    #[test]
    fn dry_run_annotation_is_only_for_authorization_policy() {
        let (e, _) = crate::validate::common::check_doc(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: r\n  namespace: foo\n  annotations: {\"istio.io/dry-run\": \"true\"}\nspec: {}\n",
        );
        assert!(e[0].contains("metadata.annotations[istio.io/dry-run]: foo/r has unsupported annotation istio.io/dry-run"), "{e:?}");
    }

    #[test]
    fn targets() {
        rejects(
            "  selector: {matchLabels: {a: b}}\n  targetRef: {kind: Service, name: foo}\n",
            "only one of targetRefs or selector can be set",
        );
        rejects(
            "  targetRef: {kind: Service}\n",
            "spec.targetRef.name: Required value",
        );
        rejects(
            "  targetRef: {kind: Service, name: foo, namespace: bar}\n",
            "cross namespace referencing",
        );
    }
}
