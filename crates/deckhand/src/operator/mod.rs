//! `deckhand operator`: the controller of `AIRequest` objects, behind leader election.
//!
//! A new request is planned in a new thread (through the [`Conductor`]) and its status
//! written through the status subresource: the phase (`AwaitingApproval` for a plan that
//! changes the cluster, `Succeeded` for one that only reads), the plan and its hash, the
//! thread id and Jamie's explanation. Setting `spec.approve` to the plan's hash runs it
//! (`Running`, then `Succeeded` or `Failed` with Jamie's report); any other hash is refused
//! with a condition and an Event. Setting `spec.restore: true` once the request has run
//! puts back what it changed (`Restored`). The thread's messages are mirrored into an
//! `AIConversation` of the same name, owned by the request.
//!
//! Each reconcile reads the request afresh from the API server (not the watch cache) and
//! acts only on what the status has not observed yet, so a request is never planned or
//! run twice, also after a restart: the thread id in the status links it to the store.
//! A run interrupted by a crash is marked `Failed` rather than run again.
//!
//! # Layout
//! - this file: [`run`], [`Options`], the reconciler and the status it writes.
//! - [`lease`]: [`LeaseLock`], leader election over a `coordination.k8s.io/v1` Lease.
//! - [`identity`]: who asked, approved and restored, as the API server authenticated them.
//! - [`webhook`]: the mutating admission webhook that records those people.

pub mod identity;
pub mod lease;
pub mod webhook;

use crate::conductor::{Conductor, ConductorError, DEFAULT_CLUSTER_ID};
use crate::config::Config;
use deckhand_crds::{
    set_condition, AIConversation, AIConversationSpec, AIRequest, AIRequestStatus, Approval,
    Condition, ConditionStatus, ConversationMessage, MessageRole, Phase, StoreRef,
};
use deckhand_runtime::scheduler::PlanState;
use deckhand_runtime::{Interface, ThreadId};
use deckhand_tools::cluster::Person;
use futures_util::StreamExt;
pub use identity::IdentitySource;
use identity::{attested, Attestation, APPROVED_BY, REQUESTED_BY, RESTORE_REQUESTED_BY};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
pub use lease::LeaseLock;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
pub use webhook::WebhookOptions;

/// The field manager of the operator's server-side applies, and the Events' reporter.
pub const FIELD_MANAGER: &str = "deckhand-operator";
/// The Lease of the leader election (the RBAC in `k8s/base` allows only this one).
pub const DEFAULT_LEASE_NAME: &str = "deckhand-operator";
/// The namespace of the Lease.
pub const DEFAULT_LEASE_NAMESPACE: &str = "deckhand";
/// How long a leader holds the Lease without renewing it: the longest a crashed leader
/// keeps the others waiting. It renews every third of that.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// The first wait before a failed reconcile is tried again; it doubles per failure in a
/// row, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest wait between tries of a failing reconcile.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long in-flight reconciles may take to finish when leadership ends.
const DRAIN: Duration = Duration::from_secs(60);
/// The longest summary an `AIConversation` may carry (its schema's limit).
const MAX_SUMMARY_CHARS: usize = 65_536;

/// What the operator watches and how it contends for leadership.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only requests in this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// The Lease's namespace.
    pub lease_namespace: String,
    /// The Lease's name.
    pub lease_name: String,
    /// This replica's identity in the Lease (the pod's name in a cluster).
    pub identity: String,
    /// How long the Lease holds without renewal.
    pub lease_duration: Duration,
    /// Whose name a request runs under: `spec.user` as written, or only what the
    /// admission webhook recorded.
    pub identity_source: IdentitySource,
    /// Serve the admission webhook (every replica, leader or not).
    pub webhook: Option<WebhookOptions>,
}

impl Options {
    /// The defaults, with `identity` as this replica's name.
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            namespace: None,
            lease_namespace: DEFAULT_LEASE_NAMESPACE.to_owned(),
            lease_name: DEFAULT_LEASE_NAME.to_owned(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            identity_source: IdentitySource::Declared,
            webhook: None,
        }
    }
}

