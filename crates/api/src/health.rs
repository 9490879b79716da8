//! Liveness and readiness.
//!
//! `/healthz` answers as long as the process serves requests: a liveness probe must not
//! fail because a dependency is down, or Kubernetes restarts a healthy process. `/readyz`
//! runs every [`HealthCheck`] and answers 503 when one fails, with the reasons.

use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The state of one component (the store, the cluster, the tools).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentHealth {
    /// The component's name.
    pub name: String,
    /// Whether it works.
    pub ok: bool,
    /// What was checked, or what is wrong.
    pub detail: String,
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// deckhand's version.
    pub version: &'static str,
    /// One entry per check.
    pub components: Vec<ComponentHealth>,
}

/// A readiness check of one component.
pub trait HealthCheck: Send + Sync {
    /// The component's name.
    fn name(&self) -> &str;

    /// Checks the component: `Ok(detail)` when it works, `Err(reason)` when not.
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>>;
}

/// `GET /healthz`: the process is alive.
pub async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": state.version }))
}

/// `GET /readyz`: every component works (200) or not (503), with details.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    let mut components = Vec::with_capacity(state.checks.len());
    for check in state.checks.iter() {
        let (ok, detail) = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
            Ok(Ok(detail)) => (true, detail),
            Ok(Err(reason)) => (false, reason),
            Err(_) => (false, format!("no answer within {CHECK_TIMEOUT:?}")),
        };
        components.push(ComponentHealth {
            name: check.name().to_owned(),
            ok,
            detail,
        });
    }
    let ready = components.iter().all(|component| component.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let report = HealthReport {
        status: if ready { "ok" } else { "unavailable" },
        version: state.version,
        components,
    };
    (status, Json(report))
}
