//! The scheduler: carries a plan out.
//!
//! Every ready step runs at once, up to a bound; outputs pass along the edges (through
//! `{{steps.ID.output}}` references); a failed step stops its dependants (each recorded
//! as skipped, naming the failure); mutating steps wait until the plan, or the step, is
//! approved. Every transition is persisted through a [`PlanStore`] before it is
//! announced on the event stream, so a restarted process can pick the plan up: steps
//! that succeeded are never run again, and steps that were running are re-checked with
//! the executor ([`StepExecutor::recheck`]).

use crate::error::{Error, Result};
use crate::plan::{output_refs, resolve_refs, Plan, PlanId, Step};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Where a step is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Waiting for its dependencies.
    Pending,
    /// Mutating and ready, waiting for the person's approval.
    AwaitingApproval,
    /// Running now.
    Running,
    /// Finished with an output.
    Succeeded,
    /// Failed (its error says why).
    Failed,
    /// Not run because a step it depends on failed or was skipped.
    Skipped,
    /// Not run, or stopped, because the plan was cancelled.
    Cancelled,
}

impl StepState {
    /// Whether the step will not change state any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Skipped | Self::Cancelled
        )
    }

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    ///
    /// # Errors
    /// [`Error::Store`] for a name this version does not know.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "pending" => Self::Pending,
            "awaiting_approval" => Self::AwaitingApproval,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "skipped" => Self::Skipped,
            "cancelled" => Self::Cancelled,
            other => {
                return Err(Error::Store {
                    context: format!("unknown step state {other:?}"),
                    source: "unknown step state".into(),
                })
            }
        })
    }
}

/// One persisted transition of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The plan.
    pub plan_id: PlanId,
    /// The step.
    pub step_id: String,
    /// Its new state.
    pub state: StepState,
    /// Which attempt (1 for the first run).
    pub attempt: u32,
    /// The output, for [`StepState::Succeeded`].
    pub output: Option<Value>,
    /// Why, for failed, skipped and cancelled steps.
    pub error: Option<String>,
    /// When, in microseconds since the Unix epoch.
    pub at_micros: i64,
}

/// Where plans and their step transitions are kept. `deckhand-store` implements it on
/// SQLite and PostgreSQL; [`MemoryPlanStore`] keeps them in memory.
pub trait PlanStore: Send + Sync + 'static {
    /// Stores a plan (storing the same plan again is a no-op).
    fn save_plan(&self, plan: &Plan) -> impl Future<Output = Result<()>> + Send;
    /// Appends a step transition; it must be durable when the future completes.
    fn record_step(&self, record: &StepRecord) -> impl Future<Output = Result<()>> + Send;
    /// The latest transition of every step of a plan that has one.
    fn latest_steps(
        &self,
        plan_id: PlanId,
    ) -> impl Future<Output = Result<HashMap<String, StepRecord>>> + Send;
}

/// Plans and transitions in memory: for embedders without a database, and tests.
#[derive(Debug, Default)]
pub struct MemoryPlanStore {
    plans: std::sync::Mutex<HashMap<PlanId, Plan>>,
    records: std::sync::Mutex<HashMap<PlanId, Vec<StepRecord>>>,
}

impl MemoryPlanStore {
    /// Every transition of a plan, in order.
    pub fn records(&self, plan_id: PlanId) -> Vec<StepRecord> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&plan_id)
            .cloned()
            .unwrap_or_default()
    }
}

impl PlanStore for MemoryPlanStore {
    async fn save_plan(&self, plan: &Plan) -> Result<()> {
        self.plans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(plan.id)
            .or_insert_with(|| plan.clone());
        Ok(())
    }

    async fn record_step(&self, record: &StepRecord) -> Result<()> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(record.plan_id)
            .or_default()
            .push(record.clone());
        Ok(())
    }

    async fn latest_steps(&self, plan_id: PlanId) -> Result<HashMap<String, StepRecord>> {
        let mut latest = HashMap::new();
        for record in self.records(plan_id) {
            latest.insert(record.step_id.clone(), record);
        }
        Ok(latest)
    }
}

/// Why a step failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// What went wrong, for the person.
    pub message: String,
    /// Whether a retry may succeed (a timeout, a 5xx); never for a policy denial.
    pub retryable: bool,
}

