//! Prometheus metrics, all named `deckhand_*`, in one registry.
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client): typed label sets,
//! no global registry (so tests and embedders each get their own), and the text
//! exposition format done right (escaping, `_total`, histogram buckets), which a
//! hand-written encoder would have to get right again. [`Metrics`] is a cheap handle:
//! the API records HTTP requests and WebSocket sessions itself; `deckhand serve` records
//! plans, steps, tool calls, policy decisions, LLM use, approvals and restores through
//! the same handle, and may register more metrics with [`Metrics::register`].

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The content type of the text exposition format `prometheus-client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to ~33 s: HTTP requests and tool calls alike.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn llm_histogram() -> Histogram {
    // 50 ms to ~100 s: local 7B models answer in seconds, long plans in tens of seconds.
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolNameLabels {
    tool: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LlmTokenLabels {
    backend: String,
    model: String,
    agent: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LlmLabels {
    backend: String,
    model: String,
    agent: String,
    outcome: String,
}

/// One LLM call, as [`Metrics::llm_call`] counts it.
#[derive(Debug, Clone, Copy)]
pub struct LlmCall<'a> {
    /// The backend's name.
    pub backend: &'a str,
    /// The model.
    pub model: &'a str,
    /// The agent (route) that asked.
    pub agent: &'a str,
    /// `ok`, `error` or `timeout`.
    pub outcome: &'a str,
    /// How long it took.
    pub took: Duration,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Answer tokens.
    pub completion_tokens: u64,
    /// Estimated cost in US dollars, when the backend's prices are configured.
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LlmCostLabels {
    backend: String,
    model: String,
    agent: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LlmModelLabels {
    backend: String,
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApprovalLabels {
    decision: String,
    target: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
    outcome: String,
}

struct Families {
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    plans: Family<StateLabels, Counter>,
    steps: Family<StateLabels, Counter>,
    tool_calls: Family<ToolLabels, Counter>,
    tool_duration: HistogramFamily<ToolNameLabels>,
    policy_decisions: Family<PolicyLabels, Counter>,
    llm_tokens: Family<LlmTokenLabels, Counter>,
    llm_requests: Family<LlmLabels, Counter>,
    llm_cost: Family<LlmCostLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    llm_duration: HistogramFamily<LlmModelLabels>,
    approvals: Family<ApprovalLabels, Counter>,
    restores: Family<OutcomeLabels, Counter>,
    inbound: Family<SourceLabels, Counter>,
    alerts: Family<ReasonLabels, Counter>,
    websocket_sessions: Gauge,
    websocket_slow_closes: Counter,
    /// Registered at the first report: a store that is not replicated shows none.
    replication_registered: std::sync::Once,
    replication_pending: Gauge,
    shared_reachable: Gauge,
}

/// A handle on deckhand's metrics; clones share them.
#[derive(Clone)]
pub struct Metrics {
    families: Arc<Families>,
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every deckhand metric, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("deckhand");
        let families = Families {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            plans: Family::default(),
            steps: Family::default(),
            tool_calls: Family::default(),
            tool_duration: Family::new_with_constructor(latency_histogram),
            policy_decisions: Family::default(),
            llm_tokens: Family::default(),
            llm_requests: Family::default(),
            llm_cost: Family::default(),
            llm_duration: Family::new_with_constructor(llm_histogram),
            approvals: Family::default(),
            restores: Family::default(),
            inbound: Family::default(),
            alerts: Family::default(),
            websocket_sessions: Gauge::default(),
            websocket_slow_closes: Counter::default(),
            replication_registered: std::sync::Once::new(),
            replication_pending: Gauge::default(),
            shared_reachable: Gauge::default(),
        };
        let f = &families;
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            f.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and method",
            f.http_duration.clone(),
        );
        registry.register(
            "plans",
            "Plans by state reached (proposed, approved, rejected, succeeded, failed, cancelled)",
            f.plans.clone(),
        );
        registry.register("steps", "Step transitions by state", f.steps.clone());
        registry.register(
            "tool_calls",
            "Tool calls by tool and outcome",
            f.tool_calls.clone(),
        );
        registry.register(
            "tool_call_duration_seconds",
            "Tool call latency by tool",
            f.tool_duration.clone(),
        );
        registry.register(
            "policy_decisions",
            "Policy decisions by policy and result",
            f.policy_decisions.clone(),
        );
        registry.register(
            "llm_tokens",
            "LLM tokens by backend, model, agent and kind (prompt, completion)",
            f.llm_tokens.clone(),
        );
        registry.register(
            "llm_requests",
            "LLM requests by backend, model, agent and outcome",
            f.llm_requests.clone(),
        );
        registry.register(
            "llm_cost_usd",
            "Estimated LLM cost in US dollars by backend, model and agent (for backends with prices configured)",
            f.llm_cost.clone(),
        );
        registry.register(
            "llm_request_duration_seconds",
            "LLM request latency by backend and model",
            f.llm_duration.clone(),
        );
        registry.register(
            "approvals",
            "Approvals and rejections by decision and target (plan, step)",
            f.approvals.clone(),
        );
        registry.register("restores", "Thread restores by outcome", f.restores.clone());
        registry.register(
            "inbound_events",
            "Slack and Alertmanager requests by source and outcome",
            f.inbound.clone(),
        );
        registry.register(
            "alerts",
            "Admin alerts raised by reason (policy_denied, access_denied)",
            f.alerts.clone(),
        );
        registry.register(
            "websocket_sessions",
            "WebSocket sessions open now",
            f.websocket_sessions.clone(),
        );
        registry.register(
            "websocket_slow_client_closes",
            "WebSocket sessions closed because the client did not keep up",
            f.websocket_slow_closes.clone(),
        );
        Self {
            families: Arc::new(families),
            registry: Arc::new(Mutex::new(registry)),
        }
    }

    /// Registers another metric (its name gets the `deckhand_` prefix).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.lock().register(name, help, metric);
    }

    /// The registry in the text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.lock());
        text
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One HTTP request answered.
    pub fn http_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.families
            .http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.families
            .http_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A plan reached `state` (`proposed`, `approved`, `succeeded`, ...).
    pub fn plan(&self, state: &str) {
        self.families
            .plans
            .get_or_create(&state_labels(state))
            .inc();
    }

    /// A step reached `state`.
    pub fn step(&self, state: &str) {
        self.families
            .steps
            .get_or_create(&state_labels(state))
            .inc();
    }

    /// A tool call finished with `outcome` (`ok`, `error`, `denied`, `timeout`).
    pub fn tool_call(&self, tool: &str, outcome: &str, took: Duration) {
        self.families
            .tool_calls
            .get_or_create(&ToolLabels {
                tool: tool.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.families
            .tool_duration
            .get_or_create(&ToolNameLabels {
                tool: tool.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A policy decided `result` (`allow`, `deny`, `warn`).
    pub fn policy_decision(&self, policy: &str, result: &str) {
        self.families
            .policy_decisions
            .get_or_create(&PolicyLabels {
                policy: policy.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// One LLM call: its outcome, latency, tokens and estimated cost.
    pub fn llm_call(&self, call: &LlmCall<'_>) {
        self.families
            .llm_requests
            .get_or_create(&LlmLabels {
                backend: call.backend.to_owned(),
                model: call.model.to_owned(),
                agent: call.agent.to_owned(),
                outcome: call.outcome.to_owned(),
            })
            .inc();
        self.families
            .llm_duration
            .get_or_create(&LlmModelLabels {
                backend: call.backend.to_owned(),
                model: call.model.to_owned(),
            })
            .observe(call.took.as_secs_f64());
        for (kind, count) in [
            ("prompt", call.prompt_tokens),
            ("completion", call.completion_tokens),
        ] {
            self.families
                .llm_tokens
                .get_or_create(&LlmTokenLabels {
                    backend: call.backend.to_owned(),
                    model: call.model.to_owned(),
                    agent: call.agent.to_owned(),
                    kind: kind.to_owned(),
                })
                .inc_by(count);
        }
        if let Some(cost) = call.cost_usd.filter(|cost| cost.is_finite() && *cost > 0.0) {
            self.families
                .llm_cost
                .get_or_create(&LlmCostLabels {
                    backend: call.backend.to_owned(),
                    model: call.model.to_owned(),
                    agent: call.agent.to_owned(),
                })
                .inc_by(cost);
        }
    }

    /// A person approved or rejected (`decision`) a plan or a step (`target`).
    pub fn approval(&self, decision: &str, target: &str) {
        self.families
            .approvals
            .get_or_create(&ApprovalLabels {
                decision: decision.to_owned(),
                target: target.to_owned(),
            })
            .inc();
    }

    /// A restore finished with `outcome` (`ok`, `partial`, `error`).
    pub fn restore(&self, outcome: &str) {
        self.families
            .restores
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// A Slack or Alertmanager request (`source`) handled with `outcome`.
    pub fn inbound(&self, source: &str, outcome: &str) {
        self.families
            .inbound
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// An admin alert was raised for `reason` (`policy_denied`, `access_denied`).
    pub fn alert(&self, reason: &str) {
        self.families
            .alerts
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The state of the store's replication to a shared database: `pending` writes
    /// queued, and whether the shared database answered last. The gauges
    /// (`deckhand_store_replication_pending`, `deckhand_store_shared_database_reachable`)
    /// appear with the first report.
    pub fn store_replication(&self, pending: i64, shared_reachable: bool) {
        let f = &self.families;
        f.replication_registered.call_once(|| {
            let mut registry = self.lock();
            registry.register(
                "store_replication_pending",
                "Writes queued in the local store for the shared database",
                f.replication_pending.clone(),
            );
            registry.register(
                "store_shared_database_reachable",
                "1 when the last exchange with the shared database succeeded, else 0",
                f.shared_reachable.clone(),
            );
        });
        f.replication_pending.set(pending);
        f.shared_reachable.set(i64::from(shared_reachable));
    }

    pub(crate) fn websocket_opened(&self) {
        self.families.websocket_sessions.inc();
    }

    pub(crate) fn websocket_closed(&self) {
        self.families.websocket_sessions.dec();
    }

    pub(crate) fn websocket_slow_client(&self) {
        self.families.websocket_slow_closes.inc();
    }
}

fn state_labels(state: &str) -> StateLabels {
    StateLabels {
        state: state.to_owned(),
    }
}

/// Middleware: runs every routed request in an `http_request` span (the caller's
/// `subject` is recorded on it once authenticated) and counts and times it by its route
/// pattern (never the raw path, so thread ids do not explode the label space).
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http_request",
        %method,
        %route,
        subject = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    tracing::debug!(parent: &span, took_ms = started.elapsed().as_millis() as u64, "answered");
    metrics.http_request(&route, &method, status, started.elapsed());
    response
}

/// `GET /metrics`.
pub async fn serve(metrics: &Metrics) -> Response {
    let mut response = metrics.encode().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_appear_under_deckhand_names() {
        let metrics = Metrics::new();
        metrics.http_request("/api/threads", "GET", 200, Duration::from_millis(3));
        metrics.plan("proposed");
        metrics.llm_call(&LlmCall {
            backend: "ollama",
            model: "mistral",
            agent: "planner",
            outcome: "ok",
            took: Duration::from_secs(2),
            prompt_tokens: 120,
            completion_tokens: 40,
            cost_usd: Some(0.25),
        });
        metrics.approval("approved", "plan");
        let text = metrics.encode();
        assert!(text.contains(
            "deckhand_http_requests_total{route=\"/api/threads\",method=\"GET\",status=\"200\"} 1"
        ), "{text}");
        assert!(
            text.contains("deckhand_plans_total{state=\"proposed\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "deckhand_llm_tokens_total{backend=\"ollama\",model=\"mistral\",agent=\"planner\",kind=\"completion\"} 40"
        ), "{text}");
        assert!(
            text.contains("deckhand_http_request_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(text.contains("deckhand_approvals_total{decision=\"approved\",target=\"plan\"} 1"));
        assert!(
            text.contains("deckhand_llm_cost_usd_total{backend=\"ollama\",model=\"mistral\",agent=\"planner\"} 0.25"),
            "{text}"
        );
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            assert!(line.starts_with("deckhand_"), "{line}");
        }
    }

    #[test]
    fn replication_gauges_appear_with_the_first_report_only() {
        let metrics = Metrics::new();
        assert!(!metrics.encode().contains("replication"));
        metrics.store_replication(7, false);
        metrics.store_replication(3, true);
        let text = metrics.encode();
        assert!(
            text.contains("deckhand_store_replication_pending 3"),
            "{text}"
        );
        assert!(
            text.contains("deckhand_store_shared_database_reachable 1"),
            "{text}"
        );
    }
}
