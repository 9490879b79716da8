//! An in-memory deckhand for the API's tests: it really keeps threads, messages, plans
//! (validated and hashed by the runtime), approvals, ratings, links, events and the live
//! Deployments its plans scale, and really streams them (stored events, then live ones
//! through a broadcast channel), as the real service does on its store. Previews are
//! real YAML and unified diffs; writes in kube-system are denied as the built-in policy
//! denies them.
//!
//! [`MemoryDeckhand::paced`] makes it behave like a person sees deckhand: agents answer
//! in `token` events a word at a time, and plans run step by step, so a browser test
//! watches them arrive live.
#![allow(dead_code, clippy::unwrap_used)]

use async_trait::async_trait;
use axum::Router;
use chrono::Utc;
use deckhand_api::alertmanager::AlertGroup;
use deckhand_api::auth::hash_token;
use deckhand_api::model::{
    Approval, AuthSource, Identity, KnowledgeHit, KnowledgeQuery, KnowledgeSearchMode, MessageRole,
    MessageView, NewMessage, NewThread, PlanStatus, PlanView, PolicyView, Rating, Rejection,
    RestoreView, Scope, StepPreview, ThreadDetail, ThreadQuery, ThreadSummary, TokenRecord,
    ToolView,
};
use deckhand_api::{
    Api, ApiConfig, AppState, Deckhand, Error, EventStream, Result, ThreadEvent, ThreadEventKind,
    TokenStore,
};
use deckhand_runtime::{
    AgentRole, CatalogEntry, Plan, PlanDraft, PlanId, Step, StepState, Thread, ThreadId,
    ThreadStatus, ToolCatalog,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// The built-in policy's name and reason for a write in kube-system, as the service's
/// previews and step failures give it.
pub const KUBE_SYSTEM_DENIAL: &str =
    "no-kube-system-writes: deckhand does not change anything in kube-system";

/// Replicas of every Deployment before a plan scales it.
const INITIAL_REPLICAS: u64 = 1;

struct ThreadRecord {
    summary: ThreadSummary,
    messages: Vec<MessageView>,
    plans: Vec<(Plan, PlanView)>,
    events: Vec<ThreadEvent>,
    /// Deployments this thread scaled (`namespace/name`) with their replicas before the
    /// thread first changed them: what a restore puts back.
    prior_replicas: BTreeMap<String, u64>,
}

#[derive(Default)]
struct State {
    threads: BTreeMap<ThreadId, ThreadRecord>,
    links: HashMap<String, ThreadId>,
    alert_groups: Vec<AlertGroup>,
    /// The "cluster": replicas of each Deployment (`namespace/name`) a plan scaled.
    replicas: BTreeMap<String, u64>,
}

/// The in-memory service.
pub struct MemoryDeckhand {
    state: Arc<Mutex<State>>,
    live: broadcast::Sender<ThreadEvent>,
    catalog: ToolCatalog,
    namespaces: Vec<String>,
    /// `Some`: answers stream as tokens and plans run a step at a time, this far apart.
    pace: Option<Duration>,
}

/// One step changing state while a plan runs.
struct Transition {
    step: String,
    state: StepState,
    reason: Option<String>,
}

fn catalog() -> ToolCatalog {
    let object = json!({"type": "object"});
    ToolCatalog::new([
        CatalogEntry {
            name: "kube_get".into(),
            description: "read one object".into(),
            input_schema: object.clone(),
            mutating: false,
        },
        CatalogEntry {
            name: "kube_scale".into(),
            description: "scale a workload".into(),
            input_schema: object,
            mutating: true,
        },
    ])
}

impl MemoryDeckhand {
    pub fn new() -> Arc<Self> {
        Self::build(None)
    }

    /// A service whose agents answer a word at a time (`token` events, then the
    /// message) and whose plans run one transition per `pace`, as a person watching
    /// the command center would see them.
    pub fn paced(pace: Duration) -> Arc<Self> {
        Self::build(Some(pace))
    }

    fn build(pace: Option<Duration>) -> Arc<Self> {
        // Room for every event a test makes; a lagging subscriber ends its stream.
        let (live, _) = broadcast::channel(100_000);
        Arc::new(Self {
            state: Arc::new(Mutex::new(State::default())),
            live,
            catalog: catalog(),
            namespaces: vec!["shop".into(), "default".into(), "kube-system".into()],
            pace,
        })
    }

    /// In paced mode, `agent` answers in the thread: the text as `token` events a word
    /// at a time, then the whole message (the stored form).
    fn reply_later(&self, thread: ThreadId, agent: &'static str, text: String) {
        let Some(pace) = self.pace else { return };
        let state = self.state.clone();
        let live = self.live.clone();
        tokio::spawn(async move {
            for piece in text.split_inclusive(' ') {
                tokio::time::sleep(pace).await;
                let mut state = state.lock().unwrap();
                let data = json!({"agent": agent, "text": piece});
                if Self::emit_locked(&mut state, &live, thread, ThreadEventKind::Token, data)
                    .is_err()
                {
                    return;
                }
            }
            tokio::time::sleep(pace).await;
            let mut state = state.lock().unwrap();
            let _ = Self::add_message(&mut state, &live, thread, MessageRole::Agent, agent, &text);
        });
    }

    /// Appends an event to a thread (stored, then announced), as the runtime does.
    pub fn emit(&self, thread: ThreadId, kind: ThreadEventKind, data: Value) -> Result<u64> {
        let mut state = self.state.lock().unwrap();
        Self::emit_locked(&mut state, &self.live, thread, kind, data)
    }

    fn emit_locked(
        state: &mut State,
        live: &broadcast::Sender<ThreadEvent>,
        thread: ThreadId,
        kind: ThreadEventKind,
        data: Value,
    ) -> Result<u64> {
        let record = state
            .threads
            .get_mut(&thread)
            .ok_or_else(|| not_found(thread))?;
        let event = ThreadEvent {
            id: record.events.len() as u64 + 1,
            thread_id: thread,
            at: Utc::now(),
            kind,
            data,
        };
        record.events.push(event.clone());
        // Nobody listening is fine.
        let _ = live.send(event.clone());
        Ok(event.id)
    }

    pub fn alert_groups(&self) -> Vec<AlertGroup> {
        self.state.lock().unwrap().alert_groups.clone()
    }

    fn start(&self, who: &Identity, text: &str, namespace: Option<String>) -> Result<ThreadDetail> {
        let thread = Thread::new(
            "test-cluster",
            &who.subject,
            text.chars().take(60).collect::<String>(),
        );
        let mut summary = ThreadSummary::from_thread(&thread);
        summary.namespace = namespace.clone();
        let namespace = namespace.unwrap_or_else(|| "default".into());
        let draft = PlanDraft {
            steps: vec![
                Step {
                    id: "look".into(),
                    agent: AgentRole::Sre,
                    title: "Read the deployment".into(),
                    tool: "kube_get".into(),
                    input: json!({"kind": "Deployment", "namespace": namespace, "name": "web"}),
                    depends_on: vec![],
                    mutating: false,
                    rationale: "know what is there".into(),
                },
                Step {
                    id: "scale".into(),
                    agent: AgentRole::Jamie,
                    title: "Scale web to 3".into(),
                    tool: "kube_scale".into(),
                    input: json!({"kind": "Deployment", "namespace": namespace, "name": "web", "replicas": 3}),
                    depends_on: vec!["look".into()],
                    mutating: false,
                    rationale: "the request".into(),
                },
            ],
        };
        let plan = Plan::new(thread.id, text, "scarlet/test-rules", draft, &self.catalog)?;
        let view = PlanView::from_plan(&plan);
        let mut state = self.state.lock().unwrap();
        state.threads.insert(
            thread.id,
            ThreadRecord {
                summary,
                messages: Vec::new(),
                plans: vec![(plan, view.clone())],
                events: Vec::new(),
                prior_replicas: BTreeMap::new(),
            },
        );
        Self::add_message(
            &mut state,
            &self.live,
            thread.id,
            MessageRole::User,
            &who.subject,
            text,
        )?;
        Self::emit_locked(
            &mut state,
            &self.live,
            thread.id,
            ThreadEventKind::PlanProposed,
            serde_json::to_value(&view).unwrap(),
        )?;
        drop(state);
        self.reply_later(
            thread.id,
            "jamie",
            format!(
                "I will read the web Deployment in {namespace}, then scale it to 3 replicas. \
                 Look at the preview, then approve the plan when it is right."
            ),
        );
        self.detail(thread.id)
    }

    fn add_message(
        state: &mut State,
        live: &broadcast::Sender<ThreadEvent>,
        thread: ThreadId,
        role: MessageRole,
        author: &str,
        text: &str,
    ) -> Result<MessageView> {
        let record = state
            .threads
            .get_mut(&thread)
            .ok_or_else(|| not_found(thread))?;
        let message = MessageView {
            seq: record.messages.len() as u64 + 1,
            role,
            author: author.to_owned(),
            text: text.to_owned(),
            at: Utc::now(),
        };
        record.messages.push(message.clone());
        record.summary.updated_at = message.at;
        Self::emit_locked(
            state,
            live,
            thread,
            ThreadEventKind::Message,
            serde_json::to_value(&message).unwrap(),
        )?;
        Ok(message)
    }

    fn detail(&self, thread: ThreadId) -> Result<ThreadDetail> {
        let state = self.state.lock().unwrap();
        let record = state
            .threads
            .get(&thread)
            .ok_or_else(|| not_found(thread))?;
        Ok(ThreadDetail {
            thread: record.summary.clone(),
            messages: record.messages.clone(),
            plans: record.plans.iter().map(|(_, view)| view.clone()).collect(),
            last_event_id: record.events.len() as u64,
        })
    }

    fn with_plan<T>(
        &self,
        thread: ThreadId,
        plan: PlanId,
        change: impl FnOnce(&Plan, &mut PlanView) -> Result<(T, Vec<(ThreadEventKind, Value)>)>,
    ) -> Result<T> {
        let mut state = self.state.lock().unwrap();
        let record = state
            .threads
            .get_mut(&thread)
            .ok_or_else(|| not_found(thread))?;
        let (stored, view) = record
            .plans
            .iter_mut()
            .find(|(stored, _)| stored.id == plan)
            .ok_or_else(|| Error::NotFound {
                what: "plan",
                id: plan.to_string(),
            })?;
        let (answer, events) = change(stored, view)?;
        for (kind, data) in events {
            Self::emit_locked(&mut state, &self.live, thread, kind, data)?;
        }
        Ok(answer)
    }
}

impl MemoryDeckhand {
    fn plan_view(&self, thread: ThreadId, plan: PlanId) -> Result<PlanView> {
        self.with_plan(thread, plan, |_, view| Ok((view.clone(), vec![])))
    }

    /// Applies one step transition: its state, the "cluster" when a scale succeeds, and
    /// the `step` event.
    fn apply_transition(
        state: &mut State,
        live: &broadcast::Sender<ThreadEvent>,
        thread: ThreadId,
        plan: PlanId,
        transition: &Transition,
    ) -> Result<()> {
        let record = state
            .threads
            .get_mut(&thread)
            .ok_or_else(|| not_found(thread))?;
        let (stored, view) = record
            .plans
            .iter_mut()
            .find(|(stored, _)| stored.id == plan)
            .ok_or_else(|| Error::NotFound {
                what: "plan",
                id: plan.to_string(),
            })?;
        let step = view
            .steps
            .iter_mut()
            .find(|step| step.id == transition.step)
            .ok_or_else(|| Error::invalid(format!("no step {}", transition.step)))?;
        step.state = transition.state;
        if transition.state == StepState::Running {
            step.attempt = 1;
        }
        step.error.clone_from(&transition.reason);
        let mut scaled = None;
        if transition.state == StepState::Succeeded {
            step.output = Some(json!({"ok": true}));
            let input = &stored
                .steps
                .iter()
                .find(|candidate| candidate.id == transition.step)
                .ok_or_else(|| Error::invalid(format!("no step {}", transition.step)))?
                .input;
            if let Some(replicas) = input["replicas"].as_u64() {
                scaled = Some((deployment_key(input), replicas));
            }
        }
        let attempt = step.attempt;
        if let Some((key, replicas)) = scaled {
            let before = state
                .replicas
                .get(&key)
                .copied()
                .unwrap_or(INITIAL_REPLICAS);
            if let Some(record) = state.threads.get_mut(&thread) {
                record.prior_replicas.entry(key.clone()).or_insert(before);
            }
            state.replicas.insert(key, replicas);
        }
        let mut data = json!({
            "plan_id": plan, "step_id": transition.step, "state": transition.state, "attempt": attempt,
        });
        if let Some(reason) = &transition.reason {
            data["reason"] = json!(reason);
        }
        Self::emit_locked(state, live, thread, ThreadEventKind::Step, data)?;
        Ok(())
    }

    /// Ends a run: the plan's status from its steps, `plan_finished`, and (paced, as
    /// the real service reports) the `result`.
    fn finish(
        state: &mut State,
        live: &broadcast::Sender<ThreadEvent>,
        thread: ThreadId,
        plan: PlanId,
        report: bool,
    ) -> Result<()> {
        let record = state
            .threads
            .get_mut(&thread)
            .ok_or_else(|| not_found(thread))?;
        let (_, view) = record
            .plans
            .iter_mut()
            .find(|(stored, _)| stored.id == plan)
            .ok_or_else(|| Error::NotFound {
                what: "plan",
                id: plan.to_string(),
            })?;
        let failed = view
            .steps
            .iter()
            .any(|step| step.state == StepState::Failed);
        view.status = if failed {
            PlanStatus::Failed
        } else {
            PlanStatus::Succeeded
        };
        let outcome = if failed { "failed" } else { "succeeded" };
        let summary = view
            .steps
            .iter()
            .map(|step| format!("{}: {}", step.id, step.state.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        Self::emit_locked(
            state,
            live,
            thread,
            ThreadEventKind::PlanFinished,
            json!({"plan_id": plan, "outcome": outcome}),
        )?;
        if report {
            let text = if failed {
                format!("The plan failed ({summary}); nothing after the failed step ran.")
            } else {
                format!("Done: {summary}.")
            };
            Self::emit_locked(
                state,
                live,
                thread,
                ThreadEventKind::Result,
                json!({"text": text}),
            )?;
        }
        Ok(())
    }
}

/// What running a plan does, in order: every step runs and succeeds, except that a
/// write in kube-system fails (the built-in policy denies it) and what depends on a
/// failed or skipped step is skipped.
fn plan_transitions(plan: &Plan) -> Vec<Transition> {
    let mut ended: HashMap<&str, StepState> = HashMap::new();
    let mut transitions = Vec::new();
    for step in &plan.steps {
        let blocked = step.depends_on.iter().any(|dependency| {
            matches!(
                ended.get(dependency.as_str()),
                Some(StepState::Failed | StepState::Skipped)
            )
        });
        if blocked {
            ended.insert(&step.id, StepState::Skipped);
            transitions.push(Transition {
                step: step.id.clone(),
                state: StepState::Skipped,
                reason: Some("a step it depends on did not succeed".into()),
            });
            continue;
        }
        transitions.push(Transition {
            step: step.id.clone(),
            state: StepState::Running,
            reason: None,
        });
        let denied = step.mutating && namespace_of(&step.input) == "kube-system";
        let (state, reason) = if denied {
            (
                StepState::Failed,
                Some(format!("denied by policy {KUBE_SYSTEM_DENIAL}")),
            )
        } else {
            (StepState::Succeeded, None)
        };
        ended.insert(&step.id, state);
        transitions.push(Transition {
            step: step.id.clone(),
            state,
            reason,
        });
    }
    transitions
}

fn namespace_of(input: &Value) -> &str {
    input["namespace"].as_str().unwrap_or("default")
}

fn deployment_key(input: &Value) -> String {
    format!(
        "{}/{}",
        namespace_of(input),
        input["name"].as_str().unwrap_or("")
    )
}

/// A Deployment as the "cluster" holds it.
fn deployment(namespace: &str, name: &str, replicas: u64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas},
    })
}

