//! Approvals as they are kept: who approved which plan hash, when, and through which
//! interface. The scheduler's [`crate::Approvals`] checks them while a plan runs; this is
//! the record that outlives the run.

use crate::plan::PlanId;
use crate::thread::ThreadId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a person gave an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interface {
    /// `deckhand run --approve HASH`.
    Cli,
    /// The HTTP API.
    Api,
    /// The web GUI.
    Gui,
    /// A Slack button or command.
    Slack,
    /// The Kubernetes operator (an annotation on an `AIRequest`).
    Operator,
}

impl Interface {
    /// The name stored in databases and shown in APIs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Api => "api",
            Self::Gui => "gui",
            Self::Slack => "slack",
            Self::Operator => "operator",
        }
    }

    /// The interface named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "cli" => Some(Self::Cli),
            "api" => Some(Self::Api),
            "gui" => Some(Self::Gui),
            "slack" => Some(Self::Slack),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

/// One approval as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The record's id (a UUID, so copies to the shared store are never doubled).
    pub id: uuid::Uuid,
    /// The thread the plan belongs to.
    pub thread_id: ThreadId,
    /// The plan approved.
    pub plan_id: PlanId,
    /// The exact hash approved (`sha256:...`): a changed plan needs a new approval.
    pub plan_hash: String,
    /// The step approved, when approving step by step; `None` for the whole plan.
    pub step_id: Option<String>,
    /// Who approved.
    pub approved_by: String,
    /// Through which interface.
    pub interface: Interface,
    /// When.
    pub approved_at: DateTime<Utc>,
}

impl ApprovalRecord {
    /// An approval of the whole plan, given now.
    pub fn of_plan(
        thread_id: ThreadId,
        plan_id: PlanId,
        plan_hash: impl Into<String>,
        approved_by: impl Into<String>,
        interface: Interface,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4(),
            thread_id,
            plan_id,
            plan_hash: plan_hash.into(),
            step_id: None,
            approved_by: approved_by.into(),
            interface,
            approved_at: Utc::now(),
        }
    }

    /// An approval of one step of the plan, given now.
    pub fn of_step(
        thread_id: ThreadId,
        plan_id: PlanId,
        plan_hash: impl Into<String>,
        step_id: impl Into<String>,
        approved_by: impl Into<String>,
        interface: Interface,
    ) -> Self {
        Self {
            step_id: Some(step_id.into()),
            ..Self::of_plan(thread_id, plan_id, plan_hash, approved_by, interface)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_round_trip() {
        for interface in [
            Interface::Cli,
            Interface::Api,
            Interface::Gui,
            Interface::Slack,
            Interface::Operator,
        ] {
            assert_eq!(Interface::parse(interface.as_str()), Some(interface));
            assert_eq!(
                serde_json::to_value(interface).unwrap(),
                serde_json::json!(interface.as_str())
            );
        }
        assert_eq!(Interface::parse("email"), None);
    }
}