impl StepError {
    /// A failure that a retry will not fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    /// A failure that may pass on a retry.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }
}

/// What a restarted process decides about a step that was running when the last one
/// stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum Recheck {
    /// The step's effect is there: take this as its output.
    Done(Value),
    /// Safe to run again (it changes nothing, or its effect is certainly absent).
    RunAgain,
    /// Cannot tell; mark it failed with this reason so a person looks.
    Failed(String),
}

/// Who carried out an approved step, passed to the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepContext {
    /// The plan.
    pub plan_id: PlanId,
    /// The thread the plan belongs to (cluster writes keep prior states under it).
    pub thread_id: crate::ThreadId,
    /// Who approved the step (for mutating steps).
    pub approved_by: Option<String>,
    /// The attempt, from 1.
    pub attempt: u32,
}

/// Runs one step: calls its tool. The deckhand crate implements it over the tool
/// registry and the cluster gate.
pub trait StepExecutor: Send + Sync + 'static {
    /// Runs `step` with its references resolved into `input`.
    fn execute(
        &self,
        step: &Step,
        input: Value,
        context: &StepContext,
    ) -> impl Future<Output = std::result::Result<Value, StepError>> + Send;

    /// Decides about a step that was running when the previous process stopped. The
    /// default runs read-only steps again and fails mutating ones (their write may or
    /// may not have happened), asking a person to check.
    fn recheck(&self, step: &Step) -> impl Future<Output = Recheck> + Send {
        let decision = if step.mutating {
            Recheck::Failed(
                "interrupted by a restart while it was changing the cluster; check its effect before running it again"
                    .to_owned(),
            )
        } else {
            Recheck::RunAgain
        };
        std::future::ready(decision)
    }
}

/// Something that happened to a plan, as subscribers see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanEvent {
    /// The plan.
    pub plan_id: PlanId,
    /// The step, for step events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// What happened.
    pub kind: EventKind,
    /// When, in microseconds since the Unix epoch.
    pub at_micros: i64,
}

/// The kinds of [`PlanEvent`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The scheduler took the plan up (or picked it up again after a restart).
    PlanStarted {
        /// Steps already done by an earlier run.
        resumed_steps: usize,
    },
    /// A step changed state.
    Step {
        /// The new state.
        state: StepState,
        /// The attempt.
        attempt: u32,
        /// Why, for failures, skips and cancellations.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The plan is finished.
    PlanFinished {
        /// How it ended.
        outcome: PlanState,
    },
}

/// How a plan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    /// Every step succeeded.
    Succeeded,
    /// A step failed (its dependants were skipped; independent steps still ran).
    Failed,
    /// Cancelled before it finished.
    Cancelled,
    /// Stopped at mutating steps nobody approved yet (only with
    /// [`SchedulerConfig::stop_at_approval`]); the steps before them are done.
    AwaitingApproval,
}

/// How the scheduler runs plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// The most steps running at once.
    pub max_parallel: usize,
    /// How long one attempt of a step may take.
    pub step_timeout: Duration,
    /// How many times a failed read-only step is retried when its error is retryable
    /// (mutating steps are never retried automatically).
    pub retries: u32,
    /// The first retry's delay; each later one doubles it.
    pub retry_backoff: Duration,
    /// Return once only unapproved mutating steps are left, instead of waiting for an
    /// approval (`deckhand ask`: answer from the read-only steps, change nothing).
    pub stop_at_approval: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_parallel: 8,
            step_timeout: Duration::from_secs(300),
            retries: 2,
            retry_backoff: Duration::from_millis(200),
            stop_at_approval: false,
        }
    }
}

/// The person's approvals for one plan: of the whole plan, or step by step. Cloned
/// handles share the state; the scheduler wakes when it changes.
#[derive(Debug, Clone)]
pub struct Approvals {
    plan_hash: String,
    state: Arc<watch::Sender<ApprovalState>>,
}

#[derive(Debug, Clone, Default)]
struct ApprovalState {
    whole_plan: Option<String>,
    steps: HashMap<String, String>,
}

