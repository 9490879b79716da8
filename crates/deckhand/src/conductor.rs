//! The conductor: one place that carries a request through its thread, whatever interface
//! it came from (the operator, the HTTP API): start a thread and plan it (Scarlet), explain
//! the plan (Jamie), run the read-only steps and stop at approval, approve by hash and run
//! the plan, report, and restore what the thread changed.
//!
//! Every step is kept in the store: the thread, the person's message, Jamie's explanation
//! and report as assistant messages, the plan and its step transitions, the approval with
//! its interface, and audit records. The caller names its interface once
//! ([`Conductor::open`]); nothing here knows about Kubernetes objects or HTTP.

use crate::cli::session::{self, Session};
use crate::config::Config;
use crate::events::EventHub;
use crate::executor::ToolExecutor;
use crate::journal::priors_of;
use crate::landing::{Approved, Landing};
use deckhand_agents::jamie::{StepReport, StepStatus};
use deckhand_agents::scarlet::rules::{scan_plan, BuiltinScan};
use deckhand_agents::{Jamie, Scarlet};
use deckhand_api::ThreadEventKind;
use deckhand_llm::Router;
use deckhand_runtime::approval::{ApprovalRecord, Interface};
use deckhand_runtime::audit::{AuditEntry, AuditLog};
use deckhand_runtime::knowledge::KnowledgeEntry;
use deckhand_runtime::scheduler::{EventKind, PlanEvent, PlanOutcome, PlanState};
use deckhand_runtime::store::{ConversationStore, ThreadStore};
use deckhand_runtime::{
    Approvals, Message, MessageRole, Plan, PlanRequest, PlanStore, Planner, Rating, Scheduler,
    SchedulerConfig, StepState, Thread, ThreadId, ThreadStatus, ToolCatalog,
};
use deckhand_tools::cluster::{access_needed_for, cluster_tool_specs, Approval, Person};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The cluster id threads are stored under when the configuration names none.
pub const DEFAULT_CLUSTER_ID: &str = "default";

/// Why the conductor could not carry a request further: the stage and the cause, as one
/// line for the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct ConductorError {
    /// What was being done (`planning`, `approving`, `running`, `restoring`, ...).
    pub stage: &'static str,
    /// The thread, when there is one.
    pub thread: Option<ThreadId>,
    /// What went wrong.
    pub message: String,
    /// Whether trying again later may succeed (the store or the cluster was unreachable),
    /// as opposed to a refusal (a stale hash, an invalid plan).
    pub retryable: bool,
}

impl ConductorError {
    fn new(stage: &'static str, thread: Option<ThreadId>, message: impl Into<String>) -> Self {
        Self {
            stage,
            thread,
            message: message.into(),
            retryable: true,
        }
    }

    fn refused(stage: &'static str, thread: Option<ThreadId>, message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            ..Self::new(stage, thread, message)
        }
    }
}

/// The conductor's result type.
pub type Result<T, E = ConductorError> = std::result::Result<T, E>;

/// A request planned in a new thread.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The thread it is stored as.
    pub thread_id: ThreadId,
    /// Scarlet's plan (stored).
    pub plan: Plan,
    /// Jamie's explanation of the plan (stored as an assistant message).
    pub explanation: String,
}

/// How a run of a plan ended.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The plan's final state (`AwaitingApproval` when a run stopped at approval).
    pub state: PlanState,
    /// Jamie's report (stored as an assistant message).
    pub report: String,
    /// The failed steps and why.
    pub failures: Vec<(String, String)>,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The restore plan's hash (empty when there was nothing to restore).
    pub hash: String,
    /// Each object touched and the action taken, as text (`replace apps/v1 Deployment
    /// shop/web`).
    pub done: Vec<String>,
}

/// Carries requests through threads, on one store, tool registry, cluster gate and
/// model router.
pub struct Conductor {
    session: Session,
    router: Arc<Router>,
    catalog: ToolCatalog,
    workspace: PathBuf,
    interface: Interface,
    events: EventHub,
    cluster_id: String,
    landing: Option<Landing>,
    /// The embedding model of `[knowledge.embeddings]`; `None`: full-text search only.
    embedder: Option<deckhand_llm::Embedder>,
}

impl Conductor {
    /// Opens the store, the tools, the cluster (from KUBECONFIG or the in-cluster
    /// config) and the model router of `config`, for requests coming through `interface`.
    ///
    /// # Errors
    /// The store, the tools or the `[llm]` configuration cannot be opened.
    pub async fn open(config: &Config, interface: Interface) -> Result<Self> {
        Self::open_with(config, interface, session::Parts::default(), None).await
    }