/// Why the operator stopped, or why one reconcile failed (tried again with backoff).
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// deckhand could not start (store, tools, model configuration).
    #[error("deckhand cannot start: {0}")]
    Start(#[source] ConductorError),
    /// There is no usable Kubernetes configuration.
    #[error("no Kubernetes configuration (KUBECONFIG or the in-cluster config)")]
    NoCluster(#[source] kube::Error),
    /// A call to the API server failed.
    #[error("the API server refused or could not be reached while {action}")]
    Kube {
        /// What the operator was doing.
        action: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The conductor could not carry the request further for now.
    #[error(transparent)]
    Conductor(#[from] ConductorError),
    /// The object has no namespace (AIRequests are namespaced).
    #[error("the AIRequest {0} has no namespace")]
    NoNamespace(String),
    /// The admission webhook cannot serve.
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookError),
}

fn kube_error(action: &'static str) -> impl FnOnce(kube::Error) -> OperatorError {
    move |source| OperatorError::Kube { action, source }
}

/// What every reconcile shares.
struct Context {
    client: kube::Client,
    conductor: Conductor,
    recorder: Recorder,
    /// Failures in a row per request (`namespace/name`), for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    identity_source: IdentitySource,
}

/// Runs the operator until `shutdown` completes: contends for the Lease and, while it
/// holds it, reconciles AIRequests; on shutdown it lets in-flight reconciles finish and
/// hands the Lease over.
///
/// # Errors
/// deckhand cannot start, there is no Kubernetes configuration, or the Lease cannot be
/// reached for longer than it holds.
pub async fn run(
    config: &Config,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    let stop = CancellationToken::new();
    // Whatever way this returns, the webhook stops with it.
    let _stop_on_return = stop.clone().drop_guard();
    // The webhook first: a bad certificate stops the operator before it plans anything,
    // and admission works while replicas wait for the Lease.
    let webhook = match options.webhook.clone() {
        Some(webhook_options) => {
            let webhook = webhook::Webhook::bind(webhook_options).await?;
            Some(tokio::spawn(webhook.serve(stop.clone())))
        }
        None => None,
    };
    let client = kube::Client::try_default()
        .await
        .map_err(OperatorError::NoCluster)?;
    let conductor = Conductor::open(config, Interface::Operator)
        .await
        .map_err(OperatorError::Start)?;
    let lock = LeaseLock::new(
        client.clone(),
        &options.lease_namespace,
        options.lease_name.clone(),
        options.identity.clone(),
        options.lease_duration,
    );
    let context = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_owned(),
                instance: Some(options.identity.clone()),
            },
        ),
        client,
        conductor,
        failures: Mutex::new(HashMap::new()),
        identity_source: options.identity_source,
    });
    let stopping = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.cancel();
    });
    let result = lead(&lock, &options, &context, &stop).await;
    stop.cancel();
    if let Some(webhook) = webhook {
        let _ = webhook.await;
    }
    if let Ok(context) = Arc::try_unwrap(context) {
        context.conductor.close().await;
    }
    result
}

/// Alternates between waiting for the Lease and reconciling while holding it.
async fn lead(
    lock: &LeaseLock,
    options: &Options,
    context: &Arc<Context>,
    stop: &CancellationToken,
) -> Result<(), OperatorError> {
    let renew_every = (lock.duration() / 3).max(Duration::from_millis(500));
    loop {
        // Wait to become the leader.
        loop {
            match lock.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(error) => tracing::warn!(error = %error, "cannot reach the Lease"),
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(renew_every) => {}
            }
        }
        tracing::info!(
            identity = lock.identity(),
            "leading: reconciling AIRequests"
        );
        let leadership = CancellationToken::new();
        let controller = tokio::spawn(reconcile_all(
            context.clone(),
            options.namespace.clone(),
            leadership.clone(),
        ));
        let mut renewed = tokio::time::Instant::now();
        let lost = loop {
            tokio::select! {
                () = stop.cancelled() => break false,
                () = tokio::time::sleep(renew_every) => {}
            }
            match lock.try_acquire_or_renew().await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => break true,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot renew the Lease");
                    // Stop before the Lease can expire under us.
                    if renewed.elapsed() + renew_every >= lock.duration() {
                        break true;
                    }
                }
            }
        };
        leadership.cancel();
        if tokio::time::timeout(DRAIN, controller).await.is_err() {
            tracing::warn!("reconciles still running after {DRAIN:?}; leaving them");
        }
        if lost {
            tracing::warn!(
                identity = lock.identity(),
                "lost the Lease: no longer leading"
            );
            continue;
        }
        if let Err(error) = lock.release().await {
            tracing::warn!(error = %error, "cannot hand the Lease over; it expires instead");
        }
        tracing::info!(identity = lock.identity(), "handed the Lease over");
        return Ok(());
    }
}