/// What a mutating step would apply: the Deployment with the step's replicas, diffed
/// against the live one.
fn preview_step(replicas: &BTreeMap<String, u64>, step: &Step) -> StepPreview {
    let namespace = namespace_of(&step.input);
    let name = step.input["name"].as_str().unwrap_or("");
    let live = replicas
        .get(&deployment_key(&step.input))
        .copied()
        .unwrap_or(INITIAL_REPLICAS);
    let wanted = step.input["replicas"].as_u64().unwrap_or(live);
    let before = serde_yaml_ng::to_string(&deployment(namespace, name, live)).unwrap();
    let after = serde_yaml_ng::to_string(&deployment(namespace, name, wanted)).unwrap();
    let diff = similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("live/{namespace}/{name}"),
            &format!("planned/{namespace}/{name}"),
        )
        .to_string();
    StepPreview {
        step_id: step.id.clone(),
        tool: step.tool.clone(),
        target: format!("apps/v1 Deployment {namespace}/{name}"),
        yaml: after,
        diff,
        denied_by: if namespace == "kube-system" {
            vec![KUBE_SYSTEM_DENIAL.to_owned()]
        } else {
            vec![]
        },
    }
}

fn not_found(thread: ThreadId) -> Error {
    Error::NotFound {
        what: "thread",
        id: thread.to_string(),
    }
}

