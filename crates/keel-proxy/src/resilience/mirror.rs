//! Traffic mirroring (`mirror` + `mirrorPercentage`, `mirrors[]`): fire-and-forget copies.
//!
//! Each mirror is drawn independently per request (Envoy's `request_mirror_policies`, one
//! runtime fraction each); the copy goes out with the route's timeout and no retries, its
//! answer is discarded, and nothing about it can slow or fail the primary request.
//!
//! The copy's `Host`/`:authority`: Envoy appends `-shadow` to the host (before any port) unless
//! `disable_shadow_host_suffix_append` is set. Istio sets that flag since 1.28
//! (`DISABLE_SHADOW_HOST_SUFFIX`, default true), so Keel's default is [`ShadowHost::Unchanged`];
//! [`ShadowHost::AppendSuffix`] gives the older behaviour the Istio mirroring task describes.

use std::borrow::Cow;

use keel_snapshot::RoutePolicy;

use super::Fraction;

/// How the mirrored copy's authority is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShadowHost {
    /// The original authority (Istio 1.28 and later).
    #[default]
    Unchanged,
    /// `host-shadow[:port]` (Envoy's default; Istio before 1.28).
    AppendSuffix,
}

/// One mirror destination.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorTarget {
    pub cluster: String,
    pub share: Fraction,
}

/// A route's mirrors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MirrorPolicy {
    pub targets: Vec<MirrorTarget>,
    pub shadow_host: ShadowHost,
}

impl MirrorPolicy {
    /// The route's mirrors (percentages already defaulted to 100 by the snapshot). A
    /// percentage of 0 mirrors nothing, as Istio's `MirrorPercent` drops it.
    pub fn from_route(policy: Option<&RoutePolicy>, shadow_host: ShadowHost) -> MirrorPolicy {
        let targets = policy
            .map(|p| p.mirrors.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|(cluster, pct)| MirrorTarget {
                cluster: cluster.clone(),
                share: Fraction::from_percent(*pct),
            })
            .filter(|t| !t.share.is_never())
            .collect();
        MirrorPolicy {
            targets,
            shadow_host,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The mirrors this request is copied to, each drawn on its own.
    pub fn pick<'a, R: rand::RngCore>(
        &'a self,
        rng: &'a mut R,
    ) -> impl Iterator<Item = &'a MirrorTarget> + 'a {
        self.targets.iter().filter(move |t| t.share.hit(rng))
    }

    /// The copy's authority for `authority`.
    pub fn authority<'a>(&self, authority: &'a str) -> Cow<'a, str> {
        shadow_authority(authority, self.shadow_host)
    }
}

/// Envoy's `shadowAppendedHost`: `-shadow` goes after the host and before the port
/// (`reviews:9080` → `reviews-shadow:9080`, `[::1]:80` → `[::1]-shadow:80`).
pub fn shadow_authority(authority: &str, mode: ShadowHost) -> Cow<'_, str> {
    if mode == ShadowHost::Unchanged || authority.is_empty() {
        return Cow::Borrowed(authority);
    }
    let port_start = authority
        .rfind(':')
        .filter(|&colon| authority.rfind(']').is_none_or(|bracket| bracket < colon));
    Cow::Owned(match port_start {
        Some(i) => format!("{}-shadow{}", &authority[..i], &authority[i..]),
        None => format!("{authority}-shadow"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy(mirrors: &[(&str, f64)]) -> RoutePolicy {
        RoutePolicy {
            mirrors: mirrors.iter().map(|(c, p)| (c.to_string(), *p)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn each_mirror_is_drawn_on_its_own_share() {
        let p = MirrorPolicy::from_route(
            Some(&policy(&[
                ("outbound|80|v2|httpbin", 100.0),
                ("outbound|80|v3|httpbin", 25.0),
            ])),
            ShadowHost::default(),
        );
        let mut rng = StdRng::seed_from_u64(9);
        let (mut v2, mut v3) = (0, 0);
        for _ in 0..10_000 {
            for t in p.pick(&mut rng) {
                if t.cluster.contains("v2") {
                    v2 += 1;
                } else {
                    v3 += 1;
                }
            }
        }
        assert_eq!(v2, 10_000);
        assert!((2_300..=2_700).contains(&v3), "{v3}");
    }

    #[test]
    fn a_zero_percentage_mirrors_nothing() {
        let p = MirrorPolicy::from_route(Some(&policy(&[("c", 0.0)])), ShadowHost::default());
        assert!(p.is_empty());
        assert!(MirrorPolicy::from_route(None, ShadowHost::default()).is_empty());
    }

    #[test]
    fn the_shadow_suffix_goes_before_the_port() {
        let append = ShadowHost::AppendSuffix;
        assert_eq!(
            shadow_authority("httpbin:8000", append),
            "httpbin-shadow:8000"
        );
        assert_eq!(shadow_authority("httpbin", append), "httpbin-shadow");
        assert_eq!(shadow_authority("[::1]:80", append), "[::1]-shadow:80");
        assert_eq!(shadow_authority("[::1]", append), "[::1]-shadow");
        assert_eq!(
            shadow_authority("httpbin:8000", ShadowHost::Unchanged),
            "httpbin:8000"
        );
        let p = MirrorPolicy {
            targets: Vec::new(),
            shadow_host: ShadowHost::default(),
        };
        assert_eq!(
            p.authority("httpbin:8000"),
            "httpbin:8000",
            "Istio 1.28 default"
        );
    }
}
