//! Behaviour of [`Balancer`] as the request path sees it: one test per rule.

use std::collections::HashSet;

use http::{HeaderMap, HeaderValue};
use keel_config::model::networking::destination_rule::{
    LoadBalancerSettings, LocalityLoadBalancerSetting, OutlierDetection, TrafficPolicy,
};
use keel_snapshot::{Endpoint, HashKey, LocalityLb, UpstreamProtocol};

use super::*;

fn ep(addr: &str, weight: u32, locality: &str) -> Endpoint {
    Endpoint {
        address: EndpointAddress::Socket(addr.parse().unwrap()),
        labels: Default::default(),
        locality: locality.into(),
        weight,
        workload: String::new(),
        namespace: String::new(),
        identity: String::new(),
        mtls: false,
    }
}

/// `n` endpoints of weight 1, `10.0.0.1:80`…, all in `r1/z1/s1`.
fn eps(n: usize) -> Vec<Endpoint> {
    (1..=n)
        .map(|i| ep(&format!("10.0.0.{i}:80"), 1, "r1/z1/s1"))
        .collect()
}

fn cluster(lb: LbPolicy, endpoints: Vec<Endpoint>) -> Cluster {
    Cluster {
        name: "outbound|80||svc.ns.svc.cluster.local".into(),
        service: "svc.ns.svc.cluster.local".into(),
        port: 80,
        subset: String::new(),
        namespace: "ns".into(),
        lb,
        locality_lb: None,
        protocol: UpstreamProtocol::Http1,
        endpoints,
        traffic_policy: None,
        client_credential: None,
    }
}

/// The cluster with outlier detection (which turns on Istio's locality failover).
fn with_outlier_detection(mut c: Cluster, min_health_percent: i32) -> Cluster {
    let od = OutlierDetection {
        min_health_percent,
        ..Default::default()
    };
    c.traffic_policy = Some(TrafficPolicy {
        outlier_detection: Some(od),
        ..Default::default()
    });
    c
}

fn hash(key: HashKey, maglev: bool) -> LbPolicy {
    LbPolicy::ConsistentHash {
        key,
        maglev,
        table_size: if maglev { 65537 } else { 1024 },
    }
}

/// Picks `n` times (guards dropped at once) and counts picks per endpoint.
fn counts(b: &Balancer, ctx: &PickContext<'_>, n: usize) -> Vec<usize> {
    let mut c = vec![0; b.len()];
    for _ in 0..n {
        c[b.pick(ctx).unwrap().index] += 1;
    }
    c
}

fn assert_share(count: usize, total: usize, expected: f64, tolerance: f64) {
    let share = count as f64 / total as f64;
    assert!(
        (share - expected).abs() <= tolerance,
        "share {share:.3}, expected {expected} ± {tolerance}"
    );
}

fn header(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, HeaderValue::from_str(value).unwrap());
    h
}

const SIMPLE: [LbPolicy; 3] = [
    LbPolicy::RoundRobin,
    LbPolicy::Random,
    LbPolicy::LeastRequest,
];

fn all_policies() -> Vec<LbPolicy> {
    let mut p = SIMPLE.to_vec();
    p.push(hash(HashKey::Header("x-key".into()), false));
    p.push(hash(HashKey::Header("x-key".into()), true));
    p
}

#[test]
fn balancer_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Balancer>();
    shared::<Pick>();
}

#[test]
fn round_robin_cycles_in_order_and_splits_by_weight_exactly() {
    let b = Balancer::seeded(&cluster(LbPolicy::RoundRobin, eps(3)), "", 1);
    let h = HeaderMap::new();
    let order: Vec<usize> = (0..6)
        .map(|_| b.pick(&PickContext::new(&h)).unwrap().index)
        .collect();
    for pair in order.windows(2) {
        assert_eq!(pair[1], (pair[0] + 1) % 3, "{order:?}");
    }
    let weighted = cluster(
        LbPolicy::RoundRobin,
        vec![ep("10.0.0.1:80", 80, ""), ep("10.0.0.2:80", 20, "")],
    );
    let b = Balancer::seeded(&weighted, "", 1);
    assert_eq!(counts(&b, &PickContext::new(&h), 1000), vec![800, 200]);
}

#[test]
fn random_splits_80_20() {
    let c = cluster(
        LbPolicy::Random,
        vec![ep("10.0.0.1:80", 80, ""), ep("10.0.0.2:80", 20, "")],
    );
    let h = HeaderMap::new();
    let c = counts(&Balancer::seeded(&c, "", 2), &PickContext::new(&h), 20_000);
    assert_share(c[0], 20_000, 0.8, 0.015);
}