#[async_trait]
impl Deckhand for MemoryDeckhand {
    async fn create_thread(&self, who: &Identity, request: NewThread) -> Result<ThreadDetail> {
        self.start(who, &request.text, request.namespace)
    }

    async fn list_threads(
        &self,
        _who: &Identity,
        query: ThreadQuery,
    ) -> Result<Vec<ThreadSummary>> {
        let state = self.state.lock().unwrap();
        let mut threads: Vec<ThreadSummary> = state
            .threads
            .values()
            .map(|record| record.summary.clone())
            .filter(|thread| {
                query
                    .status
                    .as_ref()
                    .is_none_or(|status| &thread.status == status)
            })
            .filter(|thread| query.user.as_ref().is_none_or(|user| &thread.user == user))
            .collect();
        threads.sort_by_key(|thread| std::cmp::Reverse(thread.created_at));
        threads.truncate(query.limit.unwrap_or(50) as usize);
        Ok(threads)
    }

    async fn thread(&self, _who: &Identity, thread: ThreadId) -> Result<ThreadDetail> {
        self.detail(thread)
    }

    async fn post_message(
        &self,
        who: &Identity,
        thread: ThreadId,
        message: NewMessage,
    ) -> Result<MessageView> {
        let mut state = self.state.lock().unwrap();
        let record = state
            .threads
            .get(&thread)
            .ok_or_else(|| not_found(thread))?;
        if record.summary.status == ThreadStatus::Closed.as_str() {
            return Err(Error::Conflict {
                message: format!("thread {thread} is closed"),
            });
        }
        let message = Self::add_message(
            &mut state,
            &self.live,
            thread,
            MessageRole::User,
            &who.subject,
            &message.text,
        )?;
        drop(state);
        self.reply_later(
            thread,
            "jamie",
            format!("Noted: \"{}\". Ask again for a new plan.", message.text),
        );
        Ok(message)
    }

