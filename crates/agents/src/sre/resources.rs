//! Resource suggestions from observed usage: requests near what a container really uses
//! (with headroom), limits that leave room for peaks, and a word on what changes.

use crate::k8s;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Headroom over p95 CPU for the request.
const CPU_REQUEST_HEADROOM: f64 = 1.2;
/// Headroom over peak memory for the request.
const MEMORY_REQUEST_HEADROOM: f64 = 1.15;
/// Headroom over peak memory for the limit.
const MEMORY_LIMIT_HEADROOM: f64 = 1.5;
/// A request this far from the suggestion is worth changing.
const WORTH_CHANGING: f64 = 0.25;

/// What was observed for one container, with its current settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObservedUsage {
    /// The container.
    pub container: String,
    /// 95th percentile CPU use in millicores.
    pub cpu_p95_millicores: f64,
    /// Peak memory use (working set) in bytes.
    pub memory_peak_bytes: f64,
    /// Current CPU request, e.g. `500m`.
    #[serde(default)]
    pub cpu_request: Option<String>,
    /// Current memory request, e.g. `512Mi`.
    #[serde(default)]
    pub memory_request: Option<String>,
    /// Current memory limit.
    #[serde(default)]
    pub memory_limit: Option<String>,
}

/// A suggested resources block for one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceSuggestion {
    /// The container.
    pub container: String,
    /// Suggested CPU request.
    pub cpu_request: String,
    /// Suggested memory request.
    pub memory_request: String,
    /// Suggested memory limit (no CPU limit: throttling costs more than it protects).
    pub memory_limit: String,
    /// Whether the current settings are far enough off to change.
    pub change_recommended: bool,
    /// Why, in a sentence.
    pub reason: String,
}

/// Suggestions for each observed container.
pub fn suggest_resources(usage: &[ObservedUsage]) -> Vec<ResourceSuggestion> {
    usage.iter().map(suggest_one).collect()
}

fn suggest_one(observed: &ObservedUsage) -> ResourceSuggestion {
    let cpu = observed.cpu_p95_millicores.max(1.0) * CPU_REQUEST_HEADROOM;
    let memory = observed.memory_peak_bytes.max(1.0) * MEMORY_REQUEST_HEADROOM;
    let limit = observed.memory_peak_bytes.max(1.0) * MEMORY_LIMIT_HEADROOM;
    let off = |current: Option<f64>, suggested: f64| match current {
        None => true,
        Some(current) => ((current - suggested) / suggested).abs() > WORTH_CHANGING,
    };
    let current_cpu = observed
        .cpu_request
        .as_deref()
        .and_then(k8s::cpu_millicores);
    let current_memory = observed
        .memory_request
        .as_deref()
        .and_then(k8s::memory_bytes);
    let current_limit = observed.memory_limit.as_deref().and_then(k8s::memory_bytes);
    let mut reasons = Vec::new();
    if off(current_cpu, cpu) {
        reasons.push(format!(
            "CPU request {} vs p95 use {:.0}m",
            observed.cpu_request.as_deref().unwrap_or("unset"),
            observed.cpu_p95_millicores
        ));
    }
    if off(current_memory, memory) {
        reasons.push(format!(
            "memory request {} vs peak {}",
            observed.memory_request.as_deref().unwrap_or("unset"),
            k8s::format_memory(observed.memory_peak_bytes)
        ));
    }
    if current_limit.is_none_or(|limit| limit < observed.memory_peak_bytes * 1.1) {
        reasons.push(format!(
            "memory limit {} leaves too little room over the peak",
            observed.memory_limit.as_deref().unwrap_or("unset")
        ));
    }
    ResourceSuggestion {
        container: observed.container.clone(),
        cpu_request: k8s::format_cpu(cpu),
        memory_request: k8s::format_memory(memory),
        memory_limit: k8s::format_memory(limit),
        change_recommended: !reasons.is_empty(),
        reason: match reasons.is_empty() {
            true => "current settings fit the observed usage".into(),
            false => reasons.join("; "),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_and_undersized_requests_are_flagged() {
        let suggestions = suggest_resources(&[
            ObservedUsage {
                container: "api".into(),
                cpu_p95_millicores: 120.0,
                memory_peak_bytes: 200.0 * 1024.0 * 1024.0,
                cpu_request: Some("2".into()),
                memory_request: Some("2Gi".into()),
                memory_limit: Some("4Gi".into()),
            },
            ObservedUsage {
                container: "fit".into(),
                cpu_p95_millicores: 100.0,
                memory_peak_bytes: 100.0 * 1024.0 * 1024.0,
                cpu_request: Some("120m".into()),
                memory_request: Some("115Mi".into()),
                memory_limit: Some("150Mi".into()),
            },
        ]);
        assert_eq!(suggestions[0].cpu_request, "150m");
        assert_eq!(suggestions[0].memory_request, "256Mi");
        assert_eq!(suggestions[0].memory_limit, "320Mi");
        assert!(suggestions[0].change_recommended);
        assert!(!suggestions[1].change_recommended, "{:?}", suggestions[1]);
    }
}
