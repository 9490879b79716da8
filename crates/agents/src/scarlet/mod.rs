//! Scarlet, the planner: a request becomes a validated plan. With a model, she asks the
//! `planner` route for a [`PlanDraft`] (structured output), validates it with
//! [`Plan::new`] and sends the problems back for repair, a bounded number of times. When
//! there is no model, the model fails, or it never produces a valid plan, her rule-based
//! path answers the common requests; anything else is a clear planning error, never a
//! made-up plan.
//!
//! `created_by` says which path made a plan: `scarlet/offline-rules` or
//! `scarlet/BACKEND:MODEL`.
//!
//! The prompt fits the smallest window of the `planner` route with a repair round in
//! it: the tools most relevant to the request are shown with their input signatures
//! (as many as fit, counted with the router's token counter for that model), the rest by
//! name, and a repair round carries only the latest invalid plan and its problems, both
//! cut to a fixed budget, so every round is as big as the first one plus that budget.

pub mod intent;
mod prompt;
pub mod relevance;
pub mod rules;

use deckhand_llm::{
    CancellationToken, ChatRequest, ContextFit, Counter, Message, ResponseSchema, Router,
};
use deckhand_runtime::{
    CatalogEntry, Error, Plan, PlanDraft, PlanRequest, Planner, Result, ToolCatalog,
};
use std::sync::Arc;

pub use rules::{CAPABILITIES, CREATED_BY as OFFLINE_CREATED_BY};

/// How many times an invalid plan from the model is sent back for repair.
pub const DEFAULT_PLAN_REPAIRS: u32 = 2;

/// The LLM route Scarlet uses.
pub const ROUTE: &str = "planner";

/// Why the model path gave no plan.
#[derive(Debug, Clone, PartialEq)]
enum ModelOutcome {
    /// Only the offline backend answered: no model is configured or reachable.
    Offline,
    /// A model answered but no valid plan came of it.
    Failed(String),
}

/// The most tokens a model may spend on one plan. A plan of a dozen steps is well under
/// a thousand; without a cap a small local model once rambled past 2,000 tokens at
/// 6 tokens/s, several minutes for one request.
pub const PLAN_MAX_TOKENS: u32 = 1536;

/// A repair round's invalid plan, sent back to the model, is cut to this many tokens.
pub const REPAIR_ECHO_TOKENS: usize = PLAN_MAX_TOKENS as usize;

/// A repair round's problems (and the inputs of tools the plan used unseen) are cut to
/// this many tokens.
pub const REPAIR_TEXT_TOKENS: usize = 600;

/// What a repair round adds to the first request at most: the invalid plan, the
/// problems (each cut with its note inside its budget), two messages' role markers and
/// a few tokens for rounding.
pub const REPAIR_ROUND_TOKENS: usize = REPAIR_ECHO_TOKENS + REPAIR_TEXT_TOKENS + 24;

/// The planner.
#[derive(Debug, Clone)]
pub struct Scarlet {
    router: Option<Arc<Router>>,
    max_plan_repairs: u32,
}

impl Scarlet {
    /// Scarlet with her rule-based path only.
    pub fn offline() -> Self {
        Self {
            router: None,
            max_plan_repairs: DEFAULT_PLAN_REPAIRS,
        }
    }

    /// Scarlet asking `router`'s `planner` route first, then her rules.
    pub fn new(router: Arc<Router>) -> Self {
        Self {
            router: Some(router),
            max_plan_repairs: DEFAULT_PLAN_REPAIRS,
        }
    }

    /// Sets how many times an invalid plan is sent back to the model.
    #[must_use]
    pub fn max_plan_repairs(mut self, repairs: u32) -> Self {
        self.max_plan_repairs = repairs;
        self
    }

    /// The first request of a planning exchange, and how many of `ranked` it shows in
    /// full: as many as fit the tightest window of the route with a repair round's room
    /// left (binary search: each tool shown adds tokens). With no model in the route,
    /// all of them.
    fn first_messages(
        router: &Router,
        request: &PlanRequest,
        catalog: &ToolCatalog,
        ranked: &[&CatalogEntry],
    ) -> (Vec<Message>, usize, Option<ContextFit>) {
        let user = prompt::user(request);
        let messages = |detailed: usize| {
            vec![
                Message::system(prompt::system(
                    catalog,
                    request,
                    &ranked[..detailed],
                    &ranked[detailed..],
                )),
                Message::user(user.clone()),
            ]
        };
        let schema = ResponseSchema::of::<PlanDraft>().ok();
        let measure = |detailed: usize| {
            let mut chat = chat(messages(detailed), None);
            chat.response_schema = schema.clone();
            router.measure(ROUTE, &chat)
        };
        let fits = |fit: &ContextFit| fit.room() >= REPAIR_ROUND_TOKENS;
        let all = ranked.len();
        let fit = match measure(all) {
            None => return (messages(all), all, None),
            Some(fit) if fits(&fit) => return (messages(all), all, Some(fit)),
            Some(fit) => fit,
        };
        // `low` fits (or is 0), `high` does not.
        let (mut low, mut high, mut best) = (0, all, None);
        while high - low > 1 {
            let middle = (low + high) / 2;
            match measure(middle) {
                Some(fit) if fits(&fit) => {
                    low = middle;
                    best = Some(fit);
                }
                _ => high = middle,
            }
        }
        let best = best.or_else(|| measure(low)).unwrap_or(fit);
        if !fits(&best) {
            tracing::warn!(thread_id = %request.thread_id, backend = %best.backend, window = best.window, needed = best.prompt_tokens + best.answer_reserve + REPAIR_ROUND_TOKENS, "the planner's prompt does not fit the model's window even without tool signatures");
        }
        (messages(low), low, Some(best))
    }

