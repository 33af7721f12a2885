//! httpbin, shaped like the go-httpbin image Istio's `samples/httpbin/httpbin.yaml` runs
//! (`mccutchen/go-httpbin`, container port 8080 behind service port 8000): JSON pretty-printed
//! with sorted keys, header and query values as arrays, errors as
//! `{"status_code": 404, "error": "Not Found"}`.
//!
//! Endpoints: `/`, `/get`, `/post`, `/put`, `/patch`, `/delete`, `/anything[/...]`,
//! `/headers`, `/ip`, `/user-agent`, `/hostname`, `/status/{codes}` (one code, or a weighted
//! choice `200:0.9,503:0.1`), `/delay/{duration}` (seconds or a Go duration, at most 10 s).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::Value;

use crate::http_util::{Body, MAX_REQUEST_BODY, base64_url, html, parse_form, read_body, respond};
use crate::server::Handler;

const JSON: &str = "application/json; charset=utf-8";

/// How httpbin is configured.
#[derive(Debug, Clone)]
pub struct HttpbinConfig {
    /// The longest `/delay` allowed (go-httpbin's `-max-duration`, 10 s).
    pub max_duration: Duration,
    /// What `/hostname` answers.
    pub hostname: String,
}

impl Default for HttpbinConfig {
    fn default() -> Self {
        HttpbinConfig {
            max_duration: Duration::from_secs(10),
            hostname: "go-httpbin".to_owned(),
        }
    }
}

/// The httpbin app.
#[derive(Debug, Clone, Default)]
pub struct Httpbin {
    config: HttpbinConfig,
}

type Values = BTreeMap<String, Vec<String>>;

/// go-httpbin's `noBodyResponse` and `bodyResponse`, fields in their order; the body fields
/// only in the latter.
#[derive(Debug, Serialize)]
struct Echo {
    args: Values,
    headers: Values,
    method: String,
    origin: String,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<Values>,
    #[serde(skip_serializing_if = "Option::is_none")]
    form: Option<Values>,
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<Value>,
}

/// go-httpbin's error body.
#[derive(Debug, Serialize)]
struct ErrorReply {
    status_code: u16,
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl Httpbin {
    /// An httpbin with `config`.
    pub fn new(config: HttpbinConfig) -> Self {
        Httpbin { config }
    }
}

impl Handler for Httpbin {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let get = method == Method::GET || method == Method::HEAD;
        match path.as_str() {
            "/" if get => html(StatusCode::OK, INDEX),
            "/get" if get => pretty(StatusCode::OK, &echo(&req, peer)),
            "/headers" if get => pretty(
                StatusCode::OK,
                &serde_json::json!({"headers": headers(req.headers(), &host(&req))}),
            ),
            "/ip" if get => pretty(
                StatusCode::OK,
                &serde_json::json!({"origin": origin(req.headers(), peer)}),
            ),
            "/user-agent" if get => {
                let ua = req
                    .headers()
                    .get("user-agent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                pretty(StatusCode::OK, &serde_json::json!({"user-agent": ua}))
            }
            "/hostname" if get => pretty(
                StatusCode::OK,
                &serde_json::json!({"hostname": self.config.hostname}),
            ),
            "/post" if method == Method::POST => with_body(req, peer).await,
            "/put" if method == Method::PUT => with_body(req, peer).await,
            "/patch" if method == Method::PATCH => with_body(req, peer).await,
            "/delete" if method == Method::DELETE => with_body(req, peer).await,
            "/" | "/get" | "/headers" | "/ip" | "/user-agent" | "/hostname" | "/post" | "/put"
            | "/patch" | "/delete" => error(StatusCode::METHOD_NOT_ALLOWED, None),
            p if p == "/anything" || p.starts_with("/anything/") => {
                if method == Method::HEAD {
                    pretty(StatusCode::OK, &echo(&req, peer))
                } else {
                    with_body(req, peer).await
                }
            }
            p => match p.split('/').collect::<Vec<_>>().as_slice() {
                ["", "status", codes] => status(codes),
                ["", "delay", d] => match parse_delay(d, self.config.max_duration) {
                    Ok(delay) => {
                        tokio::time::sleep(delay).await;
                        with_body(req, peer).await
                    }
                    Err(detail) => error(
                        StatusCode::BAD_REQUEST,
                        Some(format!("invalid duration: {detail}")),
                    ),
                },
                _ => error(StatusCode::NOT_FOUND, None),
            },
        }
    }
}

/// JSON as go-httpbin writes it: two-space indent, trailing newline.
fn pretty<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let mut body = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".to_owned());
    body.push('\n');
    respond(status, JSON, body)
}

