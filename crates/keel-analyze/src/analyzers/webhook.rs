//! `webhook.Analyzer`: Istio's sidecar-injector webhooks, from MutatingWebhookConfigurations.
//!
//! Only configurations that belong to Istio are considered: those with a revision (the
//! `istio.io/rev` label on the configuration, or `istio.io/rev` in a hook's namespace or
//! object selector) or with a hook whose name ends in `istio.io`.
//!
//! - IST0139 InvalidWebhook "Webhook overlaps with others: [...]": for some combination of
//!   namespace labels (none, `istio-injection: enabled|disabled`, each with or without
//!   `istio.io/rev: <rev>` for every revision found) and pod labels (none,
//!   `sidecar.istio.io/inject: "true"|"false"`, likewise with or without the revision), more
//!   than one hook would inject the pod. Reported on each overlapping hook's configuration,
//!   naming the others (`<configuration>/<hook>`, sorted; Istio's order is random).
//! - IST0139 "Injector refers to a control plane service that does not exist: <ns>/<name>.": a
//!   hook's `clientConfig.service` names a Service that is not in the input.
//!
//! Messages have no field line (as in istioctl): they point at the configuration's first line.

use std::collections::{BTreeMap, BTreeSet};

use keel_config::Resource;
use keel_config::model::kube::{LabelSelector, Webhook};

use super::Analyzer;
use super::util_an2::full_name;
use crate::context::AnalysisContext;
use crate::messages::{INVALID_WEBHOOK, Message, list};

const REVISION_LABEL: &str = "istio.io/rev";

pub struct WebhookAnalyzer;

type Labels = BTreeMap<String, String>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The label sets to try: none, `key: on`, `key: off`, then each again with every revision.
fn permutations(key: &str, on: &str, off: &str, revisions: &BTreeSet<String>) -> Vec<Labels> {
    let base = [labels(&[]), labels(&[(key, on)]), labels(&[(key, off)])];
    let mut out = base.to_vec();
    for rev in revisions {
        for b in &base {
            let mut l = b.clone();
            l.insert(REVISION_LABEL.to_string(), rev.clone());
            out.push(l);
        }
    }
    out
}

/// Revisions named by a configuration: its `istio.io/rev` label and the `istio.io/rev`
/// terms of its hooks' selectors.
fn revisions(r: &Resource, hooks: &[Webhook]) -> BTreeSet<String> {
    let mut revs: BTreeSet<String> = r
        .meta
        .labels
        .get(REVISION_LABEL)
        .cloned()
        .into_iter()
        .collect();
    let mut from_selector = |s: &LabelSelector| {
        if let Some(v) = s.match_labels.get(REVISION_LABEL) {
            revs.insert(v.clone());
        }
        for e in s
            .match_expressions
            .iter()
            .filter(|e| e.key == REVISION_LABEL)
        {
            revs.extend(e.values.iter().cloned());
        }
    };
    for h in hooks {
        if let Some(s) = &h.namespace_selector {
            from_selector(s);
        }
        if let Some(s) = &h.object_selector {
            from_selector(s);
        }
    }
    revs
}

impl Analyzer for WebhookAnalyzer {
    fn name(&self) -> &'static str {
        "webhook.Analyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the validity of Istio webhooks"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        // Configurations by full name (a later one with the same name replaces an earlier
        // one), and the resource each `<configuration>/<hook>` key belongs to.
        let mut configs: Vec<(String, &Resource, &[Webhook])> = Vec::new();
        let mut owners: BTreeMap<String, &Resource> = BTreeMap::new();
        let mut all_revisions = BTreeSet::new();
        for (r, mwc) in ctx.mutating_webhook_configurations() {
            let revs = revisions(r, &mwc.webhooks);
            let is_istio = mwc.webhooks.iter().any(|h| h.name.ends_with("istio.io"));
            if revs.is_empty() && !is_istio {
                continue;
            }
            let name = full_name(r);
            configs.retain(|(n, _, _)| *n != name);
            for h in &mwc.webhooks {
                owners.insert(format!("{name}/{}", h.name), r);
            }
            configs.push((name, r, &mwc.webhooks));
            all_revisions.extend(revs);
        }

        let namespace_labels =
            permutations("istio-injection", "enabled", "disabled", &all_revisions);
        let object_labels =
            permutations("sidecar.istio.io/inject", "true", "false", &all_revisions);
        for nl in &namespace_labels {
            for ol in &object_labels {
                let matches: BTreeSet<String> = configs
                    .iter()
                    .flat_map(|(name, _, hooks)| {
                        hooks
                            .iter()
                            .filter(|h| h.selects(nl, ol))
                            .map(move |h| format!("{name}/{}", h.name))
                    })
                    .collect();
                if matches.len() < 2 {
                    continue;
                }
                for m in &matches {
                    let Some(r) = owners.get(m) else { continue };
                    let others: Vec<&String> = matches.iter().filter(|o| *o != m).collect();
                    out.push(ctx.message(
                        INVALID_WEBHOOK,
                        r,
                        None,
                        format!(
                            "Webhook overlaps with others: {}. This may cause injection to occur twice.",
                            list(&others)
                        ),
                    ));
                }
            }
        }

        for (_, r, hooks) in &configs {
            for h in hooks.iter() {
                let Some(svc) = &h.client_config.service else {
                    continue;
                };
                let exists = ctx
                    .services()
                    .any(|(s, _)| s.namespace() == svc.namespace && s.name() == svc.name);
                if !exists {
                    let target = if svc.namespace.is_empty() {
                        svc.name.clone()
                    } else {
                        format!("{}/{}", svc.namespace, svc.name)
                    };
                    out.push(ctx.message(
                        INVALID_WEBHOOK,
                        r,
                        None,
                        format!(
                            "Injector refers to a control plane service that does not exist: {target}."
                        ),
                    ));
                }
            }
        }
    }
}
