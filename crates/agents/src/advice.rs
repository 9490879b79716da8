//! What the analyzers hand back besides their findings: remediations, the patches that
//! carry them out, and the plan steps a person (or Scarlet) can adopt. Nothing here runs
//! anything; a suggested step becomes real only inside a plan that is approved.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How sure an analyzer is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// A guess from weak signals.
    Low,
    /// Signals agree but one piece of evidence is missing.
    Medium,
    /// The cluster said so in as many words (a status reason, an event).
    High,
}

/// How bad a finding is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Low,
    /// Fix when convenient.
    Medium,
    /// Fix soon: it widens what an attacker or a failure can do.
    High,
    /// Fix now: it hands out the node or the cluster.
    Critical,
}

/// How a patch is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PatchType {
    /// RFC 7386 JSON merge patch: fine for maps, but it replaces lists whole.
    Merge,
    /// Kubernetes strategic merge patch (`kubectl patch` by default): lists of
    /// containers merge by `name`, so one container can be changed alone.
    Strategic,
}

/// A change to one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Patch {
    /// The object, e.g. `apps/v1 Deployment shop/web`.
    pub target: String,
    /// How to apply `body`.
    #[serde(rename = "type")]
    pub patch_type: PatchType,
    /// The patch document.
    pub body: Value,
}

/// A plan step an analyzer proposes, for one of the cluster tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SuggestedStep {
    /// The tool, e.g. `kube_restart`.
    pub tool: String,
    /// Its input.
    pub input: Value,
    /// Whether the tool changes the cluster (then it waits for approval).
    pub mutating: bool,
}

/// One thing to do about a problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Remediation {
    /// What to do, in a sentence a person acts on.
    pub action: String,
    /// The change that does it, when it is a change to an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Patch>,
    /// The plan step that does it (or gathers what is needed), when a tool can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<SuggestedStep>,
}

impl Remediation {
    /// A remediation that is only advice.
    pub fn advice(action: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            patch: None,
            step: None,
        }
    }

    /// Adds the patch that carries it out.
    #[must_use]
    pub fn with_patch(mut self, patch: Patch) -> Self {
        self.patch = Some(patch);
        self
    }

    /// Adds the plan step that carries it out.
    #[must_use]
    pub fn with_step(mut self, tool: &str, input: Value, mutating: bool) -> Self {
        self.step = Some(SuggestedStep {
            tool: tool.to_owned(),
            input,
            mutating,
        });
        self
    }
}
