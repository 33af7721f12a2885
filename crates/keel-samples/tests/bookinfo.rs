//! Bookinfo end to end, in process: productpage, details, reviews and ratings on ephemeral
//! loopback ports, calling each other by service name (`http://reviews:9080`) through a test
//! HTTP proxy — which also proves the apps honour their HTTP proxy setting, as Keel's local mesh
//! relies on.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use std::time::{Duration, Instant};

use keel_samples::bookinfo::details::Details;
use keel_samples::bookinfo::productpage::{Productpage, ProductpageConfig};
use keel_samples::bookinfo::ratings::{Ratings, RatingsConfig};
use keel_samples::bookinfo::reviews::{Reviews, ReviewsConfig};
use keel_samples::client::Target;
use keel_samples::server::Server;
use support::*;

const REVIEWS_JSON: &str = r#"{"id": "0","podname": "fake-reviews","clustername": "null","reviews": [{"reviewer": "Reviewer1","text": "fake text"}]}"#;

/// Bookinfo behind a test proxy. Services not started are still routed (to a closed port).
struct Bookinfo {
    proxy: MeshProxy,
    productpage: Server,
    _others: Vec<Server>,
}

#[derive(Clone, Copy)]
enum RatingsState {
    Real,
    Down,
}

struct Setup {
    reviews_version: &'static str,
    ratings: RatingsState,
    fake_ratings: Option<Fake>,
    fake_reviews: Option<Fake>,
    details_down: bool,
    ratings_timeout: Option<Duration>,
    reviews_timeout: Option<Duration>,
}

impl Setup {
    fn version(v: &'static str) -> Self {
        Setup {
            reviews_version: v,
            ratings: RatingsState::Real,
            fake_ratings: None,
            fake_reviews: None,
            details_down: false,
            ratings_timeout: None,
            reviews_timeout: None,
        }
    }

    async fn start(self) -> Bookinfo {
        let proxy = MeshProxy::default();
        let proxy_server = start("proxy", proxy.clone()).await;
        let client = MeshProxy::client(proxy_server.local_addr());
        let closed = listener().await.local_addr().unwrap().port(); // dropped: nothing listens
        let mut others = vec![];

        let details_port = if self.details_down {
            closed
        } else {
            let s = start("details", Details::default()).await;
            let port = s.local_addr().port();
            others.push(s);
            port
        };
        proxy.route("details", details_port);

        let ratings_port = match (&self.fake_ratings, self.ratings) {
            (Some(fake), _) => {
                let s = start("ratings", fake.clone()).await;
                let port = s.local_addr().port();
                others.push(s);
                port
            }
            (None, RatingsState::Real) => {
                let s = start("ratings", Ratings::new(RatingsConfig::default())).await;
                let port = s.local_addr().port();
                others.push(s);
                port
            }
            (None, RatingsState::Down) => closed,
        };
        proxy.route("ratings", ratings_port);

        let reviews_server = match &self.fake_reviews {
            Some(fake) => start("reviews", fake.clone()).await,
            None => {
                let pod = format!("reviews-{}-test", self.reviews_version);
                let mut cfg = ReviewsConfig::for_version(
                    self.reviews_version,
                    Target::new("ratings", 9080),
                    pod,
                    client.clone(),
                );
                if let Some(t) = self.ratings_timeout {
                    cfg.ratings_timeout = t;
                }
                start("reviews", Reviews::new(cfg)).await
            }
        };
        proxy.route("reviews", reviews_server.local_addr().port());
        others.push(reviews_server);

        let mut cfg = ProductpageConfig::new(
            Target::new("details", 9080),
            Target::new("reviews", 9080),
            Target::new("ratings", 9080),
            client,
        );
        if let Some(t) = self.reviews_timeout {
            cfg.reviews_timeout = t;
        }
        let productpage = start("productpage", Productpage::new(cfg)).await;
        others.push(proxy_server);
        Bookinfo {
            proxy,
            productpage,
            _others: others,
        }
    }
}

impl Bookinfo {
    async fn page(&self, headers: &[(&str, &str)]) -> String {
        let got = get(self.productpage.local_addr(), "/productpage", headers).await;
        assert_eq!(got.status, 200, "{}", got.body);
        got.body
    }
}

fn stars(page: &str) -> usize {
    page.matches("<span class=\"glyphicon glyphicon-star\"></span>")
        .count()
}

