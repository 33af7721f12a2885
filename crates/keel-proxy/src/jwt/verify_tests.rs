//! The verifier, one behaviour per test: algorithms, each check, token locations, outputs.

use http::{HeaderMap, HeaderValue};
use keel_snapshot::jwt::{ClaimToHeader, JwtRule, TokenLocation};
use serde_json::{Value, json};

use super::test_support::*;
use super::{JwksCache, JwtError, JwtOutcome, JwtVerifier, VerifiedJwt};

fn verify_with(rules: Vec<JwtRule>, headers: &HeaderMap, query: Option<&str>) -> JwtOutcome {
    JwtVerifier::new(&policies(rules)).verify(headers, query, now())
}

fn one_key(key: &TestKey) -> JwtRule {
    rule(jwks(&[key.jwk("k1")]))
}

#[track_caller]
fn valid(outcome: JwtOutcome) -> VerifiedJwt {
    match outcome {
        JwtOutcome::Valid(v) => v,
        other => panic!("want Valid, got {other:?}"),
    }
}

#[track_caller]
fn invalid(outcome: JwtOutcome, want: JwtError) {
    assert_eq!(outcome, JwtOutcome::Invalid(want));
}

#[test]
fn valid_token_per_generated_algorithm() {
    for key in [TestKey::ed25519(), TestKey::p256(), TestKey::p384()] {
        let token = key.token(json!({"kid": "k1"}), claims());
        let v = valid(verify_with(vec![one_key(&key)], &bearer(&token), None));
        assert_eq!(v.principal, format!("{ISSUER}/alice"), "{}", key.alg());
        assert_eq!(v.rule, 0);
        assert_eq!(v.payload["aud"], "keel");
    }
}

#[test]
fn valid_token_per_rsa_algorithm() {
    let fixture = rsa_fixture();
    let mut r = rule(fixture.jwks.clone());
    r.issuer = Some("rsa.keel.test".into());
    let verifier = JwtVerifier::new(&policies(vec![r]));
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        let token = fixture.tokens[alg].as_str().unwrap();
        let v = valid(verifier.verify(&bearer(token), None, now()));
        assert_eq!(v.principal, "rsa.keel.test/alice", "{alg}");
        // A flipped bit in the signature fails.
        let mut bad = token.to_string();
        let last = if bad.ends_with('A') { "B" } else { "A" };
        bad.replace_range(bad.len() - 3..bad.len() - 2, last);
        invalid(
            verifier.verify(&bearer(&bad), None, now()),
            JwtError::VerificationFails,
        );
    }
}

#[test]
fn wrong_signature_is_refused() {
    let (key, other) = (TestKey::p256(), TestKey::p256());
    let token = other.token(json!({"kid": "k1"}), claims());
    invalid(
        verify_with(vec![one_key(&key)], &bearer(&token), None),
        JwtError::VerificationFails,
    );
    // A payload swapped under a valid signature.
    let good = key.token(json!({}), claims());
    let forged = key.token(json!({}), json!({"iss": ISSUER, "sub": "mallory"}));
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = forged.split('.').nth(1).unwrap();
    let spliced = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    invalid(
        verify_with(vec![one_key(&key)], &bearer(&spliced), None),
        JwtError::VerificationFails,
    );
}

#[test]
fn keys_are_matched_by_kid_and_type() {
    let (ed, ec) = (TestKey::ed25519(), TestKey::p256());
    let set = jwks(&[ec.jwk("ec"), ed.jwk("ed")]);
    let rules = || vec![rule(set.clone())];
    // kid names the key; no kid tries every key of the right type.
    let token = ed.token(json!({"kid": "ed"}), claims());
    valid(verify_with(rules(), &bearer(&token), None));
    let token = ed.token(json!({}), claims());
    valid(verify_with(rules(), &bearer(&token), None));
    let token = ed.token(json!({"kid": "unknown"}), claims());
    invalid(
        verify_with(rules(), &bearer(&token), None),
        JwtError::NoMatchingKey,
    );
    // An ES256 token naming the Ed25519 key's kid finds no key of its type.
    let token = ec.token(json!({"kid": "ed"}), claims());
    invalid(
        verify_with(rules(), &bearer(&token), None),
        JwtError::NoMatchingKey,
    );
}

