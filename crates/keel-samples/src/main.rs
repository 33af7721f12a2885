//! The `keel-sample` binary: one subcommand per Istio sample app, each configured like Istio's
//! container (same environment variables and defaults) plus flags for what a local run needs
//! (listen address, port, shorter timeouts in tests).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use keel_samples::bookinfo::details::{Details, DetailsConfig, ExternalBooks};
use keel_samples::bookinfo::productpage::{Productpage, ProductpageConfig};
use keel_samples::bookinfo::ratings::{Ratings, RatingsConfig, RatingsMode};
use keel_samples::bookinfo::reviews::{Reviews, ReviewsConfig, ratings_timeout_for};
use keel_samples::bookinfo::{self, PORT as BOOKINFO_PORT};
use keel_samples::client::{Client, Proxy, Target};
use keel_samples::httpbin::{Httpbin, HttpbinConfig};
use keel_samples::log;
use keel_samples::server::{Handler, Server, terminated};
use keel_samples::tcp_echo::{TcpEcho, parse_ports};
use tokio::net::TcpListener;

const AFTER_HELP: &str = "Istio's images and the commands that stand in for them:
  examples-bookinfo-productpage-v1   keel-sample productpage
  examples-bookinfo-details-v1       keel-sample details
  examples-bookinfo-details-v2       keel-sample details   (with ENABLE_EXTERNAL_BOOK_SERVICE=true)
  examples-bookinfo-reviews-v1/2/3   keel-sample reviews --service-version v1|v2|v3
  examples-bookinfo-ratings-v1       keel-sample ratings
  go-httpbin / kennethreitz/httpbin  keel-sample httpbin
  curlimages/curl, sleep             keel-sample sleep
  tcp-echo-server  ARGS              keel-sample tcp-echo ARGS     (e.g. 9000,9001,9002 hello)

Servers listen on 127.0.0.1 unless --bind (or BIND_ADDRESS) says otherwise; PORT overrides the port.
Outgoing calls honour http_proxy/HTTP_PROXY and no_proxy/NO_PROXY (or --http-proxy/--no-proxy).
Every server logs one line per request on stdout and stops cleanly on SIGTERM or Ctrl-C.";

#[derive(Parser)]
#[command(
    name = "keel-sample",
    version,
    about = "Istio's sample apps (Bookinfo, httpbin, sleep, tcp-echo), written in Rust, behaving like Istio's containers",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    app: App,
}

#[derive(Subcommand)]
enum App {
    /// Bookinfo's front end: the HTML page, the JSON API and sign-in; calls details and reviews
    Productpage(ProductpageArgs),
    /// Bookinfo's details service: /details/<id> (v2 with ENABLE_EXTERNAL_BOOK_SERVICE=true)
    Details(DetailsArgs),
    /// Bookinfo's reviews service: v1 without ratings, v2 black stars, v3 red stars
    Reviews(ReviewsArgs),
    /// Bookinfo's ratings service: /ratings/<id>
    Ratings(RatingsArgs),
    /// go-httpbin's endpoints: /get, /headers, /ip, /status/{code}, /delay/{s}, /anything...
    Httpbin(HttpbinArgs),
    /// A client workload (Istio's sleep/curl): does nothing until stopped
    Sleep,
    /// Istio's tcp-echo server: answers every line with PREFIX and the line
    TcpEcho(TcpEchoArgs),
}

#[derive(Args)]
struct Listen {
    /// Port to listen on [default: 9080 for Bookinfo, 8080 for httpbin (Istio's container ports)]
    #[arg(long, env = "PORT")]
    port: Option<u16>,
    /// Address to listen on (0.0.0.0 for every interface)
    #[arg(long, env = "BIND_ADDRESS", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
}

#[derive(Args)]
struct ProxyArgs {
    /// HTTP proxy for outgoing calls [default: $http_proxy, else $HTTP_PROXY]
    #[arg(long, value_name = "URL")]
    http_proxy: Option<String>,
    /// Hosts that bypass the proxy, comma-separated [default: $no_proxy, else $NO_PROXY]
    #[arg(long, value_name = "HOSTS")]
    no_proxy: Option<String>,
}

impl ProxyArgs {
    fn client(&self) -> Result<Client, String> {
        let proxy = if self.http_proxy.is_some() || self.no_proxy.is_some() {
            Proxy::parse(self.http_proxy.as_deref(), self.no_proxy.as_deref())
        } else {
            Proxy::from_env()
        };
        proxy.map(Client::new).map_err(|e| e.to_string())
    }
}

