//! The API's [`Deckhand`] service on the real parts: the [`Conductor`] (store, tools,
//! cluster gate, agents) and the [`EventHub`]. `deckhand serve` hands it to
//! [`deckhand_api::Api`].
//!
//! Long work does not hold a request: starting a thread stores it and returns; planning,
//! read-only steps and approved runs go on in the background and show up as the thread's
//! events (and in the store). A plan's status is read back from those events, so it is
//! the same after a restart.

use crate::conductor::{Conductor, ConductorError};
use crate::events::EventHub;
use crate::knowledge::SearchMode;
use deckhand_agents::scarlet::rules::BuiltinScan;
use deckhand_api::alertmanager::AlertGroup;
use deckhand_api::model::{
    Approval, Identity, KnowledgeHit, KnowledgeQuery, KnowledgeSearchMode, MessageRole as ApiRole,
    MessageView, NewMessage, NewThread, PlanStatus, PlanView, PolicyView, Rating, Rejection,
    RestoreView, Scope, StepPreview, StepView, ThreadDetail, ThreadQuery, ThreadSummary,
    TokenRecord, ToolView,
};
use deckhand_api::{
    Deckhand, Error, EventStream, Result, ThreadEvent, ThreadEventKind, TokenStore,
};
use deckhand_runtime::store::{ConversationStore, ThreadStore};
use deckhand_runtime::token::TokenStore as _;
use deckhand_runtime::{
    ApiToken, Interface, Message, MessageRole, Plan, PlanId, PlanStore, Thread, ThreadId,
    ThreadStatus,
};
use deckhand_store::Database;
use deckhand_tools::cluster::{planned_changes, ListQuery, Person};
use deckhand_tools::ClusterChange;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The most threads one list returns.
const MAX_THREADS: u32 = 500;

/// deckhand served over HTTP.
pub struct Service {
    conductor: Arc<Conductor>,
    /// Plans running now, with what cancels them and whether the run is the approved one
    /// (`true`) or the read-only steps right after planning (`false`).
    running: Arc<Mutex<HashMap<PlanId, (CancellationToken, bool)>>>,
    /// Threads being planned now: what stops their planning, and how many plannings
    /// share it (a message posted while planning plans again alongside).
    planning: Arc<Mutex<HashMap<ThreadId, (CancellationToken, usize)>>>,
    /// One run of a plan at a time: an approved run waits for the read-only run before it.
    plan_locks: PlanLocks,
    /// Background work (planning, runs), awaited on shutdown.
    tasks: TaskTracker,
    policies: Vec<PolicyView>,
}

impl Service {
    /// The service over `conductor`; `policy_dirs` are listed by `GET /api/policies`.
    pub fn new(conductor: Arc<Conductor>, policy_dirs: &[PathBuf]) -> Self {
        Self {
            conductor,
            running: Arc::default(),
            planning: Arc::default(),
            plan_locks: PlanLocks::default(),
            tasks: TaskTracker::new(),
            policies: policy_views(policy_dirs),
        }
    }

    /// Waits for background work (planning, runs) to finish.
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn database(&self) -> &Database {
        self.conductor.database()
    }

    fn events(&self) -> &EventHub {
        self.conductor.events()
    }

    async fn stored_thread(&self, thread: ThreadId) -> Result<Thread> {
        self.database()
            .thread(thread)
            .await
            .map_err(|error| Error::internal("reading a thread", error))?
            .ok_or_else(|| Error::NotFound {
                what: "thread",
                id: thread.to_string(),
            })
    }

    async fn stored_plan(&self, thread: ThreadId, plan: PlanId) -> Result<Plan> {
        self.database()
            .plans_of_thread(thread)
            .await
            .map_err(|error| Error::internal("reading plans", error))?
            .into_iter()
            .find(|candidate| candidate.id == plan)
            .ok_or_else(|| Error::NotFound {
                what: "plan",
                id: plan.to_string(),
            })
    }

    async fn summary(&self, thread: &Thread) -> Result<ThreadSummary> {
        let mut summary = ThreadSummary::from_thread(thread);
        summary.rating = self
            .database()
            .ratings(thread.id)
            .await
            .map_err(|error| Error::internal("reading ratings", error))?
            .last()
            .map(|rating| rating.score);
        Ok(summary)
    }

    async fn detail(&self, thread: ThreadId) -> Result<ThreadDetail> {
        let stored = self.stored_thread(thread).await?;
        let messages = self
            .database()
            .messages(thread)
            .await
            .map_err(|error| Error::internal("reading messages", error))?;
        let events = self
            .events()
            .stored(thread)
            .await
            .map_err(|error| Error::internal("reading events", std::io::Error::other(error)))?;
        let plans = self
            .database()
            .plans_of_thread(thread)
            .await
            .map_err(|error| Error::internal("reading plans", error))?;
        let mut views = Vec::with_capacity(plans.len());
        for plan in &plans {
            views.push(self.plan_view(plan, &events).await?);
        }
        Ok(ThreadDetail {
            thread: self.summary(&stored).await?,
            messages: messages
                .iter()
                .enumerate()
                .map(|(index, message)| message_view(index, message))
                .collect(),
            plans: views,
            last_event_id: events.last().map_or(0, |event| event.id),
        })
    }

