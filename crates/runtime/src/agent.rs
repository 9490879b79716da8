//! The agents deckhand has, and the part each plays. Prompts, routing and the API's agent
//! list are built from this one table.

use serde::{Deserialize, Serialize};

/// One of deckhand's agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
