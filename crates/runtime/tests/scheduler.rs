//! The scheduler with a scripted executor: what runs when, with what input, and what is
//! recorded. (deckhand's real executor, over the tool registry and the cluster gate, is
//! exercised end to end in the deckhand crate.)
#![allow(clippy::unwrap_used)] // test helpers panic on what a test did not expect

use deckhand_runtime::plan::{CatalogEntry, PlanDraft, Step, ToolCatalog};
use deckhand_runtime::scheduler::{
    EventKind, MemoryPlanStore, Recheck, StepContext, StepError, StepRecord,
};
use deckhand_runtime::{
    AgentRole, Approvals, Plan, PlanState, PlanStore, Scheduler, SchedulerConfig, StepExecutor,
    StepState, ThreadId,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Tools: `echo` returns its input; `sum` adds `a` and `b`; `fail` fails (retryably
/// when `retryable`); `slow` sleeps `ms`; `panic` panics; `write` is mutating.
#[derive(Default)]
struct Scripted {
    calls: Mutex<Vec<(String, Value)>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    flaky_failures_left: AtomicUsize,
}

impl StepExecutor for Scripted {
    async fn execute(
        &self,
        step: &Step,
        input: Value,
        context: &StepContext,
    ) -> Result<Value, StepError> {
        self.calls
            .lock()
            .unwrap()
            .push((step.id.clone(), input.clone()));
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let result = match step.tool.as_str() {
            "echo" => Ok(input),
            "sum" => Ok(json!(
                input["a"].as_i64().unwrap_or(0) + input["b"].as_i64().unwrap_or(0)
            )),
            "slow" => {
                tokio::time::sleep(Duration::from_millis(input["ms"].as_u64().unwrap_or(10))).await;
                Ok(json!("slept"))
            }
            "fail" if input["retryable"] == json!(true) => {
                let left = self.flaky_failures_left.load(Ordering::SeqCst);
                if left > 0 {
                    self.flaky_failures_left.fetch_sub(1, Ordering::SeqCst);
                    Err(StepError::retryable("flaky"))
                } else {
                    Ok(json!("recovered"))
                }
            }
            "fail" => Err(StepError::fatal("broken on purpose")),
            "panic" => panic!("tool bug"),
            "write" => Ok(json!({"approved_by": context.approved_by})),
            other => Err(StepError::fatal(format!("unknown tool {other}"))),
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

impl Scripted {
    fn ran(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn catalog() -> ToolCatalog {
    ToolCatalog::new(
        ["echo", "sum", "slow", "fail", "panic", "write"].map(|name| CatalogEntry {
            name: name.into(),
            description: name.into(),
            input_schema: json!({"type": "object"}),
            mutating: name == "write",
        }),
    )
}

fn step(id: &str, tool: &str, input: Value, depends_on: &[&str]) -> Step {
    Step {
        id: id.into(),
        agent: AgentRole::Jamie,
        title: id.into(),
        tool: tool.into(),
        input,
        depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        mutating: false,
        rationale: String::new(),
    }
}

fn plan(steps: Vec<Step>) -> Plan {
    Plan::new(
        ThreadId::new(),
        "test",
        "test",
        PlanDraft { steps },
        &catalog(),
    )
    .unwrap()
}

fn scheduler(
    executor: Arc<Scripted>,
    store: Arc<MemoryPlanStore>,
) -> Scheduler<Scripted, MemoryPlanStore> {
    Scheduler::new(
        executor,
        store,
        SchedulerConfig {
            max_parallel: 3,
            step_timeout: Duration::from_millis(500),
            retries: 2,
            retry_backoff: Duration::from_millis(1),
            stop_at_approval: false,
        },
    )
}

fn state_of(outcome: &deckhand_runtime::PlanOutcome, id: &str) -> StepState {
    outcome
        .steps
        .iter()
        .find(|(step, _)| step == id)
        .map(|(_, state)| *state)
        .unwrap()
}

#[tokio::test]
async fn outputs_flow_along_edges_with_bounded_parallelism() {
    let executor = Arc::new(Scripted::default());
    let store = Arc::new(MemoryPlanStore::default());
    let mut steps = vec![step("a", "echo", json!({"n": 2}), &[])];
    for index in 0..6 {
        steps.push(step(
            &format!("w{index}"),
            "slow",
            json!({"ms": 20}),
            &["a"],
        ));
    }
    let waits: Vec<String> = (0..6).map(|index| format!("w{index}")).collect();
    let wait_refs: Vec<&str> = waits.iter().map(String::as_str).collect();
    steps.push(step(
        "total",
        "sum",
        json!({"a": "{{steps.a.output.n}}", "b": 40, "note": "a gave {{steps.a.output.n}}"}),
        &wait_refs,
    ));
    let plan = plan(steps);
    let outcome = scheduler(executor.clone(), store.clone())
        .run(&plan, &Approvals::new(&plan), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.state, PlanState::Succeeded);
    assert_eq!(outcome.outputs["total"], json!(42));
    let calls = executor.calls.lock().unwrap().clone();
    let total_input = &calls.iter().find(|(id, _)| id == "total").unwrap().1;
    assert_eq!(
        total_input["a"],
        json!(2),
        "a whole-string reference keeps its type"
    );
    assert_eq!(total_input["note"], json!("a gave 2"));
    assert_eq!(
        executor.max_running.load(Ordering::SeqCst),
        3,
        "at most max_parallel at once, and that many"
    );
    assert_eq!(calls.last().unwrap().0, "total", "the join runs last");
}

#[tokio::test]
async fn a_failure_skips_its_dependants_and_names_itself() {
    let executor = Arc::new(Scripted::default());
    let store = Arc::new(MemoryPlanStore::default());
    let plan = plan(vec![
        step("broken", "fail", json!({}), &[]),
        step("after", "echo", json!({}), &["broken"]),
        step("later", "echo", json!({}), &["after"]),
        step("independent", "echo", json!({}), &[]),
        step("crash", "panic", json!({}), &[]),
    ]);
    let outcome = scheduler(executor.clone(), store.clone())
        .run(&plan, &Approvals::new(&plan), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.state, PlanState::Failed);
    assert_eq!(state_of(&outcome, "after"), StepState::Skipped);
    assert_eq!(state_of(&outcome, "later"), StepState::Skipped);
    assert_eq!(state_of(&outcome, "independent"), StepState::Succeeded);
    assert_eq!(
        state_of(&outcome, "crash"),
        StepState::Failed,
        "a panicking tool fails its step only"
    );
    let failures: HashMap<_, _> = outcome.failures.iter().cloned().collect();
    assert_eq!(failures["broken"], "broken on purpose");
    assert!(failures["crash"].contains("crashed"), "{failures:?}");
    let skipped = store
        .records(plan.id)
        .into_iter()
        .find(|record| record.step_id == "later")
        .unwrap();
    assert!(skipped.error.unwrap().contains("\"broken\""));
    assert!(!executor.ran().contains(&"after".to_string()));
}

#[tokio::test]
async fn mutating_steps_wait_for_an_approval_naming_the_plan() {
    let executor = Arc::new(Scripted::default());
    let store = Arc::new(MemoryPlanStore::default());
    let plan = plan(vec![
        step("look", "echo", json!({}), &[]),
        step("change", "write", json!({}), &["look"]),
    ]);
    assert!(plan.steps[1].mutating);
    let approvals = Approvals::new(&plan);
    assert!(
        approvals.approve_plan(&plan, "sha256:0000", "bob").is_err(),
        "a wrong hash is refused"
    );
    let scheduler = scheduler(executor.clone(), store.clone());
    let mut events = scheduler.subscribe();
    let cancel = CancellationToken::new();
    let task = {
        let (scheduler, plan, approvals, cancel) = (
            scheduler.clone(),
            plan.clone(),
            approvals.clone(),
            cancel.clone(),
        );
        tokio::spawn(async move { scheduler.run(&plan, &approvals, &cancel).await })
    };
    // The read runs; the write waits.
    loop {
        let event = events.recv().await.unwrap();
        if let EventKind::Step {
            state: StepState::AwaitingApproval,
            ..
        } = event.kind
        {
            assert_eq!(event.step_id.as_deref(), Some("change"));
            break;
        }
    }
    assert_eq!(executor.ran(), vec!["look".to_string()]);
    approvals
        .approve_step(&plan, &plan.hash, "change", "bob@example.com")
        .unwrap();
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.state, PlanState::Succeeded);
    assert_eq!(
        outcome.outputs["change"]["approved_by"],
        json!("bob@example.com")
    );
}

#[tokio::test]
async fn cancelling_stops_running_and_pending_steps() {
    let executor = Arc::new(Scripted::default());
    let store = Arc::new(MemoryPlanStore::default());
    let plan = plan(vec![
        step("long", "slow", json!({"ms": 400}), &[]),
        step("next", "echo", json!({}), &["long"]),
    ]);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        trigger.cancel();
    });
    let outcome = scheduler(executor, store)
        .run(&plan, &Approvals::new(&plan), &cancel)
        .await
        .unwrap();
    assert_eq!(outcome.state, PlanState::Cancelled);
    assert_eq!(state_of(&outcome, "long"), StepState::Cancelled);
    assert_eq!(state_of(&outcome, "next"), StepState::Cancelled);
}

#[tokio::test]
async fn retryable_failures_of_reads_are_retried_and_timeouts_fail() {
    let executor = Arc::new(Scripted::default());
    executor.flaky_failures_left.store(2, Ordering::SeqCst);
    let store = Arc::new(MemoryPlanStore::default());
    let plan = plan(vec![
        step("flaky", "fail", json!({"retryable": true}), &[]),
        step("stuck", "slow", json!({"ms": 5000}), &[]),
    ]);
    let outcome = scheduler(executor.clone(), store.clone())
        .run(&plan, &Approvals::new(&plan), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.outputs["flaky"], json!("recovered"));
    let last = store
        .records(plan.id)
        .into_iter()
        .rfind(|record| record.step_id == "flaky")
        .unwrap();
    assert_eq!(last.attempt, 3, "two retries");
    assert_eq!(state_of(&outcome, "stuck"), StepState::Failed);
    let failures: HashMap<_, _> = outcome.failures.into_iter().collect();
    assert!(failures["stuck"].contains("timed out"), "{failures:?}");
}

#[tokio::test]
async fn a_resumed_plan_never_reruns_finished_steps_and_rechecks_running_ones() {
    let store = Arc::new(MemoryPlanStore::default());
    let plan = plan(vec![
        step("done", "echo", json!({"v": 1}), &[]),
        step(
            "reading",
            "echo",
            json!({"v": "{{steps.done.output.v}}"}),
            &["done"],
        ),
        step("writing", "write", json!({}), &["done"]),
        step("after-write", "echo", json!({}), &["writing"]),
    ]);
    // What a process killed mid-plan left behind.
    store.save_plan(&plan).await.unwrap();
    let record = |step: &str, state, output| StepRecord {
        plan_id: plan.id,
        step_id: step.into(),
        state,
        attempt: 1,
        output,
        error: None,
        at_micros: 0,
    };
    store
        .record_step(&record("done", StepState::Succeeded, Some(json!({"v": 1}))))
        .await
        .unwrap();
    store
        .record_step(&record("reading", StepState::Running, None))
        .await
        .unwrap();
    store
        .record_step(&record("writing", StepState::Running, None))
        .await
        .unwrap();

    let executor = Arc::new(Scripted::default());
    let approvals = Approvals::new(&plan);
    approvals.approve_plan(&plan, &plan.hash, "bob").unwrap();
    let outcome = scheduler(executor.clone(), store.clone())
        .run(&plan, &approvals, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        executor.ran(),
        vec!["reading".to_string()],
        "only the interrupted read runs again"
    );
    assert_eq!(
        outcome.outputs["reading"],
        json!({"v": 1}),
        "with the stored output of its parent"
    );
    assert_eq!(state_of(&outcome, "writing"), StepState::Failed);
    let failures: HashMap<_, _> = outcome.failures.iter().cloned().collect();
    assert!(
        failures["writing"].contains("interrupted by a restart"),
        "{failures:?}"
    );
    assert_eq!(state_of(&outcome, "after-write"), StepState::Skipped);
}

/// An executor that can tell a write happened (say, by reading the object back).
struct Verifying(Scripted);

impl StepExecutor for Verifying {
    async fn execute(
        &self,
        step: &Step,
        input: Value,
        context: &StepContext,
    ) -> Result<Value, StepError> {
        self.0.execute(step, input, context).await
    }
    async fn recheck(&self, _step: &Step) -> Recheck {
        Recheck::Done(json!("verified"))
    }
}

#[tokio::test]
async fn an_executor_can_confirm_an_interrupted_write() {
    let store = Arc::new(MemoryPlanStore::default());
    let plan = plan(vec![
        step("writing", "write", json!({}), &[]),
        step("after", "echo", json!({}), &["writing"]),
    ]);
    store
        .record_step(&StepRecord {
            plan_id: plan.id,
            step_id: "writing".into(),
            state: StepState::Running,
            attempt: 1,
            output: None,
            error: None,
            at_micros: 0,
        })
        .await
        .unwrap();
    let executor = Arc::new(Verifying(Scripted::default()));
    let outcome = Scheduler::new(executor.clone(), store, SchedulerConfig::default())
        .run(&plan, &Approvals::new(&plan), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.state, PlanState::Succeeded);
    assert_eq!(outcome.outputs["writing"], json!("verified"));
    assert_eq!(executor.0.ran(), vec!["after".to_string()]);
}

#[tokio::test]
async fn asking_runs_the_reads_and_stops_before_unapproved_changes() {
    let executor = Arc::new(Scripted::default());
    let store = Arc::new(MemoryPlanStore::default());
    let plan = plan(vec![
        step("look", "echo", json!({"n": 1}), &[]),
        step("change", "write", json!({}), &["look"]),
        step("after", "echo", json!({}), &["change"]),
    ]);
    let outcome = Scheduler::new(
        executor.clone(),
        store,
        SchedulerConfig {
            stop_at_approval: true,
            ..SchedulerConfig::default()
        },
    )
    .run(&plan, &Approvals::new(&plan), &CancellationToken::new())
    .await
    .unwrap();
    assert_eq!(outcome.state, PlanState::AwaitingApproval);
    assert_eq!(executor.ran(), vec!["look".to_string()]);
    assert_eq!(state_of(&outcome, "change"), StepState::AwaitingApproval);
    assert_eq!(state_of(&outcome, "after"), StepState::Pending);
    assert_eq!(outcome.outputs["look"], json!({"n": 1}));
}