#[tokio::test]
async fn productpage_shows_the_book_details_and_reviews_of_each_version() {
    for (version, color) in [("v1", None), ("v2", Some("black")), ("v3", Some("red"))] {
        let app = Setup::version(version).start().await;
        let page = app.page(&[]).await;
        assert!(page.contains("<title>Simple Bookstore App</title>"));
        assert!(page.contains("The Comedy of Errors"));
        assert!(page.contains("<h4 class=\"text-center text-primary\">Book Details</h4>"));
        assert!(page.contains("<dt>Type:</dt>paperback"));
        assert!(page.contains("<dt>ISBN-10:</dt>1234567890"));
        assert!(page.contains("<h4 class=\"text-center text-primary\">Book Reviews</h4>"));
        assert!(page.contains("An extremely entertaining play by Shakespeare."));
        assert!(page.contains("<small>Reviewer2</small>"));
        assert!(page.contains(&format!("Reviews served by: reviews-{version}-test")));
        assert!(page.contains("Sign in"));
        match color {
            None => {
                assert_eq!(stars(&page), 0, "{version} shows no stars");
                assert!(!page.contains("<font color="));
                assert!(
                    app.proxy.log.to("ratings:9080").is_empty(),
                    "v1 never calls ratings"
                );
            }
            Some(color) => {
                // Reviewer1 5 stars, Reviewer2 4 stars and one empty.
                assert_eq!(stars(&page), 9, "{version}");
                assert_eq!(page.matches("glyphicon-star-empty").count(), 1);
                assert_eq!(
                    page.matches(&format!("<font color=\"{color}\">")).count(),
                    2
                );
            }
        }
        // Every call went through the proxy, in absolute form, to the service names.
        let calls = app.proxy.log.all();
        assert!(calls.iter().all(|s| s.absolute), "{calls:?}");
        let details = app.proxy.log.to("details:9080");
        assert_eq!(details.len(), 1);
        assert_eq!(details[0].path, "/details/0");
        assert_eq!(details[0].header("host"), Some("details:9080"));
        assert_eq!(app.proxy.log.to("reviews:9080")[0].path, "/reviews/0");
        if color.is_some() {
            assert_eq!(app.proxy.log.to("ratings:9080")[0].path, "/ratings/0");
        }
    }
}

#[tokio::test]
async fn ratings_down_shows_ratings_unavailable_in_each_review() {
    let mut setup = Setup::version("v2");
    setup.ratings = RatingsState::Down;
    let app = setup.start().await;
    let page = app.page(&[]).await;
    assert_eq!(
        page.matches("<p><i>Ratings service is currently unavailable</i></p>")
            .count(),
        2
    );
    assert_eq!(stars(&page), 0);
    let reviews = get(
        app.productpage.local_addr(),
        "/api/v1/products/0/reviews",
        &[],
    )
    .await;
    assert_eq!(reviews.status, 200);
    assert_eq!(
        reviews.json()["reviews"][0]["rating"]["error"],
        "Ratings service is currently unavailable"
    );
}

#[tokio::test]
async fn details_down_shows_istios_error() {
    let mut setup = Setup::version("v1");
    setup.details_down = true;
    let app = setup.start().await;
    let page = app.page(&[]).await;
    assert!(page.contains("Error fetching product details!"));
    assert!(page.contains("Sorry, product details are currently unavailable for this book."));
    assert!(page.contains("Book Reviews"), "reviews still shown");
    let api = get(app.productpage.local_addr(), "/api/v1/products/0", &[]).await;
    assert_eq!(api.status, 502, "the proxy's status is passed on");
    assert_eq!(
        api.json()["error"],
        "Sorry, product details are currently unavailable for this book."
    );
}

#[tokio::test]
async fn sign_in_sends_end_user_on_every_hop_and_sign_out_forgets() {
    let app = Setup::version("v2").start().await;
    let addr = app.productpage.local_addr();
    let login = request(
        addr,
        "POST",
        "/login",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("referer", "http://bookinfo/productpage"),
        ],
        "username=jason&passwd=",
    )
    .await;
    assert_eq!(login.status, 302);
    assert_eq!(
        login.header("location"),
        Some("http://bookinfo/productpage")
    );
    let cookie = login.header("set-cookie").unwrap().to_owned();
    assert!(cookie.starts_with("user=jason;"), "{cookie}");

    let page = app.page(&[("cookie", "user=jason")]).await;
    assert!(page.contains("jason ( <a href=\"logout\">sign out</a> )"));
    assert!(!page.contains("Sign in"));
    for host in ["details:9080", "reviews:9080", "ratings:9080"] {
        let calls = app.proxy.log.to(host);
        assert_eq!(
            calls.last().unwrap().header("end-user"),
            Some("jason"),
            "{host}"
        );
    }

    let logout = get(
        addr,
        "/logout",
        &[("referer", "http://bookinfo/productpage")],
    )
    .await;
    assert_eq!(logout.status, 302);
    assert!(logout.header("set-cookie").unwrap().contains("Max-Age=0"));
    let before = app.proxy.log.all().len();
    app.page(&[]).await;
    assert!(
        app.proxy.log.all()[before..]
            .iter()
            .all(|s| s.header("end-user").is_none())
    );
}