impl Approvals {
    /// No approvals yet for `plan`.
    pub fn new(plan: &Plan) -> Self {
        Self {
            plan_hash: plan.hash.clone(),
            state: Arc::new(watch::Sender::new(ApprovalState::default())),
        }
    }

    /// Approves every step of `plan`, named by its hash.
    ///
    /// # Errors
    /// [`Error::ApprovalMismatch`] when `hash` is not the plan's or the plan was edited.
    pub fn approve_plan(&self, plan: &Plan, hash: &str, approved_by: &str) -> Result<()> {
        self.check(plan, hash)?;
        self.state
            .send_modify(|state| state.whole_plan = Some(approved_by.to_owned()));
        Ok(())
    }

    /// Approves one step of `plan`, named by the plan's hash and the step's id.
    ///
    /// # Errors
    /// As [`Approvals::approve_plan`], and when the plan has no such step.
    pub fn approve_step(
        &self,
        plan: &Plan,
        hash: &str,
        step_id: &str,
        approved_by: &str,
    ) -> Result<()> {
        self.check(plan, hash)?;
        if !plan.steps.iter().any(|step| step.id == step_id) {
            return Err(Error::ApprovalMismatch {
                reason: format!("the plan has no step {step_id:?}"),
            });
        }
        self.state.send_modify(|state| {
            state
                .steps
                .insert(step_id.to_owned(), approved_by.to_owned());
        });
        Ok(())
    }

    fn check(&self, plan: &Plan, hash: &str) -> Result<()> {
        plan.check_approval(hash)?;
        if plan.hash != self.plan_hash {
            return Err(Error::ApprovalMismatch {
                reason: "these approvals belong to another plan".to_owned(),
            });
        }
        Ok(())
    }

    fn approver(&self, step_id: &str) -> Option<String> {
        let state = self.state.borrow();
        state
            .whole_plan
            .clone()
            .or_else(|| state.steps.get(step_id).cloned())
    }
}

/// What a run of a plan came to.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOutcome {
    /// How it ended.
    pub state: PlanState,
    /// Each step's final state, in plan order.
    pub steps: Vec<(String, StepState)>,
    /// The outputs of the steps that succeeded.
    pub outputs: HashMap<String, Value>,
    /// The failed steps and why.
    pub failures: Vec<(String, String)>,
}

/// Runs plans. Cheap to clone; one scheduler serves many plans at once.
pub struct Scheduler<E, S> {
    executor: Arc<E>,
    store: Arc<S>,
    events: broadcast::Sender<PlanEvent>,
    config: SchedulerConfig,
}

impl<E, S> Clone for Scheduler<E, S> {
    fn clone(&self) -> Self {
        Self {
            executor: self.executor.clone(),
            store: self.store.clone(),
            events: self.events.clone(),
            config: self.config.clone(),
        }
    }
}

/// The result of one spawned attempt sequence.
type Finished = (usize, u32, std::result::Result<Value, StepError>);

