//! A compact JWS (`header.payload.signature`) decoded, not yet trusted; and the errors of JWT
//! authentication, worded as Envoy's `jwt_authn` words them (its 401 body is the message).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Why a request's token was refused. `Display` is Envoy's status message, which Envoy (and
/// so Istio) sends as the body of the 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("Jwt is missing")]
    Missing,
    #[error("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")]
    BadFormat,
    #[error("Jwt header is an invalid Base64url encoded")]
    HeaderBadBase64,
    #[error("Jwt header is an invalid JSON")]
    HeaderBadJson,
    #[error("Jwt header [alg] field is required and must be a string")]
    HeaderBadAlg,
    /// `none`, HMAC (`HS256`…) and anything ring can't verify. Keel refuses HMAC: a shared
    /// secret in a mesh-wide policy is a secret every proxy holds.
    #[error("Jwt header [alg] is not supported")]
    AlgNotSupported(String),
    #[error("Jwt header [kid] field is not a string")]
    HeaderBadKid,
    #[error("Jwt payload is an invalid Base64url encoded")]
    PayloadBadBase64,
    #[error("Jwt payload is an invalid JSON")]
    PayloadBadJson,
    #[error("Jwt payload [{0}] field is not a string")]
    ClaimNotString(&'static str),
    #[error("Jwt payload [aud] field is not a string or string list")]
    AudNotStrings,
    #[error("Jwt payload [{0}] field is not an integer")]
    ClaimNotInteger(&'static str),
    #[error("Jwt signature is an invalid Base64url encoded")]
    SignatureBadBase64,
    #[error("Jwt issuer is not configured")]
    UnknownIssuer,
    #[error("Audiences in Jwt are not allowed")]
    AudienceNotAllowed,
    #[error("Jwt is expired")]
    Expired,
    #[error("Jwt not yet valid")]
    NotYetValid,
    #[error("Jwks doesn't have key to match kid or alg from Jwt")]
    NoMatchingKey,
    #[error("Jwt verification fails")]
    VerificationFails,
    /// The rule's keys are behind `jwksUri` (or OpenID discovery) and were never fetched.
    #[error("Jwks remote fetch is failed")]
    JwksUnavailable,
}

impl JwtError {
    /// Envoy's response code details for the 401 (`%RESPONSE_CODE_DETAILS%` in access logs):
    /// `jwt_authn_access_denied{Jwt_is_expired}`.
    pub fn response_code_details(&self) -> String {
        format!(
            "jwt_authn_access_denied{{{}}}",
            self.to_string().replace(' ', "_")
        )
    }
}

/// The JWS algorithms Keel verifies (all asymmetric, all in ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    pub fn parse(name: &str) -> Result<Alg, JwtError> {
        Ok(match name {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "EdDSA" => Alg::EdDSA,
            other => return Err(JwtError::AlgNotSupported(other.to_string())),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }
}

/// A token split and decoded; nothing in it is trusted until the signature is checked.
#[derive(Debug)]
pub struct Token<'a> {
    pub alg: Alg,
    pub kid: Option<String>,
    pub payload: Value,
    /// The payload segment as sent, base64url (what `outputPayloadToHeader` forwards, as
    /// Envoy does, rather than re-encoding the JSON).
    pub payload_b64: &'a str,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

impl<'a> Token<'a> {
    pub fn decode(raw: &'a str) -> Result<Token<'a>, JwtError> {
        let mut parts = raw.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::BadFormat);
        };
        let header_bytes = URL_SAFE_NO_PAD
            .decode(h)
            .map_err(|_| JwtError::HeaderBadBase64)?;
        let header: Value =
            serde_json::from_slice(&header_bytes).map_err(|_| JwtError::HeaderBadJson)?;
        if !header.is_object() {
            return Err(JwtError::HeaderBadJson);
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwtError::HeaderBadAlg)?;
        let alg = Alg::parse(alg)?;
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(JwtError::HeaderBadKid),
        };
        let payload_bytes = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| JwtError::PayloadBadBase64)?;
        let payload: Value =
            serde_json::from_slice(&payload_bytes).map_err(|_| JwtError::PayloadBadJson)?;
        if !payload.is_object() {
            return Err(JwtError::PayloadBadJson);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| JwtError::SignatureBadBase64)?;
        Ok(Token {
            alg,
            kid,
            payload,
            payload_b64: p,
            signing_input: &raw[..h.len() + 1 + p.len()],
            signature,
        })
    }

    /// A string claim, `None` when absent; another type is an error (as in Envoy).
    pub fn string_claim(&self, name: &'static str) -> Result<Option<&str>, JwtError> {
        match self.payload.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(JwtError::ClaimNotString(name)),
        }
    }

    /// A NumericDate claim (`exp`, `nbf`) in whole seconds.
    pub fn time_claim(&self, name: &'static str) -> Result<Option<u64>, JwtError> {
        match self.payload.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                // RFC 7519 allows fractional seconds; negative dates are simply in the past.
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f.max(0.0) as u64)
                })
                .map(Some)
                .ok_or(JwtError::ClaimNotInteger(name)),
        }
    }

    /// `aud` as a list: a string or a list of strings.
    pub fn audiences(&self) -> Result<Vec<&str>, JwtError> {
        match self.payload.get("aud") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.as_str()]),
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().ok_or(JwtError::AudNotStrings))
                .collect(),
            Some(_) => Err(JwtError::AudNotStrings),
        }
    }
}
