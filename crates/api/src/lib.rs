//! deckhand's HTTP interface, served by `deckhand serve` (axum).
//!
//! [`Api`] builds the whole router from a [`Deckhand`] service, a [`TokenStore`] and an
//! [`ApiConfig`], without binding a socket, so tests drive it with
//! `tower::ServiceExt::oneshot`. [`app`] is the health-only router.
//!
//! # Layout
//! - [`health`]: liveness (`/healthz`) and readiness (`/readyz`) with per-component checks.
//! - [`service`]: the [`Deckhand`] and [`TokenStore`] traits the API serves.
//! - [`model`]: the JSON request, response and event types (with OpenAPI schemas).
//! - [`routes`]: the JSON API under `/api/`.
//! - [`openapi`]: `/openapi.json`, generated from [`model`] and [`routes`].
//! - [`ws`]: `/ws/threads/{id}`, a thread's events streamed and resumable.
//! - [`gui`]: the web command center at `/`, its assets embedded in the binary.
//! - [`auth`]: bearer tokens (hashed), scopes, the [`Viewer`]/[`Operator`]/[`Admin`]
//!   extractors; [`oidc`]: JWTs against a JWKS; [`ratelimit`]: per-caller token buckets.
//! - [`metrics`]: the Prometheus registry and `/metrics`.
//! - [`slack`]: the Slack bot (events, interactivity, slash command, Web API client).
//! - [`alertmanager`]: Alertmanager's webhook.
//! - [`config`]: the `[api]` configuration; [`error`]: the error type and its responses.

pub mod alertmanager;
pub mod auth;
pub mod config;
pub mod error;
pub mod gui;
pub mod health;
pub mod metrics;
pub mod model;
pub mod oidc;
pub mod openapi;
pub mod ratelimit;
pub mod routes;
pub mod service;
pub mod slack;
pub mod ws;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use auth::{Admin, Operator, Viewer};
pub use config::ApiConfig;
pub use error::{Error, Result};
pub use health::{ComponentHealth, HealthCheck, HealthReport};
pub use metrics::Metrics;
pub use model::{Identity, Scope, ThreadEvent, ThreadEventKind};
pub use service::{Deckhand, EventStream, TokenStore};

/// What the health handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The version reported by `/healthz`.
    pub version: &'static str,
    /// The checks `/readyz` runs.
    pub checks: Arc<[Arc<dyn HealthCheck>]>,
}

/// The health routes alone (`/healthz`, `/readyz`), for a process that serves no API.
pub fn app(state: AppState) -> Router {
    health_routes().with_state(state)
}

fn health_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
}

/// What the API handlers share; clones are cheap.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    service: Arc<dyn Deckhand>,
    tokens: Arc<dyn TokenStore>,
    config: ApiConfig,
    oidc: Option<oidc::OidcValidator>,
    limiter: ratelimit::RateLimiter,
    metrics: Metrics,
    slack: Option<slack::SlackBot>,
    shutdown: CancellationToken,
}

impl ApiState {
    /// The service behind the API.
    pub fn service(&self) -> &Arc<dyn Deckhand> {
        &self.inner.service
    }

    /// The token store.
    pub fn tokens(&self) -> &Arc<dyn TokenStore> {
        &self.inner.tokens
    }

    /// The configuration.
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The Slack bot, when configured.
    pub fn slack(&self) -> Option<&slack::SlackBot> {
        self.inner.slack.as_ref()
    }

    /// Cancelled when deckhand shuts down: long-lived tasks (WebSocket sessions, Slack
    /// watchers) end on it.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }
}

/// Builds the router deckhand serves.
#[must_use]
pub struct Api {
    service: Arc<dyn Deckhand>,
    tokens: Arc<dyn TokenStore>,
    health: AppState,
    config: ApiConfig,
    metrics: Metrics,
    http: Option<reqwest::Client>,
    extra: Router,
    shutdown: CancellationToken,
}

/// Timeout of outbound HTTP calls (Slack's Web API, the OIDC provider's keys).
const OUTBOUND_TIMEOUT: Duration = Duration::from_secs(15);