    /// The plan with each step's latest state and the plan's status from the events.
    async fn plan_view(&self, plan: &Plan, events: &[ThreadEvent]) -> Result<PlanView> {
        let mut view = PlanView::from_plan(plan);
        let steps = self
            .database()
            .latest_steps(plan.id)
            .await
            .map_err(|error| Error::internal("reading step states", error))?;
        for step in &mut view.steps {
            if let Some(record) = steps.get(&step.id) {
                apply_record(step, record);
            }
        }
        let (status, approved_by) = plan_status(plan.id, events);
        view.status = status;
        view.approved_by = approved_by;
        if self.is_running(plan.id) {
            view.status = PlanStatus::Running;
        }
        Ok(view)
    }

    async fn current_plan_view(&self, thread: ThreadId, plan: &Plan) -> Result<PlanView> {
        let events = self
            .events()
            .stored(thread)
            .await
            .map_err(|error| Error::internal("reading events", std::io::Error::other(error)))?;
        self.plan_view(plan, &events).await
    }

    /// What a mutating step would do: for each object it changes, the change as YAML,
    /// the diff against the live object from a server-side dry run, and the policies'
    /// objections. Nothing is written. The dry run acts as `person` when impersonation is
    /// on, so what they may not do shows here, before they approve.
    async fn preview_step(
        &self,
        step: &deckhand_runtime::Step,
        who: &str,
        person: &Person,
    ) -> Vec<StepPreview> {
        let unknown = |target: String, why: String| StepPreview {
            step_id: step.id.clone(),
            tool: step.tool.clone(),
            target,
            yaml: to_yaml(&step.input),
            diff: String::new(),
            denied_by: vec![why],
        };
        if serde_json::to_string(&step.input).is_ok_and(|text| text.contains("{{steps.")) {
            return vec![StepPreview {
                denied_by: Vec::new(),
                diff: "(known once the steps it depends on have run)".to_owned(),
                ..unknown(String::new(), String::new())
            }];
        }
        let changes = match planned_changes(&step.tool, &step.input, self.conductor.workspace()) {
            Ok(Some(changes)) => changes,
            // Not a cluster change (a workspace file, say): the input is what it does.
            Ok(None) => {
                return vec![StepPreview {
                    denied_by: Vec::new(),
                    ..unknown(String::new(), String::new())
                }]
            }
            Err(error) => return vec![unknown(String::new(), format!("input: {error}"))],
        };
        let gate = match self.conductor.gate_for(Some(person)) {
            Ok(Some(gate)) => gate,
            Ok(None) => {
                return vec![StepPreview {
                    diff: "(no cluster is configured: nothing to compare with)".to_owned(),
                    denied_by: Vec::new(),
                    ..unknown(String::new(), String::new())
                }]
            }
            Err(error) => return vec![unknown(String::new(), crate::error::with_causes(&error))],
        };
        let mut previews = Vec::new();
        for change in changes {
            let target = change
                .target()
                .map(|target| target.to_string())
                .unwrap_or_default();
            let yaml = to_yaml(&change_as_json(&change));
            let preview = match gate.prepare(change, who).await {
                Ok(prepared) => StepPreview {
                    step_id: step.id.clone(),
                    tool: step.tool.clone(),
                    target: prepared.target.to_string(),
                    yaml,
                    diff: prepared.diff(),
                    denied_by: Vec::new(),
                },
                Err(deckhand_tools::Error::PolicyDenied {
                    checkpoint,
                    violations,
                    ..
                }) => StepPreview {
                    step_id: step.id.clone(),
                    tool: step.tool.clone(),
                    target,
                    yaml,
                    diff: String::new(),
                    denied_by: violations
                        .iter()
                        .map(|violation| {
                            format!("{} ({checkpoint}): {}", violation.policy, violation.message)
                        })
                        .collect(),
                },
                // With its cause: "forbidden: User ... cannot ..." is what the person needs.
                Err(error) => StepPreview {
                    yaml,
                    ..unknown(target, crate::error::with_causes(&error))
                },
            };
            previews.push(preview);
        }
        previews
    }

    /// Whether the plan's approved run is going on (the read-only steps run right after
    /// planning show in the step states instead).
    fn is_running(&self, plan: PlanId) -> bool {
        lock(&self.running)
            .get(&plan)
            .is_some_and(|(_, approved_run)| *approved_run)
    }