#[test]
fn least_request_prefers_the_less_loaded_endpoint() {
    let b = Balancer::seeded(&cluster(LbPolicy::LeastRequest, eps(2)), "", 3);
    let h = HeaderMap::new();
    // Hold three requests on endpoint 0.
    let held: Vec<Pick> = (0..3)
        .map(|_| {
            b.pick(&PickContext {
                exclude: &[1],
                ..PickContext::new(&h)
            })
            .unwrap()
        })
        .collect();
    assert!(held.iter().all(|p| p.index == 0));
    assert_eq!(b.endpoint_stats()[0].active_requests, 3);
    assert_eq!(counts(&b, &PickContext::new(&h), 500), vec![0, 500]);
    drop(held);
    assert_eq!(b.endpoint_stats()[0].active_requests, 0);
    let c = counts(&b, &PickContext::new(&h), 4000);
    assert_share(c[0], 4000, 0.5, 0.04);

    // Five endpoints, one busy: two distinct samples always include an idle one.
    let b = Balancer::seeded(&cluster(LbPolicy::LeastRequest, eps(5)), "", 4);
    let _busy = b
        .pick(&PickContext {
            exclude: &[1, 2, 3, 4],
            ..PickContext::new(&h)
        })
        .unwrap();
    let c = counts(&b, &PickContext::new(&h), 4000);
    assert_eq!(c[0], 0);
    assert!(c[1..].iter().all(|&n| n > 850), "{c:?}");
}

#[test]
fn weighted_least_request_splits_by_weight_when_idle() {
    let c = cluster(
        LbPolicy::LeastRequest,
        vec![ep("10.0.0.1:80", 80, ""), ep("10.0.0.2:80", 20, "")],
    );
    let h = HeaderMap::new();
    let c = counts(&Balancer::seeded(&c, "", 5), &PickContext::new(&h), 20_000);
    assert_share(c[0], 20_000, 0.8, 0.015);
}

#[test]
fn exclude_avoids_endpoints_until_none_would_be_left() {
    for policy in all_policies() {
        let b = Balancer::seeded(&cluster(policy.clone(), eps(4)), "", 6);
        for i in 0..200 {
            let h = header("x-key", &format!("user-{i}"));
            let pick = b
                .pick(&PickContext {
                    exclude: &[0, 2],
                    ..PickContext::new(&h)
                })
                .unwrap();
            assert!(
                pick.index == 1 || pick.index == 3,
                "{policy:?} picked {}",
                pick.index
            );
            // Excluding everything is ignored rather than failing the request.
            assert!(
                b.pick(&PickContext {
                    exclude: &[0, 1, 2, 3],
                    ..PickContext::new(&h)
                })
                .is_some()
            );
        }
    }
}

#[test]
fn passthrough_returns_the_original_destination() {
    let b = Balancer::new(&cluster(LbPolicy::Passthrough, vec![]), "");
    let h = HeaderMap::new();
    assert!(b.is_empty());
    assert!(b.pick(&PickContext::new(&h)).is_none());
    let dst: SocketAddr = "192.168.1.7:5432".parse().unwrap();
    let pick = b
        .pick(&PickContext {
            original_dst: Some(dst),
            ..PickContext::new(&h)
        })
        .unwrap();
    assert_eq!(
        (pick.index, pick.address, pick.set_cookie),
        (usize::MAX, EndpointAddress::Socket(dst), None)
    );
}

#[test]
fn dns_endpoints_are_returned_as_configured_and_empty_clusters_pick_nothing() {
    let mut e = ep("10.0.0.1:80", 1, "");
    e.address = EndpointAddress::Dns {
        host: "api.example.com".into(),
        port: 443,
    };
    let b = Balancer::new(&cluster(LbPolicy::LeastRequest, vec![e]), "");
    let h = HeaderMap::new();
    assert_eq!(
        b.pick(&PickContext::new(&h)).unwrap().address,
        EndpointAddress::Dns {
            host: "api.example.com".into(),
            port: 443
        }
    );
    for policy in all_policies() {
        assert!(
            Balancer::new(&cluster(policy, vec![]), "")
                .pick(&PickContext::new(&h))
                .is_none()
        );
    }
}

