//! The agents deckhand has, and the part each plays. Plans name them per step; prompts,
//! routing and the API's agent list are built from this one table.

use crate::error::Result;
use crate::plan::{Plan, ToolCatalog};
use crate::thread::ThreadId;
use serde::{Deserialize, Serialize};
use std::future::Future;

/// What a planner is asked to plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRequest {
    /// The thread the plan belongs to.
    pub thread_id: ThreadId,
    /// The person's request, as written.
    pub text: String,
    /// The namespace the person works in, when given (`--namespace`).
    pub namespace: Option<String>,
    /// The thread so far, oldest first, one entry per message.
    pub history: Vec<String>,
    /// Summaries of similar past threads from the knowledge base, most similar first.
    pub similar_threads: Vec<String>,
}

/// Turns a request into a validated plan. Scarlet implements it (with a model, or with
/// her rule-based path on the offline backend).
pub trait Planner: Send + Sync {
    /// A plan for `request` using only the tools in `catalog`. Implementations repair
    /// invalid drafts themselves (bounded) and fail with a clear message otherwise.
    fn plan(
        &self,
        request: &PlanRequest,
        catalog: &ToolCatalog,
    ) -> impl Future<Output = Result<Plan>> + Send;
}

/// One of deckhand's agents.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AgentRole {
    /// Scarlet turns a request into a plan: a DAG of steps for the others.
    Scarlet,
    /// Jamie, the copilot: generates and explains manifests, diagnoses workloads.
    Jamie,
    /// Security: findings and remediations for workloads, RBAC and images.
    Security,
    /// SRE: alert triage, incident reports, runbooks.
    Sre,
    /// Cloud: requests about cloud resources, planned like cluster changes.
    Cloud,
}

impl AgentRole {
    /// Every agent, planner first.
    pub const ALL: [AgentRole; 5] = [
        Self::Scarlet,
        Self::Jamie,
        Self::Security,
        Self::Sre,
        Self::Cloud,
    ];

    /// The name plans use (`scarlet`, `jamie`, `security`, `sre`, `cloud`).
    pub fn id(&self) -> &'static str {
        match self {
            Self::Scarlet => "scarlet",
            Self::Jamie => "jamie",
            Self::Security => "security",
            Self::Sre => "sre",
            Self::Cloud => "cloud",
        }
    }

    /// The agent's name as people see it.
    pub fn display_name(&self) -> &'static str {
        match self {
            Self::Scarlet => "Scarlet",
            Self::Jamie => "Jamie",
            Self::Security => "Security",
            Self::Sre => "SRE",
            Self::Cloud => "Cloud",
        }
    }

    /// What the agent is responsible for, in one sentence.
    pub fn responsibility(&self) -> &'static str {
        match self {
            Self::Scarlet => "Plans: breaks a request into steps, each for one agent and one tool, and shows the plan for approval.",
            Self::Jamie => "Copilot: writes and explains Kubernetes manifests, Helm charts and Terraform, and diagnoses failing workloads.",
            Self::Security => "Security: finds misconfigured workloads, risky RBAC and vulnerable images, and proposes fixes.",
            Self::Sre => "SRE: triages alerts, finds likely root causes with a remediation each, writes incident reports and runbooks.",
            Self::Cloud => "Cloud: plans changes to cloud resources, which are approved like cluster changes.",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_agent_has_a_distinct_name_and_a_responsibility() {
        let mut names: Vec<_> = AgentRole::ALL.iter().map(AgentRole::display_name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), AgentRole::ALL.len());
        assert!(AgentRole::ALL
            .iter()
            .all(|agent| !agent.responsibility().is_empty()));
    }
}