impl<E: StepExecutor, S: PlanStore> Scheduler<E, S> {
    /// A scheduler running steps with `executor`, persisting through `store`.
    pub fn new(executor: Arc<E>, store: Arc<S>, config: SchedulerConfig) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            executor,
            store,
            events,
            config,
        }
    }

    /// Subscribes to the events of every plan this scheduler runs. A subscriber that
    /// falls more than 4096 events behind loses the oldest (and is told so by the
    /// channel); the store has every transition.
    pub fn subscribe(&self) -> broadcast::Receiver<PlanEvent> {
        self.events.subscribe()
    }

    /// Runs `plan` to the end, or until `cancel` fires. Picks up where an earlier run
    /// stopped when the store has transitions for it. Mutating steps wait for
    /// `approvals`.
    ///
    /// # Errors
    /// [`Error::Store`] when a transition cannot be persisted (the plan stops: running
    /// on without a record would break the restart guarantee).
    pub async fn run(
        &self,
        plan: &Plan,
        approvals: &Approvals,
        cancel: &CancellationToken,
    ) -> Result<PlanOutcome> {
        self.store.save_plan(plan).await?;
        let mut run = Run::new(plan);

        // Pick up an earlier run's work.
        let earlier = self.store.latest_steps(plan.id).await?;
        let mut resumed = 0;
        let mut interrupted = Vec::new();
        for (index, step) in plan.steps.iter().enumerate() {
            let Some(record) = earlier.get(&step.id) else {
                continue;
            };
            run.attempts[index] = record.attempt;
            match record.state {
                StepState::Succeeded => {
                    resumed += 1;
                    run.outputs[index] =
                        Some(Arc::new(record.output.clone().unwrap_or(Value::Null)));
                    run.states[index] = StepState::Succeeded;
                }
                StepState::Failed | StepState::Skipped | StepState::Cancelled => {
                    resumed += 1;
                    run.states[index] = record.state;
                    run.errors[index] = record.error.clone();
                }
                StepState::Running => interrupted.push(index),
                StepState::Pending | StepState::AwaitingApproval => {}
            }
        }
        self.emit(
            plan.id,
            None,
            EventKind::PlanStarted {
                resumed_steps: resumed,
            },
        );
        for index in interrupted {
            let step = &plan.steps[index];
            match self.executor.recheck(step).await {
                Recheck::Done(output) => {
                    self.transition(&mut run, index, StepState::Succeeded, Some(output), None)
                        .await?;
                }
                Recheck::RunAgain => {}
                Recheck::Failed(reason) => {
                    self.transition(&mut run, index, StepState::Failed, None, Some(reason))
                        .await?;
                }
            }
        }
        // Failures recorded earlier stop their dependants now too.
        for index in 0..plan.steps.len() {
            if matches!(
                run.states[index],
                StepState::Failed | StepState::Skipped | StepState::Cancelled
            ) {
                self.skip_dependants(&mut run, index).await?;
            }
        }
        run.seed_ready();

        let mut running: JoinSet<Finished> = JoinSet::new();
        // Which step each task runs, to name the step if its task panics.
        let mut task_step: HashMap<tokio::task::Id, usize> = HashMap::new();
        let mut awaiting: Vec<usize> = Vec::new();
        let mut approvals_changed = approvals.state.subscribe();
        loop {
            // Start what may start.
            while running.len() < self.config.max_parallel.max(1) {
                let Some(index) = run.ready.pop_front() else {
                    break;
                };
                let step = &plan.steps[index];
                let approved_by = if step.mutating {
                    match approvals.approver(&step.id) {
                        Some(who) => Some(who),
                        None => {
                            if run.states[index] != StepState::AwaitingApproval {
                                self.transition(
                                    &mut run,
                                    index,
                                    StepState::AwaitingApproval,
                                    None,
                                    None,
                                )
                                .await?;
                            }
                            awaiting.push(index);
                            continue;
                        }
                    }
                } else {
                    None
                };
                let input = if run.has_refs[index] {
                    let outputs = &run.outputs;
                    let ids = &run.index_of;
                    resolve_refs(&step.input, &|id: &str| {
                        ids.get(id)
                            .and_then(|&i| outputs[i].as_ref())
                            .map(|value| (**value).clone())
                    })
                } else {
                    Ok(step.input.clone())
                };
                let input = match input {
                    Ok(input) => input,
                    Err(error) => {
                        self.transition(
                            &mut run,
                            index,
                            StepState::Failed,
                            None,
                            Some(error.to_string()),
                        )
                        .await?;
                        self.skip_dependants(&mut run, index).await?;
                        continue;
                    }
                };
                run.attempts[index] += 1;
                self.transition(&mut run, index, StepState::Running, None, None)
                    .await?;
                let task = self.spawn_step(
                    &mut running,
                    plan,
                    index,
                    input,
                    approved_by,
                    run.attempts[index],
                );
                task_step.insert(task, index);
            }

            if running.is_empty() && (awaiting.is_empty() || self.config.stop_at_approval) {
                break;
            }
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    for index in 0..plan.steps.len() {
                        if !run.states[index].is_final() {
                            self.transition(&mut run, index, StepState::Cancelled, None, Some("the plan was cancelled".to_owned())).await?;
                        }
                    }
                    break;
                }
                Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                    let (index, attempt, result) = match joined {
                        Ok((task, finished)) => {
                            task_step.remove(&task);
                            finished
                        }
                        Err(error) => {
                            // The executor panicked: that step fails, the plan goes on.
                            let Some(index) = task_step.remove(&error.id()) else {
                                continue;
                            };
                            (index, run.attempts[index], Err(StepError::fatal(format!("the step's tool crashed: {error}"))))
                        }
                    };
                    run.attempts[index] = attempt;
                    match result {
                        Ok(output) => {
                            self.transition(&mut run, index, StepState::Succeeded, Some(output), None).await?;
                            for dependant in run.dependants[index].clone() {
                                run.remaining[dependant] -= 1;
                                if run.remaining[dependant] == 0 && run.states[dependant] == StepState::Pending {
                                    run.ready.push_back(dependant);
                                }
                            }
                        }
                        Err(error) => {
                            self.transition(&mut run, index, StepState::Failed, None, Some(error.message)).await?;
                            self.skip_dependants(&mut run, index).await?;
                        }
                    }
                }
                Ok(()) = approvals_changed.changed(), if !awaiting.is_empty() => {
                    let (now, still): (Vec<usize>, Vec<usize>) = awaiting
                        .drain(..)
                        .partition(|&index| approvals.approver(&plan.steps[index].id).is_some());
                    awaiting = still;
                    run.ready.extend(now);
                }
            }
        }

        let state = if run.states.contains(&StepState::Cancelled) {
            PlanState::Cancelled
        } else if run.states.iter().any(|state| !state.is_final()) {
            PlanState::AwaitingApproval
        } else if run
            .states
            .iter()
            .all(|state| *state == StepState::Succeeded)
        {
            PlanState::Succeeded
        } else {
            PlanState::Failed
        };
        self.emit(plan.id, None, EventKind::PlanFinished { outcome: state });
        Ok(PlanOutcome {
            state,
            steps: plan
                .steps
                .iter()
                .zip(&run.states)
                .map(|(step, state)| (step.id.clone(), *state))
                .collect(),
            outputs: plan
                .steps
                .iter()
                .zip(&run.outputs)
                .filter_map(|(step, output)| {
                    output.as_ref().map(|o| (step.id.clone(), (**o).clone()))
                })
                .collect(),
            failures: plan
                .steps
                .iter()
                .zip(run.states.iter().zip(&run.errors))
                .filter(|(_, (state, _))| **state == StepState::Failed)
                .map(|(step, (_, error))| (step.id.clone(), error.clone().unwrap_or_default()))
                .collect(),
        })
    }

    fn spawn_step(
        &self,
        running: &mut JoinSet<Finished>,
        plan: &Plan,
        index: usize,
        input: Value,
        approved_by: Option<String>,
        first_attempt: u32,
    ) -> tokio::task::Id {
        use tracing::Instrument;
        let span = tracing::info_span!("step", plan = %plan.id, step = %plan.steps[index].id);
        let executor = self.executor.clone();
        let step = plan.steps[index].clone();
        let config = self.config.clone();
        let plan_id = plan.id;
        let thread_id = plan.thread_id;
        let events = self.events.clone();
        running.spawn(async move {
            let mut attempt = first_attempt;
            loop {
                let context = StepContext {
                    plan_id,
                    thread_id,
                    approved_by: approved_by.clone(),
                    attempt,
                };
                let result = match tokio::time::timeout(
                    config.step_timeout,
                    executor.execute(&step, input.clone(), &context),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Err(StepError::retryable(format!(
                        "timed out after {:?}",
                        config.step_timeout
                    ))),
                };
                match result {
                    Err(error)
                        if error.retryable
                            && !step.mutating
                            && attempt - first_attempt < config.retries =>
                    {
                        let delay = config.retry_backoff * 2u32.saturating_pow(attempt - first_attempt);
                        tracing::info!(step = %step.id, attempt, error = %error.message, ?delay, "retrying step");
                        let _ = events.send(PlanEvent {
                            plan_id,
                            step_id: Some(step.id.clone()),
                            kind: EventKind::Step {
                                state: StepState::Running,
                                attempt: attempt + 1,
                                reason: Some(format!("retrying after: {}", error.message)),
                            },
                            at_micros: now_micros(),
                        });
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    result => return (index, attempt, result),
                }
            }
        }.instrument(span)).id()
    }

    /// Persists, then announces, a step's new state.
    async fn transition(
        &self,
        run: &mut Run,
        index: usize,
        state: StepState,
        output: Option<Value>,
        error: Option<String>,
    ) -> Result<()> {
        let step_id = &run.ids[index];
        let record = StepRecord {
            plan_id: run.plan_id,
            step_id: step_id.clone(),
            state,
            attempt: run.attempts[index],
            output,
            error,
            at_micros: now_micros(),
        };
        self.store.record_step(&record).await?;
        if !matches!(state, StepState::Running | StepState::Succeeded)
            || tracing::enabled!(tracing::Level::DEBUG)
        {
            tracing::info!(plan = %run.plan_id, step = %step_id, state = state.as_str(), reason = ?record.error, "step");
        }
        self.emit(
            run.plan_id,
            Some(step_id.clone()),
            EventKind::Step {
                state,
                attempt: record.attempt,
                reason: record.error.clone(),
            },
        );
        run.states[index] = state;
        run.errors[index] = record.error;
        if let Some(output) = record.output {
            run.outputs[index] = Some(Arc::new(output));
        }
        Ok(())
    }

    /// Marks every step downstream of a failed one as skipped, naming the failure.
    async fn skip_dependants(&self, run: &mut Run, failed: usize) -> Result<()> {
        let mut queue: VecDeque<usize> = run.dependants[failed].iter().copied().collect();
        let mut seen = HashSet::new();
        let reason = format!("not run: step {:?} did not succeed", run.ids[failed]);
        while let Some(index) = queue.pop_front() {
            if !seen.insert(index) || run.states[index].is_final() {
                continue;
            }
            self.transition(run, index, StepState::Skipped, None, Some(reason.clone()))
                .await?;
            queue.extend(run.dependants[index].iter().copied());
        }
        Ok(())
    }

    fn emit(&self, plan_id: PlanId, step_id: Option<String>, kind: EventKind) {
        // No subscriber is fine: the store has the record.
        let _ = self.events.send(PlanEvent {
            plan_id,
            step_id,
            kind,
            at_micros: now_micros(),
        });
    }
}