#[test]
fn consistent_hash_sends_a_key_to_the_same_endpoint_across_balancers() {
    for maglev in [false, true] {
        let c = cluster(hash(HashKey::Header("x-user".into()), maglev), eps(8));
        let (a, b) = (Balancer::seeded(&c, "", 7), Balancer::seeded(&c, "", 8));
        let mut used = HashSet::new();
        for i in 0..300 {
            let h = header("x-user", &format!("user-{i}"));
            let first = a.pick(&PickContext::new(&h)).unwrap().index;
            assert_eq!(first, a.pick(&PickContext::new(&h)).unwrap().index);
            assert_eq!(first, b.pick(&PickContext::new(&h)).unwrap().index);
            used.insert(first);
        }
        assert_eq!(used.len(), 8, "keys spread over every endpoint");
        // No header: random, so several endpoints.
        let none = HeaderMap::new();
        let c = counts(&a, &PickContext::new(&none), 400);
        assert!(c.iter().filter(|&&n| n > 0).count() >= 6, "{c:?}");
    }
}

#[test]
fn removing_an_endpoint_moves_only_a_fraction_of_keys() {
    for maglev in [false, true] {
        let policy = hash(HashKey::Header("x-user".into()), maglev);
        let all = eps(10);
        let mut fewer = all.clone();
        let removed = fewer.remove(4).address;
        let (before, after) = (
            Balancer::seeded(&cluster(policy.clone(), all), "", 1),
            Balancer::seeded(&cluster(policy, fewer), "", 1),
        );
        let (mut kept, mut moved) = (0, 0);
        for i in 0..3000 {
            let h = header("x-user", &format!("user-{i}"));
            let was = before.pick(&PickContext::new(&h)).unwrap().address;
            let now = after.pick(&PickContext::new(&h)).unwrap().address;
            if was != removed {
                if was == now { kept += 1 } else { moved += 1 }
            }
        }
        // Modulo hashing would move ~90%. The ring moves some keys because every host gains points
        // when the minimum ring size is spread over fewer hosts (Envoy does the same).
        let moved_share = moved as f64 / (kept + moved) as f64;
        assert!(
            moved_share < 0.15,
            "maglev={maglev}: {moved_share:.3} of the other keys moved"
        );
    }
}

#[test]
fn cookie_hashing_sets_a_cookie_and_then_sticks_to_it() {
    for maglev in [false, true] {
        let key = HashKey::Cookie {
            name: "sticky".into(),
            path: "/app".into(),
            ttl_secs: Some(300),
        };
        let b = Balancer::seeded(&cluster(hash(key, maglev), eps(6)), "", 9);
        let first = b.pick(&PickContext::new(&HeaderMap::new())).unwrap();
        let set_cookie = first.set_cookie.clone().unwrap();
        let value = set_cookie
            .strip_prefix("sticky=")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            set_cookie,
            format!("sticky={value}; Path=/app; Max-Age=300; HttpOnly")
        );
        let back = header("cookie", &format!("other=1; sticky={value}"));
        for _ in 0..20 {
            let again = b.pick(&PickContext::new(&back)).unwrap();
            assert_eq!((again.index, again.set_cookie), (first.index, None));
        }
    }
}

#[test]
fn source_ip_and_query_parameter_hashing_are_sticky() {
    let h = HeaderMap::new();
    let b = Balancer::seeded(&cluster(hash(HashKey::SourceIp, false), eps(5)), "", 10);
    let ip = Some("10.9.8.7".parse().unwrap());
    let first = b
        .pick(&PickContext {
            source_ip: ip,
            ..PickContext::new(&h)
        })
        .unwrap()
        .index;
    assert!((0..20).all(|_| {
        b.pick(&PickContext {
            source_ip: ip,
            ..PickContext::new(&h)
        })
        .unwrap()
        .index
            == first
    }));

    let b = Balancer::seeded(
        &cluster(hash(HashKey::QueryParam("shard".into()), true), eps(5)),
        "",
        11,
    );
    let ctx = PickContext {
        query: Some("x=1&shard=42"),
        ..PickContext::new(&h)
    };
    let first = b.pick(&ctx).unwrap().index;
    assert!((0..20).all(|_| b.pick(&ctx).unwrap().index == first));
}

/// Endpoints: 0,1 in the proxy's subzone; 2,3 in another zone of its region; 4,5 elsewhere.
fn zoned() -> Vec<Endpoint> {
    vec![
        ep("10.0.0.1:80", 1, "r1/z1/s1"),
        ep("10.0.0.2:80", 1, "r1/z1/s1"),
        ep("10.0.1.1:80", 1, "r1/z2/s1"),
        ep("10.0.1.2:80", 1, "r1/z2/s1"),
        ep("10.0.2.1:80", 1, "r2/z1/s1"),
        ep("10.0.2.2:80", 1, "r2/z1/s1"),
    ]
}