    /// [`Conductor::open`] for a service embedding deckhand: its own store and cluster
    /// ([`session::Parts`]) and its own model router (`None`: the one `config.llm`
    /// describes).
    ///
    /// # Errors
    /// As [`Conductor::open`].
    pub async fn open_with(
        config: &Config,
        interface: Interface,
        parts: session::Parts,
        router: Option<Router>,
    ) -> Result<Self> {
        let mut session = session::open_with(config, parts)
            .await
            .map_err(|message| ConductorError::new("opening", None, message))?;
        let knowledge = &config.knowledge;
        session.database = session
            .database
            .clone()
            .with_hybrid_options(crate::knowledge::hybrid_options(knowledge));
        let embedder = crate::knowledge::embedder(knowledge);
        let mut specs: Vec<deckhand_tools::ToolSpec> = session.registry.specs().cloned().collect();
        if !session.connected {
            specs.extend(cluster_tool_specs());
        }
        let catalog = deckhand_agents::tools::catalog_from_specs(specs.iter());
        let router = match router {
            Some(router) => router,
            None => {
                let env = |name: &str| std::env::var(name).ok();
                Router::discover(&config.llm, &env).await.map_err(|error| {
                    ConductorError::refused(
                        "opening",
                        None,
                        format!("the [llm] configuration is unusable: {error}"),
                    )
                })?
            }
        };
        let events = EventHub::new(session.database.clone(), session.metrics.clone());
        let landing = Landing::open(&config.git)
            .await
            .map_err(|message| ConductorError::refused("opening", None, message))?;
        Ok(Self {
            session,
            router: Arc::new(router),
            catalog,
            workspace: config.workspace.clone(),
            interface,
            events,
            cluster_id: DEFAULT_CLUSTER_ID.to_owned(),
            landing,
            embedder,
        })
    }

    /// The events of every thread: stored, and announced to whoever watches.
    pub fn events(&self) -> &EventHub {
        &self.events
    }

    /// The model router (for its usage figures).
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The tools plans may use, as the planner sees them.
    pub fn catalog(&self) -> &ToolCatalog {
        &self.catalog
    }

    /// The cluster gate, when a cluster is configured.
    pub fn gate(&self) -> Option<&deckhand_tools::cluster::ClusterGate> {
        self.session.gate.as_ref()
    }

    /// The sandbox root tools read and write.
    pub fn workspace(&self) -> &std::path::Path {
        &self.workspace
    }

    /// The interface requests come through.
    pub fn interface(&self) -> Interface {
        self.interface
    }

    /// Stores a message in its thread and announces it.
    ///
    /// # Errors
    /// The store fails.
    pub async fn say(&self, message: Message) -> Result<Message> {
        self.say_numbered(message).await.map(|(message, _)| message)
    }

    /// [`Conductor::say`], also giving the message's position in its thread (1 for the
    /// first), as the API numbers messages.
    ///
    /// # Errors
    /// As [`Conductor::say`].
    pub async fn say_numbered(&self, message: Message) -> Result<(Message, usize)> {
        let thread = message.thread_id;
        self.session
            .database
            .add_message(&message)
            .await
            .map_err(|error| ConductorError::new("storing", Some(thread), format!("{error:#}")))?;
        // The message's position in its thread, as the API numbers messages.
        let seq = self
            .session
            .database
            .messages(thread)
            .await
            .map(|messages| {
                messages
                    .iter()
                    .position(|stored| stored.id == message.id)
                    .map_or(messages.len(), |index| index + 1)
            })
            .unwrap_or_default();
        self.events
            .emit(
                thread,
                ThreadEventKind::Message,
                message_event(&message, seq),
            )
            .await;
        Ok((message, seq))
    }

    /// The store, for reading threads and messages.
    pub fn database(&self) -> &deckhand_store::Database {
        &self.session.database
    }

    /// Whether a cluster is configured (cluster steps and restores need one).
    pub fn connected(&self) -> bool {
        self.session.connected
    }

    /// Starts a thread for `who` asking `text` about `namespace`, plans it and explains
    /// the plan; the thread, the person's message, the plan and the explanation are stored.
    ///
    /// # Errors
    /// The store fails, or Scarlet cannot plan the request (not retryable).
    pub async fn start(&self, who: &str, text: &str, namespace: Option<String>) -> Result<Planned> {
        let thread = self.open_thread(who, text).await?;
        self.plan_thread(thread.id, who, text, namespace).await
    }

    /// Stores a new thread for `who` asking `text`, with the person's message.
    ///
    /// # Errors
    /// The store fails.
    pub async fn open_thread(&self, who: &str, text: &str) -> Result<Thread> {
        let thread = Thread::new(&self.cluster_id, who, text);
        let thread_id = thread.id;
        self.session
            .database
            .create_thread(&thread)
            .await
            .map_err(|error| {
                ConductorError::new("storing", Some(thread_id), format!("{error:#}"))
            })?;
        self.say(Message::new(thread_id, MessageRole::User, who, text))
            .await?;
        self.audit(who, "thread.started", Some(thread_id), text, json!({}))
            .await;
        Ok(thread)
    }

    /// Plans `text` in `thread` (Scarlet, with the thread's history and similar resolved
    /// threads), stores and announces the plan, and has Jamie explain it.
    ///
    /// # Errors
    /// The store fails, or Scarlet cannot plan the request (not retryable; the reason is
    /// also told in the thread).
    pub async fn plan_thread(
        &self,
        thread_id: ThreadId,
        who: &str,
        text: &str,
        namespace: Option<String>,
    ) -> Result<Planned> {
        self.plan_thread_with(thread_id, who, text, namespace, None)
            .await
    }