/// The bookkeeping of one run, indexed by step position.
struct Run {
    plan_id: PlanId,
    ids: Vec<String>,
    index_of: HashMap<String, usize>,
    dependants: Vec<Vec<usize>>,
    /// Dependencies not yet succeeded.
    remaining: Vec<usize>,
    states: Vec<StepState>,
    outputs: Vec<Option<Arc<Value>>>,
    errors: Vec<Option<String>>,
    attempts: Vec<u32>,
    has_refs: Vec<bool>,
    ready: VecDeque<usize>,
}

impl Run {
    fn new(plan: &Plan) -> Self {
        let count = plan.steps.len();
        let index_of: HashMap<String, usize> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(index, step)| (step.id.clone(), index))
            .collect();
        let mut dependants = vec![Vec::new(); count];
        let mut remaining = vec![0; count];
        for (index, step) in plan.steps.iter().enumerate() {
            for dependency in &step.depends_on {
                if let Some(&parent) = index_of.get(dependency) {
                    dependants[parent].push(index);
                    remaining[index] += 1;
                }
            }
        }
        Self {
            plan_id: plan.id,
            ids: plan.steps.iter().map(|step| step.id.clone()).collect(),
            index_of,
            dependants,
            remaining,
            states: vec![StepState::Pending; count],
            outputs: vec![None; count],
            errors: vec![None; count],
            attempts: vec![0; count],
            has_refs: plan
                .steps
                .iter()
                .map(|step| !output_refs(&step.input).is_empty())
                .collect(),
            ready: VecDeque::new(),
        }
    }

    /// After resuming: count finished dependencies and queue what can run.
    fn seed_ready(&mut self) {
        for index in 0..self.ids.len() {
            if self.states[index] == StepState::Succeeded {
                for &dependant in &self.dependants[index] {
                    self.remaining[dependant] -= 1;
                }
            }
        }
        for index in 0..self.ids.len() {
            if self.remaining[index] == 0 && !self.states[index].is_final() {
                self.ready.push_back(index);
            }
        }
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
