//! The reviews service, a port of Istio's `LibertyRestEndpoint.java`: `/reviews/<id>` answers
//! two reviews of the book, with star ratings fetched from ratings when enabled.
//!
//! Istio builds three images from one source: v1 (`ENABLE_RATINGS=false`), v2
//! (`ENABLE_RATINGS=true`, `STAR_COLOR=black`) and v3 (`ENABLE_RATINGS=true`,
//! `STAR_COLOR=red`). The timeout to ratings follows the star color exactly as the Java code
//! does: 10 s for black, 2.5 s otherwise.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{ACCEPT, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::Value;

use crate::bookinfo::parse_id;
use crate::client::{Client, Target};
use crate::http_util::{Body, json, method_not_allowed, not_found};
use crate::log;
use crate::propagate;
use crate::server::Handler;

/// What a review shows when ratings could not be had.
pub const RATINGS_UNAVAILABLE: &str = "Ratings service is currently unavailable";

/// How reviews is configured.
#[derive(Debug, Clone)]
pub struct ReviewsConfig {
    /// Call ratings and show stars (`ENABLE_RATINGS`).
    pub ratings_enabled: bool,
    /// The stars' color (`STAR_COLOR`).
    pub star_color: String,
    /// Where ratings is.
    pub ratings: Target,
    /// The whole ratings call must finish within this.
    pub ratings_timeout: Duration,
    /// Reported as `podname` (`HOSTNAME` in Kubernetes).
    pub pod_name: String,
    /// Reported as `clustername` (`CLUSTER_NAME`); Java prints an unset one as `null`.
    pub cluster_name: Option<String>,
    /// Makes the call (through the HTTP proxy, when configured).
    pub client: Client,
}

impl ReviewsConfig {
    /// The settings Istio's image for `version` (`v1`, `v2`, `v3`) bakes in; an unknown version
    /// is v1, whose image defaults apply.
    pub fn for_version(version: &str, ratings: Target, pod_name: String, client: Client) -> Self {
        let (enabled, color) = match version {
            "v2" => (true, "black"),
            "v3" => (true, "red"),
            _ => (false, "black"),
        };
        ReviewsConfig {
            ratings_enabled: enabled,
            star_color: color.to_owned(),
            ratings,
            ratings_timeout: ratings_timeout_for(color),
            pod_name,
            cluster_name: None,
            client,
        }
    }
}

/// The Java code's ratings timeout (connect and receive): 10 s when the stars are black,
/// 2.5 s for any other color.
pub fn ratings_timeout_for(star_color: &str) -> Duration {
    if star_color == "black" {
        Duration::from_millis(10_000)
    } else {
        Duration::from_millis(2_500)
    }
}

/// The reviews app.
#[derive(Debug, Clone)]
pub struct Reviews {
    config: ReviewsConfig,
}

#[derive(Debug, Serialize)]
struct ReviewsReply<'a> {
    id: String,
    podname: &'a str,
    clustername: &'a str,
    reviews: [Review; 2],
}

#[derive(Debug, Serialize)]
struct Review {
    reviewer: &'static str,
    text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rating: Option<Rating>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Rating {
    Stars { stars: i64, color: String },
    Error { error: &'static str },
}

impl Reviews {
    /// A reviews app with `config`.
    pub fn new(config: ReviewsConfig) -> Self {
        Reviews { config }
    }

    /// Both reviewers' stars, or `None` for each that could not be had.
    async fn stars(&self, id: i64, incoming: &HeaderMap) -> [Option<i64>; 2] {
        let mut headers = HeaderMap::new();
        propagate::copy(incoming, propagate::TRACE_HEADERS, &mut headers);
        propagate::copy(incoming, propagate::REVIEWS_EXTRA, &mut headers);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let cfg = &self.config;
        let url = format!("http://{}/ratings", cfg.ratings);
        let reply = cfg
            .client
            .get(
                &cfg.ratings,
                &format!("/ratings/{id}"),
                headers,
                cfg.ratings_timeout,
            )
            .await;
        let reply = match reply {
            Ok(r) if r.status == StatusCode::OK => r,
            Ok(r) => {
                log!(
                    "Error: unable to contact {url} got status of {}",
                    r.status.as_u16()
                );
                return [None, None];
            }
            Err(e) => {
                log!("Error: unable to contact {url} got exception {e}");
                return [None, None];
            }
        };
        let Ok(body) = serde_json::from_slice::<Value>(&reply.body) else {
            log!("Error: {url} answered something that is not JSON");
            return [None, None];
        };
        let star = |reviewer: &str| {
            let v = body.get("ratings")?.get(reviewer)?;
            // Java's JsonNumber.intValue() truncates.
            v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
        };
        [star("Reviewer1"), star("Reviewer2")]
    }

    fn rating(&self, stars: Option<i64>) -> Option<Rating> {
        if !self.config.ratings_enabled {
            return None;
        }
        Some(match stars {
            Some(stars) => Rating::Stars {
                stars,
                color: self.config.star_color.clone(),
            },
            None => Rating::Error {
                error: RATINGS_UNAVAILABLE,
            },
        })
    }

    async fn reviews(&self, id: i64, headers: &HeaderMap) -> Response<Body> {
        let [s1, s2] = if self.config.ratings_enabled {
            self.stars(id, headers).await
        } else {
            [None, None]
        };
        let reply = ReviewsReply {
            id: id.to_string(),
            podname: &self.config.pod_name,
            clustername: self.config.cluster_name.as_deref().unwrap_or("null"),
            reviews: [
                Review {
                    reviewer: "Reviewer1",
                    text: "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
                    rating: self.rating(s1),
                },
                Review {
                    reviewer: "Reviewer2",
                    text: "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.",
                    rating: self.rating(s2),
                },
            ],
        };
        match serde_json::to_vec(&reply) {
            Ok(body) => json(StatusCode::OK, body),
            Err(_) => json(StatusCode::INTERNAL_SERVER_ERROR, "{}"),
        }
    }
}

impl Handler for Reviews {
    async fn handle(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path();
        let route = if path == "/health" {
            Some(None)
        } else {
            path.strip_prefix("/reviews/")
                .and_then(|id| i32::try_from(parse_id(id)?).ok())
                .map(|id| Some(i64::from(id)))
        };
        let Some(route) = route else {
            return not_found();
        };
        if req.method() != Method::GET {
            return method_not_allowed();
        }
        match route {
            None => json(StatusCode::OK, r#"{"status": "Reviews is healthy"}"#),
            Some(id) => self.reviews(id, req.headers()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_bake_in_istios_settings() {
        let t = || Target::new("ratings", 9080);
        let v1 = ReviewsConfig::for_version("v1", t(), "p".into(), Client::default());
        assert!(!v1.ratings_enabled);
        let v2 = ReviewsConfig::for_version("v2", t(), "p".into(), Client::default());
        assert!(v2.ratings_enabled);
        assert_eq!(v2.star_color, "black");
        assert_eq!(v2.ratings_timeout, Duration::from_secs(10));
        let v3 = ReviewsConfig::for_version("v3", t(), "p".into(), Client::default());
        assert_eq!(v3.star_color, "red");
        assert_eq!(v3.ratings_timeout, Duration::from_millis(2500));
    }
}
