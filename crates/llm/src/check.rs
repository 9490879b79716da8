//! `deckhand llm check`: which backends answer, and which model each agent will use.

use crate::config::{self, Env, LlmConfig, AGENTS};
use crate::error::Result;
use crate::router::Router;
use serde::Serialize;
use std::time::Duration;

/// How long a backend has to answer its probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One backend's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendCheck {
    /// Its name.
    pub name: String,
    /// The API it speaks.
    pub kind: String,
    /// The model it asks for.
    pub model: String,
    /// Where it is (empty for the offline backend).
    pub endpoint: String,
    /// The context window the router fits prompts into.
    pub context_window: usize,
    /// Whether it answered.
    pub reachable: bool,
    /// What the probe found, or why it failed.
    pub detail: String,
}

/// One agent's route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteCheck {
    /// The agent (or `default`).
    pub agent: String,
    /// The backends it tries, in order.
    pub chain: Vec<String>,
    /// The first reachable backend of the chain, which will answer.
    pub uses: Option<String>,
    /// That backend's model.
    pub model: Option<String>,
}

/// What `deckhand llm check` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// Every backend.
    pub backends: Vec<BackendCheck>,
    /// Every agent's route.
    pub routes: Vec<RouteCheck>,
    /// What discovery found.
    pub notes: Vec<String>,
}

impl CheckReport {
    /// Whether some agent will be answered by a model (not only the offline backend).
    pub fn has_model(&self) -> bool {
        self.routes.iter().any(|route| {
            route
                .model
                .as_deref()
                .is_some_and(|m| m != crate::offline::OFFLINE_MODEL)
        })
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "backends:")?;
        for backend in &self.backends {
            let state = match backend.reachable {
                true => "ok  ",
                false => "FAIL",
            };
            write!(
                f,
                "  {state} {} ({}, {}",
                backend.name, backend.kind, backend.model
            )?;
            if !backend.endpoint.is_empty() {
                write!(f, " at {}", backend.endpoint)?;
            }
            writeln!(f, "): {}", backend.detail)?;
        }
        writeln!(f, "agents:")?;
        for route in &self.routes {
            let uses = match (&route.uses, &route.model) {
                (Some(backend), Some(model)) => format!("{backend} ({model})"),
                _ => "nothing reachable".to_owned(),
            };
            writeln!(
                f,
                "  {:<9} -> {uses}   [chain: {}]",
                route.agent,
                route.chain.join(" > ")
            )?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

/// Builds the router `config` and `env` describe (with discovery) and checks it.
pub async fn check(config: &LlmConfig, env: Env<'_>) -> Result<CheckReport> {
    let router = Router::discover(config, env).await?;
    Ok(check_router(&router).await)
}

/// Probes every backend of `router` (concurrently) and resolves every agent's route.
pub async fn check_router(router: &Router) -> CheckReport {
    let probes = router.entries().iter().map(|(name, entry)| {
        let backend = entry.backend.clone();
        let name = name.clone();
        let endpoint = entry.endpoint.clone();
        let window = entry.window;
        tokio::spawn(async move {
            let (reachable, detail) =
                match tokio::time::timeout(PROBE_TIMEOUT, backend.probe()).await {
                    Ok(Ok(detail)) => (true, detail),
                    Ok(Err(error)) => (false, error.to_string()),
                    Err(_) => (false, format!("no answer within {PROBE_TIMEOUT:?}")),
                };
            BackendCheck {
                name,
                kind: backend.kind().to_owned(),
                model: backend.model().to_owned(),
                endpoint,
                context_window: window,
                reachable,
                detail,
            }
        })
    });
    let mut backends = Vec::new();
    for probe in probes.collect::<Vec<_>>() {
        if let Ok(check) = probe.await {
            backends.push(check);
        }
    }
    let mut routes = Vec::new();
    for agent in AGENTS.iter().copied().chain([config::DEFAULT_ROUTE]) {
        let chain = router.chain(agent);
        let uses = chain
            .iter()
            .find_map(|name| backends.iter().find(|b| &b.name == name && b.reachable));
        routes.push(RouteCheck {
            agent: agent.to_owned(),
            uses: uses.map(|b| b.name.clone()),
            model: uses.map(|b| b.model.clone()),
            chain,
        });
    }
    CheckReport {
        backends,
        routes,
        notes: router.notes().to_vec(),
    }
}
