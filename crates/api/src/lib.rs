//! deckhand's HTTP interface, served by `deckhand serve` (axum).
//!
//! [`app`] builds the router without binding a socket, so tests drive it with
//! `tower::ServiceExt::oneshot`. The thread API, WebSocket streams, the web command center
//! and the Slack bot are added to this router as the runtime grows.
//!
//! # Layout
//! - [`health`]: liveness (`/healthz`) and readiness (`/readyz`) with per-component checks.

pub mod health;

use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub use health::{ComponentHealth, HealthCheck, HealthReport};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The version reported by `/healthz`.
    pub version: &'static str,
    /// The checks `/readyz` runs.
    pub checks: Arc<[Arc<dyn HealthCheck>]>,
}

/// The router with every route deckhand serves.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(state)
}