#[derive(Args)]
struct ProductpageArgs {
    #[command(flatten)]
    listen: Listen,
    /// Host name of details
    #[arg(long, env = "DETAILS_HOSTNAME", default_value = "details")]
    details_hostname: String,
    /// Host name of reviews
    #[arg(long, env = "REVIEWS_HOSTNAME", default_value = "reviews")]
    reviews_hostname: String,
    /// Host name of ratings
    #[arg(long, env = "RATINGS_HOSTNAME", default_value = "ratings")]
    ratings_hostname: String,
    /// Domain appended to the host names (NAME.DOMAIN), e.g. default.svc.cluster.local
    #[arg(long, env = "SERVICES_DOMAIN")]
    services_domain: Option<String>,
    /// Port details is called on (Keel's addition; Istio's code always uses 9080)
    #[arg(long, env = "DETAILS_PORT", default_value_t = BOOKINFO_PORT)]
    details_port: u16,
    /// Port reviews is called on (Keel's addition)
    #[arg(long, env = "REVIEWS_PORT", default_value_t = BOOKINFO_PORT)]
    reviews_port: u16,
    /// Port ratings is called on (Keel's addition)
    #[arg(long, env = "RATINGS_PORT", default_value_t = BOOKINFO_PORT)]
    ratings_port: u16,
    /// Extra reviews calls per page view, to demonstrate rate limiting
    #[arg(long, env = "FLOOD_FACTOR", default_value_t = 0)]
    flood_factor: u32,
    /// Timeout of the details call, in milliseconds (Istio's: 3000)
    #[arg(
        long,
        env = "DETAILS_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 3000
    )]
    details_timeout_ms: u64,
    /// Timeout of each of the two reviews attempts, in milliseconds (Istio's: 3000)
    #[arg(
        long,
        env = "REVIEWS_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 3000
    )]
    reviews_timeout_ms: u64,
    /// Timeout of the ratings call (API only), in milliseconds (Istio's: 3000)
    #[arg(
        long,
        env = "RATINGS_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = 3000
    )]
    ratings_timeout_ms: u64,
    #[command(flatten)]
    proxy: ProxyArgs,
}

#[derive(Args)]
struct DetailsArgs {
    #[command(flatten)]
    listen: Listen,
    /// "true": look the book up in Google's Books API (details v2)
    #[arg(long, env = "ENABLE_EXTERNAL_BOOK_SERVICE", value_name = "BOOL")]
    enable_external_book_service: Option<String>,
    /// "true": call the Books API in plain HTTP (the sidecar originates TLS); required, as keel-sample speaks no TLS
    #[arg(long, env = "DO_NOT_ENCRYPT", value_name = "BOOL")]
    do_not_encrypt: Option<String>,
    /// "true": the older name of DO_NOT_ENCRYPT
    #[arg(long, env = "WITH_ISTIO", value_name = "BOOL")]
    with_istio: Option<String>,
    #[command(flatten)]
    proxy: ProxyArgs,
}

#[derive(Args)]
struct ReviewsArgs {
    #[command(flatten)]
    listen: Listen,
    /// Which of Istio's images to be: v1 (no ratings), v2 (black stars), v3 (red stars)
    #[arg(long, env = "SERVICE_VERSION", default_value = "v1")]
    service_version: String,
    /// "true"/"false": call ratings and show stars [default: by version]
    #[arg(long, env = "ENABLE_RATINGS", value_name = "BOOL")]
    enable_ratings: Option<String>,
    /// Color of the stars [default: by version]; also sets the ratings timeout (black 10 s, else 2.5 s)
    #[arg(long, env = "STAR_COLOR")]
    star_color: Option<String>,
    /// Host name of ratings
    #[arg(long, env = "RATINGS_HOSTNAME", default_value = "ratings")]
    ratings_hostname: String,
    /// Domain appended to the host name (NAME.DOMAIN)
    #[arg(long, env = "SERVICES_DOMAIN")]
    services_domain: Option<String>,
    /// Port ratings is called on (Keel's addition; Istio's code always uses 9080)
    #[arg(long, env = "RATINGS_PORT", default_value_t = BOOKINFO_PORT)]
    ratings_port: u16,
    /// Pod name shown as "Reviews served by" [default: $HOSTNAME, else the host name]
    #[arg(long, value_name = "NAME")]
    pod_name: Option<String>,
    /// Cluster name shown after the pod name
    #[arg(long, env = "CLUSTER_NAME")]
    cluster_name: Option<String>,
    /// Timeout of the ratings call in milliseconds [default: 10000 for black stars, else 2500]
    #[arg(long, value_name = "MS")]
    ratings_timeout_ms: Option<u64>,
    #[command(flatten)]
    proxy: ProxyArgs,
}

#[derive(Args)]
struct RatingsArgs {
    #[command(flatten)]
    listen: Listen,
    /// v1 (memory), v2 (database: none here, so reads fail), v-faulty, v-delayed, v-unavailable, v-unhealthy
    #[arg(long, env = "SERVICE_VERSION", default_value = "v1")]
    service_version: String,
    /// How long v-delayed delays half the reads, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 7000)]
    delay_ms: u64,
}

#[derive(Args)]
struct HttpbinArgs {
    #[command(flatten)]
    listen: Listen,
    /// Longest /delay allowed, in seconds (go-httpbin's -max-duration)
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    max_duration: f64,
    /// /hostname answers the real host name ($HOSTNAME) instead of "go-httpbin"
    #[arg(long)]
    use_real_hostname: bool,
}

#[derive(Args)]
struct TcpEchoArgs {
    /// Ports to listen on, comma-separated, as Istio's container argument (e.g. 9000,9001,9002)
    ports: String,
    /// Prefix put before every echoed line
    prefix: String,
    /// Address to listen on
    #[arg(long, env = "BIND_ADDRESS", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
}