    async fn approve(
        &self,
        who: &Identity,
        thread: ThreadId,
        plan: PlanId,
        approval: Approval,
    ) -> Result<PlanView> {
        self.with_plan(thread, plan, |stored, view| {
            stored.check_approval(&approval.hash)?;
            if view.status != PlanStatus::Proposed {
                return Err(Error::Conflict { message: format!("the plan is {:?}", view.status) });
            }
            if let Some(step) = &approval.step {
                if !stored.steps.iter().any(|candidate| &candidate.id == step) {
                    return Err(Error::invalid(format!("the plan has no step {step:?}")));
                }
            } else {
                view.status = PlanStatus::Approved;
                view.approved_by = Some(who.subject.clone());
            }
            let data = json!({"plan_id": plan, "hash": approval.hash, "step": approval.step, "by": who.subject});
            Ok((view.clone(), vec![(ThreadEventKind::Approval, data)]))
        })
    }

    async fn reject(
        &self,
        who: &Identity,
        thread: ThreadId,
        plan: PlanId,
        rejection: Rejection,
    ) -> Result<PlanView> {
        self.with_plan(thread, plan, |stored, view| {
            stored.check_approval(&rejection.hash)?;
            view.status = PlanStatus::Rejected;
            let data = json!({"plan_id": plan, "hash": rejection.hash, "step": rejection.step, "by": who.subject, "reason": rejection.reason});
            Ok((view.clone(), vec![(ThreadEventKind::Rejection, data)]))
        })
    }