#[test]
fn locality_distribute_splits_traffic_by_percentage() {
    for policy in [
        LbPolicy::Random,
        LbPolicy::RoundRobin,
        LbPolicy::LeastRequest,
        hash(HashKey::SourceIp, false),
    ] {
        let mut c = cluster(policy.clone(), zoned());
        c.locality_lb = Some(LocalityLb {
            local: String::new(),
            distribute: vec![(
                "r1/z1/*".into(),
                vec![
                    ("r1/z1/*".into(), 70),
                    ("r1/z2/*".into(), 20),
                    ("r2/*".into(), 10),
                ],
            )],
            failover: vec![],
        });
        let b = Balancer::seeded(&c, "r1/z1/s1", 12);
        let h = HeaderMap::new();
        let n = 20_000;
        let c = counts(&b, &PickContext::new(&h), n);
        assert_share(c[0] + c[1], n, 0.7, 0.02);
        assert_share(c[2] + c[3], n, 0.2, 0.02);
        assert_share(c[4] + c[5], n, 0.1, 0.02);
        // A proxy elsewhere matches no `from`: plain balancing over all six.
        let b = Balancer::seeded(&cluster(policy, zoned()), "r2/z1/s1", 12);
        assert_share(
            counts(&b, &PickContext::new(&h), 6000)[4],
            6000,
            1.0 / 6.0,
            0.03,
        );
    }
}

#[test]
fn locality_failover_prefers_the_closest_endpoints_and_spills_over() {
    let h = HeaderMap::new();
    let ctx = PickContext::new(&h);
    let b = Balancer::seeded(
        &with_outlier_detection(cluster(LbPolicy::Random, zoned()), 0),
        "r1/z1/s1",
        13,
    );
    let c = counts(&b, &ctx, 2000);
    assert_eq!(c[0] + c[1], 2000, "all in the proxy's subzone: {c:?}");
    // Half the local level ejected: 50% × 1.4 = 70% stays, 30% spills to the next zone.
    b.set_healthy(0, false);
    let c = counts(&b, &ctx, 20_000);
    assert_eq!(c[0], 0);
    assert_share(c[1], 20_000, 0.7, 0.02);
    assert_share(c[2] + c[3], 20_000, 0.3, 0.02);
    b.set_healthy(1, false);
    let c = counts(&b, &ctx, 2000);
    assert_eq!(c[2] + c[3], 2000, "{c:?}");
    b.set_healthy(0, true);
    b.set_healthy(1, true);
    assert_eq!(counts(&b, &ctx, 500)[0..2].iter().sum::<usize>(), 500);

    // Nothing in the proxy's own zone: the next level gets everything.
    let b = Balancer::seeded(
        &with_outlier_detection(cluster(LbPolicy::Random, zoned()[2..].to_vec()), 0),
        "r1/z1/s1",
        14,
    );
    let c = counts(&b, &ctx, 1000);
    assert_eq!(c[0] + c[1], 1000, "{c:?}");
}

/// `retryRemoteLocalities`: a retry after a failure in the local level goes to the next one.
#[test]
fn retries_can_prefer_another_locality() {
    let h = HeaderMap::new();
    let b = Balancer::seeded(
        &with_outlier_detection(cluster(LbPolicy::Random, zoned()), 0),
        "r1/z1/s1",
        15,
    );
    let retry = |other_levels| {
        let c = counts(
            &b,
            &PickContext {
                exclude: &[0],
                other_levels,
                ..PickContext::new(&h)
            },
            500,
        );
        (c[1], c[2] + c[3])
    };
    // Plain retries avoid the host tried but stay local; remote-locality retries move on.
    assert_eq!(retry(false), (500, 0));
    assert_eq!(retry(true), (0, 500));
}