    /// Plans `text` in `thread` in the background, then runs what only reads.
    ///
    /// `person` is the caller's cluster identity: the plan's cluster steps are checked
    /// against their permissions before anyone approves, and the reads act as them when
    /// impersonation is on. `None` (scheduled tasks) reads as deckhand itself.
    fn plan_in_background(
        &self,
        thread: ThreadId,
        who: String,
        person: Option<Person>,
        text: String,
        namespace: Option<String>,
    ) {
        self.plan_in_background_with(thread, who, person, text, namespace, None);
    }

    /// [`Service::plan_in_background`] of a built-in scan's fixed plan when `scan` is set.
    fn plan_in_background_with(
        &self,
        thread: ThreadId,
        who: String,
        person: Option<Person>,
        text: String,
        namespace: Option<String>,
        scan: Option<BuiltinScan>,
    ) {
        let conductor = self.conductor.clone();
        let running = self.running.clone();
        let locks = self.plan_locks.clone();
        let stop = PlanningGuard::enter(&self.planning, thread);
        self.tasks.spawn(async move {
            let planning = conductor.plan_thread_with(thread, &who, &text, namespace, scan);
            let planned = tokio::select! {
                planned = planning => planned,
                // Dropping the planning drops the model's request with it; what it stored
                // (the person's message) stays. `cancel_planning` tells the thread.
                () = stop.token.cancelled() => {
                    tracing::info!(%thread, "planning stopped");
                    return;
                }
            };
            drop(stop);
            let planned = match planned {
                Ok(planned) => planned,
                // The reason is in the thread already (a message and an error event).
                Err(error) => {
                    tracing::info!(%thread, %error, "no plan");
                    return;
                }
            };
            if let Some(person) = &person {
                conductor.review_access(&planned.plan, person).await;
            }
            let _one_run = locks.hold(planned.plan.id).await;
            let cancel = CancellationToken::new();
            lock(&running).insert(planned.plan.id, (cancel.clone(), false));
            // Steps that only read run now; the rest waits for approval and a run.
            let ran = conductor
                .run_reads_acting(&planned.plan, &who, person.as_ref(), &cancel)
                .await;
            lock(&running).remove(&planned.plan.id);
            if let Err(error) = ran {
                report_failure(&conductor, thread, &error).await;
            }
        });
    }
}

/// One planning of a thread, registered in `Service::planning` while it goes on.
struct PlanningGuard {
    planning: Arc<Mutex<HashMap<ThreadId, (CancellationToken, usize)>>>,
    thread: ThreadId,
    token: CancellationToken,
}

impl PlanningGuard {
    fn enter(
        planning: &Arc<Mutex<HashMap<ThreadId, (CancellationToken, usize)>>>,
        thread: ThreadId,
    ) -> Self {
        let mut map = lock(planning);
        let (token, count) = map
            .entry(thread)
            .or_insert_with(|| (CancellationToken::new(), 0));
        *count += 1;
        Self {
            planning: planning.clone(),
            thread,
            token: token.clone(),
        }
    }
}

impl Drop for PlanningGuard {
    fn drop(&mut self) {
        // `cancel_planning` removes the entry it cancels: with our token cancelled, an
        // entry still there belongs to a later planning.
        if self.token.is_cancelled() {
            return;
        }
        let mut map = lock(&self.planning);
        if let Some((_, count)) = map.get_mut(&self.thread) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.thread);
            }
        }
    }
}

/// The caller's cluster identity: the subject and groups they authenticated with.
fn person_of(who: &Identity) -> Person {
    Person {
        user: who.subject.clone(),
        groups: who.groups.clone(),
    }
}

fn to_yaml(value: &Value) -> String {
    serde_yaml_ng::to_string(&deckhand_tools::cluster::redact_secrets(value.clone()))
        .unwrap_or_else(|_| value.to_string())
}

/// A change as the person reads it: the manifest for an apply, else what is asked.
fn change_as_json(change: &ClusterChange) -> Value {
    match change {
        ClusterChange::Apply { object }
        | ClusterChange::Create { object }
        | ClusterChange::Replace { object } => object.clone(),
        ClusterChange::Patch { target, patch, .. } => {
            json!({"patch": target.to_string(), "with": patch})
        }
        ClusterChange::Scale { target, replicas } => {
            json!({"scale": target.to_string(), "replicas": replicas})
        }
        ClusterChange::Delete { target } => json!({"delete": target.to_string()}),
    }
}

/// One run of a plan at a time. An entry lives while a run holds or waits for it, so
/// the map does not keep one lock per plan ever run.
#[derive(Clone, Default)]
struct PlanLocks(Arc<Mutex<HashMap<PlanId, Arc<tokio::sync::Mutex<()>>>>>);

impl PlanLocks {
    /// Waits for `plan`'s lock; it is released when the guard is dropped.
    async fn hold(&self, plan: PlanId) -> PlanGuard {
        let mutex = lock(&self.0).entry(plan).or_default().clone();
        let guard = mutex.lock_owned().await;
        PlanGuard {
            locks: self.clone(),
            plan,
            guard: Some(guard),
        }
    }
}