impl Api {
    /// An API over `service` and `tokens`, with the health checks of `health` and the
    /// default configuration.
    pub fn new(service: Arc<dyn Deckhand>, tokens: Arc<dyn TokenStore>, health: AppState) -> Self {
        Self {
            service,
            tokens,
            health,
            config: ApiConfig::default(),
            metrics: Metrics::new(),
            http: None,
            extra: Router::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Uses `config`.
    pub fn config(mut self, config: ApiConfig) -> Self {
        self.config = config;
        self
    }

    /// Records into `metrics` (share the handle with the rest of deckhand).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Uses `client` for outbound calls (Slack, the OIDC provider).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Ends WebSocket sessions (close 1001, naming where to resume) and Slack watchers
    /// when `token` is cancelled. axum's graceful shutdown does not wait for upgraded
    /// connections, so `deckhand serve` cancels this on its shutdown signal.
    pub fn shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }

    /// Serves `routes` too, behind the same metrics, body limit and CORS layers (an
    /// embedder's own pages or hooks). They handle their own authentication. The web
    /// command center ([`gui`]) is always served at `/`.
    pub fn merge(mut self, routes: Router) -> Self {
        self.extra = self.extra.merge(routes);
        self
    }

    /// The router.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a configuration that cannot work (a CORS origin that is not
    /// a valid header value), [`Error::Internal`] when the HTTP client cannot be built.
    pub fn build(self) -> Result<Router> {
        self.build_with_state().map(|(router, _)| router)
    }

    /// [`Api::build`], also giving the state the routes share: what the embedder needs
    /// to announce threads it starts itself in Slack ([`slack::announce`]).
    ///
    /// # Errors
    /// As [`Api::build`].
    pub fn build_with_state(self) -> Result<(Router, ApiState)> {
        let http = match self.http {
            Some(client) => client,
            None => reqwest::Client::builder()
                .timeout(OUTBOUND_TIMEOUT)
                .build()
                .map_err(|error| Error::internal("building the HTTP client", error))?,
        };
        let cors = cors_layer(&self.config.cors_allowed_origins)?;
        let state = ApiState {
            inner: Arc::new(Inner {
                service: self.service,
                tokens: self.tokens,
                oidc: self
                    .config
                    .oidc
                    .clone()
                    .map(|config| oidc::OidcValidator::new(config, http.clone())),
                limiter: ratelimit::RateLimiter::new(self.config.rate_limit.clone()),
                metrics: self.metrics.clone(),
                slack: self
                    .config
                    .slack
                    .clone()
                    .map(|config| slack::SlackBot::new(config, http.clone())),
                config: self.config,
                shutdown: self.shutdown,
            }),
        };
        let max_body = state.config().max_body_bytes;
        let api = Router::new()
            .merge(routes::router())
            .merge(openapi::router())
            .merge(ws::router())
            .merge(slack::router())
            .merge(alertmanager::router())
            .route("/metrics", get(metrics_route))
            .with_state(state.clone())
            .merge(health_routes().with_state(self.health))
            .merge(gui::router())
            .merge(self.extra)
            .route_layer(axum::middleware::from_fn_with_state(
                self.metrics,
                metrics::track,
            ))
            .layer(DefaultBodyLimit::max(max_body));
        let router = match cors {
            Some(cors) => api.layer(cors),
            None => api,
        };
        Ok((router, state))
    }
}

async fn metrics_route(
    axum::extract::State(state): axum::extract::State<ApiState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !state.config().metrics_public {
        match state.authenticate(&headers).await {
            Ok(_) => {}
            Err(error) => return error.into_response(),
        }
    }
    metrics::serve(state.metrics()).await
}

fn cors_layer(origins: &[String]) -> Result<Option<tower_http::cors::CorsLayer>> {
    if origins.is_empty() {
        return Ok(None);
    }
    let origins = origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin)
                .map_err(|_| Error::invalid(format!("CORS origin {origin:?} is not valid")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(600)),
    ))
}
