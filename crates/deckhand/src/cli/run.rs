//! `deckhand run PLAN.json --approve HASH`: carries out a plan the person approved by
//! its hash, with the same store, tools, policies and cluster as `deckhand serve`.
//!
//! Exit status: 0 every step succeeded; 1 the approval was refused, the plan is invalid
//! or a step failed; 2 the plan file is unreadable or deckhand cannot start.

use crate::cli::session::{self, print_step_event, whoami};
use crate::config::Config;
use crate::executor::ToolExecutor;
use deckhand_runtime::scheduler::PlanState;
use deckhand_runtime::{Approvals, Plan, Scheduler, SchedulerConfig, Thread, ThreadStore};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs the plan in `plan_file`, approved by `approved_hash`; progress goes to `err`,
/// the outcome (JSON) to `out`. Returns the exit status.
pub async fn run(
    config: &Config,
    plan_file: &Path,
    approved_hash: &str,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8 {
    let plan: Plan = match std::fs::read_to_string(plan_file)
        .map_err(|error| error.to_string())
        .and_then(|text| {
            serde_json::from_str(&text).map_err(|error| format!("not a plan: {error}"))
        }) {
        Ok(plan) => plan,
        Err(error) => {
            let _ = writeln!(err, "error: {}: {error}", plan_file.display());
            return 2;
        }
    };
    if let Err(error) = plan.check_approval(approved_hash) {
        let _ = writeln!(err, "error: {error}");
        return 1;
    }
    let shared = match session::open(config).await {
        Ok(session) => session,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return 2;
        }
    };
    if !shared.connected {
        let _ = writeln!(
            err,
            "note: no cluster configured; cluster tools are unavailable"
        );
    }
    // Only the tools that can run here: a plan naming a cluster tool without a cluster
    // is refused before anything runs.
    let catalog = deckhand_agents::tools::catalog(&shared.registry);
    let database = shared.database.clone();
    if let Err(error) = plan.validate(&catalog) {
        let _ = writeln!(err, "error: {error}");
        return 1;
    }
    if let Ok(None) = database.thread(plan.thread_id).await {
        let mut thread = Thread::new("default", whoami(), plan.request.clone());
        thread.id = plan.thread_id;
        if let Err(error) = database.create_thread(&thread).await {
            let _ = writeln!(err, "error: {error:#}");
            return 2;
        }
    }

    let who = whoami();
    let scheduler = Scheduler::new(
        Arc::new(ToolExecutor::new(
            shared.registry.clone(),
            config.workspace.clone(),
            who.clone(),
        )),
        Arc::new(database.clone()),
        SchedulerConfig::default(),
    );
    let approvals = Approvals::new(&plan);
    if let Err(error) = approvals.approve_plan(&plan, approved_hash, &who) {
        let _ = writeln!(err, "error: {error}");
        return 1;
    }
    let mut events = scheduler.subscribe();
    let cancel = CancellationToken::new();
    let interrupt = cancel.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupt.cancel();
        }
    });
    let outcome = {
        let running = scheduler.run(&plan, &approvals, &cancel);
        tokio::pin!(running);
        loop {
            tokio::select! {
                outcome = &mut running => break outcome,
                Ok(event) = events.recv() => print_step_event(&event, err),
            }
        }
    };
    // The last transitions may still be queued when the run ends.
    while let Ok(event) = events.try_recv() {
        print_step_event(&event, err);
    }
    ctrl_c.abort();
    // The scheduler holds the tools; the audit writer finishes once they are gone.
    drop(scheduler);
    drop(database);
    shared.close().await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            let _ = writeln!(err, "error: {error:#}");
            return 2;
        }
    };
    let report = json!({
        "plan": plan.id,
        "thread": plan.thread_id,
        "state": outcome.state,
        "steps": outcome.steps.iter().map(|(id, state)| json!({"id": id, "state": state})).collect::<Vec<_>>(),
        "outputs": outcome.outputs,
        "failures": outcome.failures.iter().map(|(id, why)| json!({"id": id, "error": why})).collect::<Vec<_>>(),
    });
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    if outcome.state == PlanState::Succeeded {
        0
    } else {
        1
    }
}
