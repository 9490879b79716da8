//! The runtime's [`StepExecutor`] over the tool registry: a plan step is one tool call,
//! made for the person who asked and, for mutating tools, with the approver's name (the
//! cluster tools refuse to write without it).

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
}

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
        }
    }

    /// Makes cluster calls as `person` (impersonation), so their own RBAC applies.
    #[must_use]
    pub fn acting_as(mut self, person: Option<Person>) -> Self {
        self.acting_as = person;
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
        let called = self.registry.call(&step.tool, &tool_context, &input).await;
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
