//! The cloud agent's S3 plan against the real catalog: it plans `terraform plan` when
//! deckhand has the `terraform_plan` tool (a terraform binary is configured) and tells
//! the person to run it by hand when it does not; either way nothing mutates.

// Test helpers outside #[test] functions: a panic is the failure report here too.
#![allow(clippy::unwrap_used)]

mod common;

use deckhand_agents::Scarlet;
use deckhand_runtime::{AgentRole, PlanRequest, Planner, ThreadId, ToolCatalog};
use deckhand_tools::terraform::{terraform_plan_spec, TOOL_NAME};

fn request(text: &str) -> PlanRequest {
    PlanRequest {
        thread_id: ThreadId::new(),
        text: text.into(),
        namespace: None,
        history: Vec::new(),
        similar_threads: Vec::new(),
    }
}

/// The real catalog with `terraform_plan`'s real manifest added.
fn with_terraform() -> ToolCatalog {
    let base = common::catalog();
    let spec = terraform_plan_spec();
    let added = deckhand_agents::tools::catalog_from_specs([&spec]);
    ToolCatalog::new(base.entries().cloned().chain(added.entries().cloned()))
}

#[tokio::test]
async fn the_s3_plan_runs_terraform_plan_after_the_root_configuration_when_the_tool_exists() {
    let plan = Scarlet::offline()
        .plan(
            &request("create an S3 bucket named backup-storage in us-west-1"),
            &with_terraform(),
        )
        .await
        .unwrap();
    let tools: Vec<&str> = plan.steps.iter().map(|s| s.tool.as_str()).collect();
    assert_eq!(tools, ["terraform_module", "write_file", TOOL_NAME]);
    let step = &plan.steps[2];
    assert_eq!(step.agent, AgentRole::Cloud);
    assert_eq!(step.depends_on, ["root"]);
    assert_eq!(
        step.input,
        serde_json::json!({"path": "terraform/backup-storage"})
    );
    assert!(!step.mutating);
    assert!(!plan.is_mutating(), "a plan changes nothing");
    assert!(
        step.rationale.contains("never applies"),
        "{}",
        step.rationale
    );
    // The root configuration it plans is the one the step before wrote.
    assert_eq!(
        plan.steps[1].input["path"],
        "terraform/backup-storage/main.tf"
    );
}

#[tokio::test]
async fn without_the_tool_the_s3_plan_drafts_only_and_says_to_plan_by_hand() {
    let catalog = common::catalog();
    assert!(
        catalog.get(TOOL_NAME).is_none(),
        "the base catalog has no terraform"
    );
    let plan = Scarlet::offline()
        .plan(
            &request("create an S3 bucket named backup-storage in us-west-1"),
            &catalog,
        )
        .await
        .unwrap();
    let tools: Vec<&str> = plan.steps.iter().map(|s| s.tool.as_str()).collect();
    assert_eq!(tools, ["terraform_module", "write_file"]);
    let root = &plan.steps[1].rationale;
    assert!(
        root.contains("No terraform binary is configured")
            && root.contains("terraform plan` in terraform/backup-storage yourself"),
        "{root}"
    );
}