#[test]
fn expiry_and_not_before_with_clock_skew() {
    let key = TestKey::ed25519();
    let at = |claim: &str, t: u64| {
        let mut c = claims();
        c[claim] = json!(t);
        key.token(json!({}), c)
    };
    let check = |token: String| verify_with(vec![one_key(&key)], &bearer(&token), None);
    invalid(check(at("exp", NOW - 61)), JwtError::Expired);
    valid(check(at("exp", NOW - 59)));
    invalid(check(at("nbf", NOW + 61)), JwtError::NotYetValid);
    valid(check(at("nbf", NOW + 59)));
    invalid(
        check(key.token(json!({}), json!({"iss": ISSUER, "exp": "tomorrow"}))),
        JwtError::ClaimNotInteger("exp"),
    );
}

#[test]
fn wrong_issuer_is_refused() {
    let key = TestKey::ed25519();
    let mut c = claims();
    c["iss"] = json!("https://someone.else");
    let token = key.token(json!({}), c);
    invalid(
        verify_with(vec![one_key(&key)], &bearer(&token), None),
        JwtError::UnknownIssuer,
    );
}

#[test]
fn audiences() {
    let key = TestKey::ed25519();
    let with = |aud: Value, allowed: &[&str]| {
        let mut c = claims();
        c["aud"] = aud;
        let mut r = one_key(&key);
        r.audiences = allowed.iter().map(|a| a.to_string()).collect();
        verify_with(vec![r], &bearer(&key.token(json!({}), c)), None)
    };
    valid(with(json!("keel"), &[]));
    valid(with(json!("keel"), &["other", "keel"]));
    valid(with(json!(["x", "keel"]), &["keel"]));
    valid(with(json!("https://keel/"), &["keel"]));
    invalid(
        with(json!("other"), &["keel"]),
        JwtError::AudienceNotAllowed,
    );
    invalid(with(Value::Null, &["keel"]), JwtError::AudienceNotAllowed);
    invalid(with(json!(7), &["keel"]), JwtError::AudNotStrings);
}