#[test]
fn locality_failover_needs_outlier_detection_and_can_be_disabled() {
    let h = HeaderMap::new();
    let ctx = PickContext::new(&h);
    // Without outlier detection istiod sets no priorities: every endpoint takes traffic.
    let b = Balancer::seeded(&cluster(LbPolicy::RoundRobin, zoned()), "r1/z1/s1", 15);
    assert_eq!(counts(&b, &ctx, 600), vec![100; 6]);
    // `localityLbSetting.enabled: false` turns it off even with outlier detection.
    let mut c = with_outlier_detection(cluster(LbPolicy::RoundRobin, zoned()), 0);
    if let Some(tp) = c.traffic_policy.as_mut() {
        tp.load_balancer = Some(LoadBalancerSettings {
            locality_lb_setting: Some(LocalityLoadBalancerSetting {
                enabled: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    assert_eq!(
        counts(&Balancer::seeded(&c, "r1/z1/s1", 16), &ctx, 600),
        vec![100; 6]
    );
}

#[test]
fn unhealthy_endpoints_are_skipped_until_panic() {
    let h = HeaderMap::new();
    let ctx = PickContext::new(&h);
    for policy in all_policies() {
        // Istio's default minHealthPercent 0: no panic; with nothing healthy there is no pick.
        let b = Balancer::seeded(
            &with_outlier_detection(cluster(policy.clone(), eps(4)), 0),
            "",
            17,
        );
        assert!(b.set_healthy(2, false));
        assert!(!b.set_healthy(2, false));
        assert!(!b.is_healthy(2));
        for i in 0..200 {
            let h = header("x-key", &format!("k{i}"));
            assert_ne!(
                b.pick(&PickContext::new(&h)).unwrap().index,
                2,
                "{policy:?}"
            );
        }
        for e in 0..4 {
            b.set_healthy(e, false);
        }
        assert!(b.pick(&ctx).is_none(), "{policy:?}");

        // minHealthPercent 50: one healthy host of four is below it, so all four take traffic.
        let b = Balancer::seeded(
            &with_outlier_detection(cluster(policy.clone(), eps(4)), 50),
            "",
            18,
        );
        for e in 0..3 {
            b.set_healthy(e, false);
        }
        let mut seen = HashSet::new();
        for i in 0..400 {
            let h = header("x-key", &format!("k{i}"));
            seen.insert(b.pick(&PickContext::new(&h)).unwrap().index);
        }
        assert_eq!(seen.len(), 4, "{policy:?}");
    }
}

#[test]
fn rebuild_keeps_counters_and_health_of_unchanged_endpoints() {
    let h = HeaderMap::new();
    let old = Balancer::seeded(&cluster(LbPolicy::LeastRequest, eps(3)), "", 19);
    let in_flight = old
        .pick(&PickContext {
            exclude: &[1, 2],
            ..PickContext::new(&h)
        })
        .unwrap();
    old.set_healthy(1, false);
    // Endpoint 2 removed, 10.0.0.9 added.
    let mut next = eps(2);
    next.push(ep("10.0.0.9:80", 1, ""));
    let new = old.rebuild(&cluster(LbPolicy::LeastRequest, next), "");
    let stats = new.endpoint_stats();
    assert_eq!((stats[0].active_requests, stats[0].total_requests), (1, 1));
    assert!(!stats[1].healthy);
    assert_eq!(
        (
            stats[2].address.as_str(),
            stats[2].total_requests,
            stats[2].healthy
        ),
        ("10.0.0.9:80", 0, true)
    );
    drop(in_flight);
    assert_eq!(new.endpoint_stats()[0].active_requests, 0);
    assert_eq!(counts(&new, &PickContext::new(&h), 100)[1], 0);
}

#[test]
fn endpoint_stats_describe_every_endpoint() {
    let b = Balancer::seeded(
        &cluster(
            LbPolicy::RoundRobin,
            vec![ep("10.0.0.1:80", 3, "r/z/s"), ep("[::1]:8080", 0, "")],
        ),
        "",
        20,
    );
    let h = HeaderMap::new();
    let held = b.pick(&PickContext::new(&h)).unwrap();
    let stats = b.endpoint_stats();
    assert_eq!(stats.len(), 2);
    assert_eq!(
        stats[1],
        EndpointStats {
            address: "[::1]:8080".into(),
            weight: 1,
            locality: String::new(),
            active_requests: u64::from(held.index == 1),
            total_requests: u64::from(held.index == 1),
            healthy: true,
        }
    );
    assert_eq!((stats[0].weight, stats[0].locality.as_str()), (3, "r/z/s"));
}

#[test]
fn concurrent_picks_keep_exact_counts() {
    let b = Arc::new(Balancer::seeded(
        &cluster(LbPolicy::LeastRequest, eps(4)),
        "",
        21,
    ));
    std::thread::scope(|s| {
        for _ in 0..4 {
            let b = Arc::clone(&b);
            s.spawn(move || {
                let h = HeaderMap::new();
                for _ in 0..2000 {
                    let pick = b.pick(&PickContext::new(&h)).unwrap();
                    assert!(pick.index < 4);
                }
            });
        }
    });
    let stats = b.endpoint_stats();
    assert_eq!(stats.iter().map(|s| s.total_requests).sum::<u64>(), 8000);
    assert!(stats.iter().all(|s| s.active_requests == 0));
}
