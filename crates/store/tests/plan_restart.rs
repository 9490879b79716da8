//! A plan survives `kill -9`: a real child process runs a plan on a real SQLite store and
//! is killed mid-plan; a second process picks the plan up. Completed steps never run
//! again, the interrupted read runs again, the interrupted write is failed with the
//! reason, and the rest carries on.
//!
//! The child is this test binary itself, started on the ignored `child_runs_the_plan`
//! test with the store's path in the environment.
#![allow(clippy::unwrap_used)] // test helpers panic on what a test did not expect

use deckhand_runtime::plan::{CatalogEntry, PlanDraft, Step, ToolCatalog};
use deckhand_runtime::scheduler::{StepContext, StepError, StepState};
use deckhand_runtime::{
    AgentRole, Approvals, Plan, PlanStore, Scheduler, SchedulerConfig, StepExecutor, ThreadId,
};
use deckhand_store::Database;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const DB_ENV: &str = "DECKHAND_RESTART_TEST_DB";
const LOG_ENV: &str = "DECKHAND_RESTART_TEST_LOG";
const PLAN_ENV: &str = "DECKHAND_RESTART_TEST_PLAN";
const SLOW_ENV: &str = "DECKHAND_RESTART_TEST_SLOW_MS";

/// Appends each step it starts to a log file (what the parent counts), then sleeps
/// `ms` from the step's input, scaled by the child's slowness.
struct LoggingExecutor {
    log: PathBuf,
    slow: Duration,
}

impl StepExecutor for LoggingExecutor {
    async fn execute(
        &self,
        step: &Step,
        input: Value,
        _: &StepContext,
    ) -> Result<Value, StepError> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|error| StepError::fatal(error.to_string()))?;
        writeln!(log, "{}", step.id).map_err(|error| StepError::fatal(error.to_string()))?;
        if input["slow"] == json!(true) {
            tokio::time::sleep(self.slow).await;
        }
        Ok(json!({"step": step.id}))
    }
}

fn catalog() -> ToolCatalog {
    ToolCatalog::new([
        CatalogEntry {
            name: "read".into(),
            description: "reads".into(),
            input_schema: json!({"type": "object"}),
            mutating: false,
        },
        CatalogEntry {
            name: "write".into(),
            description: "writes".into(),
            input_schema: json!({"type": "object"}),
            mutating: true,
        },
    ])
}

fn step(id: &str, tool: &str, slow: bool, depends_on: &[&str]) -> Step {
    Step {
        id: id.into(),
        agent: AgentRole::Sre,
        title: id.into(),
        tool: tool.into(),
        input: json!({"slow": slow}),
        depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        mutating: false,
        rationale: String::new(),
    }
}

/// In the child: runs the plan in `PLAN_ENV` on the store in `DB_ENV` to the end.
#[tokio::test]
#[ignore = "started by a_plan_survives_kill_9 as a child process"]
async fn child_runs_the_plan() {
    let (Ok(db), Ok(log), Ok(plan), Ok(slow)) = (
        std::env::var(DB_ENV),
        std::env::var(LOG_ENV),
        std::env::var(PLAN_ENV),
        std::env::var(SLOW_ENV),
    ) else {
        return; // run directly with --ignored: nothing to do
    };
    let plan: Plan = serde_json::from_str(&std::fs::read_to_string(plan).unwrap()).unwrap();
    let database = Database::open_sqlite(Path::new(&db)).await.unwrap();
    let executor = LoggingExecutor {
        log: PathBuf::from(log),
        slow: Duration::from_millis(slow.parse().unwrap()),
    };
    let scheduler = Scheduler::new(
        std::sync::Arc::new(executor),
        std::sync::Arc::new(database),
        SchedulerConfig::default(),
    );
    let approvals = Approvals::new(&plan);
    approvals.approve_plan(&plan, &plan.hash, "bob").unwrap();
    scheduler
        .run(&plan, &approvals, &CancellationToken::new())
        .await
        .unwrap();
}

fn start_child(dir: &Path, slow_ms: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_runs_the_plan", "--exact", "--ignored", "--nocapture"])
        .env(DB_ENV, dir.join("deckhand.db"))
        .env(LOG_ENV, dir.join("executed.log"))
        .env(PLAN_ENV, dir.join("plan.json"))
        .env(SLOW_ENV, slow_ms.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn executed(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("executed.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_plan_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // fast → then-fast → slow-read → after-read; slow-write → after-write
    let plan = Plan::new(
        ThreadId::new(),
        "restart test",
        "test",
        PlanDraft {
            steps: vec![
                step("fast", "read", false, &[]),
                step("then-fast", "read", false, &["fast"]),
                step("slow-read", "read", true, &["then-fast"]),
                step("after-read", "read", false, &["slow-read"]),
                step("slow-write", "write", true, &[]),
                step("after-write", "read", false, &["slow-write"]),
            ],
        },
        &catalog(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("plan.json"),
        serde_json::to_string(&plan).unwrap(),
    )
    .unwrap();

    // First process: killed while slow-read and slow-write are running.
    let mut child = start_child(dir.path(), 60_000);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ran = executed(dir.path());
        if ran.contains(&"slow-read".to_string()) && ran.contains(&"slow-write".to_string()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the child never reached the slow steps: {ran:?}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited early"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both slow steps are recorded as running before they start; give the store a moment
    // to have them, then kill without warning.
    let database = Database::open_sqlite(&dir.path().join("deckhand.db"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let states = database.latest_steps(plan.id).await.unwrap();
        let running = |id: &str| {
            states
                .get(id)
                .is_some_and(|r| r.state == StepState::Running)
        };
        if running("slow-read") && running("slow-write") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "steps never recorded as running: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut before = executed(dir.path());
    before.sort();
    assert_eq!(before, vec!["fast", "slow-read", "slow-write", "then-fast"]);

    // Second process: picks the plan up and finishes it.
    let mut child = start_child(dir.path(), 10);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the restarted process failed: {status}");

    let ran = executed(dir.path());
    let count = |id: &str| ran.iter().filter(|r| r.as_str() == id).count();
    assert_eq!(
        count("fast"),
        1,
        "a completed step never runs again: {ran:?}"
    );
    assert_eq!(count("then-fast"), 1, "{ran:?}");
    assert_eq!(
        count("slow-read"),
        2,
        "the interrupted read runs again: {ran:?}"
    );
    assert_eq!(count("after-read"), 1, "{ran:?}");
    assert_eq!(
        count("slow-write"),
        1,
        "the interrupted write is not repeated blindly: {ran:?}"
    );
    assert_eq!(count("after-write"), 0, "{ran:?}");

    let states = database.latest_steps(plan.id).await.unwrap();
    let state = |id: &str| states[id].state;
    assert_eq!(state("after-read"), StepState::Succeeded);
    assert_eq!(state("slow-write"), StepState::Failed);
    assert!(
        states["slow-write"]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("interrupted by a restart"),
        "{:?}",
        states["slow-write"]
    );
    assert_eq!(state("after-write"), StepState::Skipped);
}