    async fn run(&self, _who: &Identity, thread: ThreadId, plan: PlanId) -> Result<PlanView> {
        let transitions = self.with_plan(thread, plan, |stored, view| {
            if view.status != PlanStatus::Approved {
                return Err(Error::Conflict {
                    message: format!("the plan is {:?}, not approved", view.status),
                });
            }
            Ok((plan_transitions(stored), vec![]))
        })?;
        let Some(pace) = self.pace else {
            let mut state = self.state.lock().unwrap();
            for transition in &transitions {
                Self::apply_transition(&mut state, &self.live, thread, plan, transition)?;
            }
            Self::finish(&mut state, &self.live, thread, plan, false)?;
            drop(state);
            return self.plan_view(thread, plan);
        };
        self.with_plan(thread, plan, |_, view| {
            view.status = PlanStatus::Running;
            Ok(((), vec![]))
        })?;
        let state = self.state.clone();
        let live = self.live.clone();
        tokio::spawn(async move {
            for transition in &transitions {
                tokio::time::sleep(pace).await;
                let mut state = state.lock().unwrap();
                if Self::apply_transition(&mut state, &live, thread, plan, transition).is_err() {
                    return;
                }
            }
            tokio::time::sleep(pace).await;
            let mut state = state.lock().unwrap();
            let _ = Self::finish(&mut state, &live, thread, plan, true);
        });
        self.plan_view(thread, plan)
    }

