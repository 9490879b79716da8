//! Orchestration overhead: plans of no-op steps through the real scheduler (with the
//! in-memory plan store and the event stream), one line per case.
//!
//! `cargo bench -p deckhand-runtime --bench orchestration`

use deckhand_runtime::plan::{CatalogEntry, PlanDraft, Step, ToolCatalog};
use deckhand_runtime::scheduler::{MemoryPlanStore, StepContext, StepError};
use deckhand_runtime::{
    AgentRole, Approvals, Plan, PlanState, Scheduler, SchedulerConfig, StepExecutor, ThreadId,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Does nothing: what is measured is the scheduler around it.
struct NoOp;

impl StepExecutor for NoOp {
    async fn execute(&self, _: &Step, _: Value, _: &StepContext) -> Result<Value, StepError> {
        Ok(Value::Null)
    }
}

fn step(id: String, depends_on: Vec<String>) -> Step {
    Step {
        id,
        agent: AgentRole::Jamie,
        title: String::new(),
        tool: "noop".into(),
        input: json!({}),
        depends_on,
        mutating: false,
        rationale: String::new(),
    }
}

fn chain(length: usize) -> Vec<Step> {
    (0..length)
        .map(|i| {
            step(
                format!("s{i}"),
                if i == 0 {
                    vec![]
                } else {
                    vec![format!("s{}", i - 1)]
                },
            )
        })
        .collect()
}

fn fan(width: usize) -> Vec<Step> {
    let mut steps = vec![step("root".into(), vec![])];
    let middle: Vec<String> = (0..width).map(|i| format!("m{i}")).collect();
    steps.extend(
        middle
            .iter()
            .map(|id| step(id.clone(), vec!["root".into()])),
    );
    steps.push(step("join".into(), middle));
    steps
}

/// `layers` × `width` steps; each step after the first layer has up to 3 distinct
/// parents from the layer before, picked by a fixed-seed generator.
fn layered(layers: usize, width: usize) -> Vec<Step> {
    let mut seed: u64 = 0x5eed_dec4_4a4d;
    let mut next = move || {
        // xorshift64*: deterministic, dependency-free.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut steps = Vec::with_capacity(layers * width);
    for layer in 0..layers {
        for i in 0..width {
            let mut parents = Vec::new();
            if layer > 0 {
                while parents.len() < 3.min(width) {
                    let parent = format!("l{}n{}", layer - 1, next() as usize % width);
                    if !parents.contains(&parent) {
                        parents.push(parent);
                    }
                }
            }
            steps.push(step(format!("l{layer}n{i}"), parents));
        }
    }
    steps
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let catalog = ToolCatalog::new([CatalogEntry {
        name: "noop".into(),
        description: "does nothing".into(),
        input_schema: json!({"type": "object"}),
        mutating: false,
    }]);
    let cases: Vec<(&str, Vec<Step>)> = vec![
        ("chain 1000", chain(1_000)),
        ("chain 10000", chain(10_000)),
        ("fan-out 1 -> 1000 -> 1", fan(1_000)),
        ("layered 10 x 100, 3 parents", layered(10, 100)),
        ("layered 100 x 1000 (100000 steps)", layered(100, 1_000)),
    ];
    for (name, steps) in cases {
        let count = steps.len();
        let started = Instant::now();
        let plan = Plan::new(
            ThreadId::new(),
            name,
            "bench",
            PlanDraft { steps },
            &catalog,
        )
        .expect("valid plan");
        let validated = started.elapsed();
        let scheduler = Scheduler::new(
            Arc::new(NoOp),
            Arc::new(MemoryPlanStore::default()),
            SchedulerConfig {
                max_parallel: 64,
                ..SchedulerConfig::default()
            },
        );
        // Plans run in tasks of their own in deckhand (as here), not on the thread that
        // blocks on the runtime.
        let plan = Arc::new(plan);
        let (outcome, elapsed) = runtime.block_on({
            let plan = plan.clone();
            async move {
                tokio::spawn(async move {
                    let started = Instant::now();
                    let outcome = scheduler
                        .run(&plan, &Approvals::new(&plan), &CancellationToken::new())
                        .await;
                    (outcome, started.elapsed())
                })
                .await
                .expect("the plan task")
            }
        });
        let outcome = outcome.expect("runs");
        assert_eq!(outcome.state, PlanState::Succeeded);
        println!(
            "{name:<36} {count:>7} steps  run {:>9.1} ms  {:>6.2} µs/step  (validation {:>8.1} ms, {:>5.2} µs/step)",
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e6 / count as f64,
            validated.as_secs_f64() * 1e3,
            validated.as_secs_f64() * 1e6 / count as f64,
        );
    }
}