#[tokio::test]
async fn trace_headers_propagate_from_productpage_through_reviews_to_ratings() {
    let fake = Fake::new(r#"{"id":0,"ratings":{"Reviewer1":3,"Reviewer2":1}}"#);
    let mut setup = Setup::version("v3");
    setup.fake_ratings = Some(fake.clone());
    let app = setup.start().await;
    let incoming = [
        ("x-request-id", "5f3a-request"),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
        ("x-b3-sampled", "1"),
        ("x-b3-flags", "0"),
        (
            "traceparent",
            "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01",
        ),
        ("tracestate", "keel=1"),
        ("x-ot-span-context", "ot"),
        ("x-datadog-trace-id", "123"),
        ("sw8", "1-abc"),
        ("user-agent", "bookinfo-test/1"),
        ("x-not-propagated", "secret"),
    ];
    let page = app.page(&incoming).await;
    assert_eq!(stars(&page), 4, "3 + 1 stars from the fake ratings");
    let at_ratings = fake.log.all();
    assert_eq!(at_ratings.len(), 1);
    for (name, value) in &incoming[..12] {
        assert_eq!(
            at_ratings[0].header(name),
            Some(*value),
            "{name} at ratings"
        );
        let at_reviews = &app.proxy.log.to("reviews:9080")[0];
        assert_eq!(at_reviews.header(name), Some(*value), "{name} at reviews");
    }
    assert_eq!(at_ratings[0].header("x-not-propagated"), None);
    assert_eq!(at_ratings[0].path, "/ratings/0");
}

#[tokio::test]
async fn productpage_starts_a_b3_trace_when_none_came_in() {
    let fake = Fake::new(r#"{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}"#);
    let mut setup = Setup::version("v2");
    setup.fake_ratings = Some(fake.clone());
    let app = setup.start().await;
    app.page(&[]).await;
    let trace = app.proxy.log.to("details:9080")[0]
        .header("x-b3-traceid")
        .unwrap()
        .to_owned();
    assert_eq!(trace.len(), 16);
    assert_eq!(
        app.proxy.log.to("reviews:9080")[0].header("x-b3-traceid"),
        Some(trace.as_str())
    );
    assert_eq!(
        fake.log.all()[0].header("x-b3-traceid"),
        Some(trace.as_str())
    );
    assert_eq!(fake.log.all()[0].header("x-b3-sampled"), Some("1"));
}

#[tokio::test]
async fn reviews_v3_gives_up_on_slow_ratings_at_its_timeout() {
    let mut slow = Fake::new(r#"{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}"#);
    slow.delay = Duration::from_secs(5);
    let mut setup = Setup::version("v3");
    setup.fake_ratings = Some(slow.clone());
    // Stands in for v3's 2.5 s (v2's is 10 s); the defaults are pinned in reviews' unit tests.
    setup.ratings_timeout = Some(Duration::from_millis(200));
    let app = setup.start().await;
    let started = Instant::now();
    let page = app.page(&[]).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        page.matches("Ratings service is currently unavailable")
            .count(),
        2
    );
    assert!(page.contains("Reviews served by: reviews-v3-test"));
    assert_eq!(slow.log.all().len(), 1);
}

#[tokio::test]
async fn productpage_tries_reviews_twice() {
    let mut flaky = Fake::new(REVIEWS_JSON);
    flaky.fail_first = 1;
    let mut setup = Setup::version("v1");
    setup.fake_reviews = Some(flaky.clone());
    let app = setup.start().await;
    let page = app.page(&[]).await;
    assert!(page.contains("fake text"), "second attempt succeeded");
    assert!(page.contains("Reviews served by: fake-reviews"));
    assert_eq!(flaky.log.all().len(), 2);

    let mut broken = Fake::new(REVIEWS_JSON);
    broken.fail_first = usize::MAX;
    let mut setup = Setup::version("v1");
    setup.fake_reviews = Some(broken.clone());
    let app = setup.start().await;
    let page = app.page(&[]).await;
    assert!(page.contains("Error fetching product reviews!"));
    assert!(page.contains("Sorry, product reviews are currently unavailable for this book."));
    assert_eq!(broken.log.all().len(), 2, "one retry, no more");
    let api = get(
        app.productpage.local_addr(),
        "/api/v1/products/0/reviews",
        &[],
    )
    .await;
    assert_eq!(api.status, 503, "the last attempt's status is passed on");
}

#[tokio::test]
async fn productpage_times_out_each_reviews_attempt() {
    let mut slow = Fake::new(REVIEWS_JSON);
    slow.delay = Duration::from_secs(5);
    let mut setup = Setup::version("v1");
    setup.fake_reviews = Some(slow.clone());
    setup.reviews_timeout = Some(Duration::from_millis(150)); // stands in for Istio's 3 s
    let app = setup.start().await;
    let started = Instant::now();
    let page = app.page(&[]).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(page.contains("Sorry, product reviews are currently unavailable for this book."));
    assert_eq!(slow.log.all().len(), 2);
}

#[tokio::test]
async fn apis_and_health_answer_istios_json() {
    let app = Setup::version("v2").start().await;
    let pp = app.productpage.local_addr();

    let products = get(pp, "/api/v1/products", &[]).await;
    assert!(
        products
            .body
            .starts_with(r#"[{"id":0,"title":"The Comedy of Errors","descriptionHtml":"#)
    );

    let details = get(pp, "/api/v1/products/0", &[]).await.json();
    assert_eq!(
        details,
        serde_json::json!({"id": 0, "author": "William Shakespeare", "year": 1595, "type": "paperback",
            "pages": 200, "publisher": "PublisherA", "language": "English",
            "ISBN-10": "1234567890", "ISBN-13": "123-1234567890"})
    );
    let reviews = get(pp, "/api/v1/products/0/reviews", &[]).await;
    assert!(reviews.body.starts_with(r#"{"id":"0","podname":"reviews-v2-test","clustername":"null","reviews":[{"reviewer":"Reviewer1""#), "{}", reviews.body);
    assert_eq!(
        reviews.json()["reviews"][1]["rating"],
        serde_json::json!({"stars": 4, "color": "black"})
    );
    let ratings = get(pp, "/api/v1/products/0/ratings", &[]).await;
    assert_eq!(
        ratings.body,
        r#"{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}"#
    );

    let health = get(pp, "/health", &[]).await;
    assert_eq!(
        (health.status.as_u16(), health.body.as_str()),
        (200, "Product page is healthy")
    );
    let index = get(pp, "/", &[]).await;
    assert!(index.body.contains("<title>Simple Bookstore App</title>"));
    assert!(index.body.contains("/productpage?u=normal"));
    assert_eq!(get(pp, "/nope", &[]).await.status, 404);
    assert_eq!(get(pp, "/login", &[]).await.status, 405);
    let metrics = get(pp, "/metrics", &[]).await;
    assert!(
        metrics
            .body
            .contains(r#"request_result_total{destination_app="details",response_code="200"} 1"#),
        "{}",
        metrics.body
    );
    let css = get(pp, "/static/bookinfo.css", &[]).await;
    assert!(css.body.contains("glyphicon-star"));
}

#[tokio::test]
async fn services_reject_bad_ids_like_istios() {
    let details = start("details", Details::default()).await;
    let d = details.local_addr();
    let bad = get(d, "/details/abc", &[]).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body, r#"{"error":"please provide numeric product id"}"#);
    assert_eq!(get(d, "/details/7", &[]).await.json()["id"], 7);
    assert_eq!(
        get(d, "/health", &[]).await.body,
        r#"{"status":"Details is healthy"}"#
    );
    assert_eq!(get(d, "/other", &[]).await.status, 404);

    let ratings = start("ratings", Ratings::new(RatingsConfig::default())).await;
    let r = ratings.local_addr();
    let bad = get(r, "/ratings/abc", &[]).await;
    assert_eq!(
        (bad.status.as_u16(), bad.body.as_str()),
        (400, r#"{"error":"please provide numeric product ID"}"#)
    );
    let posted = request(
        r,
        "POST",
        "/ratings/3",
        &[("content-type", "application/json")],
        r#"{"Reviewer1":1,"Reviewer2":2}"#,
    )
    .await;
    assert_eq!(
        posted.body,
        r#"{"id":3,"ratings":{"Reviewer1":1,"Reviewer2":2}}"#
    );
    assert_eq!(get(r, "/ratings/3", &[]).await.body, posted.body);
    assert_eq!(
        request(r, "POST", "/ratings/3", &[], "not json")
            .await
            .status,
        400
    );
    assert_eq!(
        get(r, "/health", &[]).await.body,
        r#"{"status":"Ratings is healthy"}"#
    );

    let cfg = ReviewsConfig::for_version(
        "v1",
        Target::new("ratings", 9080),
        "p".into(),
        Default::default(),
    );
    let reviews = start("reviews", Reviews::new(cfg)).await;
    let v = reviews.local_addr();
    assert_eq!(get(v, "/reviews/abc", &[]).await.status, 404);
    assert_eq!(
        get(v, "/reviews/99999999999", &[]).await.status,
        404,
        "not a Java int"
    );
    let v1 = get(v, "/reviews/1", &[]).await.json();
    assert_eq!(v1["id"], "1");
    assert!(
        v1["reviews"][0].get("rating").is_none(),
        "v1 has no ratings"
    );
    assert_eq!(
        get(v, "/health", &[]).await.body,
        r#"{"status": "Reviews is healthy"}"#
    );
}