fn error(status: StatusCode, detail: Option<String>) -> Response<Body> {
    let reply = ErrorReply {
        status_code: status.as_u16(),
        error: status.canonical_reason().unwrap_or(""),
        detail,
    };
    pretty(status, &reply)
}

fn host(req: &Request<Incoming>) -> String {
    req.headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

/// Go's canonical header key: `x-b3-traceid` → `X-B3-Traceid`.
pub fn canonical_header(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

fn headers(map: &HeaderMap, host: &str) -> Values {
    let mut out = Values::new();
    for (name, value) in map {
        if name == http::header::HOST {
            continue;
        }
        out.entry(canonical_header(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    out.insert("Host".to_owned(), vec![host.to_owned()]);
    out
}

/// The client's address: the first `X-Forwarded-For` entry (or a platform's client-IP header),
/// else the peer's IP.
fn origin(map: &HeaderMap, peer: SocketAddr) -> String {
    let get = |name: &str| {
        map.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    for name in [
        "fly-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "true-client-ip",
    ] {
        if let Some(ip) = get(name) {
            return ip.to_owned();
        }
    }
    if let Some(xff) = get("x-forwarded-for") {
        return xff.split(',').next().unwrap_or("").trim().to_owned();
    }
    peer.ip().to_string()
}

fn url(req: &Request<Incoming>) -> String {
    let h = req.headers();
    let get = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    };
    let scheme = get("x-forwarded-proto")
        .or_else(|| get("x-forwarded-protocol"))
        .or_else(|| (get("x-forwarded-ssl") == Some("on")).then_some("https"))
        .unwrap_or("http");
    let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    format!("{scheme}://{}{pq}", host(req))
}

fn args(req: &Request<Incoming>) -> Values {
    let mut out = Values::new();
    for (k, v) in req.uri().query().map(parse_form).unwrap_or_default() {
        out.entry(k).or_default().push(v);
    }
    out
}

fn echo(req: &Request<Incoming>, peer: SocketAddr) -> Echo {
    Echo {
        args: args(req),
        headers: headers(req.headers(), &host(req)),
        method: req.method().to_string(),
        origin: origin(req.headers(), peer),
        url: url(req),
        data: None,
        files: None,
        form: None,
        json: None,
    }
}

/// go-httpbin's `RequestWithBody`: the echo plus `data`, `files`, `form` and `json`, parsed by
/// content type (forms, JSON, text; anything else as a base64 data URL).
async fn with_body(req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let mut resp = echo(&req, peer);
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let body: Bytes = match read_body(req.into_body(), MAX_REQUEST_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                Some(format!("error parsing request body: {e}")),
            );
        }
    };
    resp.files = Some(Values::new());
    resp.form = Some(Values::new());
    resp.data = Some(String::new());
    resp.json = Some(Value::Null);
    if !body.is_empty() {
        resp.data = Some(String::from_utf8_lossy(&body).into_owned());
        match content_type.as_str() {
            "text/html" | "text/plain" => {}
            "application/x-www-form-urlencoded" => {
                let mut form = Values::new();
                for (k, v) in parse_form(&String::from_utf8_lossy(&body)) {
                    form.entry(k).or_default().push(v);
                }
                resp.form = Some(form);
            }
            "application/json" => match serde_json::from_slice(&body) {
                Ok(v) => resp.json = Some(v),
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        Some(format!("error parsing request body: {e}")),
                    );
                }
            },
            other => {
                let ct = if other.is_empty() {
                    "application/octet-stream"
                } else {
                    other
                };
                resp.data = Some(format!("data:{ct};base64,{}", base64_url(&body)));
            }
        }
    }
    pretty(StatusCode::OK, &resp)
}

/// `/status/418`, or a weighted random choice: `/status/200:0.9,503:0.1`.
fn status(codes: &str) -> Response<Body> {
    let code = if codes.contains(',') {
        let mut choices = Vec::new();
        for choice in codes.split(',') {
            let (code, weight) = choice.split_once(':').unwrap_or((choice, "1"));
            let (Some(code), Ok(weight)) = (parse_code(code), weight.parse::<f64>()) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    Some(format!("invalid choice: {choice:?}")),
                );
            };
            if !weight.is_finite() || weight < 0.0 {
                return error(
                    StatusCode::BAD_REQUEST,
                    Some(format!("invalid weight: {choice:?}")),
                );
            }
            choices.push((code, weight));
        }
        let total: f64 = choices.iter().map(|c| c.1).sum();
        let mut pick = rand::random::<f64>() * total;
        let mut chosen = choices.last().map_or(StatusCode::OK, |c| c.0);
        for (code, weight) in choices {
            if pick < weight {
                chosen = code;
                break;
            }
            pick -= weight;
        }
        chosen
    } else {
        match parse_code(codes) {
            Some(code) => code,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    Some(format!("invalid status code: {codes:?}")),
                );
            }
        }
    };
    let (headers, body): (&[(&str, &str)], &str) = match code.as_u16() {
        301 | 302 | 303 | 305 | 307 => (&[("location", "/redirect/1")], ""),
        300 | 308 => (&[("location", "/image/jpeg")], ""),
        401 => (&[("www-authenticate", "Basic realm=\"Fake Realm\"")], ""),
        407 => (&[("proxy-authenticate", "Basic realm=\"Fake Realm\"")], ""),
        418 => (
            &[("x-more-info", "http://tools.ietf.org/html/rfc2324")],
            "I'm a teapot!",
        ),
        _ => (&[], ""),
    };
    let mut res = respond(code, "text/plain; charset=utf-8", body);
    for (name, value) in headers {
        res.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    res
}

