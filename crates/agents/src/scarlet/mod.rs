//! Scarlet, the planner: a request becomes a validated plan. With a model, she asks the
//! `planner` route for a [`PlanDraft`] (structured output), validates it with
//! [`Plan::new`] and sends the problems back for repair, a bounded number of times. When
//! there is no model, the model fails, or it never produces a valid plan, her rule-based
//! path answers the common requests; anything else is a clear planning error, never a
//! made-up plan.
//!
//! `created_by` says which path made a plan: `scarlet/offline-rules` or
//! `scarlet/BACKEND:MODEL`.

pub mod intent;
mod prompt;
pub mod rules;

use deckhand_llm::{CancellationToken, ChatRequest, Message, Router};
use deckhand_runtime::{Error, Plan, PlanDraft, PlanRequest, Planner, Result, ToolCatalog};
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

    async fn plan_with_model(
        &self,
        router: &Router,
        request: &PlanRequest,
        catalog: &ToolCatalog,
    ) -> std::result::Result<Plan, ModelOutcome> {
        // Planning is one short exchange; the router's own deadlines bound it, and the
        // Planner trait has no cancellation of its own to pass on.
        let cancel = CancellationToken::new();
        let mut messages = vec![
            Message::system(prompt::system(catalog, request)),
            Message::user(prompt::user(request)),
        ];
        let mut last_problems = Vec::new();
        for round in 0..=self.max_plan_repairs {
            let chat = ChatRequest::new(messages.clone())
                .with_temperature(0.1)
                .with_max_tokens(PLAN_MAX_TOKENS);
            let answer = match router.structured::<PlanDraft>(ROUTE, chat, &cancel).await {
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
                    messages.push(Message::assistant(answer.response.text));
                    messages.push(Message::user(prompt::repair(&problems)));
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
