//! The ratings service, a port of Istio's `ratings.js`: `GET /ratings/<id>` answers
//! `{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}`, `POST /ratings/<id>` replaces a
//! product's ratings in memory, `/health` reports health.
//!
//! `SERVICE_VERSION` picks the behaviours Istio's image has: `v1` (default) answers from
//! memory; `v-faulty` fails half the requests with 503; `v-delayed` delays half by 7 s;
//! `v-unavailable` is unavailable every other minute; `v-unhealthy` is unhealthy and
//! unavailable every other 15 minutes; `v2` reads a database — Keel ships none, so it answers
//! as Istio's does when the database is unreachable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json as json_value};

use crate::http_util::{Body, json, not_found, read_body};
use crate::server::Handler;

/// Ratings posted by users are kept for at most this many products.
const MAX_POSTED: usize = 10_000;

/// Which of Istio's ratings behaviours to have (`SERVICE_VERSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatingsMode {
    /// Ratings from memory (`v1`, and any unknown version, as ratings.js).
    Local,
    /// Database-backed (`v2`): no database here, so every read fails.
    Database,
    /// Half the reads fail with 503 (`v-faulty`).
    Faulty,
    /// Half the reads take 7 s (`v-delayed`).
    Delayed,
    /// Unavailable every other minute (`v-unavailable`).
    Unavailable,
    /// Unhealthy and unavailable every other 15 minutes (`v-unhealthy`).
    Unhealthy,
}

impl RatingsMode {
    /// The mode for a `SERVICE_VERSION` value.
    pub fn from_version(version: &str) -> Self {
        match version {
            "v2" => RatingsMode::Database,
            "v-faulty" => RatingsMode::Faulty,
            "v-delayed" => RatingsMode::Delayed,
            "v-unavailable" => RatingsMode::Unavailable,
            "v-unhealthy" => RatingsMode::Unhealthy,
            _ => RatingsMode::Local,
        }
    }
}

/// How ratings is configured.
#[derive(Debug, Clone)]
pub struct RatingsConfig {
    /// The behaviour.
    pub mode: RatingsMode,
    /// How long `v-delayed` delays (7 s in Istio's).
    pub delay: Duration,
}

impl Default for RatingsConfig {
    fn default() -> Self {
        RatingsConfig {
            mode: RatingsMode::Local,
            delay: Duration::from_secs(7),
        }
    }
}

/// The ratings app.
#[derive(Debug)]
pub struct Ratings {
    config: RatingsConfig,
    started: Instant,
    posted: Mutex<HashMap<i64, Value>>,
}

impl Ratings {
    /// A ratings app with `config`.
    pub fn new(config: RatingsConfig) -> Self {
        Ratings {
            config,
            started: Instant::now(),
            posted: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a flipping mode is in its bad phase (ratings.js flips a flag on a timer).
    fn in_bad_phase(&self) -> bool {
        let period = match self.config.mode {
            RatingsMode::Unavailable => 60,
            RatingsMode::Unhealthy => 900,
            _ => return false,
        };
        (self.started.elapsed().as_secs() / period) % 2 == 1
    }

    fn local(&self, id: i64) -> Value {
        let posted = self
            .posted
            .lock()
            .map(|p| p.get(&id).cloned())
            .ok()
            .flatten();
        posted
            .unwrap_or_else(|| json_value!({"id": id, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}))
    }

    async fn get(&self, id: i64) -> Response<Body> {
        let ok = |v: Value| json(StatusCode::OK, v.to_string());
        let unavailable = || {
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"Service unavailable"}"#,
            )
        };
        match self.config.mode {
            RatingsMode::Database => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":"could not connect to ratings database"}"#,
            ),
            RatingsMode::Faulty if rand::random::<f64>() <= 0.5 => unavailable(),
            RatingsMode::Delayed if rand::random::<f64>() <= 0.5 => {
                tokio::time::sleep(self.config.delay).await;
                ok(self.local(id))
            }
            RatingsMode::Unavailable | RatingsMode::Unhealthy if self.in_bad_phase() => {
                unavailable()
            }
            _ => ok(self.local(id)),
        }
    }

    async fn post(&self, id: i64, req: Request<Incoming>) -> Response<Body> {
        let Ok(body) = read_body(req.into_body(), 64 * 1024).await else {
            return bad_json();
        };
        let Ok(ratings) = serde_json::from_slice::<Value>(&body) else {
            return bad_json();
        };
        if self.config.mode == RatingsMode::Database {
            return json(
                StatusCode::NOT_IMPLEMENTED,
                r#"{"error":"Post not implemented for database backed ratings"}"#,
            );
        }
        let entry = json_value!({"id": id, "ratings": ratings});
        if let Ok(mut posted) = self.posted.lock()
            && (posted.len() < MAX_POSTED || posted.contains_key(&id))
        {
            posted.insert(id, entry);
        }
        json(StatusCode::OK, self.local(id).to_string())
    }
}

fn bad_json() -> Response<Body> {
    json(
        StatusCode::BAD_REQUEST,
        r#"{"error":"please provide valid ratings JSON"}"#,
    )
}

impl Handler for Ratings {
    async fn handle(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path();
        if path == "/health" && req.method() == Method::GET {
            return if self.config.mode == RatingsMode::Unhealthy && self.in_bad_phase() {
                json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"status":"Ratings is not healthy"}"#,
                )
            } else {
                json(StatusCode::OK, r#"{"status":"Ratings is healthy"}"#)
            };
        }
        let Some(rest) = path.strip_prefix("/ratings/") else {
            return not_found();
        };
        // ratings.js takes the last `/` segment of the URL (query included) and parseInt()s it.
        let last = req
            .uri()
            .path_and_query()
            .map_or(rest, |pq| pq.as_str())
            .rsplit('/')
            .next()
            .unwrap_or("");
        let Some(id) = parse_int(last) else {
            return json(
                StatusCode::BAD_REQUEST,
                r#"{"error":"please provide numeric product ID"}"#,
            );
        };
        match *req.method() {
            Method::GET => self.get(id).await,
            Method::POST => self.post(id, req).await,
            _ => not_found(),
        }
    }
}

/// JavaScript's `parseInt(s)` for the ids that fit an `i64`: leading spaces, an optional sign,
/// then as many digits as there are; `None` (NaN) when there are none.
fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let end = rest.bytes().take_while(u8::is_ascii_digit).count();
    let n: i64 = rest[..end].parse().ok()?;
    Some(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_int_is_javascripts() {
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("12abc"), Some(12));
        assert_eq!(parse_int("3?x=1"), Some(3));
        assert_eq!(parse_int(" -4"), Some(-4));
        assert_eq!(parse_int("abc"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("-"), None);
    }

    #[test]
    fn versions_map_to_modes() {
        assert_eq!(RatingsMode::from_version("v1"), RatingsMode::Local);
        assert_eq!(RatingsMode::from_version("v2"), RatingsMode::Database);
        assert_eq!(RatingsMode::from_version("v-faulty"), RatingsMode::Faulty);
        assert_eq!(RatingsMode::from_version("whatever"), RatingsMode::Local);
    }
}
