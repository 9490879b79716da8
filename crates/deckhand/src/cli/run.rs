//! `deckhand run PLAN.json --approve HASH`: carries out a plan the person approved by
//! its hash, with the same store, tools, policies and cluster as `deckhand serve`.
//!
//! Exit status: 0 every step succeeded; 1 the approval was refused, the plan is invalid
//! or a step failed; 2 the plan file is unreadable or deckhand cannot start.

use crate::config::Config;
use crate::executor::{catalog, ToolExecutor};
use deckhand_runtime::scheduler::{EventKind, PlanState};
use deckhand_runtime::{Approvals, Plan, Scheduler, SchedulerConfig, Thread, ThreadStore};
use deckhand_store::Database;
use deckhand_tools::cluster::{register_cluster_tools, ClusterGate};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The person running the command, for approvals and the audit log.
pub fn whoami() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "cli".to_owned())
}

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
    for dir in [&config.data_dir, &config.workspace] {
        if let Err(error) = std::fs::create_dir_all(dir) {
            let _ = writeln!(err, "error: cannot create {}: {error}", dir.display());
            return 2;
        }
    }
    let database = match &config.database_url {
        Some(url) => Database::connect(url).await,
        None => Database::open_sqlite(&config.sqlite_path()).await,
    };
    let database = match database {
        Ok(database) => database,
        Err(error) => {
            let _ = writeln!(err, "error: {error:#}");
            return 2;
        }
    };
    let tools = config.tools();
    let toolbox = match tokio::task::spawn_blocking(move || crate::toolbox::build(&tools)).await {
        Ok(Ok(toolbox)) => toolbox,
        Ok(Err(error)) => {
            let _ = writeln!(err, "error: {error:#}");
            return 2;
        }
        Err(error) => {
            let _ = writeln!(err, "error: loading the tools: {error}");
            return 2;
        }
    };
    let mut registry = toolbox.registry;
    match cluster_gate(config).await {
        Ok(Some(gate)) => {
            if let Err(error) = register_cluster_tools(&mut registry, &gate) {
                let _ = writeln!(err, "error: {error}");
                return 2;
            }
        }
        Ok(None) => {
            let _ = writeln!(
                err,
                "note: no cluster configured; cluster tools are unavailable"
            );
        }
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            return 2;
        }
    }
    let catalog = catalog(&registry);
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
            Arc::new(registry),
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
    let running = scheduler.run(&plan, &approvals, &cancel);
    tokio::pin!(running);
    let outcome = loop {
        tokio::select! {
            outcome = &mut running => break outcome,
            Ok(event) = events.recv() => {
                if let (Some(step), EventKind::Step { state, reason, .. }) = (&event.step_id, &event.kind) {
                    let reason = reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
                    let _ = writeln!(err, "[{step}] {}{reason}", state.as_str());
                }
            }
        }
    };
    // The last transitions may still be queued when the run ends.
    while let Ok(event) = events.try_recv() {
        if let (Some(step), EventKind::Step { state, reason, .. }) = (&event.step_id, &event.kind) {
            let reason = reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let _ = writeln!(err, "[{step}] {}{reason}", state.as_str());
        }
    }
    ctrl_c.abort();
    database.close().await;
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

/// The gate over the configured cluster, `None` without one.
async fn cluster_gate(config: &Config) -> Result<Option<ClusterGate>, String> {
    let Ok(kube_config) = kube::Config::infer().await else {
        return Ok(None);
    };
    let client = kube::Client::try_from(kube_config)
        .map_err(|error| format!("the Kubernetes configuration is unusable: {error}"))?;
    let policy = config
        .policy
        .engine()
        .map_err(|error| format!("{error:#}"))?;
    Ok(Some(ClusterGate::new(client, policy)))
}