#[test]
fn alg_none_and_hmac_are_refused() {
    let key = TestKey::ed25519();
    let body = b64(claims().to_string().as_bytes());
    let none = format!("{}.{body}.", b64(br#"{"alg":"none"}"#));
    invalid(
        verify_with(vec![one_key(&key)], &bearer(&none), None),
        JwtError::AlgNotSupported("none".into()),
    );
    // HS256 with an oct key in the set: the key is left out and the alg refused.
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"shared secret");
    let input = format!("{}.{body}", b64(br#"{"alg":"HS256","kid":"h"}"#));
    let token = format!(
        "{input}.{}",
        b64(ring::hmac::sign(&hmac, input.as_bytes()).as_ref())
    );
    let oct = json!({"kty": "oct", "kid": "h", "k": b64(b"shared secret")});
    let verifier = JwtVerifier::new(&policies(vec![rule(jwks(&[oct, key.jwk("k1")]))]));
    assert!(
        verifier.warnings()[0].contains("HMAC (oct) keys are not accepted"),
        "{:?}",
        verifier.warnings()
    );
    invalid(
        verifier.verify(&bearer(&token), None, now()),
        JwtError::AlgNotSupported("HS256".into()),
    );
    // A key pinned to another alg is not used.
    let mut pinned = key.jwk("k1");
    pinned["alg"] = json!("ES256");
    let token = key.token(json!({}), claims());
    invalid(
        verify_with(vec![rule(jwks(&[pinned]))], &bearer(&token), None),
        JwtError::NoMatchingKey,
    );
}

#[test]
fn malformed_tokens() {
    let key = TestKey::ed25519();
    let check = |t: &str| verify_with(vec![one_key(&key)], &bearer(t), None);
    invalid(check("abc.def"), JwtError::BadFormat);
    invalid(check("a.b.c.d"), JwtError::BadFormat);
    // "A" is in the token alphabet but no base64url (one character carries 6 of 8 bits).
    invalid(check("A.e30.e30"), JwtError::HeaderBadBase64);
    invalid(
        check(&format!("{}.e30.", b64(b"[1]"))),
        JwtError::HeaderBadJson,
    );
    invalid(
        check(&format!("{}.e30.", b64(b"{}"))),
        JwtError::HeaderBadAlg,
    );
    let h = b64(br#"{"alg":"EdDSA"}"#);
    invalid(check(&format!("{h}.A.")), JwtError::PayloadBadBase64);
    invalid(
        check(&format!("{h}.{}.", b64(b"not json"))),
        JwtError::PayloadBadJson,
    );
    invalid(check(&format!("{h}.e30.A")), JwtError::SignatureBadBase64);
    let kid = b64(br#"{"alg":"EdDSA","kid":7}"#);
    invalid(check(&format!("{kid}.e30.")), JwtError::HeaderBadKid);
    let iat = b64(br#"{"iss":"https://issuer.keel.test","iat":"x"}"#);
    invalid(
        check(&format!("{h}.{iat}.")),
        JwtError::ClaimNotInteger("iat"),
    );
    assert_eq!(
        JwtError::Expired.response_code_details(),
        "jwt_authn_access_denied{Jwt_is_expired}"
    );
    // Characters outside the token alphabet end the token (Envoy's extractor): nothing left.
    assert_eq!(check("!!.e30.e30"), JwtOutcome::NoToken);
}

#[test]
fn no_token_passes_unless_required() {
    let key = TestKey::ed25519();
    assert_eq!(
        verify_with(vec![one_key(&key)], &HeaderMap::new(), None),
        JwtOutcome::NoToken
    );
    // A Basic credential in Authorization is not a token.
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_static("Basic dXNlcg=="));
    assert_eq!(
        verify_with(vec![one_key(&key)], &h, None),
        JwtOutcome::NoToken
    );
    let mut r = one_key(&key);
    r.required = true;
    invalid(
        verify_with(vec![r], &HeaderMap::new(), None),
        JwtError::Missing,
    );
}

#[test]
fn token_in_custom_header_query_and_cookie() {
    let key = TestKey::ed25519();
    let token = key.token(json!({}), claims());
    let mut r = one_key(&key);
    r.locations = vec![TokenLocation::Header {
        name: "x-jwt".into(),
        prefix: "Token ".into(),
    }];
    let mut h = HeaderMap::new();
    h.insert(
        "x-jwt",
        HeaderValue::from_str(&format!("Token {token}")).unwrap(),
    );
    let v = valid(verify_with(vec![r.clone()], &h, None));
    assert_eq!(
        v.remove_headers,
        ["x-jwt"],
        "forwardOriginalToken false removes the header"
    );
    // Not in the default header when the rule names its own.
    assert_eq!(
        verify_with(vec![r], &bearer(&token), None),
        JwtOutcome::NoToken
    );

    let q = format!("a=1&access_token={token}");
    let v = valid(verify_with(
        vec![one_key(&key)],
        &HeaderMap::new(),
        Some(&q),
    ));
    assert!(
        v.remove_headers.is_empty(),
        "a query token is left in place, as in Envoy"
    );
    let mut r = one_key(&key);
    r.locations = vec![TokenLocation::QueryParam { name: "jwt".into() }];
    valid(verify_with(
        vec![r],
        &HeaderMap::new(),
        Some(&format!("jwt={token}")),
    ));

    let mut r = one_key(&key);
    r.locations = vec![TokenLocation::Cookie {
        name: "session".into(),
    }];
    let mut h = HeaderMap::new();
    h.insert(
        "cookie",
        HeaderValue::from_str(&format!("theme=dark; session={token}")).unwrap(),
    );
    let v = valid(verify_with(vec![r], &h, None));
    assert!(v.remove_headers.is_empty());
}

#[test]
fn output_payload_and_claims_to_headers() {
    let key = TestKey::ed25519();
    let mut c = claims();
    c["groups"] = json!(["dev", "ops"]);
    c["admin"] = json!(true);
    c["nested"] = json!({"team": "mesh"});
    let token = key.token(json!({}), c);
    let mut r = one_key(&key);
    r.output_payload_to_header = Some("x-jwt-payload".into());
    r.output_claim_to_headers = [
        ("x-sub", "sub"),
        ("x-groups", "groups"),
        ("x-admin", "admin"),
        ("x-team", "nested.team"),
        ("x-none", "missing"),
    ]
    .iter()
    .map(|(h, c)| ClaimToHeader {
        header: h.to_string(),
        claim: c.to_string(),
    })
    .collect();
    let mut h = bearer(&token);
    h.insert("x-sub", HeaderValue::from_static("spoofed"));
    let v = valid(verify_with(vec![r], &h, None));
    v.apply(&mut h);
    assert_eq!(
        h["x-jwt-payload"],
        token.split('.').nth(1).unwrap(),
        "the payload segment as sent"
    );
    assert_eq!(h["x-sub"], "alice", "a client's own value is replaced");
    assert_eq!(h["x-groups"], "dev,ops");
    assert_eq!(h["x-admin"], "true");
    assert_eq!(h["x-team"], "mesh");
    assert!(!h.contains_key("x-none"));
    assert!(
        !h.contains_key("authorization"),
        "forwardOriginalToken false removes the token"
    );
}

#[test]
fn forward_original_token_keeps_it() {
    let key = TestKey::ed25519();
    let token = key.token(json!({}), claims());
    let mut r = one_key(&key);
    r.forward_original_token = true;
    let mut h = bearer(&token);
    let v = valid(verify_with(vec![r], &h, None));
    v.apply(&mut h);
    assert!(h.contains_key("authorization"));
}

#[test]
fn space_delimited_claims_become_lists() {
    let key = TestKey::ed25519();
    let mut c = claims();
    c["scope"] = json!("read write");
    c["roles"] = json!("a b");
    let mut r = one_key(&key);
    r.space_delimited_claims.push("roles".into());
    let v = valid(verify_with(
        vec![r],
        &bearer(&key.token(json!({}), c)),
        None,
    ));
    assert_eq!(v.payload["scope"], json!(["read", "write"]));
    assert_eq!(v.payload["roles"], json!(["a", "b"]));
}

#[test]
fn the_rule_for_the_token_issuer_decides() {
    let (a, b) = (TestKey::ed25519(), TestKey::p256());
    let mut rule_b = one_key(&b);
    rule_b.issuer = Some("issuer-b".into());
    rule_b.forward_original_token = true;
    let mut c = claims();
    c["iss"] = json!("issuer-b");
    let token = b.token(json!({}), c);
    let v = valid(verify_with(
        vec![one_key(&a), rule_b.clone()],
        &bearer(&token),
        None,
    ));
    assert_eq!((v.rule, v.principal.as_str()), (1, "issuer-b/alice"));
    assert!(v.remove_headers.is_empty(), "rule b forwards the token");
    // A rule without issuer (jwksUri only, not fetched) takes any issuer and fails.
    let mut any = rule_b;
    any.issuer = None;
    any.jwks = None;
    any.jwks_uri = Some("https://example.com/jwks".into());
    invalid(
        verify_with(vec![one_key(&a), any], &bearer(&token), None),
        JwtError::JwksUnavailable,
    );
}

#[test]
fn every_token_must_verify() {
    let key = TestKey::ed25519();
    let good = key.token(json!({}), claims());
    let bad = TestKey::ed25519().token(json!({}), claims());
    let q = format!("access_token={bad}");
    invalid(
        verify_with(vec![one_key(&key)], &bearer(&good), Some(&q)),
        JwtError::VerificationFails,
    );
    // The same token in two places is checked once and both are fine.
    let q = format!("access_token={good}");
    valid(verify_with(vec![one_key(&key)], &bearer(&good), Some(&q)));
}

#[test]
fn key_sets_are_parsed_once_per_text() {
    let key = TestKey::ed25519();
    let set = jwks(&[key.jwk("k1")]);
    let mut cache = JwksCache::new();
    let twice = policies(vec![rule(set.clone()), rule(set.clone())]);
    let first = JwtVerifier::with_cache(&twice, &mut cache);
    assert_eq!(cache.len(), 1);
    let again = JwtVerifier::with_cache(&twice, &mut cache);
    assert_eq!(cache.len(), 1);
    let token = key.token(json!({}), claims());
    valid(first.verify(&bearer(&token), None, now()));
    valid(again.verify(&bearer(&token), None, now()));
    JwtVerifier::with_cache(&policies(vec![rule(jwks(&[]))]), &mut cache);
    assert_eq!(cache.len(), 1, "the old set is dropped");
}

#[test]
fn unusable_key_sets_fail_verification() {
    let key = TestKey::ed25519();
    let token = key.token(json!({}), claims());
    let verifier = JwtVerifier::new(&policies(vec![rule("not json".into())]));
    assert!(
        verifier.warnings()[0].contains("not JSON"),
        "{:?}",
        verifier.warnings()
    );
    invalid(
        verifier.verify(&bearer(&token), None, now()),
        JwtError::JwksUnavailable,
    );
}