    /// [`Conductor::plan_thread`]; with `scan`, the plan is that built-in scan's fixed,
    /// read-only plan (what a scheduled scan runs: a configured model cannot reshape it).
    ///
    /// # Errors
    /// As [`Conductor::plan_thread`].
    pub async fn plan_thread_with(
        &self,
        thread_id: ThreadId,
        who: &str,
        text: &str,
        namespace: Option<String>,
        scan: Option<BuiltinScan>,
    ) -> Result<Planned> {
        let database = &self.session.database;
        let store = |error: deckhand_runtime::Error| {
            ConductorError::new("storing", Some(thread_id), format!("{error:#}"))
        };
        let history: Vec<String> = database
            .messages(thread_id)
            .await
            .map_err(store)?
            .iter()
            // The request itself is `text`; earlier turns are the history.
            .filter(|message| !(message.role == MessageRole::User && message.text == text))
            .map(|message| format!("{}: {}", message.author, message.text))
            .collect();
        let request = PlanRequest {
            thread_id,
            text: text.to_owned(),
            namespace,
            history,
            similar_threads: self.similar_threads(text, thread_id).await,
        };
        let planned = match scan {
            Some(scan) => scan_plan(scan, &request, &self.catalog),
            None => {
                Scarlet::new(self.router.clone())
                    .plan(&request, &self.catalog)
                    .await
            }
        };
        let plan = match planned {
            Ok(plan) => plan,
            Err(error) => {
                let message = error.to_string();
                let _ = self
                    .say(Message::new(
                        thread_id,
                        MessageRole::System,
                        "deckhand",
                        format!("No plan could be made: {message}"),
                    ))
                    .await;
                self.events
                    .emit(
                        thread_id,
                        ThreadEventKind::Error,
                        json!({"message": message}),
                    )
                    .await;
                return Err(ConductorError::refused(
                    "planning",
                    Some(thread_id),
                    message,
                ));
            }
        };
        database.save_plan(&plan).await.map_err(store)?;
        self.events
            .emit(
                thread_id,
                ThreadEventKind::PlanProposed,
                serde_json::to_value(deckhand_api::model::PlanView::from_plan(&plan))
                    .unwrap_or_default(),
            )
            .await;
        let (jamie, streamed) = self.jamie(thread_id);
        let explanation = jamie.explain_plan(&plan).await.text;
        // Every streamed word is stored before the message that completes them.
        drop(jamie);
        let _ = streamed.await;
        self.say(Message::new(
            thread_id,
            MessageRole::Assistant,
            "jamie",
            explanation.clone(),
        ))
        .await?;
        self.audit(
            who,
            "plan.created",
            Some(thread_id),
            &plan.hash,
            json!({"plan": plan.id.to_string()}),
        )
        .await;
        Ok(Planned {
            thread_id,
            plan,
            explanation,
        })
    }

    /// Resolved threads like `text`, best first: by words and meaning when the embedding
    /// model answers, else by words alone (the answer says which).
    ///
    /// # Errors
    /// The store fails.
    pub async fn search_knowledge(
        &self,
        text: &str,
        limit: u32,
    ) -> Result<crate::knowledge::KnowledgeSearch> {
        crate::knowledge::search(&self.session.database, self.embedder.as_ref(), text, limit)
            .await
            .map_err(|error| ConductorError::new("searching knowledge", None, format!("{error:#}")))
    }

