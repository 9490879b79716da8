//! The runtime's [`StepExecutor`] over the tool registry: a plan step is one tool call,
//! made for the person who asked and, for mutating tools, with the approver's name (the
//! cluster tools refuse to write without it).
//!
//! In GitOps mode a `kube_apply` step is not applied by deckhand: its manifests are
//! committed on the thread's branch at approval, Argo CD or Flux applies them. The step
//! still runs both policy checkpoints and the API server's dry run (`kube_dry_run` on the
//! same input), so what is committed is what policy and the server accept.

use deckhand_runtime::scheduler::{StepContext, StepError};
use deckhand_runtime::{Step, StepExecutor};
use deckhand_tools::cluster::Person;
use deckhand_tools::{ToolContext, ToolRegistry};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// Runs steps by calling their tools.
pub struct ToolExecutor {
    registry: Arc<ToolRegistry>,
    workspace: PathBuf,
    requested_by: String,
    acting_as: Option<Person>,
    metrics: Option<deckhand_api::Metrics>,
    gitops: bool,
}

/// The tool deckhand applies manifests with, and the one that checks them without
/// writing (same input).
const APPLY_TOOL: &str = "kube_apply";
const DRY_RUN_TOOL: &str = "kube_dry_run";

impl ToolExecutor {
    /// An executor calling tools from `registry`, confined to `workspace`, on behalf of
    /// `requested_by`.
    pub fn new(
        registry: Arc<ToolRegistry>,
        workspace: PathBuf,
        requested_by: impl Into<String>,
    ) -> Self {
        Self {
            registry,
            workspace,
            requested_by: requested_by.into(),
            acting_as: None,
            metrics: None,
            gitops: false,
        }
    }

    /// Makes cluster calls as `person` (impersonation), so their own RBAC applies.
    #[must_use]
    pub fn acting_as(mut self, person: Option<Person>) -> Self {
        self.acting_as = person;
        self
    }

    /// GitOps mode: `kube_apply` steps are checked (policies and a dry run) but their
    /// manifests are left to Argo CD / Flux, from the thread's branch.
    #[must_use]
    pub fn leaving_applies_to_gitops(mut self, gitops: bool) -> Self {
        self.gitops = gitops;
        self
    }

    /// Counts every tool call, its outcome and latency in `metrics`.
    #[must_use]
    pub fn counting_in(mut self, metrics: Option<deckhand_api::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }
}

impl StepExecutor for ToolExecutor {
    async fn execute(
        &self,
        step: &Step,
        input: Value,
        context: &StepContext,
    ) -> Result<Value, StepError> {
        let tool_context = ToolContext {
            workspace: self.workspace.clone(),
            requested_by: self.requested_by.clone(),
            approved_by: context.approved_by.clone(),
            thread_id: Some(context.thread_id.to_string()),
            acting_as: self.acting_as.clone(),
        };
        let started = std::time::Instant::now();
        let gitops = self.gitops && step.tool == APPLY_TOOL;
        let tool = if gitops {
            DRY_RUN_TOOL
        } else {
            step.tool.as_str()
        };
        let called = self.registry.call(tool, &tool_context, &input).await;
        let called = match called {
            Ok(checked) if gitops => Ok(serde_json::json!({
                "applied_by_deckhand": false,
                "gitops": {
                    "branch": deckhand_git::branch_name(context.thread_id.as_uuid()),
                    "note": "committed at approval for Argo CD / Flux to apply; checked by policy and a server-side dry run here",
                },
                "checked": checked,
            })),
            other => other,
        };
        if let Some(metrics) = &self.metrics {
            let outcome = match &called {
                Ok(_) => "ok",
                Err(error) => match error.kind() {
                    "policy_denied" => "denied",
                    "time_limit" => "timeout",
                    _ => "error",
                },
            };
            metrics.tool_call(&step.tool, outcome, started.elapsed());
        }
        called.map_err(|error| StepError {
            message: crate::error::with_causes(&error),
            // Only trouble reaching the cluster or a tool's CPU budget may pass on a
            // second try; a denial, a bad input or a failed tool will not.
            retryable: matches!(error.kind(), "cluster" | "time_limit"),
        })
    }
}