/// A held plan lock (see [`PlanLocks::hold`]).
struct PlanGuard {
    locks: PlanLocks,
    plan: PlanId,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for PlanGuard {
    fn drop(&mut self) {
        // The guard holds one reference; the map another; each waiter one more.
        drop(self.guard.take());
        let mut locks = lock(&self.locks.0);
        if locks
            .get(&self.plan)
            .is_some_and(|mutex| Arc::strong_count(mutex) == 1)
        {
            locks.remove(&self.plan);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn report_failure(conductor: &Conductor, thread: ThreadId, error: &ConductorError) {
    conductor
        .events()
        .emit(
            thread,
            ThreadEventKind::Error,
            json!({"message": error.to_string()}),
        )
        .await;
}

/// The API's view of a conductor error: refusals are conflicts, the rest unavailable.
fn api_error(error: ConductorError) -> Error {
    if error.retryable {
        Error::Unavailable {
            message: error.to_string(),
        }
    } else {
        Error::Conflict {
            message: error.to_string(),
        }
    }
}

fn message_view(index: usize, message: &Message) -> MessageView {
    MessageView {
        seq: index as u64 + 1,
        role: match message.role {
            MessageRole::User => ApiRole::User,
            MessageRole::Assistant | MessageRole::Agent => ApiRole::Agent,
            MessageRole::System => ApiRole::System,
        },
        author: message.author.clone(),
        text: message.text.clone(),
        at: message.created_at,
    }
}

fn apply_record(step: &mut StepView, record: &deckhand_runtime::scheduler::StepRecord) {
    step.state = record.state;
    step.attempt = record.attempt;
    step.output.clone_from(&record.output);
    step.error.clone_from(&record.error);
}

/// A plan's status and approver, replaying the thread's events in order: the last
/// plan-level event wins.
fn plan_status(plan: PlanId, events: &[ThreadEvent]) -> (PlanStatus, Option<String>) {
    let id = plan.to_string();
    let mut status = PlanStatus::Proposed;
    let mut approved_by = None;
    for event in events {
        if event.data.get("plan_id").and_then(Value::as_str) != Some(id.as_str()) {
            continue;
        }
        let whole_plan = event.data.get("step").is_none_or(Value::is_null);
        match event.kind {
            ThreadEventKind::Approval if whole_plan => {
                status = PlanStatus::Approved;
                approved_by = event
                    .data
                    .get("by")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            ThreadEventKind::Approval if status == PlanStatus::Proposed => {
                status = PlanStatus::Approved;
            }
            ThreadEventKind::Rejection if whole_plan => status = PlanStatus::Rejected,
            ThreadEventKind::Step => match event.data.get("state").and_then(Value::as_str) {
                Some("running") => status = PlanStatus::Running,
                // An approved plan waiting for its run stays approved.
                Some("awaiting_approval") if status != PlanStatus::Approved => {
                    status = PlanStatus::AwaitingApproval;
                }
                _ => {}
            },
            ThreadEventKind::PlanFinished => {
                status = match event.data.get("outcome").and_then(Value::as_str) {
                    Some("succeeded") => PlanStatus::Succeeded,
                    Some("cancelled") => PlanStatus::Cancelled,
                    Some("awaiting_approval") => PlanStatus::AwaitingApproval,
                    _ => PlanStatus::Failed,
                };
            }
            _ => {}
        }
    }
    (status, approved_by)
}

/// The built-in guards, then every user policy file in `dirs`.
fn policy_views(dirs: &[PathBuf]) -> Vec<PolicyView> {
    let builtin = |name: &str, description: &str| PolicyView {
        name: name.to_owned(),
        kind: "builtin".to_owned(),
        description: description.to_owned(),
    };
    let mut views = vec![
        builtin(
            deckhand_policy::guards::NO_NAMESPACE_DELETION,
            "no Namespace is deleted, by any route",
        ),
        builtin(
            deckhand_policy::guards::PROTECTED_NAMESPACES,
            "no write in kube-system (and the other protected namespaces)",
        ),
        builtin(
            deckhand_policy::guards::NO_CLUSTER_ADMIN,
            "no cluster-admin grants, wildcard roles, escalate/bind/impersonate, or edits to deckhand's own RBAC",
        ),
    ];
    let mut files = Vec::new();
    for dir in dirs {
        collect_policy_files(dir, &mut files);
    }
    files.sort();
    for path in files {
        let kind = match path.extension().and_then(|ext| ext.to_str()) {
            Some("rego") => "rego",
            _ => "gatekeeper",
        };
        views.push(PolicyView {
            name: path.display().to_string(),
            kind: kind.to_owned(),
            description: format!("user policy from {}", path.display()),
        });
    }
    views
}

fn collect_policy_files(dir: &std::path::Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_policy_files(&path, files);
        } else if matches!(
            path.extension().and_then(|ext| ext.to_str()),
            Some("rego" | "yaml" | "yml")
        ) && !path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.ends_with("_test.rego"))
        {
            files.push(path);
        }
    }
}

#[async_trait::async_trait]
impl Deckhand for Service {
    async fn create_thread(&self, who: &Identity, request: NewThread) -> Result<ThreadDetail> {
        let text = request.text.trim();
        if text.is_empty() {
            return Err(Error::invalid("the request is empty"));
        }
        let thread = self
            .conductor
            .open_thread(&who.subject, text)
            .await
            .map_err(api_error)?;
        self.plan_in_background(
            thread.id,
            who.subject.clone(),
            Some(person_of(who)),
            text.to_owned(),
            request.namespace,
        );
        self.detail(thread.id).await
    }

    async fn list_threads(
        &self,
        _who: &Identity,
        query: ThreadQuery,
    ) -> Result<Vec<ThreadSummary>> {
        let limit = query.limit.unwrap_or(50).min(MAX_THREADS);
        // Filters apply after reading, so read the most a list may show.
        let threads = self
            .database()
            .recent_threads(MAX_THREADS)
            .await
            .map_err(|error| Error::internal("listing threads", error))?;
        let mut summaries = Vec::new();
        for thread in threads
            .iter()
            .filter(|thread| query.user.as_ref().is_none_or(|user| &thread.user == user))
            .filter(|thread| {
                query.status.as_ref().is_none_or(|status| {
                    thread.status.as_str() == status
                        || (status == "open" && thread.status != ThreadStatus::Closed)
                })
            })
            .take(limit as usize)
        {
            summaries.push(self.summary(thread).await?);
        }
        Ok(summaries)
    }

    async fn thread(&self, _who: &Identity, thread: ThreadId) -> Result<ThreadDetail> {
        self.detail(thread).await
    }

    async fn post_message(
        &self,
        who: &Identity,
        thread: ThreadId,
        message: NewMessage,
    ) -> Result<MessageView> {
        let stored = self.stored_thread(thread).await?;
        if stored.status == ThreadStatus::Closed {
            return Err(Error::Conflict {
                message: format!("thread {thread} is closed (rated 100)"),
            });
        }
        let text = message.text.trim();
        if text.is_empty() {
            return Err(Error::invalid("the message is empty"));
        }
        let (said, seq) = self
            .conductor
            .say_numbered(Message::new(thread, MessageRole::User, &who.subject, text))
            .await
            .map_err(api_error)?;
        // The conversation goes on: the planner takes the message with the thread's
        // history and proposes the next plan.
        self.plan_in_background(
            thread,
            who.subject.clone(),
            Some(person_of(who)),
            text.to_owned(),
            None,
        );
        Ok(message_view(seq.saturating_sub(1), &said))
    }

    async fn approve(
        &self,
        who: &Identity,
        thread: ThreadId,
        plan: PlanId,
        approval: Approval,
    ) -> Result<PlanView> {
        let stored = self.stored_plan(thread, plan).await?;
        if stored.hash != approval.hash {
            return Err(Error::Conflict {
                message: format!(
                    "the plan's hash is {}, not {}: it changed since it was shown",
                    stored.hash, approval.hash
                ),
            });
        }
        let current = self.current_plan_view(thread, &stored).await?;
        if matches!(
            current.status,
            PlanStatus::Rejected
                | PlanStatus::Succeeded
                | PlanStatus::Failed
                | PlanStatus::Cancelled
        ) {
            return Err(Error::Conflict {
                message: format!("the plan is {:?} and cannot be approved", current.status),
            });
        }
        self.conductor
            .approve(
                &stored,
                &approval.hash,
                &who.subject,
                approval.step.as_deref(),
                Interface::Api,
            )
            .await
            .map_err(api_error)?;
        self.current_plan_view(thread, &stored).await
    }

    async fn reject(
        &self,
        who: &Identity,
        thread: ThreadId,
        plan: PlanId,
        rejection: Rejection,
    ) -> Result<PlanView> {
        let stored = self.stored_plan(thread, plan).await?;
        if stored.hash != rejection.hash {
            return Err(Error::Conflict {
                message: format!("the plan's hash is {}, not {}", stored.hash, rejection.hash),
            });
        }
        if self.is_running(plan) {
            return Err(Error::Conflict {
                message: "the plan is running: cancel it instead".to_owned(),
            });
        }
        self.conductor
            .reject(
                &stored,
                &rejection.hash,
                &who.subject,
                rejection.step.as_deref(),
                rejection.reason.as_deref(),
            )
            .await
            .map_err(api_error)?;
        self.current_plan_view(thread, &stored).await
    }

    async fn preview(
        &self,
        who: &Identity,
        thread: ThreadId,
        plan: PlanId,
    ) -> Result<Vec<StepPreview>> {
        let stored = self.stored_plan(thread, plan).await?;
        let mut previews = Vec::new();
        for step in stored.steps.iter().filter(|step| step.mutating) {
            previews.extend(self.preview_step(step, &who.subject, &person_of(who)).await);
        }
        Ok(previews)
    }

    async fn run(&self, who: &Identity, thread: ThreadId, plan: PlanId) -> Result<PlanView> {
        let stored = self.stored_plan(thread, plan).await?;
        let current = self.current_plan_view(thread, &stored).await?;
        if matches!(
            current.status,
            PlanStatus::Rejected | PlanStatus::Succeeded | PlanStatus::Cancelled
        ) {
            return Err(Error::Conflict {
                message: format!("the plan is {:?}", current.status),
            });
        }
        // The read-only run after planning may still be going: the approved run waits
        // for it. Another approved run is a conflict.
        if lock(&self.running)
            .get(&plan)
            .is_some_and(|(_, approved_run)| *approved_run)
        {
            return Err(Error::Conflict {
                message: "the plan is already running".to_owned(),
            });
        }
        let cancel = CancellationToken::new();
        let conductor = self.conductor.clone();
        let running = self.running.clone();
        let locks = self.plan_locks.clone();
        let person = person_of(who);
        let who = who.subject.clone();
        let to_run = stored.clone();
        self.tasks.spawn(async move {
            let _one_run = locks.hold(to_run.id).await;
            lock(&running).insert(to_run.id, (cancel.clone(), true));
            let ran = conductor
                .run_acting(&to_run, &who, Some(&person), &cancel)
                .await;
            lock(&running).remove(&to_run.id);
            if let Err(error) = ran {
                report_failure(&conductor, to_run.thread_id, &error).await;
            }
        });
        let mut view = current;
        view.status = PlanStatus::Running;
        Ok(view)
    }

    async fn cancel(&self, who: &Identity, thread: ThreadId, plan: PlanId) -> Result<PlanView> {
        let stored = self.stored_plan(thread, plan).await?;
        let token = lock(&self.running)
            .get(&plan)
            .map(|(token, _)| token.clone());
        if let Some(token) = token {
            token.cancel();
        } else {
            let current = self.current_plan_view(thread, &stored).await?;
            if matches!(
                current.status,
                PlanStatus::Succeeded
                    | PlanStatus::Failed
                    | PlanStatus::Cancelled
                    | PlanStatus::Rejected
            ) {
                return Err(Error::Conflict {
                    message: format!("the plan already ended ({:?})", current.status),
                });
            }
            // Not running: cancelling it means it will not run.
            self.events()
                .emit(
                    thread,
                    ThreadEventKind::PlanFinished,
                    json!({"plan_id": plan, "outcome": "cancelled", "by": who.subject}),
                )
                .await;
        }
        let mut view = self.current_plan_view(thread, &stored).await?;
        if view.status == PlanStatus::Running {
            view.status = PlanStatus::Cancelled;
        }
        Ok(view)
    }

    async fn cancel_planning(&self, who: &Identity, thread: ThreadId) -> Result<()> {
        let Some((token, _)) = lock(&self.planning).remove(&thread) else {
            return Err(Error::Conflict {
                message: format!("nothing is being planned in thread {thread}"),
            });
        };
        token.cancel();
        let text = format!("Planning stopped by {}: no plan comes of it.", who.subject);
        if let Err(error) = self
            .conductor
            .say(Message::new(thread, MessageRole::System, "deckhand", text))
            .await
        {
            tracing::warn!(%thread, %error, "could not note the stopped planning");
        }
        Ok(())
    }

    async fn restore(&self, who: &Identity, thread: ThreadId) -> Result<RestoreView> {
        self.stored_thread(thread).await?;
        let restored = self
            .conductor
            .restore_acting(thread, &who.subject, Some(&person_of(who)))
            .await
            .map_err(|error| {
                if self.conductor.connected() {
                    api_error(error)
                } else {
                    Error::Unavailable {
                        message: error.to_string(),
                    }
                }
            })?;
        Ok(RestoreView {
            thread_id: thread,
            restored: restored.done,
            failed: Vec::new(),
        })
    }

    async fn rate(
        &self,
        who: &Identity,
        thread: ThreadId,
        rating: Rating,
    ) -> Result<ThreadSummary> {
        if rating.rating > 100 {
            return Err(Error::invalid("a rating is 0 to 100"));
        }
        self.stored_thread(thread).await?;
        let rated = self
            .conductor
            .rate(
                thread,
                &who.subject,
                rating.rating,
                rating.comment.as_deref().unwrap_or(""),
            )
            .await
            .map_err(api_error)?;
        self.summary(&rated).await
    }

    async fn search_knowledge(
        &self,
        _who: &Identity,
        query: KnowledgeQuery,
    ) -> Result<Vec<KnowledgeHit>> {
        let limit = query.limit.unwrap_or(10).clamp(1, 100);
        let found = self
            .conductor
            .search_knowledge(&query.q, limit)
            .await
            .map_err(|error| Error::internal("searching knowledge", error))?;
        let search = match found.mode {
            SearchMode::Hybrid => KnowledgeSearchMode::Hybrid,
            SearchMode::FullText => KnowledgeSearchMode::FullText,
        };
        Ok(found
            .hits
            .into_iter()
            .map(|hit| KnowledgeHit {
                thread_id: hit.entry.thread_id,
                title: hit.entry.request.chars().take(80).collect(),
                request: hit.entry.request.clone(),
                summary: format!(
                    "{} (cluster {})",
                    if hit.entry.resolution_summary.is_empty() {
                        &hit.entry.response
                    } else {
                        &hit.entry.resolution_summary
                    },
                    hit.entry.cluster_id
                ),
                rating: hit.entry.rating,
                score: hit.score,
                similarity: hit.similarity,
                search,
            })
            .collect())
    }

    async fn tools(&self, _who: &Identity) -> Result<Vec<ToolView>> {
        Ok(self
            .conductor
            .catalog()
            .entries()
            .map(|entry| ToolView {
                name: entry.name.clone(),
                description: entry.description.clone(),
                mutating: entry.mutating,
                input_schema: entry.input_schema.clone(),
            })
            .collect())
    }

    async fn policies(&self, _who: &Identity) -> Result<Vec<PolicyView>> {
        Ok(self.policies.clone())
    }

    async fn namespaces(&self, who: &Identity) -> Result<Vec<String>> {
        let Some(gate) = self.conductor.gate() else {
            return Err(Error::Unavailable {
                message: "no cluster is configured".to_owned(),
            });
        };
        let query = ListQuery {
            api_version: "v1".to_owned(),
            kind: "Namespace".to_owned(),
            namespace: None,
            label_selector: None,
            field_selector: None,
            limit: Some(500),
            continue_token: None,
        };
        let page = gate.list(&query, &who.subject).await.map_err(|error| {
            let message = format!("{error:#}");
            if message.contains("denied") || message.contains("forbidden") {
                Error::Forbidden { reason: message }
            } else {
                Error::Unavailable { message }
            }
        })?;
        let mut names: Vec<String> = page
            .items
            .iter()
            .filter_map(|item| item.pointer("/metadata/name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        names.sort();
        Ok(names)
    }

    async fn subscribe(
        &self,
        _who: &Identity,
        thread: ThreadId,
        after: Option<u64>,
    ) -> Result<EventStream> {
        self.stored_thread(thread).await?;
        Ok(self.events().subscribe(thread, after))
    }

    async fn triage_alerts(&self, who: &Identity, group: AlertGroup) -> Result<ThreadDetail> {
        let text = format!("triage this alert: {}", group.summary());
        let thread = self
            .conductor
            .open_thread(&who.subject, &text)
            .await
            .map_err(api_error)?;
        let namespace = group.common_labels.get("namespace").cloned();
        self.plan_in_background(
            thread.id,
            who.subject.clone(),
            Some(person_of(who)),
            text,
            namespace,
        );
        self.detail(thread.id).await
    }

    async fn linked_thread(&self, key: &str) -> Result<Option<ThreadId>> {
        self.database()
            .linked_thread(key)
            .await
            .map_err(|error| Error::internal("reading a thread link", error))
    }

    async fn link_thread(&self, key: &str, thread: ThreadId) -> Result<()> {
        self.database()
            .link_thread(key, thread)
            .await
            .map_err(|error| Error::internal("linking a thread", error))
    }
}

/// Heartbeat tasks start like a person's request: a thread (its author is
/// `heartbeat:NAME`), a plan, its read-only steps; changes wait for a person's approval.
impl deckhand_runtime::HeartbeatLauncher for Service {
    async fn launch(
        &self,
        task: &deckhand_runtime::HeartbeatTask,
        scheduled_for: chrono::DateTime<chrono::Utc>,
    ) -> std::result::Result<ThreadId, String> {
        let who = format!("heartbeat:{}", task.name);
        let text = task.request_text();
        let thread = self
            .conductor
            .open_thread(&who, &text)
            .await
            .map_err(|error| error.to_string())?;
        tracing::info!(task = %task.name, %scheduled_for, thread = %thread.id, "heartbeat task started");
        let scan = BuiltinScan::of(&task.task);
        self.plan_in_background_with(thread.id, who, None, text, task.namespace.clone(), scan);
        Ok(thread.id)
    }
}

/// API tokens in the thread store (only their SHA-256 is kept).
#[derive(Clone)]
pub struct StoreTokens {
    database: Database,
}

impl StoreTokens {
    /// Tokens kept in `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }
}

fn record_of(token: ApiToken) -> TokenRecord {
    let scope = token
        .scopes
        .iter()
        .filter_map(|name| match name.as_str() {
            "viewer" => Some(Scope::Viewer),
            "operator" => Some(Scope::Operator),
            "admin" => Some(Scope::Admin),
            _ => None,
        })
        .max()
        // A token from before scopes were named grants the least.
        .unwrap_or(Scope::Viewer);
    TokenRecord {
        id: token.id,
        name: token.name,
        subject: token.subject,
        groups: token.groups,
        scope,
        created_by: token.created_by,
        created_at: token.created_at,
        expires_at: token.expires_at,
        revoked: token.revoked_at.is_some(),
    }
}

#[async_trait::async_trait]
impl TokenStore for StoreTokens {
    async fn lookup(&self, sha256_hex: &str) -> Result<Option<TokenRecord>> {
        Ok(self
            .database
            .token_by_hash(sha256_hex)
            .await
            .map_err(|error| Error::internal("looking up a token", error))?
            .map(record_of))
    }

    async fn create(&self, sha256_hex: &str, record: &TokenRecord) -> Result<()> {
        let token = ApiToken {
            id: record.id,
            name: record.name.clone(),
            token_hash: sha256_hex.to_owned(),
            scopes: vec![record.scope.as_str().to_owned()],
            created_at: record.created_at,
            revoked_at: record.revoked.then(chrono::Utc::now),
            subject: record.subject.clone(),
            groups: record.groups.clone(),
            created_by: record.created_by.clone(),
            expires_at: record.expires_at,
        };
        self.database
            .create_token(&token)
            .await
            .map_err(|error| Error::internal("storing a token", error))
    }

    async fn list(&self) -> Result<Vec<TokenRecord>> {
        Ok(self
            .database
            .tokens()
            .await
            .map_err(|error| Error::internal("listing tokens", error))?
            .into_iter()
            .map(record_of)
            .collect())
    }

    async fn revoke(&self, id: uuid::Uuid) -> Result<bool> {
        self.database
            .revoke_token(id)
            .await
            .map_err(|error| Error::internal("revoking a token", error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_plan_lock_serialises_runs_and_is_forgotten_when_free() {
        let locks = PlanLocks::default();
        let plan = PlanId::new();
        let first = locks.hold(plan).await;
        let waiting = tokio::spawn({
            let locks = locks.clone();
            async move { locks.hold(plan).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a second run waits for the first");
        drop(first);
        let second = waiting.await.expect("the waiter gets the lock");
        assert_eq!(lock(&locks.0).len(), 1, "kept while held");
        drop(second);
        assert!(lock(&locks.0).is_empty(), "forgotten once free");
    }
    use chrono::Utc;

    fn event(id: u64, kind: ThreadEventKind, data: Value) -> ThreadEvent {
        ThreadEvent {
            id,
            thread_id: ThreadId::new(),
            at: Utc::now(),
            kind,
            data,
        }
    }

    #[test]
    fn a_plans_status_follows_its_events_in_order() {
        let plan = PlanId::new();
        let other = PlanId::new();
        let events = vec![
            event(
                1,
                ThreadEventKind::Step,
                json!({"plan_id": plan, "step_id": "a", "state": "running"}),
            ),
            event(
                2,
                ThreadEventKind::Step,
                json!({"plan_id": plan, "step_id": "b", "state": "awaiting_approval"}),
            ),
            event(
                3,
                ThreadEventKind::PlanFinished,
                json!({"plan_id": other, "outcome": "failed"}),
            ),
        ];
        assert_eq!(plan_status(plan, &events).0, PlanStatus::AwaitingApproval);
        let mut approved = events.clone();
        approved.push(event(
            4,
            ThreadEventKind::Approval,
            json!({"plan_id": plan, "hash": "h", "step": null, "by": "ana"}),
        ));
        assert_eq!(
            plan_status(plan, &approved),
            (PlanStatus::Approved, Some("ana".to_owned()))
        );
        // The read-only run stopping at the approved step does not undo the approval.
        let mut waiting = approved.clone();
        waiting.push(event(
            5,
            ThreadEventKind::Step,
            json!({"plan_id": plan, "step_id": "b", "state": "awaiting_approval"}),
        ));
        assert_eq!(plan_status(plan, &waiting).0, PlanStatus::Approved);
        approved.push(event(
            5,
            ThreadEventKind::PlanFinished,
            json!({"plan_id": plan, "outcome": "succeeded"}),
        ));
        assert_eq!(plan_status(plan, &approved).0, PlanStatus::Succeeded);
        let rejected = vec![event(
            1,
            ThreadEventKind::Rejection,
            json!({"plan_id": plan, "step": null}),
        )];
        assert_eq!(plan_status(plan, &rejected).0, PlanStatus::Rejected);
        assert_eq!(plan_status(plan, &[]).0, PlanStatus::Proposed);
    }

    #[test]
    fn tokens_map_their_scope_both_ways() {
        let (token, _) = ApiToken::issue("ci", vec!["operator".into()]);
        let record = record_of(token.for_identity("ana", vec!["devs".into()], "ada"));
        assert_eq!(record.scope, Scope::Operator);
        assert_eq!(record.subject, "ana");
        assert!(!record.revoked);
        let (unknown, _) = ApiToken::issue("old", vec!["threads:read".into()]);
        assert_eq!(record_of(unknown).scope, Scope::Viewer);
    }
}