    async fn preview(
        &self,
        _who: &Identity,
        thread: ThreadId,
        plan: PlanId,
    ) -> Result<Vec<StepPreview>> {
        let state = self.state.lock().unwrap();
        let record = state
            .threads
            .get(&thread)
            .ok_or_else(|| not_found(thread))?;
        let (stored, _) = record
            .plans
            .iter()
            .find(|(stored, _)| stored.id == plan)
            .ok_or_else(|| Error::NotFound {
                what: "plan",
                id: plan.to_string(),
            })?;
        Ok(stored
            .steps
            .iter()
            .filter(|step| step.mutating)
            .map(|step| preview_step(&state.replicas, step))
            .collect())
    }

    async fn cancel(&self, _who: &Identity, thread: ThreadId, plan: PlanId) -> Result<PlanView> {
        self.with_plan(thread, plan, |_, view| {
            if matches!(
                view.status,
                PlanStatus::Succeeded | PlanStatus::Failed | PlanStatus::Cancelled
            ) {
                return Err(Error::Conflict {
                    message: format!("the plan already ended ({:?})", view.status),
                });
            }
            view.status = PlanStatus::Cancelled;
            Ok((
                view.clone(),
                vec![(
                    ThreadEventKind::PlanFinished,
                    json!({"plan_id": plan, "outcome": "cancelled"}),
                )],
            ))
        })
    }

    async fn restore(&self, _who: &Identity, thread: ThreadId) -> Result<RestoreView> {
        let mut state = self.state.lock().unwrap();
        let record = state
            .threads
            .get_mut(&thread)
            .ok_or_else(|| not_found(thread))?;
        let prior = std::mem::take(&mut record.prior_replicas);
        let restored: Vec<String> = record
            .plans
            .iter()
            .filter(|(_, view)| view.status == PlanStatus::Succeeded)
            .flat_map(|(plan, _)| plan.steps.iter().filter(|step| step.mutating))
            .map(|step| {
                format!(
                    "Deployment {}/{}",
                    step.input["namespace"].as_str().unwrap_or(""),
                    step.input["name"].as_str().unwrap_or("")
                )
            })
            .collect();
        state.replicas.extend(prior);
        let view = RestoreView {
            thread_id: thread,
            restored,
            failed: vec![],
        };
        Self::emit_locked(
            &mut state,
            &self.live,
            thread,
            ThreadEventKind::Restore,
            serde_json::to_value(&view).unwrap(),
        )?;
        Ok(view)
    }

    async fn rate(
        &self,
        who: &Identity,
        thread: ThreadId,
        rating: Rating,
    ) -> Result<ThreadSummary> {
        let mut state = self.state.lock().unwrap();
        let record = state
            .threads
            .get_mut(&thread)
            .ok_or_else(|| not_found(thread))?;
        record.summary.rating = Some(rating.rating);
        if rating.rating == 100 {
            record.summary.status = ThreadStatus::Closed.as_str().to_owned();
        }
        let summary = record.summary.clone();
        Self::emit_locked(
            &mut state,
            &self.live,
            thread,
            ThreadEventKind::Rating,
            json!({"rating": rating.rating, "comment": rating.comment, "by": who.subject}),
        )?;
        Ok(summary)
    }

