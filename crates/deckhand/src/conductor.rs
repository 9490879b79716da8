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
use crate::executor::ToolExecutor;
use crate::journal::priors_of;
use deckhand_agents::jamie::{StepReport, StepStatus};
use deckhand_agents::{Jamie, Scarlet};
use deckhand_llm::Router;
use deckhand_runtime::approval::{ApprovalRecord, Interface};
use deckhand_runtime::audit::{AuditEntry, AuditLog};
use deckhand_runtime::scheduler::{PlanOutcome, PlanState};
use deckhand_runtime::store::{ConversationStore, ThreadStore};
use deckhand_runtime::{
    Approvals, Message, MessageRole, Plan, PlanRequest, PlanStore, Planner, Scheduler,
    SchedulerConfig, StepState, Thread, ThreadId, ThreadStatus, ToolCatalog,
};
use deckhand_tools::cluster::{cluster_tool_specs, Approval};
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
}

impl Conductor {
    /// Opens the store, the tools, the cluster (from KUBECONFIG or the in-cluster
    /// config) and the model router of `config`, for requests coming through `interface`.
    ///
    /// # Errors
    /// The store, the tools or the `[llm]` configuration cannot be opened.
    pub async fn open(config: &Config, interface: Interface) -> Result<Self> {
        let session = session::open(config)
            .await
            .map_err(|message| ConductorError::new("opening", None, message))?;
        let mut specs: Vec<deckhand_tools::ToolSpec> = session.registry.specs().cloned().collect();
        if !session.connected {
            specs.extend(cluster_tool_specs());
        }
        let catalog = deckhand_agents::tools::catalog_from_specs(specs.iter());
        let env = |name: &str| std::env::var(name).ok();
        let router = Router::discover(&config.llm, &env).await.map_err(|error| {
            ConductorError::refused(
                "opening",
                None,
                format!("the [llm] configuration is unusable: {error}"),
            )
        })?;
        Ok(Self {
            session,
            router: Arc::new(router),
            catalog,
            workspace: config.workspace.clone(),
            interface,
        })
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
        let database = &self.session.database;
        let thread = Thread::new(DEFAULT_CLUSTER_ID, who, text);
        let thread_id = thread.id;
        let store = |error: deckhand_runtime::Error| {
            ConductorError::new("storing", Some(thread_id), format!("{error:#}"))
        };
        database.create_thread(&thread).await.map_err(store)?;
        database
            .add_message(&Message::new(thread_id, MessageRole::User, who, text))
            .await
            .map_err(store)?;
        self.audit(who, "thread.started", Some(thread_id), text, json!({}))
            .await;
        let request = PlanRequest {
            thread_id,
            text: text.to_owned(),
            namespace,
            history: Vec::new(),
            similar_threads: Vec::new(),
        };
        let plan = Scarlet::new(self.router.clone())
            .plan(&request, &self.catalog)
            .await
            .map_err(|error| {
                ConductorError::refused("planning", Some(thread_id), error.to_string())
            })?;
        database.save_plan(&plan).await.map_err(store)?;
        let explanation = Jamie::new(self.router.clone())
            .explain_plan(&plan)
            .await
            .text;
        database
            .add_message(&Message::new(
                thread_id,
                MessageRole::Assistant,
                "jamie",
                explanation.clone(),
            ))
            .await
            .map_err(store)?;
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
        self.execute(plan, &Approvals::new(plan), who, true).await
    }

    /// Approves `plan` by `hash` for `who` (recorded with this conductor's interface and
    /// audited), then runs it and stores Jamie's report.
    ///
    /// # Errors
    /// The hash is not the plan's, the plan names tools that cannot run here (both not
    /// retryable), or the scheduler or the store fails.
    pub async fn approve_and_run(&self, plan: &Plan, hash: &str, who: &str) -> Result<Ran> {
        let thread = Some(plan.thread_id);
        plan.check_approval(hash)
            .map_err(|error| ConductorError::refused("approving", thread, error.to_string()))?;
        let runnable = deckhand_agents::tools::catalog(&self.session.registry);
        plan.validate(&runnable)
            .map_err(|error| ConductorError::refused("approving", thread, error.to_string()))?;
        let approvals = Approvals::new(plan);
        approvals
            .approve_plan(plan, hash, who)
            .map_err(|error| ConductorError::refused("approving", thread, error.to_string()))?;
        let database = &self.session.database;
        database
            .record_approval(&ApprovalRecord::of_plan(
                plan.thread_id,
                plan.id,
                hash,
                who,
                self.interface,
            ))
            .await
            .map_err(|error| ConductorError::new("approving", thread, format!("{error:#}")))?;
        let _ = database
            .add_message(&Message::new(
                plan.thread_id,
                MessageRole::System,
                "deckhand",
                format!(
                    "{who} approved plan {hash} through the {}",
                    self.interface.as_str()
                ),
            ))
            .await;
        // `record_approval` audits `plan.approved` in the same transaction.
        self.execute(plan, &approvals, who, false).await
    }

    async fn execute(
        &self,
        plan: &Plan,
        approvals: &Approvals,
        who: &str,
        stop_at_approval: bool,
    ) -> Result<Ran> {
        let thread = Some(plan.thread_id);
        let scheduler = Scheduler::new(
            Arc::new(ToolExecutor::new(
                self.session.registry.clone(),
                self.workspace.clone(),
                who,
            )),
            Arc::new(self.session.database.clone()),
            SchedulerConfig {
                stop_at_approval,
                ..SchedulerConfig::default()
            },
        );
        let outcome = scheduler
            .run(plan, approvals, &CancellationToken::new())
            .await
            .map_err(|error| ConductorError::new("running", thread, format!("{error:#}")))?;
        drop(scheduler);
        let report = Jamie::new(self.router.clone())
            .report(plan, &step_reports(&outcome))
            .await
            .text;
        let _ = self
            .session
            .database
            .add_message(&Message::new(
                plan.thread_id,
                MessageRole::Assistant,
                "jamie",
                report.clone(),
            ))
            .await;
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
        let database = &self.session.database;
        let at = Some(thread);
        match database.thread(thread).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(ConductorError::refused("restoring", at, "no such thread")),
            Err(error) => return Err(ConductorError::new("restoring", at, format!("{error:#}"))),
        }
        let Some(gate) = &self.session.gate else {
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
        let _ = database
            .add_message(&Message::new(thread, MessageRole::System, "deckhand", text))
            .await;
        Ok(restored)
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
