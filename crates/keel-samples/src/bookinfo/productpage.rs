//! productpage, a port of Istio's `productpage.py`: the HTML page (`/productpage`), the JSON
//! API (`/api/v1/products...`), sign-in (`/login`, `/logout`) and health.
//!
//! Like Istio's it calls details and then reviews, one after the other, each with a 3 s
//! timeout, and tries reviews twice (`for _ in range(2)`, kept in Istio "for illustration in
//! the fault injection task"). Outgoing calls carry the incoming trace headers, a fresh B3
//! context when none came in, and `end-user: <user>` once someone signed in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, REFERER, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json as json_value};

use crate::bookinfo::page::{self, PageView};
use crate::bookinfo::products;
use crate::client::{Client, Target};
use crate::http_util::{
    Body, cookie, html, json, method_not_allowed, not_found, parse_form, percent_encode, read_body,
    redirect, respond, text,
};
use crate::propagate;
use crate::server::Handler;

/// The cookie that holds the signed-in user.
pub const USER_COOKIE: &str = "user";

/// How productpage is configured.
#[derive(Debug, Clone)]
pub struct ProductpageConfig {
    /// Where details is (`http://details:9080`).
    pub details: Target,
    /// Where reviews is (`http://reviews:9080`).
    pub reviews: Target,
    /// Where ratings is (`http://ratings:9080`), for `/api/v1/products/<id>/ratings`.
    pub ratings: Target,
    /// Timeout of a details call (3 s).
    pub details_timeout: Duration,
    /// Timeout of each reviews attempt (3 s).
    pub reviews_timeout: Duration,
    /// Timeout of a ratings call (3 s).
    pub ratings_timeout: Duration,
    /// How many times reviews is tried (2).
    pub reviews_attempts: u32,
    /// Extra reviews calls per page view, to demonstrate rate limiting (`FLOOD_FACTOR`, 0).
    pub flood_factor: u32,
    /// Makes the calls (through the HTTP proxy, when configured).
    pub client: Client,
}

impl ProductpageConfig {
    /// Istio's settings for the given service addresses.
    pub fn new(details: Target, reviews: Target, ratings: Target, client: Client) -> Self {
        ProductpageConfig {
            details,
            reviews,
            ratings,
            details_timeout: Duration::from_secs(3),
            reviews_timeout: Duration::from_secs(3),
            ratings_timeout: Duration::from_secs(3),
            reviews_attempts: 2,
            flood_factor: 0,
            client,
        }
    }
}

/// The productpage app.
#[derive(Debug)]
pub struct Productpage {
    config: ProductpageConfig,
    /// Outgoing calls by (destination app, response code), served at `/metrics`.
    results: Mutex<BTreeMap<(&'static str, String), u64>>,
}

/// A call's outcome as productpage uses it: the status (500 when there was no reply), the JSON
/// (or `{"error": ...}`) and, for a good reply, its body as received (served as is by the API,
/// which keeps the upstream's field order).
type Outcome = (StatusCode, Value, Option<Bytes>);

impl Productpage {
    /// A productpage with `config`.
    pub fn new(config: ProductpageConfig) -> Self {
        Productpage {
            config,
            results: Mutex::new(BTreeMap::new()),
        }
    }

    async fn call(
        &self,
        app: &'static str,
        target: &Target,
        path: &str,
        headers: &HeaderMap,
        timeout: Duration,
    ) -> Option<Outcome> {
        let reply = self
            .config
            .client
            .get(target, path, headers.clone(), timeout)
            .await;
        let code = reply
            .as_ref()
            .map_or_else(|_| "error".to_owned(), |r| r.status.as_u16().to_string());
        if let Ok(mut results) = self.results.lock() {
            *results.entry((app, code)).or_insert(0) += 1;
        }
        let reply = reply.ok()?;
        if reply.status != StatusCode::OK {
            return Some((reply.status, Value::Null, None));
        }
        match serde_json::from_slice(&reply.body) {
            Ok(value) => Some((StatusCode::OK, value, Some(reply.body))),
            Err(_) => Some((StatusCode::INTERNAL_SERVER_ERROR, Value::Null, None)),
        }
    }

    async fn details(&self, id: &str, headers: &HeaderMap) -> Outcome {
        let cfg = &self.config;
        let outcome = self
            .call(
                "details",
                &cfg.details,
                &format!("/details/{id}"),
                headers,
                cfg.details_timeout,
            )
            .await;
        settle(
            outcome,
            "Sorry, product details are currently unavailable for this book.",
        )
    }

    async fn reviews(&self, id: &str, headers: &HeaderMap) -> Outcome {
        let cfg = &self.config;
        let path = format!("/reviews/{id}");
        let mut last = None;
        for _ in 0..cfg.reviews_attempts.max(1) {
            last = self
                .call("reviews", &cfg.reviews, &path, headers, cfg.reviews_timeout)
                .await;
            if matches!(last, Some((StatusCode::OK, ..))) {
                break;
            }
        }
        settle(
            last,
            "Sorry, product reviews are currently unavailable for this book.",
        )
    }

    async fn ratings(&self, id: &str, headers: &HeaderMap) -> Outcome {
        let cfg = &self.config;
        let outcome = self
            .call(
                "ratings",
                &cfg.ratings,
                &format!("/ratings/{id}"),
                headers,
                cfg.ratings_timeout,
            )
            .await;
        settle(
            outcome,
            "Sorry, product ratings are currently unavailable for this book.",
        )
    }