    /// Summaries of resolved threads like `text` (rated well enough to be suggested),
    /// for the planner; a failing search is logged and gives none.
    async fn similar_threads(&self, text: &str, thread: ThreadId) -> Vec<String> {
        let vector = self.embedding_of(text).await;
        match self
            .session
            .database
            .search_knowledge_hybrid(text, vector.as_ref(), SIMILAR_THREADS)
            .await
        {
            Ok(hits) => hits
                .into_iter()
                .filter(|hit| hit.entry.thread_id != thread)
                .map(|hit| knowledge_summary(&hit.entry))
                .collect(),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "knowledge search failed; planning without similar threads");
                Vec::new()
            }
        }
    }

    /// Jamie for `thread`, whose words stream to the thread's watchers as they come.
    /// The task that stores the words in the order they came ends when Jamie (holding
    /// the sender) is dropped: await it before storing Jamie's message.
    fn jamie(&self, thread: ThreadId) -> (Jamie, tokio::task::JoinHandle<()>) {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
        let events = self.events.clone();
        let streamed = tokio::spawn(async move {
            while let Some(text) = receiver.recv().await {
                events
                    .emit(
                        thread,
                        ThreadEventKind::Token,
                        json!({"agent": "jamie", "text": text}),
                    )
                    .await;
            }
        });
        let jamie = Jamie::new(self.router.clone())
            .in_thread(thread.to_string())
            .with_token_sink(Arc::new(move |text: &str| {
                let _ = sender.send(text.to_owned());
            }));
        (jamie, streamed)
    }

    /// The newest plan of `thread`, if it has one.
    ///
    /// # Errors
    /// The store fails.
    pub async fn plan_of(&self, thread: ThreadId) -> Result<Option<Plan>> {
        self.session
            .database
            .plans_of_thread(thread)
            .await
            .map(|mut plans| plans.pop())
            .map_err(|error| ConductorError::new("reading", Some(thread), format!("{error:#}")))
    }

    /// Runs the plan's read-only steps for `who`, stopping before the first step that
    /// needs approval, and stores Jamie's report of what they found.
    ///
    /// # Errors
    /// The scheduler or the store fails.
    pub async fn run_read_only(&self, plan: &Plan, who: &str) -> Result<Ran> {
        self.run_reads(plan, who, &CancellationToken::new()).await
    }

    /// [`Conductor::run_read_only`] that `cancel` stops. Approvals given meanwhile do
    /// not make it run more: running approved steps is [`Conductor::run`]'s.
    ///
    /// # Errors
    /// The scheduler or the store fails.
    pub async fn run_reads(
        &self,
        plan: &Plan,
        who: &str,
        cancel: &CancellationToken,
    ) -> Result<Ran> {
        self.run_reads_acting(plan, who, None, cancel).await
    }

    /// [`Conductor::run_reads`] whose cluster calls act as `person` when `[cluster]
    /// impersonate` is on (their own RBAC applies); `None` calls as deckhand itself.
    ///
    /// # Errors
    /// As [`Conductor::run_reads`].
    pub async fn run_reads_acting(
        &self,
        plan: &Plan,
        who: &str,
        person: Option<&Person>,
        cancel: &CancellationToken,
    ) -> Result<Ran> {
        self.execute(plan, &Approvals::new(plan), who, person, true, cancel)
            .await
    }

    /// Approves `plan` by `hash` for `who` (recorded with this conductor's interface and
    /// audited), then runs it and stores Jamie's report.
    ///
    /// # Errors
    /// The hash is not the plan's, the plan names tools that cannot run here (both not
    /// retryable), or the scheduler or the store fails.
    pub async fn approve_and_run(&self, plan: &Plan, hash: &str, who: &str) -> Result<Ran> {
        self.approve(plan, hash, who, None, self.interface).await?;
        self.run(plan, who, &CancellationToken::new()).await
    }

    /// Records `who`'s approval of `plan` (or of its step `step`) by `hash`, given
    /// through `interface`; the store audits it.
    ///
    /// # Errors
    /// The hash is not the plan's, the step is not in it, the plan names tools that cannot
    /// run here (not retryable), or the store fails.
    pub async fn approve(
        &self,
        plan: &Plan,
        hash: &str,
        who: &str,
        step: Option<&str>,
        interface: Interface,
    ) -> Result<()> {
        let thread = Some(plan.thread_id);
        plan.check_approval(hash)
            .map_err(|error| ConductorError::refused("approving", thread, error.to_string()))?;
        let runnable = deckhand_agents::tools::catalog(&self.session.registry);
        plan.validate(&runnable)
            .map_err(|error| ConductorError::refused("approving", thread, error.to_string()))?;
        let record = match step {
            None => ApprovalRecord::of_plan(plan.thread_id, plan.id, hash, who, interface),
            Some(step) => {
                if !plan.steps.iter().any(|candidate| candidate.id == step) {
                    return Err(ConductorError::refused(
                        "approving",
                        thread,
                        format!("the plan has no step {step:?}"),
                    ));
                }
                ApprovalRecord::of_step(plan.thread_id, plan.id, hash, step, who, interface)
            }
        };
        // `record_approval` audits `plan.approved` in the same transaction.
        self.session
            .database
            .record_approval(&record)
            .await
            .map_err(|error| ConductorError::new("approving", thread, format!("{error:#}")))?;
        self.events
            .emit(
                plan.thread_id,
                ThreadEventKind::Approval,
                json!({"plan_id": plan.id, "hash": hash, "step": step, "by": who}),
            )
            .await;
        let what = step.map_or_else(|| "plan".to_owned(), |step| format!("step {step} of plan"));
        let _ = self
            .say(Message::new(
                plan.thread_id,
                MessageRole::System,
                "deckhand",
                format!(
                    "{who} approved {what} {hash} through the {}",
                    interface.as_str()
                ),
            ))
            .await;
        if let (Some(landing), None) = (&self.landing, step) {
            let requested_by = match self.session.database.thread(plan.thread_id).await {
                Ok(Some(thread)) => thread.user,
                _ => who.to_owned(),
            };
            let lines = landing
                .approved(
                    plan.thread_id,
                    Approved {
                        plan,
                        requested_by: &requested_by,
                        approved_by: who,
                        cluster: &self.cluster_id,
                        manifests: self.manifests_of(plan),
                    },
                )
                .await;
            self.tell(plan.thread_id, lines).await;
        }
        Ok(())
    }

    /// The manifests a plan applies (its `kube_apply` steps whose input is known now),
    /// as YAML named after each object.
    fn manifests_of(&self, plan: &Plan) -> Vec<deckhand_git::Manifest> {
        let mut manifests = Vec::new();
        for step in plan.steps.iter().filter(|step| step.mutating) {
            let Ok(Some(changes)) =
                deckhand_tools::cluster::planned_changes(&step.tool, &step.input, &self.workspace)
            else {
                continue;
            };
            for change in changes {
                if let deckhand_tools::ClusterChange::Apply { object } = change {
                    let name = format!(
                        "{}-{}",
                        object
                            .get("kind")
                            .and_then(|kind| kind.as_str())
                            .unwrap_or("object"),
                        object
                            .pointer("/metadata/name")
                            .and_then(|name| name.as_str())
                            .unwrap_or("unnamed")
                    )
                    .to_lowercase();
                    let object = deckhand_tools::cluster::redact_secrets(object);
                    if let Ok(yaml) = serde_yaml_ng::to_string(&object) {
                        manifests.push(deckhand_git::Manifest::new(name, yaml));
                    }
                }
            }
        }
        manifests
    }

    /// Tells the thread what happened outside it (git, pull requests), one system
    /// message per line.
    async fn tell(&self, thread: ThreadId, lines: Vec<String>) {
        for line in lines {
            let _ = self
                .say(Message::new(thread, MessageRole::System, "deckhand", line))
                .await;
        }
    }

    /// Records `who`'s rejection of `plan` (or of one step), with their reason, so the
    /// planner's next attempt can take it into account.
    ///
    /// # Errors
    /// The hash is not the plan's (not retryable).
    pub async fn reject(
        &self,
        plan: &Plan,
        hash: &str,
        who: &str,
        step: Option<&str>,
        reason: Option<&str>,
    ) -> Result<()> {
        let thread = Some(plan.thread_id);
        plan.check_approval(hash)
            .map_err(|error| ConductorError::refused("rejecting", thread, error.to_string()))?;
        self.audit(
            who,
            "plan.rejected",
            thread,
            hash,
            json!({"plan": plan.id.to_string(), "step": step, "reason": reason}),
        )
        .await;
        self.events
            .emit(
                plan.thread_id,
                ThreadEventKind::Rejection,
                json!({"plan_id": plan.id, "hash": hash, "step": step, "by": who, "reason": reason}),
            )
            .await;
        let what = step.map_or_else(|| "the plan".to_owned(), |step| format!("step {step}"));
        let why = reason
            .map(|reason| format!(": {reason}"))
            .unwrap_or_default();
        let _ = self
            .say(Message::new(
                plan.thread_id,
                MessageRole::System,
                "deckhand",
                format!("{who} rejected {what}{why}"),
            ))
            .await;
        Ok(())
    }

    /// Runs `plan` with the approvals stored for it: steps already done are not run
    /// again, mutating steps nobody approved wait (the run then ends `AwaitingApproval`).
    /// Jamie's report is stored; `cancel` stops the run.
    ///
    /// # Errors
    /// The scheduler or the store fails.
    pub async fn run(&self, plan: &Plan, who: &str, cancel: &CancellationToken) -> Result<Ran> {
        self.run_acting(plan, who, None, cancel).await
    }

    /// [`Conductor::run`] whose cluster calls act as `person` when `[cluster]
    /// impersonate` is on (their own RBAC applies); `None` calls as deckhand itself.
    ///
    /// # Errors
    /// As [`Conductor::run`].
    pub async fn run_acting(
        &self,
        plan: &Plan,
        who: &str,
        person: Option<&Person>,
        cancel: &CancellationToken,
    ) -> Result<Ran> {
        let thread = Some(plan.thread_id);
        let approvals = Approvals::new(plan);
        let records = self
            .session
            .database
            .approvals(plan.id)
            .await
            .map_err(|error| ConductorError::new("running", thread, format!("{error:#}")))?;
        for record in records
            .iter()
            .filter(|record| record.plan_hash == plan.hash)
        {
            let approved = match &record.step_id {
                None => approvals.approve_plan(plan, &record.plan_hash, &record.approved_by),
                Some(step) => {
                    approvals.approve_step(plan, &record.plan_hash, step, &record.approved_by)
                }
            };
            if let Err(error) = approved {
                tracing::warn!(%error, plan = %plan.id, "a stored approval no longer applies");
            }
        }
        let stop_at_approval = !records.iter().any(|record| record.plan_hash == plan.hash);
        self.execute(plan, &approvals, who, person, stop_at_approval, cancel)
            .await
    }

    /// Who cluster calls made for `person` act as: them when impersonation is on.
    fn acting(&self, person: Option<&Person>) -> Option<Person> {
        person.filter(|_| self.session.impersonate).cloned()
    }

    /// The gate cluster calls made for `person` go through: one acting as them when
    /// impersonation is on, deckhand's own otherwise; `None` without a cluster.
    ///
    /// # Errors
    /// The person's client cannot be built from the kube config.
    pub fn gate_for(
        &self,
        person: Option<&Person>,
    ) -> Result<Option<deckhand_tools::cluster::ClusterGate>, deckhand_tools::Error> {
        let Some(gate) = &self.session.gate else {
            return Ok(None);
        };
        match self.acting(person) {
            Some(person) => gate.acting_as(&person).map(Some),
            None => Ok(Some(gate.clone())),
        }
    }

    /// Asks the cluster whether `person` may do what each cluster step of `plan` needs
    /// (SubjectAccessReview) and, when something is missing, tells the thread exactly
    /// which permission each step lacks (a message and an `access` event), before anyone
    /// approves. Each refusal also raises an admin alert (through the gate). Off with
    /// `[cluster] check_access = false` or without a cluster; a step whose input is only
    /// known when an earlier step has run is checked when it runs (by the API server).
    /// Returns the missing permissions as `(step, permission)`.
    pub async fn review_access(&self, plan: &Plan, person: &Person) -> Vec<(String, String)> {
        let Some(gate) = self
            .session
            .gate
            .as_ref()
            .filter(|_| self.session.check_access)
        else {
            return Vec::new();
        };
        let mut missing = Vec::new();
        for step in &plan.steps {
            let checks = match access_needed_for(gate, &step.tool, &step.input, &self.workspace)
                .await
            {
                Ok(Some(checks)) => checks,
                Ok(None) => continue,
                Err(error) => {
                    tracing::debug!(step = %step.id, %error, "permission checked when the step runs");
                    continue;
                }
            };
            match gate.check_access(person, &checks).await {
                Ok(denied) => missing.extend(
                    denied
                        .into_iter()
                        .map(|refusal| (step.id.clone(), refusal.to_string())),
                ),
                Err(error) => {
                    tracing::warn!(step = %step.id, error = %format!("{error:#}"), "the access review could not be made");
                }
            }
        }
        if !missing.is_empty() {
            let lines: Vec<String> = missing
                .iter()
                .map(|(step, permission)| format!("- step {step}: {permission}"))
                .collect();
            let text = format!(
                "Before you approve: {} lacks permissions this plan needs, so those steps would be refused by the cluster:\n{}",
                person.user,
                lines.join("\n")
            );
            let _ = self
                .say(Message::new(
                    plan.thread_id,
                    MessageRole::System,
                    "deckhand",
                    text,
                ))
                .await;
            let missing_json: Vec<_> = missing
                .iter()
                .map(|(step, permission)| json!({"step_id": step, "permission": permission}))
                .collect();
            self.events
                .emit(
                    plan.thread_id,
                    ThreadEventKind::Access,
                    json!({"plan_id": plan.id, "user": person.user, "missing": missing_json}),
                )
                .await;
        }
        missing
    }

    async fn execute(
        &self,
        plan: &Plan,
        approvals: &Approvals,
        who: &str,
        person: Option<&Person>,
        stop_at_approval: bool,
        cancel: &CancellationToken,
    ) -> Result<Ran> {
        let thread = Some(plan.thread_id);
        let scheduler = Scheduler::new(
            Arc::new(
                ToolExecutor::new(self.session.registry.clone(), self.workspace.clone(), who)
                    .acting_as(self.acting(person))
                    .counting_in(self.events.metrics().cloned())
                    .leaving_applies_to_gitops(
                        self.landing
                            .as_ref()
                            .is_some_and(Landing::leaves_applying_to_gitops),
                    ),
            ),
            Arc::new(self.session.database.clone()),
            SchedulerConfig {
                stop_at_approval,
                ..SchedulerConfig::default()
            },
        );
        let forwarding = tokio::spawn(forward_step_events(
            scheduler.subscribe(),
            self.events.clone(),
            plan.thread_id,
        ));
        let outcome = scheduler.run(plan, approvals, cancel).await;
        // The scheduler's channel closes when it is dropped: the forwarder then ends,
        // after every transition was stored.
        drop(scheduler);
        let _ = forwarding.await;
        let outcome = outcome
            .map_err(|error| ConductorError::new("running", thread, format!("{error:#}")))?;
        let (jamie, streamed) = self.jamie(plan.thread_id);
        let report = jamie.report(plan, &step_reports(&outcome)).await.text;
        drop(jamie);
        let _ = streamed.await;
        let _ = self
            .say(Message::new(
                plan.thread_id,
                MessageRole::Assistant,
                "jamie",
                report.clone(),
            ))
            .await;
        self.events
            .emit(
                plan.thread_id,
                ThreadEventKind::Result,
                json!({"text": report}),
            )
            .await;
        if outcome.state != PlanState::AwaitingApproval {
            self.events
                .emit(
                    plan.thread_id,
                    ThreadEventKind::PlanFinished,
                    json!({"plan_id": plan.id, "outcome": outcome.state}),
                )
                .await;
            self.remember(plan, &report, &outcome).await;
            if let (Some(landing), false) = (&self.landing, stop_at_approval) {
                let backups = match priors_of(&self.session.database, plan.thread_id).await {
                    Ok(priors) => priors
                        .into_iter()
                        .filter_map(|prior| {
                            let state = prior.prior?;
                            Some(deckhand_git::Backup::new(prior.object.to_string(), state))
                        })
                        .collect(),
                    Err(message) => {
                        tracing::warn!(%message, "cannot read the thread's prior states for git");
                        Vec::new()
                    }
                };
                let lines = landing.completed(plan.thread_id, &report, &backups).await;
                self.tell(plan.thread_id, lines).await;
            }
        }
        if !stop_at_approval {
            self.audit(
                who,
                "plan.finished",
                thread,
                &plan.hash,
                json!({"state": outcome.state, "interface": self.interface.as_str()}),
            )
            .await;
        }
        Ok(Ran {
            state: outcome.state,
            report,
            failures: outcome.failures,
        })
    }

    /// Puts every object `thread` changed back as it was before it (deleting what it
    /// created), for `who` who asked for it: the restore plan is approved by that request,
    /// audited, and the thread's status becomes `Restored`.
    ///
    /// # Errors
    /// No cluster is configured or the thread is unknown (not retryable), or the restore
    /// cannot be planned or stopped part way (run it again to finish).
    pub async fn restore(&self, thread: ThreadId, who: &str) -> Result<Restored> {
        self.restore_acting(thread, who, None).await
    }

    /// [`Conductor::restore`] acting as `person` on the cluster when `[cluster]
    /// impersonate` is on (their own RBAC applies to the restore's writes).
    ///
    /// # Errors
    /// As [`Conductor::restore`]; also when no client acting as `person` can be made.
    pub async fn restore_acting(
        &self,
        thread: ThreadId,
        who: &str,
        person: Option<&Person>,
    ) -> Result<Restored> {
        let database = &self.session.database;
        let at = Some(thread);
        match database.thread(thread).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(ConductorError::refused("restoring", at, "no such thread")),
            Err(error) => return Err(ConductorError::new("restoring", at, format!("{error:#}"))),
        }
        let gate = self
            .gate_for(person)
            .map_err(|error| ConductorError::new("restoring", at, format!("{error:#}")))?;
        let Some(gate) = &gate else {
            return Err(ConductorError::refused(
                "restoring",
                at,
                "no cluster is configured: nothing to restore against",
            ));
        };
        let priors = priors_of(database, thread)
            .await
            .map_err(|message| ConductorError::new("restoring", at, message))?;
        let mut restored = Restored {
            hash: String::new(),
            done: Vec::new(),
        };
        if !priors.is_empty() {
            let plan = gate
                .plan_restore(&priors, who)
                .await
                .map_err(|error| ConductorError::new("restoring", at, format!("{error:#}")))?;
            restored.hash.clone_from(&plan.hash);
            if plan.has_writes() {
                self.audit(
                    who,
                    "restore.approved",
                    at,
                    &plan.hash,
                    json!({"plan": plan.to_json(), "interface": self.interface.as_str()}),
                )
                .await;
                let report = gate
                    .restore(&plan, &Approval::by(who).in_thread(thread.to_string()))
                    .await
                    .map_err(|error| ConductorError::new("restoring", at, format!("{error:#}")))?;
                restored.done = report
                    .done
                    .iter()
                    .map(|(object, action)| {
                        format!("{} {object}", format!("{action:?}").to_lowercase())
                    })
                    .collect();
                self.audit(
                    who,
                    "restore.done",
                    at,
                    &plan.hash,
                    json!({"done": restored.done}),
                )
                .await;
            }
        }
        database
            .set_thread_status(thread, ThreadStatus::Restored)
            .await
            .map_err(|error| ConductorError::new("restoring", at, format!("{error:#}")))?;
        let text = if restored.done.is_empty() {
            "Restored: every object was already as it was before this thread.".to_owned()
        } else {
            format!(
                "Restored what this thread changed:\n{}",
                restored
                    .done
                    .iter()
                    .map(|line| format!("- {line}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        };
        let _ = self
            .say(Message::new(thread, MessageRole::System, "deckhand", text))
            .await;
        self.events
            .emit(
                thread,
                ThreadEventKind::Restore,
                json!({"thread_id": thread, "restored": restored.done, "failed": [], "hash": restored.hash}),
            )
            .await;
        Ok(restored)
    }

    /// Rates `thread` for `who` (100 closes it); the rating also ranks the thread's
    /// knowledge entry in the same transaction, and is announced.
    ///
    /// # Errors
    /// The score is above 100 or the thread is unknown (not retryable), or the store fails.
    pub async fn rate(
        &self,
        thread: ThreadId,
        who: &str,
        score: u8,
        comment: &str,
    ) -> Result<Thread> {
        let at = Some(thread);
        let rating = Rating::new(thread, i64::from(score), comment, who)
            .map_err(|error| ConductorError::refused("rating", at, error.to_string()))?;
        let database = &self.session.database;
        database.rate_thread(&rating).await.map_err(|error| {
            let message = format!("{error:#}");
            if message.contains("not found") {
                ConductorError::refused("rating", at, message)
            } else {
                ConductorError::new("rating", at, message)
            }
        })?;
        self.events
            .emit(
                thread,
                ThreadEventKind::Rating,
                json!({"rating": score, "comment": comment, "by": who}),
            )
            .await;
        if let (Some(landing), true) = (&self.landing, rating.closes_thread()) {
            let (title, summary) = match database.thread(thread).await {
                Ok(Some(stored)) => {
                    let summary = match database.knowledge_of_thread(thread).await {
                        Ok(entries) => entries
                            .first()
                            .map(|entry| entry.response.clone())
                            .unwrap_or_default(),
                        Err(_) => String::new(),
                    };
                    (stored.title, summary)
                }
                _ => (thread.to_string(), String::new()),
            };
            let lines = landing.resolved(thread, &title, &summary).await;
            self.tell(thread, lines).await;
        }
        database
            .thread(thread)
            .await
            .map_err(|error| ConductorError::new("rating", at, format!("{error:#}")))?
            .ok_or_else(|| ConductorError::refused("rating", at, "no such thread"))
    }

    /// Keeps what a finished plan found or did as the thread's knowledge entry (one per
    /// thread, replaced as the thread goes on), so later threads can reuse it once the
    /// person rates it well.
    async fn remember(&self, plan: &Plan, report: &str, outcome: &PlanOutcome) {
        let database = &self.session.database;
        let existing = database.knowledge_of_thread(plan.thread_id).await;
        let mut entry = match existing {
            Ok(mut entries) if !entries.is_empty() => entries.swap_remove(0),
            Ok(_) => KnowledgeEntry::new(plan.thread_id, &self.cluster_id, &plan.request, report),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "cannot read the thread's knowledge entry");
                return;
            }
        };
        if let Ok(ratings) = database.ratings(plan.thread_id).await {
            entry.rating = ratings.last().map(|rating| rating.score);
        }
        entry.request.clone_from(&plan.request);
        entry.response = report.to_owned();
        entry.resolution_summary = first_sentences(report, 2);
        entry.resolution_steps = plan
            .steps
            .iter()
            .map(|step| {
                let state = outcome
                    .steps
                    .iter()
                    .find(|(id, _)| id == &step.id)
                    .map_or("pending", |(_, state)| state.as_str());
                format!("{} ({}, {state})", step.title, step.tool)
            })
            .collect();
        entry.tags = plan
            .steps
            .iter()
            .map(|step| step.tool.clone())
            .chain(plan.steps.iter().map(|step| step.agent.id().to_owned()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        entry.keywords = plan
            .steps
            .iter()
            .flat_map(|step| {
                ["namespace", "name", "kind"]
                    .iter()
                    .filter_map(|field| step.input.get(*field).and_then(|value| value.as_str()))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if let Err(error) = database.upsert_knowledge_entry(&entry).await {
            tracing::warn!(error = %format!("{error:#}"), "cannot store the thread's knowledge entry");
            return;
        }
        // The entry is found by its words already; its vector lets a paraphrase find it.
        if let Some(vector) = self.embedding_of(&knowledge_text(&entry)).await {
            if let Err(error) = database.upsert_knowledge_embedding(entry.id, &vector).await {
                tracing::warn!(error = %format!("{error:#}"), "cannot store the knowledge entry's embedding");
            }
        }
    }

    /// `text`'s embedding when a model is configured and answers; `None` (logged) keeps
    /// knowledge search to full text.
    async fn embedding_of(&self, text: &str) -> Option<deckhand_store::Embedding> {
        let embedder = self.embedder.as_ref()?;
        match crate::knowledge::embed(embedder, text).await {
            Ok(vector) => Some(vector),
            Err(error) => {
                tracing::warn!(model = embedder.model(), %error, "embedding model unavailable; knowledge search by full text only");
                None
            }
        }
    }

    /// The thread's messages, oldest first.
    ///
    /// # Errors
    /// The store fails.
    pub async fn messages(&self, thread: ThreadId) -> Result<Vec<Message>> {
        self.session
            .database
            .messages(thread)
            .await
            .map_err(|error| ConductorError::new("reading", Some(thread), format!("{error:#}")))
    }

    /// Ends the conductor: waits until every audit record is stored, then closes the store.
    pub async fn close(self) {
        self.session.close().await;
    }

    /// Appends an audit record; a failure is logged, not fatal (the action stands).
    async fn audit(
        &self,
        who: &str,
        action: &str,
        thread: Option<ThreadId>,
        subject: &str,
        mut details: serde_json::Value,
    ) {
        if let Some(map) = details.as_object_mut() {
            map.insert("interface".into(), json!(self.interface.as_str()));
        }
        let entry = AuditEntry::new(who, action, thread, subject).with_details(details);
        if let Err(error) = self.session.database.append_audit(entry).await {
            tracing::warn!(action, error = %format!("{error:#}"), "cannot append to the audit log");
        }
    }
}

/// How many similar resolved threads the planner is shown.
const SIMILAR_THREADS: u32 = 3;

/// A knowledge entry as one line for the planner: where it came from and what resolved
/// it.
fn knowledge_summary(entry: &KnowledgeEntry) -> String {
    format!(
        "thread {} on cluster {} (rated {}): asked {:?}; resolved: {}; steps: {}",
        entry.thread_id,
        entry.cluster_id,
        entry
            .rating
            .map_or_else(|| "-".to_owned(), |rating| rating.to_string()),
        entry.request,
        entry.resolution_summary,
        entry.resolution_steps.join("; ")
    )
}

/// Most characters of an entry sent to the embedding model: small local models have
/// short windows (512 tokens for many), and the request and resolution come first.
const MAX_EMBEDDED_CHARS: usize = 2_000;

/// What an entry's vector is made from: the request, the resolution, the steps.
fn knowledge_text(entry: &KnowledgeEntry) -> String {
    let text = format!(
        "{}\n{}\n{}",
        entry.request,
        entry.resolution_summary,
        entry.resolution_steps.join("\n")
    );
    match text.char_indices().nth(MAX_EMBEDDED_CHARS) {
        Some((end, _)) => text[..end].to_owned(),
        None => text,
    }
}

/// The first `count` sentences of `text` (its first lines when it has no full stops).
fn first_sentences(text: &str, count: usize) -> String {
    let mut out = String::new();
    let mut sentences = 0;
    for character in text.chars() {
        out.push(character);
        if matches!(character, '.' | '!' | '?') {
            sentences += 1;
            if sentences == count {
                break;
            }
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A message as its `message` event carries it: the API's `MessageView` (its `seq`
/// counts from 1 within the thread), plus the message's id.
fn message_event(message: &Message, seq: usize) -> serde_json::Value {
    json!({
        "seq": seq,
        "id": message.id,
        "role": match message.role {
            MessageRole::User => "user",
            MessageRole::Assistant | MessageRole::Agent => "agent",
            MessageRole::System => "system",
        },
        "author": message.author,
        "text": message.text,
        "at": message.created_at,
    })
}

/// Stores and announces each step transition of a running plan, until the scheduler's
/// channel closes.
async fn forward_step_events(
    mut receiver: tokio::sync::broadcast::Receiver<PlanEvent>,
    events: EventHub,
    thread: ThreadId,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match receiver.recv().await {
            Ok(PlanEvent {
                plan_id,
                step_id: Some(step_id),
                kind:
                    EventKind::Step {
                        state,
                        attempt,
                        reason,
                    },
                ..
            }) => {
                events
                    .emit(
                        thread,
                        ThreadEventKind::Step,
                        json!({"plan_id": plan_id, "step_id": step_id, "state": state, "attempt": attempt, "reason": reason}),
                    )
                    .await;
            }
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, %thread, "step events were dropped; the step states in the store are complete");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// What Jamie reports on: each step's state, output and error.
fn step_reports(outcome: &PlanOutcome) -> Vec<StepReport> {
    outcome
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
            error: outcome
                .failures
                .iter()
                .find(|(failed, _)| failed == id)
                .map(|(_, why)| why.clone()),
        })
        .collect()
}