/// Java's `Boolean.valueOf` / Ruby's `=== 'true'`: only "true" (any case for Java) is true.
fn is_true(v: Option<&String>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(cli.app)),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-sample: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(app: App) -> Result<(), String> {
    match app {
        App::Productpage(a) => {
            let client = a.proxy.client()?;
            let domain = a.services_domain.as_deref();
            let mut config = ProductpageConfig::new(
                Target::service(&a.details_hostname, domain, a.details_port),
                Target::service(&a.reviews_hostname, domain, a.reviews_port),
                Target::service(&a.ratings_hostname, domain, a.ratings_port),
                client,
            );
            config.details_timeout = Duration::from_millis(a.details_timeout_ms);
            config.reviews_timeout = Duration::from_millis(a.reviews_timeout_ms);
            config.ratings_timeout = Duration::from_millis(a.ratings_timeout_ms);
            config.flood_factor = a.flood_factor;
            log!(
                "productpage calls details at {}, reviews at {}, ratings at {}",
                config.details,
                config.reviews,
                config.ratings
            );
            serve(
                "productpage",
                &a.listen,
                BOOKINFO_PORT,
                Productpage::new(config),
            )
            .await
        }
        App::Details(a) => {
            let mut config = DetailsConfig::default();
            if is_true(a.enable_external_book_service.as_ref()) {
                let plain = is_true(a.do_not_encrypt.as_ref()) || is_true(a.with_istio.as_ref());
                config.external = Some(ExternalBooks::google(plain, a.proxy.client()?));
            }
            serve("details", &a.listen, BOOKINFO_PORT, Details::new(config)).await
        }
        App::Reviews(a) => {
            let ratings = Target::service(
                &a.ratings_hostname,
                a.services_domain.as_deref(),
                a.ratings_port,
            );
            let pod = a
                .pod_name
                .clone()
                .unwrap_or_else(bookinfo::default_pod_name);
            let mut config =
                ReviewsConfig::for_version(&a.service_version, ratings, pod, a.proxy.client()?);
            if let Some(enable) = &a.enable_ratings {
                config.ratings_enabled = is_true(Some(enable));
            }
            if let Some(color) = &a.star_color {
                config.star_color.clone_from(color);
                config.ratings_timeout = ratings_timeout_for(color);
            }
            if let Some(ms) = a.ratings_timeout_ms {
                config.ratings_timeout = Duration::from_millis(ms);
            }
            config.cluster_name.clone_from(&a.cluster_name);
            log!(
                "reviews {}: ratings {}, star color {}, ratings at {} (timeout {:?}), pod {}",
                a.service_version,
                if config.ratings_enabled {
                    "enabled"
                } else {
                    "disabled"
                },
                config.star_color,
                config.ratings,
                config.ratings_timeout,
                config.pod_name
            );
            serve("reviews", &a.listen, BOOKINFO_PORT, Reviews::new(config)).await
        }
        App::Ratings(a) => {
            let config = RatingsConfig {
                mode: RatingsMode::from_version(&a.service_version),
                delay: Duration::from_millis(a.delay_ms),
            };
            serve("ratings", &a.listen, BOOKINFO_PORT, Ratings::new(config)).await
        }
        App::Httpbin(a) => {
            if !a.max_duration.is_finite() || a.max_duration < 0.0 || a.max_duration > 1e9 {
                return Err(format!(
                    "--max-duration {} is not a duration in seconds",
                    a.max_duration
                ));
            }
            let mut config = HttpbinConfig {
                max_duration: Duration::from_secs_f64(a.max_duration),
                ..HttpbinConfig::default()
            };
            if a.use_real_hostname {
                config.hostname = bookinfo::default_pod_name();
            }
            serve("httpbin", &a.listen, 8080, Httpbin::new(config)).await
        }
        App::Sleep => {
            log!("sleep: waiting until stopped");
            terminated().await;
            Ok(())
        }
        App::TcpEcho(a) => tcp_echo(a).await,
    }
}

async fn serve<H: Handler>(
    name: &'static str,
    listen: &Listen,
    default_port: u16,
    handler: H,
) -> Result<(), String> {
    let addr = SocketAddr::new(listen.bind, listen.port.unwrap_or(default_port));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{name} cannot listen on {addr}: {e}"))?;
    let server = Server::start(name, listener, handler).map_err(|e| format!("{name}: {e}"))?;
    log!("{name} listening on http://{}", server.local_addr());
    terminated().await;
    log!("{name} shutting down");
    server.stop().await;
    Ok(())
}

async fn tcp_echo(a: TcpEchoArgs) -> Result<(), String> {
    let mut servers = Vec::new();
    for port in parse_ports(&a.ports)? {
        let addr = SocketAddr::new(a.bind, port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("failed to create listener on {addr}, err: {e}"))?;
        servers.push(TcpEcho::start(listener, a.prefix.clone()).map_err(|e| e.to_string())?);
    }
    terminated().await;
    log!("tcp-echo shutting down");
    for server in servers {
        server.stop().await;
    }
    Ok(())
}