    async fn plan_with_model(
        &self,
        router: &Router,
        request: &PlanRequest,
        catalog: &ToolCatalog,
    ) -> std::result::Result<Plan, ModelOutcome> {
        // Planning is one short exchange; the router's own deadlines bound it, and the
        // Planner trait has no cancellation of its own to pass on.
        let cancel = CancellationToken::new();
        let thread = request.thread_id.to_string();
        let ranked = relevance::rank(catalog, request);
        let (first, detailed, fit) = Self::first_messages(router, request, catalog, &ranked);
        tracing::info!(thread_id = %request.thread_id, tools_shown = detailed, tools = ranked.len(), prompt_tokens = fit.as_ref().map(|f| f.prompt_tokens), window = fit.as_ref().map(|f| f.window), "planning with the model");
        let counter = fit.as_ref().map_or(
            Counter::Estimate(deckhand_llm::tokens::Family::Unknown),
            |f| f.counter,
        );
        let shown: Vec<&str> = ranked[..detailed].iter().map(|e| e.name.as_str()).collect();
        let mut repair: Option<[Message; 2]> = None;
        let mut last_problems = Vec::new();
        for round in 0..=self.max_plan_repairs {
            let mut messages = first.clone();
            messages.extend(repair.iter().flatten().cloned());
            let answer = match router
                .structured::<PlanDraft>(ROUTE, chat(messages, Some(&thread)), &cancel)
                .await
            {
                Ok(answer) if answer.response.offline => return Err(ModelOutcome::Offline),
                Ok(answer) => answer,
                // Down to the offline backend: no model at all, or models that failed
                // first (then the person hears why).
                Err(error) if error.is_offline() && round == 0 => {
                    return Err(match &error {
                        deckhand_llm::Error::AllFailed { attempts, .. }
                            if attempts.iter().any(|attempt| attempt.kind != "offline") =>
                        {
                            ModelOutcome::Failed(error.to_string())
                        }
                        _ => ModelOutcome::Offline,
                    })
                }
                Err(error) => return Err(ModelOutcome::Failed(error.to_string())),
            };
            let created_by = format!(
                "scarlet/{}:{}",
                answer.response.backend, answer.response.model
            );
            // The plan as sent back for repair: compact JSON of what was parsed.
            let echo = serde_json::to_string(&answer.value).unwrap_or(answer.response.text);
            let unseen: Vec<&CatalogEntry> = answer
                .value
                .steps
                .iter()
                .filter(|step| !shown.contains(&step.tool.as_str()))
                .filter_map(|step| catalog.get(&step.tool))
                .fold(Vec::new(), |mut unseen, entry| {
                    if !unseen.iter().any(|e: &&CatalogEntry| e.name == entry.name) {
                        unseen.push(entry);
                    }
                    unseen
                });
            match Plan::new(
                request.thread_id,
                request.text.clone(),
                created_by,
                answer.value,
                catalog,
            ) {
                Ok(plan) => {
                    tracing::info!(thread_id = %request.thread_id, repairs = round, created_by = %plan.created_by, "the model's plan is valid");
                    return Ok(plan);
                }
                Err(Error::InvalidPlan { problems }) => {
                    tracing::info!(thread_id = %request.thread_id, round, problems = problems.len(), "the model's plan is invalid; asking for a repair");
                    repair = Some([
                        Message::assistant(counter.truncate_middle(&echo, REPAIR_ECHO_TOKENS)),
                        Message::user(counter.truncate_middle(
                            &prompt::repair(&problems, &unseen),
                            REPAIR_TEXT_TOKENS,
                        )),
                    ]);
                    last_problems = problems;
                }
                Err(other) => return Err(ModelOutcome::Failed(other.to_string())),
            }
        }
        Err(ModelOutcome::Failed(format!(
            "its plan was still invalid after {} repair(s): {}",
            self.max_plan_repairs,
            last_problems.join("; ")
        )))
    }
}

/// A planning request: low temperature, the answer capped, the thread named for the
/// usage ledger.
fn chat(messages: Vec<Message>, thread: Option<&str>) -> ChatRequest {
    let chat = ChatRequest::new(messages)
        .with_temperature(0.1)
        .with_max_tokens(PLAN_MAX_TOKENS);
    match thread {
        Some(thread) => chat.with_thread(thread),
        None => chat,
    }
}

impl Planner for Scarlet {
    async fn plan(&self, request: &PlanRequest, catalog: &ToolCatalog) -> Result<Plan> {
        let mut model_failure = None;
        if let Some(router) = &self.router {
            match self.plan_with_model(router, request, catalog).await {
                Ok(plan) => return Ok(plan),
                Err(ModelOutcome::Offline) => {
                    tracing::info!(thread_id = %request.thread_id, "no model answered; planning with the rules");
                }
                Err(ModelOutcome::Failed(reason)) => {
                    tracing::warn!(thread_id = %request.thread_id, %reason, "the model gave no valid plan; falling back to the rules");
                    model_failure = Some(reason);
                }
            }
        }
        match (rules::plan(request, catalog), model_failure) {
            (Ok(plan), _) => Ok(plan),
            (Err(Error::Planning { message }), Some(reason)) => Err(Error::Planning {
                message: format!("the model gave no valid plan ({reason}), and the rule-based path could not help either: {message}"),
            }),
            (Err(error), _) => Err(error),
        }
    }
}