/// A status code httpbin can answer with: 200–599 (informational codes are not final answers).
fn parse_code(s: &str) -> Option<StatusCode> {
    let n: u16 = s.trim().parse().ok()?;
    if !(200..=599).contains(&n) {
        return None;
    }
    StatusCode::from_u16(n).ok()
}

/// A delay in seconds (`1.5`) or as a Go duration (`1500ms`, `1m`), within `[0, max]`.
fn parse_delay(input: &str, max: Duration) -> Result<Duration, String> {
    let d = parse_go_duration(input)
        .or_else(|| {
            input
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 1e9)
                .map(Duration::from_secs_f64)
        })
        .ok_or_else(|| format!("{input:?} is not a duration"))?;
    if d > max {
        return Err(format!("duration {d:?} longer than {max:?}"));
    }
    Ok(d)
}

/// Go's `time.ParseDuration` for non-negative values: `300ms`, `1.5h`, `2h45m`.
fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * secs;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && total <= 1e9).then(|| Duration::from_secs_f64(total))
}

const INDEX: &str = "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>httpbin</title></head>\n<body>\n<h1>httpbin</h1>\n<p>A simple HTTP request and response service (Keel's port of go-httpbin, as Istio's samples use it).</p>\n<ul>\n<li><a href=\"/get\">/get</a> the request's query, headers, origin and URL</li>\n<li>/post, /put, /patch, /delete, <a href=\"/anything\">/anything</a> the same plus the request body</li>\n<li><a href=\"/headers\">/headers</a> the request headers</li>\n<li><a href=\"/ip\">/ip</a> the client's address</li>\n<li><a href=\"/user-agent\">/user-agent</a>, <a href=\"/hostname\">/hostname</a></li>\n<li><a href=\"/status/418\">/status/{codes}</a> answers with the status (or a weighted choice: 200:0.9,503:0.1)</li>\n<li><a href=\"/delay/1\">/delay/{duration}</a> answers after a delay (at most 10 s)</li>\n</ul>\n</body>\n</html>\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_canonical_like_go() {
        assert_eq!(canonical_header("x-b3-traceid"), "X-B3-Traceid");
        assert_eq!(canonical_header("user-agent"), "User-Agent");
        assert_eq!(canonical_header("end-user"), "End-User");
    }

    #[test]
    fn delays_parse_as_seconds_or_go_durations() {
        let max = Duration::from_secs(10);
        assert_eq!(parse_delay("1", max), Ok(Duration::from_secs(1)));
        assert_eq!(parse_delay("0.5", max), Ok(Duration::from_millis(500)));
        assert_eq!(parse_delay("1500ms", max), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_delay("1s500ms", max), Ok(Duration::from_millis(1500)));
        assert!(parse_delay("11", max).is_err());
        assert!(parse_delay("1m", max).is_err());
        assert!(parse_delay("-1", max).is_err());
        assert!(parse_delay("abc", max).is_err());
        assert!(parse_delay("NaN", max).is_err());
        assert!(parse_delay("1e400", max).is_err());
        assert!(parse_delay("", max).is_err());
    }

    #[test]
    fn status_codes_are_bounded() {
        assert_eq!(parse_code("418"), Some(StatusCode::IM_A_TEAPOT));
        assert_eq!(parse_code("100"), None);
        assert_eq!(parse_code("600"), None);
        assert_eq!(parse_code("x"), None);
    }
}
