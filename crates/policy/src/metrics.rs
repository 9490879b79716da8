//! Decision counters: how many requests were judged, allowed, denied and warned about,
//! and which policies denied. Shared by every clone of an [`Engine`](crate::Engine), read
//! with [`Engine::metrics`](crate::Engine::metrics) and exported by the API's `/metrics`.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Live counters (atomics, so evaluation never waits on a reader).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    evaluations: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
    with_warnings: AtomicU64,
    /// Denials per policy name; a short critical section once per violation.
    denials_by_policy: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub(crate) fn record(&self, decision: &crate::Decision) {
        self.evaluations.fetch_add(1, Ordering::Relaxed);
        if decision.allowed {
            self.allowed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.denied.fetch_add(1, Ordering::Relaxed);
        }
        if !decision.warnings.is_empty() {
            self.with_warnings.fetch_add(1, Ordering::Relaxed);
        }
        if !decision.violations.is_empty() {
            // A poisoned lock only means another thread panicked mid-increment; the
            // counts are still usable.
            let mut by_policy = self
                .denials_by_policy
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for violation in &decision.violations {
                *by_policy.entry(violation.policy.clone()).or_default() += 1;
            }
        }
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            evaluations: self.evaluations.load(Ordering::Relaxed),
            allowed: self.allowed.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            with_warnings: self.with_warnings.load(Ordering::Relaxed),
            denials_by_policy: self
                .denials_by_policy
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Requests judged.
    pub evaluations: u64,
    /// Of which allowed.
    pub allowed: u64,
    /// Of which denied.
    pub denied: u64,
    /// Decisions that carried at least one warning.
    pub with_warnings: u64,
    /// Violations per policy name (a request denied by two policies counts for both).
    pub denials_by_policy: BTreeMap<String, u64>,
}

impl MetricsSnapshot {
    /// The counters in Prometheus' text exposition format.
    pub fn to_prometheus(&self) -> String {
        let mut text = String::new();
        text.push_str("# HELP deckhand_policy_decisions_total Requests judged by the policy engine, by outcome.\n");
        text.push_str("# TYPE deckhand_policy_decisions_total counter\n");
        for (outcome, count) in [("allowed", self.allowed), ("denied", self.denied)] {
            text.push_str(&format!(
                "deckhand_policy_decisions_total{{outcome=\"{outcome}\"}} {count}\n"
            ));
        }
        text.push_str("# HELP deckhand_policy_warnings_total Decisions that carried a warning.\n");
        text.push_str("# TYPE deckhand_policy_warnings_total counter\n");
        text.push_str(&format!(
            "deckhand_policy_warnings_total {}\n",
            self.with_warnings
        ));
        text.push_str("# HELP deckhand_policy_violations_total Violations, by policy.\n");
        text.push_str("# TYPE deckhand_policy_violations_total counter\n");
        for (policy, count) in &self.denials_by_policy {
            let policy = policy
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            text.push_str(&format!(
                "deckhand_policy_violations_total{{policy=\"{policy}\"}} {count}\n"
            ));
        }
        text
    }
}