    async fn front(&self, incoming: &HeaderMap) -> Response<Body> {
        let user = signed_in(incoming);
        let headers = forward_headers(incoming, user.as_deref());
        let products = products();
        let Some(product) = products.first() else {
            return not_found();
        };
        let (details_status, details, _) = self.details("0", &headers).await;
        if self.config.flood_factor > 0 {
            let flood = (0..self.config.flood_factor).map(|_| self.reviews("0", &headers));
            futures_util::future::join_all(flood).await;
        }
        let (reviews_status, reviews, _) = self.reviews("0", &headers).await;
        html(
            StatusCode::OK,
            page::product_page(&PageView {
                user: user.as_deref(),
                product,
                details: (details_status.as_u16(), &details),
                reviews: (reviews_status.as_u16(), &reviews),
            }),
        )
    }

    async fn api(&self, rest: &str, incoming: &HeaderMap) -> Response<Body> {
        let headers = forward_headers(incoming, signed_in(incoming).as_deref());
        let (status, value, raw) = match rest.split('/').collect::<Vec<_>>().as_slice() {
            [id] if !id.is_empty() => self.details(id, &headers).await,
            [id, "reviews"] if !id.is_empty() => self.reviews(id, &headers).await,
            [id, "ratings"] if !id.is_empty() => self.ratings(id, &headers).await,
            _ => return not_found(),
        };
        match raw {
            Some(body) => json(status, body),
            None => json(status, value.to_string()),
        }
    }

    fn metrics(&self) -> Response<Body> {
        let mut out = String::from(
            "# HELP request_result_total Results of productpage's calls to other services.\n# TYPE request_result_total counter\n",
        );
        if let Ok(results) = self.results.lock() {
            for ((app, code), n) in results.iter() {
                let _ = writeln!(
                    out,
                    "request_result_total{{destination_app=\"{app}\",response_code=\"{code}\"}} {n}"
                );
            }
        }
        respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            out,
        )
    }

    fn index(&self) -> Response<Body> {
        let url = |t: &Target| format!("http://{t}");
        let cfg = &self.config;
        html(
            StatusCode::OK,
            page::index_page(&url(&cfg.details), &url(&cfg.reviews), &url(&cfg.ratings)),
        )
    }
}

/// productpage.py's rule: a 200 with JSON is used as is; anything else keeps the status (500
/// when there was no reply) and shows `message`.
fn settle(outcome: Option<Outcome>, message: &str) -> Outcome {
    match outcome {
        Some((StatusCode::OK, value, raw)) => (StatusCode::OK, value, raw),
        Some((status, ..)) => (status, json_value!({ "error": message }), None),
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json_value!({ "error": message }),
            None,
        ),
    }
}

/// The signed-in user, from the `user` cookie.
fn signed_in(headers: &HeaderMap) -> Option<String> {
    cookie(headers, USER_COOKIE).filter(|u| !u.is_empty())
}

/// The headers productpage puts on its calls: trace context (started here when absent), the
/// user-agent, cookie and credentials it received, and `end-user` for a signed-in user.
pub fn forward_headers(incoming: &HeaderMap, user: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    propagate::copy(incoming, propagate::TRACE_HEADERS, &mut headers);
    propagate::copy(incoming, propagate::PRODUCTPAGE_EXTRA, &mut headers);
    propagate::ensure_b3(&mut headers);
    if let Some(Ok(value)) = user.map(HeaderValue::from_str) {
        headers.insert("end-user", value);
    }
    headers
}

/// Where `/login` and `/logout` send the browser back to: the page it came from.
fn back(headers: &HeaderMap) -> String {
    headers
        .get(REFERER)
        .and_then(|r| r.to_str().ok())
        .filter(|r| !r.is_empty())
        .unwrap_or("/productpage")
        .to_owned()
}

async fn login(req: Request<Incoming>) -> Response<Body> {
    let to = back(req.headers());
    let query = req.uri().query().map(parse_form).unwrap_or_default();
    let form = match read_body(req.into_body(), 64 * 1024).await {
        Ok(body) => parse_form(&String::from_utf8_lossy(&body)),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large\n"),
    };
    // Flask's request.values: the form, then the query string.
    let user = form
        .into_iter()
        .chain(query)
        .find(|(k, _)| k == "username")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let mut res = redirect(&to);
    let cookie = format!(
        "{USER_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
        percent_encode(&user)
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(SET_COOKIE, value);
    }
    res
}

fn logout(headers: &HeaderMap) -> Response<Body> {
    let mut res = redirect(&back(headers));
    let cookie = format!("{USER_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(SET_COOKIE, value);
    }
    res
}

impl Handler for Productpage {
    async fn handle(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let read = matches!(*req.method(), Method::GET | Method::HEAD);
        match path.as_str() {
            "/login" if req.method() == Method::POST => login(req).await,
            "/login" => method_not_allowed(),
            _ if !read => method_not_allowed(),
            "/" | "/index.html" => self.index(),
            "/health" => html(StatusCode::OK, "Product page is healthy"),
            "/logout" => logout(req.headers()),
            "/productpage" => self.front(req.headers()).await,
            "/api/v1/products" => match serde_json::to_vec(&products()) {
                Ok(body) => json(StatusCode::OK, body),
                Err(_) => json(StatusCode::INTERNAL_SERVER_ERROR, "[]"),
            },
            "/metrics" => self.metrics(),
            "/static/bookinfo.css" => {
                respond(StatusCode::OK, "text/css; charset=utf-8", page::STYLESHEET)
            }
            p => match p.strip_prefix("/api/v1/products/") {
                Some(rest) => self.api(rest, req.headers()).await,
                None => not_found(),
            },
        }
    }
}