/// The Controller over AIRequests, until `leadership` is cancelled.
async fn reconcile_all(
    context: Arc<Context>,
    namespace: Option<String>,
    leadership: CancellationToken,
) {
    let requests: Api<AIRequest> = match &namespace {
        Some(namespace) => Api::namespaced(context.client.clone(), namespace),
        None => Api::all(context.client.clone()),
    };
    Controller::new(requests, watcher::Config::default())
        .graceful_shutdown_on(async move { leadership.cancelled().await })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::warn!(error = %error, "reconcile failed");
            }
        })
        .await;
}

fn key(request: &AIRequest) -> String {
    format!(
        "{}/{}",
        request.namespace().unwrap_or_default(),
        request.name_any()
    )
}

/// Tries again after a failure, doubling the wait per failure in a row.
fn error_policy(request: Arc<AIRequest>, error: &OperatorError, context: Arc<Context>) -> Action {
    let failures = {
        let mut failures = context
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = failures.entry(key(&request)).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let wait = FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(MAX_BACKOFF);
    tracing::warn!(request = %key(&request), error = %error, retry_in = ?wait, "reconcile failed");
    let note = format!("{error}; trying again in {}s", wait.as_secs());
    tokio::spawn(async move {
        publish(
            &context,
            &request,
            EventType::Warning,
            "ReconcileFailed",
            note,
        )
        .await;
    });
    Action::requeue(wait)
}

async fn publish(
    context: &Context,
    request: &AIRequest,
    type_: EventType,
    reason: &str,
    note: impl Into<String>,
) {
    let mut note: String = note.into();
    // Events carry at most 1 kB of note.
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: reason.to_owned(),
        secondary: None,
    };
    if let Err(error) = context
        .recorder
        .publish(&event, &request.object_ref(&()))
        .await
    {
        tracing::warn!(error = %error, "cannot publish an Event");
    }
}

fn condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.into(),
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
        observed_generation: generation,
    }
}

/// One request's reconcile: reads it afresh and does the next thing it asks for.
async fn reconcile(
    request: Arc<AIRequest>,
    context: Arc<Context>,
) -> Result<Action, OperatorError> {
    let namespace = request
        .namespace()
        .ok_or_else(|| OperatorError::NoNamespace(request.name_any()))?;
    let name = request.name_any();
    let span = tracing::info_span!("reconcile", request = %format!("{namespace}/{name}"));
    reconcile_in(namespace, name, context)
        .instrument(span)
        .await
}

async fn reconcile_in(
    namespace: String,
    name: String,
    context: Arc<Context>,
) -> Result<Action, OperatorError> {
    let api: Api<AIRequest> = Api::namespaced(context.client.clone(), &namespace);
    // The watch cache may lag behind the status this operator just wrote: acting on it
    // could plan or run a request twice.
    let Some(request) = api
        .get_opt(&name)
        .await
        .map_err(kube_error("reading the AIRequest"))?
    else {
        return Ok(Action::await_change());
    };
    let step = Step {
        context: &context,
        api: &api,
        request: &request,
    };
    let action = step.next().await?;
    context
        .failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&key(&request));
    Ok(action)
}

/// One reconcile of one request.
struct Step<'a> {
    context: &'a Context,
    api: &'a Api<AIRequest>,
    request: &'a AIRequest,
}