    async fn search_knowledge(
        &self,
        _who: &Identity,
        query: KnowledgeQuery,
    ) -> Result<Vec<KnowledgeHit>> {
        let state = self.state.lock().unwrap();
        let words: Vec<String> = query.q.split_whitespace().map(str::to_lowercase).collect();
        let mut hits: Vec<KnowledgeHit> = state
            .threads
            .values()
            .filter_map(|record| {
                let title = record.summary.title.to_lowercase();
                let score = words
                    .iter()
                    .filter(|word| title.contains(word.as_str()))
                    .count();
                (score > 0).then(|| KnowledgeHit {
                    thread_id: record.summary.id,
                    title: record.summary.title.clone(),
                    request: record
                        .messages
                        .first()
                        .map(|m| m.text.clone())
                        .unwrap_or_default(),
                    summary: record
                        .messages
                        .first()
                        .map(|m| m.text.clone())
                        .unwrap_or_default(),
                    rating: record.summary.rating,
                    score: score as f64,
                    similarity: None,
                    search: KnowledgeSearchMode::FullText,
                })
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(query.limit.unwrap_or(10) as usize);
        Ok(hits)
    }

    async fn tools(&self, _who: &Identity) -> Result<Vec<ToolView>> {
        Ok(self
            .catalog
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
        Ok(vec![PolicyView {
            name: "no-kube-system-writes".into(),
            kind: "builtin".into(),
            description: "no change in kube-system".into(),
        }])
    }

    async fn namespaces(&self, _who: &Identity) -> Result<Vec<String>> {
        Ok(self.namespaces.clone())
    }

    async fn subscribe(
        &self,
        _who: &Identity,
        thread: ThreadId,
        after: Option<u64>,
    ) -> Result<EventStream> {
        // Backlog and live subscription under one lock: no event falls between them.
        let state = self.state.lock().unwrap();
        let record = state
            .threads
            .get(&thread)
            .ok_or_else(|| not_found(thread))?;
        let after = after.unwrap_or(0);
        let backlog: Vec<ThreadEvent> = record
            .events
            .iter()
            .filter(|event| event.id > after)
            .cloned()
            .collect();
        let live = self.live.subscribe();
        drop(state);
        let live = futures_util::stream::unfold(live, move |mut live| async move {
            loop {
                match live.recv().await {
                    Ok(event) if event.thread_id == thread && event.id > after => {
                        return Some((event, live))
                    }
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        });
        Ok(Box::pin(futures_util::StreamExt::chain(
            futures_util::stream::iter(backlog),
            live,
        )))
    }

    async fn triage_alerts(&self, who: &Identity, group: AlertGroup) -> Result<ThreadDetail> {
        let detail = self.start(
            who,
            &group.summary(),
            group.common_labels.get("namespace").cloned(),
        )?;
        self.state.lock().unwrap().alert_groups.push(group);
        Ok(detail)
    }

    async fn linked_thread(&self, key: &str) -> Result<Option<ThreadId>> {
        Ok(self.state.lock().unwrap().links.get(key).copied())
    }

    async fn link_thread(&self, key: &str, thread: ThreadId) -> Result<()> {
        self.state
            .lock()
            .unwrap()
            .links
            .insert(key.to_owned(), thread);
        Ok(())
    }
}

/// A service from before previews existed: everything delegated to a
/// [`MemoryDeckhand`] except `preview`, which keeps the trait's default body.
pub struct WithoutPreview(pub Arc<MemoryDeckhand>);

#[async_trait]
impl Deckhand for WithoutPreview {
    async fn create_thread(&self, who: &Identity, request: NewThread) -> Result<ThreadDetail> {
        self.0.create_thread(who, request).await
    }
    async fn list_threads(&self, who: &Identity, query: ThreadQuery) -> Result<Vec<ThreadSummary>> {
        self.0.list_threads(who, query).await
    }
    async fn thread(&self, who: &Identity, thread: ThreadId) -> Result<ThreadDetail> {
        self.0.thread(who, thread).await
    }
    async fn post_message(
        &self,
        who: &Identity,
        thread: ThreadId,
        message: NewMessage,
    ) -> Result<MessageView> {
        self.0.post_message(who, thread, message).await
    }
    async fn approve(
        &self,
        who: &Identity,
        thread: ThreadId,
        plan: PlanId,
        approval: Approval,
    ) -> Result<PlanView> {
        self.0.approve(who, thread, plan, approval).await
    }
    async fn reject(
        &self,
        who: &Identity,
        thread: ThreadId,
        plan: PlanId,
        rejection: Rejection,
    ) -> Result<PlanView> {
        self.0.reject(who, thread, plan, rejection).await
    }
    async fn run(&self, who: &Identity, thread: ThreadId, plan: PlanId) -> Result<PlanView> {
        self.0.run(who, thread, plan).await
    }
    async fn cancel(&self, who: &Identity, thread: ThreadId, plan: PlanId) -> Result<PlanView> {
        self.0.cancel(who, thread, plan).await
    }
    async fn restore(&self, who: &Identity, thread: ThreadId) -> Result<RestoreView> {
        self.0.restore(who, thread).await
    }
    async fn rate(
        &self,
        who: &Identity,
        thread: ThreadId,
        rating: Rating,
    ) -> Result<ThreadSummary> {
        self.0.rate(who, thread, rating).await
    }
    async fn search_knowledge(
        &self,
        who: &Identity,
        query: KnowledgeQuery,
    ) -> Result<Vec<KnowledgeHit>> {
        self.0.search_knowledge(who, query).await
    }
    async fn tools(&self, who: &Identity) -> Result<Vec<ToolView>> {
        self.0.tools(who).await
    }
    async fn policies(&self, who: &Identity) -> Result<Vec<PolicyView>> {
        self.0.policies(who).await
    }
    async fn namespaces(&self, who: &Identity) -> Result<Vec<String>> {
        self.0.namespaces(who).await
    }
    async fn subscribe(
        &self,
        who: &Identity,
        thread: ThreadId,
        after: Option<u64>,
    ) -> Result<EventStream> {
        self.0.subscribe(who, thread, after).await
    }
    async fn triage_alerts(&self, who: &Identity, group: AlertGroup) -> Result<ThreadDetail> {
        self.0.triage_alerts(who, group).await
    }
    async fn linked_thread(&self, key: &str) -> Result<Option<ThreadId>> {
        self.0.linked_thread(key).await
    }
    async fn link_thread(&self, key: &str, thread: ThreadId) -> Result<()> {
        self.0.link_thread(key, thread).await
    }
}

/// Tokens in memory, by hash.
#[derive(Default)]
pub struct MemoryTokens {
    tokens: Mutex<HashMap<String, TokenRecord>>,
}

#[async_trait]
impl TokenStore for MemoryTokens {
    async fn lookup(&self, sha256_hex: &str) -> Result<Option<TokenRecord>> {
        Ok(self.tokens.lock().unwrap().get(sha256_hex).cloned())
    }

    async fn create(&self, sha256_hex: &str, record: &TokenRecord) -> Result<()> {
        let mut tokens = self.tokens.lock().unwrap();
        if tokens.contains_key(sha256_hex) {
            return Err(Error::Conflict {
                message: "token exists".into(),
            });
        }
        tokens.insert(sha256_hex.to_owned(), record.clone());
        Ok(())
    }

    async fn list(&self) -> Result<Vec<TokenRecord>> {
        Ok(self.tokens.lock().unwrap().values().cloned().collect())
    }

    async fn revoke(&self, id: uuid::Uuid) -> Result<bool> {
        let mut tokens = self.tokens.lock().unwrap();
        match tokens.values_mut().find(|record| record.id == id) {
            Some(record) => {
                record.revoked = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl MemoryTokens {
    /// Stores a token for `subject` with `scope`; returns the secret.
    pub fn add(&self, subject: &str, scope: Scope) -> String {
        let token = deckhand_api::auth::generate_token().unwrap();
        let record = TokenRecord {
            id: uuid::Uuid::new_v4(),
            name: format!("{subject} test token"),
            subject: subject.to_owned(),
            groups: vec!["devs".into()],
            scope,
            created_by: "test".into(),
            created_at: Utc::now(),
            expires_at: None,
            revoked: false,
        };
        self.tokens
            .lock()
            .unwrap()
            .insert(hash_token(&token), record);
        token
    }
}

/// A service, a token store with one token per scope, and the router over them.
pub struct Fixture {
    pub service: Arc<MemoryDeckhand>,
    pub tokens: Arc<MemoryTokens>,
    pub viewer: String,
    pub operator: String,
    pub other_operator: String,
    pub admin: String,
    pub router: Router,
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl Fixture {
    pub fn new(config: ApiConfig) -> Self {
        let service = MemoryDeckhand::new();
        Self::serving(config, service.clone(), service)
    }

    /// The API over `served`, with `service` (the state behind it) for the test to
    /// reach directly: a paced service, or one wrapped to change what it serves.
    pub fn serving(
        config: ApiConfig,
        service: Arc<MemoryDeckhand>,
        served: Arc<dyn Deckhand>,
    ) -> Self {
        let tokens = Arc::new(MemoryTokens::default());
        let viewer = tokens.add("vera", Scope::Viewer);
        let operator = tokens.add("olga", Scope::Operator);
        let other_operator = tokens.add("oscar", Scope::Operator);
        let admin = tokens.add("ada", Scope::Admin);
        let health = AppState {
            version: "test",
            checks: Arc::new([]),
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let router = Api::new(served, tokens.clone(), health)
            .config(config)
            .shutdown(shutdown.clone())
            .build()
            .unwrap();
        Self {
            service,
            tokens,
            viewer,
            operator,
            other_operator,
            admin,
            router,
            shutdown,
        }
    }
}

/// The identity a test acts as when calling the service directly.
pub fn identity(subject: &str, scope: Scope) -> Identity {
    Identity {
        subject: subject.to_owned(),
        groups: vec![],
        scope,
        source: AuthSource::Alertmanager,
    }
}
