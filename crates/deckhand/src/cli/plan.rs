//! `deckhand plan`, `deckhand ask` and `deckhand eval`: Scarlet plans a request (with a
//! model when one is configured, her rules otherwise), Jamie explains it, and `ask` runs
//! the read-only steps to answer, stopping before anything that would change the cluster.
//!
//! Plans and threads go to the same store as `deckhand serve`, so the GUI shows them.
//! Exit status: 0 done; 1 planning failed (or `eval` fell below `--min-pass-rate`);
//! 2 deckhand cannot start (store, tools, configuration).

use crate::cli::session::{self, whoami};
use crate::config::Config;
use crate::executor::ToolExecutor;
use deckhand_agents::jamie::{StepReport, StepStatus};
use deckhand_agents::{Jamie, Scarlet};
use deckhand_llm::Router;
use deckhand_runtime::{
    Approvals, Plan, PlanRequest, PlanStore, Planner, Scheduler, SchedulerConfig, StepState,
    Thread, ThreadStore, ToolCatalog,
};
use deckhand_tools::cluster::cluster_tool_specs;
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What planning needs, opened once per command.
struct Session {
    shared: session::Session,
    catalog: ToolCatalog,
    router: Arc<Router>,
}

async fn open(config: &Config, err: &mut (dyn Write + Send)) -> Result<Session, String> {
    let shared = session::open(config).await?;
    // Plans may name the cluster tools even without a cluster; running them needs one.
    let mut specs: Vec<deckhand_tools::ToolSpec> = shared.registry.specs().cloned().collect();
    if !shared.connected {
        let _ = writeln!(
            err,
            "note: no cluster configured; cluster steps can be planned but not run"
        );
        specs.extend(cluster_tool_specs());
    }
    let catalog = deckhand_agents::tools::catalog_from_specs(specs.iter());
    let env = |name: &str| std::env::var(name).ok();
    let router = Router::discover(&config.llm, &env)
        .await
        .map_err(|error| format!("the [llm] configuration is unusable: {error}"))?;
    Ok(Session {
        shared,
        catalog,
        router: Arc::new(router),
    })
}

/// Makes a plan for `text` in a new thread and stores both.
async fn make_plan(
    session: &Session,
    text: &str,
    namespace: Option<String>,
) -> Result<Plan, String> {
    let thread = Thread::new("default", whoami(), text);
    session
        .shared
        .database
        .create_thread(&thread)
        .await
        .map_err(|error| format!("{error:#}"))?;
    let request = PlanRequest {
        thread_id: thread.id,
        text: text.to_owned(),
        namespace,
        history: Vec::new(),
        similar_threads: Vec::new(),
    };
    let plan = Scarlet::new(session.router.clone())
        .plan(&request, &session.catalog)
        .await
        .map_err(|error| error.to_string())?;
    session
        .shared
        .database
        .save_plan(&plan)
        .await
        .map_err(|error| format!("{error:#}"))?;
    Ok(plan)
}

/// `deckhand plan TEXT`: prints the plan (JSON with `--json`, else Jamie's explanation).
pub async fn plan(
    config: &Config,
    text: &str,
    namespace: Option<String>,
    as_json: bool,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8 {
    let session = match open(config, err).await {
        Ok(session) => session,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return 2;
        }
    };
    let plan = match make_plan(&session, text, namespace).await {
        Ok(plan) => plan,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return 1;
        }
    };
    if as_json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        );
    } else {
        let said = Jamie::new(session.router.clone()).explain_plan(&plan).await;
        let _ = writeln!(
            out,
            "{}\n\nplan {} ({})",
            said.text.trim_end(),
            plan.id,
            plan.hash
        );
        if plan.is_mutating() {
            let _ = writeln!(
                out,
                "to carry it out: deckhand plan --json ... > plan.json; deckhand run plan.json --approve {}",
                plan.hash
            );
        }
    }
    session.shared.close().await;
    0
}

/// `deckhand ask TEXT`: plans, runs the read-only steps, stops before any change, and
/// answers.
pub async fn ask(
    config: &Config,
    text: &str,
    namespace: Option<String>,
    as_json: bool,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8 {
    let session = match open(config, err).await {
        Ok(session) => session,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return 2;
        }
    };
    let plan = match make_plan(&session, text, namespace).await {
        Ok(plan) => plan,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return 1;
        }
    };
    let scheduler = Scheduler::new(
        Arc::new(ToolExecutor::new(
            session.shared.registry.clone(),
            config.workspace.clone(),
            whoami(),
        )),
        Arc::new(session.shared.database.clone()),
        SchedulerConfig {
            stop_at_approval: true,
            ..SchedulerConfig::default()
        },
    );
    let outcome = match scheduler
        .run(&plan, &Approvals::new(&plan), &CancellationToken::new())
        .await
    {
        Ok(outcome) => outcome,
        Err(error) => {
            let _ = writeln!(err, "error: {error:#}");
            return 2;
        }
    };
    let failures: std::collections::HashMap<&str, &str> = outcome
        .failures
        .iter()
        .map(|(id, why)| (id.as_str(), why.as_str()))
        .collect();
    let reports: Vec<StepReport> = outcome
        .steps
        .iter()
        .map(|(id, state)| StepReport {
            step_id: id.clone(),
            status: match state {
                StepState::Succeeded => StepStatus::Succeeded,
                StepState::Failed => StepStatus::Failed,
                StepState::Skipped => StepStatus::Skipped,
                StepState::Cancelled => StepStatus::Cancelled,
                _ => StepStatus::Pending,
            },
            output: outcome.outputs.get(id).cloned(),
            error: failures.get(id.as_str()).map(|why| (*why).to_owned()),
        })
        .collect();
    // The scheduler holds the tools; the audit writer finishes once they are gone.
    drop(scheduler);
    let jamie = Jamie::new(session.router.clone());
    let answer = jamie.report(&plan, &reports).await;
    if as_json {
        let report = json!({
            "plan": plan,
            "state": outcome.state,
            "steps": reports,
            "answer": answer.text,
            "offline": answer.offline,
        });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        let _ = writeln!(out, "{}", answer.text.trim_end());
        if plan.is_mutating() {
            let _ = writeln!(
                out,
                "\nNothing was changed. The plan's changes wait for your approval: plan {} ({})",
                plan.id, plan.hash
            );
        }
    }
    session.shared.close().await;
    0
}

/// `deckhand eval DIR`: runs the evaluation cases and prints the pass rate.
pub async fn eval(
    config: &Config,
    dir: &Path,
    min_pass_rate: Option<f64>,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8 {
    let session = match open(config, err).await {
        Ok(session) => session,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return 2;
        }
    };
    let scarlet = Scarlet::new(session.router.clone());
    // Each case's outcome as it is known: with a real model a set takes long.
    let report = match deckhand_agents::eval::run_dir_with_progress(
        dir,
        &scarlet,
        &session.catalog,
        |done| {
            let _ = writeln!(err, "{done}");
        },
    )
    .await
    {
        Ok(report) => report,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return 2;
        }
    };
    let _ = write!(out, "{report}");
    session.shared.close().await;
    match min_pass_rate {
        Some(minimum) if report.pass_rate() < minimum => 1,
        _ => 0,
    }
}