impl Step<'_> {
    fn generation(&self) -> Option<i64> {
        self.request.metadata.generation
    }

    fn who(&self) -> &str {
        &self.request.spec.user
    }

    /// The webhook's record under `key` when the operator takes identities from it
    /// (`Ok(None)` when it takes `spec.user` as written); `Err` says why there is none.
    fn attestation(&self, key: &str) -> Result<Option<Attestation>, String> {
        match self.context.identity_source {
            IdentitySource::Declared => Ok(None),
            IdentitySource::Attested => attested(self.request, key).map(Some).ok_or_else(|| {
                format!(
                    "no {key} record from deckhand's admission webhook (was it installed when this was written?): this operator acts only for people the API server authenticated (--identity attested)"
                )
            }),
        }
    }

    /// Who to name in the thread for a record (its user, else `spec.user`), and whom
    /// cluster calls act as (the recorded person; deckhand itself without a record).
    fn acting(&self, attestation: Option<&Attestation>) -> (String, Option<Person>) {
        match attestation {
            Some(attestation) => (attestation.user.clone(), Some(attestation.person())),
            None => (self.who().to_owned(), None),
        }
    }

    async fn next(&self) -> Result<Action, OperatorError> {
        let status = self.request.status.clone().unwrap_or_default();
        let thread = status
            .thread_id
            .as_deref()
            .and_then(|id| id.parse::<ThreadId>().ok());
        let phase = self.request.phase();
        let Some(thread) = thread else {
            if phase == Phase::Failed && status.observed_generation == self.generation() {
                // Planning failed for this generation and said why; a changed spec
                // tries again.
                return Ok(Action::await_change());
            }
            return self.plan(status).await;
        };
        if self.request.spec.restore == Some(true)
            && matches!(phase, Phase::Succeeded | Phase::Failed)
        {
            return self.restore(status, thread).await;
        }
        match phase {
            Phase::AwaitingApproval => match self.request.approval() {
                Approval::Matches { hash } => {
                    let hash = hash.to_owned();
                    self.run(status, thread, &hash).await
                }
                Approval::Stale { approved, planned } => {
                    let message = format!(
                        "spec.approve names {approved}, but the plan is {planned}: nothing was run; review the plan in the status and approve its hash"
                    );
                    self.refuse(status, "Approved", "StaleHash", &message).await
                }
                Approval::NotGiven | Approval::NoPlan { .. } => self.observe(status).await,
            },
            Phase::Running => {
                // This replica did not start that run (a reconcile finishes its run
                // before the next one starts): its process ended mid-run. Running it
                // again could change the cluster twice.
                let mut status = status;
                status.phase = Some(Phase::Failed);
                set_condition(
                    &mut status.conditions,
                    condition(
                        "Succeeded",
                        ConditionStatus::False,
                        "Interrupted",
                        "the operator stopped while the plan ran; see the thread for what was done, restore it or make a new request",
                        self.generation(),
                    ),
                );
                status.observed_generation = self.generation();
                self.write(&status).await?;
                self.publish(EventType::Warning, "Interrupted", "the run was interrupted")
                    .await;
                self.mirror(thread).await;
                Ok(Action::await_change())
            }
            _ => self.observe(status).await,
        }
    }

    async fn write(&self, status: &AIRequestStatus) -> Result<(), OperatorError> {
        self.api
            .patch_status(
                &self.request.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(status.apply_body()),
            )
            .await
            .map_err(kube_error("writing the AIRequest's status"))?;
        Ok(())
    }

    async fn publish(&self, type_: EventType, reason: &str, note: impl Into<String>) {
        publish(self.context, self.request, type_, reason, note).await;
    }

    /// Records that the current generation was seen, when it was not yet.
    async fn observe(&self, mut status: AIRequestStatus) -> Result<Action, OperatorError> {
        if status.observed_generation != self.generation() {
            status.observed_generation = self.generation();
            self.write(&status).await?;
        }
        Ok(Action::await_change())
    }

    /// A failure the person has to act on: the phase becomes `Failed` (for planning) and a
    /// condition and an Event say why.
    async fn fail(
        &self,
        mut status: AIRequestStatus,
        type_: &str,
        reason: &str,
        error: &ConductorError,
    ) -> Result<Action, OperatorError> {
        status.phase = Some(Phase::Failed);
        set_condition(
            &mut status.conditions,
            condition(
                type_,
                ConditionStatus::False,
                reason,
                error.to_string(),
                self.generation(),
            ),
        );
        status.observed_generation = self.generation();
        self.write(&status).await?;
        self.publish(EventType::Warning, reason, error.to_string())
            .await;
        Ok(Action::await_change())
    }

    async fn plan(&self, mut status: AIRequestStatus) -> Result<Action, OperatorError> {
        let spec = &self.request.spec;
        let text = match &spec.context {
            Some(context) if !context.trim().is_empty() => {
                format!("{}\n\n{context}", spec.request_text)
            }
            _ => spec.request_text.clone(),
        };
        let requester = match self.attestation(REQUESTED_BY) {
            Ok(requester) => requester,
            Err(message) => {
                let error = ConductorError {
                    stage: "planning",
                    thread: None,
                    message,
                    retryable: false,
                };
                return self
                    .fail(status, "Planned", "NoAttestedIdentity", &error)
                    .await;
            }
        };
        let (who, person) = self.acting(requester.as_ref());
        let conductor = &self.context.conductor;
        let planned = match conductor
            .start(&who, &text, Some(spec.namespace.clone()))
            .await
        {
            Ok(planned) => planned,
            Err(error) if !error.retryable => {
                return self.fail(status, "Planned", "PlanningFailed", &error).await
            }
            Err(error) => return Err(error.into()),
        };
        status.thread_id = Some(planned.thread_id.to_string());
        status.plan = serde_json::to_value(&planned.plan).ok();
        status.plan_hash = Some(planned.plan.hash.clone());
        status.response = Some(planned.explanation.clone());
        status.observed_generation = self.generation();
        set_condition(
            &mut status.conditions,
            condition(
                "Planned",
                ConditionStatus::True,
                "Planned",
                format!(
                    "plan {} with {} steps",
                    planned.plan.hash,
                    planned.plan.steps.len()
                ),
                self.generation(),
            ),
        );
        if let Some(person) = &person {
            // Tell the person now what they may not do, not when the run fails.
            let missing = conductor.review_access(&planned.plan, person).await;
            if !missing.is_empty() {
                let message = missing
                    .iter()
                    .map(|(step, permission)| format!("{step}: {permission}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                set_condition(
                    &mut status.conditions,
                    condition(
                        "Permitted",
                        ConditionStatus::False,
                        "MissingPermissions",
                        format!("{who} lacks: {message}"),
                        self.generation(),
                    ),
                );
            }
        }
        if planned.plan.is_mutating() {
            status.phase = Some(Phase::AwaitingApproval);
            set_condition(
                &mut status.conditions,
                condition(
                    "Approved",
                    ConditionStatus::False,
                    "AwaitingApproval",
                    format!(
                        "the plan changes the cluster: set spec.approve to {} to run it",
                        planned.plan.hash
                    ),
                    self.generation(),
                ),
            );
            self.write(&status).await?;
            self.publish(
                EventType::Normal,
                "AwaitingApproval",
                format!("planned; approve {} to run it", planned.plan.hash),
            )
            .await;
            self.mirror(planned.thread_id).await;
            return Ok(Action::await_change());
        }
        // A plan that only reads runs at once; the answer is Jamie's report.
        status.phase = Some(Phase::Planned);
        self.write(&status).await?;
        let ran = conductor
            .run_reads_acting(
                &planned.plan,
                &who,
                person.as_ref(),
                &CancellationToken::new(),
            )
            .await;
        self.finish(status, planned.thread_id, ran).await
    }

    /// What the person asked for cannot be done: condition `type_` false with `reason`,
    /// and a Warning Event, once per generation; the phase stays.
    async fn refuse(
        &self,
        mut status: AIRequestStatus,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Result<Action, OperatorError> {
        if status.observed_generation == self.generation() {
            // Refused already for this generation.
            return Ok(Action::await_change());
        }
        set_condition(
            &mut status.conditions,
            condition(
                type_,
                ConditionStatus::False,
                reason,
                message,
                self.generation(),
            ),
        );
        status.observed_generation = self.generation();
        self.write(&status).await?;
        self.publish(EventType::Warning, reason, message).await;
        Ok(Action::await_change())
    }

    async fn run(
        &self,
        mut status: AIRequestStatus,
        thread: ThreadId,
        hash: &str,
    ) -> Result<Action, OperatorError> {
        let approver = match self.attestation(APPROVED_BY) {
            Ok(approver) => approver,
            Err(message) => {
                return self
                    .refuse(status, "Approved", "NoAttestedIdentity", &message)
                    .await
            }
        };
        if let Some(approver) = &approver {
            if approver.value_text().as_deref() != Some(hash) {
                let message = format!(
                    "the {APPROVED_BY} record is for {}, not {hash}: remove spec.approve and set it again",
                    approver.value_text().unwrap_or_default()
                );
                return self
                    .refuse(status, "Approved", "NoAttestedIdentity", &message)
                    .await;
            }
        }
        let (who, person) = self.acting(approver.as_ref());
        let conductor = &self.context.conductor;
        let plan = match conductor.plan_of(thread).await? {
            Some(plan) if plan.hash == hash => plan,
            _ => {
                let error = ConductorError {
                    stage: "approving",
                    thread: Some(thread),
                    message: format!("the store has no plan {hash} in thread {thread}"),
                    retryable: false,
                };
                return self.fail(status, "Approved", "PlanNotFound", &error).await;
            }
        };
        status.phase = Some(Phase::Running);
        status.observed_generation = self.generation();
        set_condition(
            &mut status.conditions,
            condition(
                "Approved",
                ConditionStatus::True,
                "Approved",
                format!("{hash} approved by {who}; running"),
                self.generation(),
            ),
        );
        self.write(&status).await?;
        self.publish(
            EventType::Normal,
            "Running",
            format!("running the plan {hash} approved by {who}"),
        )
        .await;
        let ran = match conductor
            .approve(&plan, hash, &who, None, Interface::Operator)
            .await
        {
            Ok(()) => {
                conductor
                    .run_acting(&plan, &who, person.as_ref(), &CancellationToken::new())
                    .await
            }
            Err(error) => Err(error),
        };
        self.finish(status, thread, ran).await
    }

    /// Writes how a run ended.
    async fn finish(
        &self,
        mut status: AIRequestStatus,
        thread: ThreadId,
        ran: Result<crate::conductor::Ran, ConductorError>,
    ) -> Result<Action, OperatorError> {
        let ran = match ran {
            Ok(ran) => ran,
            Err(error) => {
                // A run that could not finish is not tried again: it may have changed
                // part of the cluster already.
                self.mirror(thread).await;
                return self.fail(status, "Succeeded", "RunFailed", &error).await;
            }
        };
        let succeeded = ran.state == PlanState::Succeeded;
        status.phase = Some(if succeeded {
            Phase::Succeeded
        } else {
            Phase::Failed
        });
        status.response = Some(ran.report.clone());
        status.observed_generation = self.generation();
        let message = if succeeded {
            "every step succeeded".to_owned()
        } else {
            ran.failures
                .iter()
                .map(|(step, why)| format!("{step}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let message = if message.is_empty() {
            format!("the plan ended {:?}", ran.state)
        } else {
            message
        };
        set_condition(
            &mut status.conditions,
            condition(
                "Succeeded",
                if succeeded {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                },
                if succeeded { "Succeeded" } else { "StepFailed" },
                message.clone(),
                self.generation(),
            ),
        );
        self.write(&status).await?;
        if succeeded {
            self.publish(EventType::Normal, "Succeeded", message).await;
        } else {
            self.publish(EventType::Warning, "StepFailed", message)
                .await;
        }
        self.mirror(thread).await;
        Ok(Action::await_change())
    }

    async fn restore(
        &self,
        mut status: AIRequestStatus,
        thread: ThreadId,
    ) -> Result<Action, OperatorError> {
        let restorer = match self.attestation(RESTORE_REQUESTED_BY) {
            Ok(restorer) => restorer,
            Err(message) => {
                return self
                    .refuse(status, "Restored", "RestoreRefused", &message)
                    .await
            }
        };
        let (who, person) = self.acting(restorer.as_ref());
        match self
            .context
            .conductor
            .restore_acting(thread, &who, person.as_ref())
            .await
        {
            Ok(restored) => {
                status.phase = Some(Phase::Restored);
                status.observed_generation = self.generation();
                let message = if restored.done.is_empty() {
                    "nothing to put back: every object was as before".to_owned()
                } else {
                    restored.done.join("; ")
                };
                set_condition(
                    &mut status.conditions,
                    condition(
                        "Restored",
                        ConditionStatus::True,
                        "Restored",
                        message.clone(),
                        self.generation(),
                    ),
                );
                self.write(&status).await?;
                self.publish(EventType::Normal, "Restored", message).await;
                self.mirror(thread).await;
                Ok(Action::await_change())
            }
            Err(error) if !error.retryable => {
                self.refuse(status, "Restored", "RestoreRefused", &error.to_string())
                    .await
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Mirrors the thread's messages into the `AIConversation` of the request's name;
    /// a failure is logged and reported as an Event, never fatal.
    async fn mirror(&self, thread: ThreadId) {
        if let Err(error) = self.try_mirror(thread).await {
            tracing::warn!(error = %error, "cannot mirror the conversation");
            self.publish(
                EventType::Warning,
                "ConversationNotMirrored",
                error.to_string(),
            )
            .await;
        }
    }

    async fn try_mirror(&self, thread: ThreadId) -> Result<(), OperatorError> {
        let messages = self.context.conductor.messages(thread).await?;
        let count = u32::try_from(messages.len()).unwrap_or(u32::MAX);
        let messages: Vec<ConversationMessage> = messages
            .into_iter()
            .map(|message| ConversationMessage {
                role: match message.role {
                    deckhand_runtime::MessageRole::User => MessageRole::User,
                    deckhand_runtime::MessageRole::Assistant
                    | deckhand_runtime::MessageRole::Agent => MessageRole::Assistant,
                    deckhand_runtime::MessageRole::System => MessageRole::System,
                },
                author: if message.author.is_empty() {
                    "deckhand".to_owned()
                } else {
                    message.author
                },
                text: message.text,
                at: Time(
                    k8s_openapi::jiff::Timestamp::from_microsecond(
                        message.created_at.timestamp_micros(),
                    )
                    .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now()),
                ),
            })
            .collect();
        let mut spec = AIConversationSpec::fitting(
            thread.to_string(),
            messages,
            summarize,
            StoreRef {
                cluster_id: DEFAULT_CLUSTER_ID.to_owned(),
                message_count: count,
                url: None,
            },
        );
        let name = self.request.name_any();
        spec.request = Some(name.clone());
        let mut conversation = AIConversation::new(&name, spec);
        conversation.metadata.owner_references = self
            .request
            .controller_owner_ref(&())
            .map(|owner| vec![owner]);
        let namespace = self.request.namespace().unwrap_or_default();
        let api: Api<AIConversation> = Api::namespaced(self.context.client.clone(), &namespace);
        let body = serde_json::to_value(&conversation).map_err(|error| {
            OperatorError::Conductor(ConductorError {
                stage: "mirroring",
                thread: Some(thread),
                message: error.to_string(),
                retryable: false,
            })
        })?;
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map_err(kube_error("writing the AIConversation"))?;
        Ok(())
    }
}

/// The summary of a thread too large to keep inline: its first request and last answer.
fn summarize(messages: &[ConversationMessage]) -> String {
    let first = messages.first().map_or("", |message| message.text.as_str());
    let last = messages.last().map_or("", |message| message.text.as_str());
    let mut summary = format!(
        "{} messages. Asked: {first}\n\nLast: {last}",
        messages.len()
    );
    if summary.chars().count() > MAX_SUMMARY_CHARS {
        summary = summary.chars().take(MAX_SUMMARY_CHARS - 1).collect();
        summary.push('…');
    }
    summary
}
