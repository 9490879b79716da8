//! `deckhand serve`: starts every part and serves the HTTP API until shutdown.

use crate::checks::{ClusterCheck, StoreCheck, ToolsCheck};
use crate::config::Config;
use crate::error::{Error, Result};
use deckhand_api::{app, AppState, HealthCheck};
use deckhand_store::Database;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The version `deckhand` reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Starts the store, the tools and the cluster connection from `config`, then serves the
/// HTTP API on `listener` until `shutdown` completes. In-flight requests finish first.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    // Policies that do not load stop the start: running without them would be unsafe.
    let policy = config.policy.engine()?;
    let (rego_rules, templates, constraints) = policy.user_policy_counts();
    tracing::info!(
        rego_rules,
        templates,
        constraints,
        "policy engine ready (built-in guards always on)"
    );

    for (what, dir) in [("data", &config.data_dir), ("workspace", &config.workspace)] {
        std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
            what,
            path: dir.clone(),
            source,
        })?;
    }

    let database = match &config.database_url {
        Some(url) => Database::connect(url).await?,
        None => Database::open_sqlite(&config.sqlite_path()).await?,
    };
    tracing::info!(backend = ?database.backend(), "thread store ready");

    let toolbox = {
        let tools = config.tools();
        tokio::task::spawn_blocking(move || crate::toolbox::build(&tools))
            .await
            .map_err(|error| Error::Http(std::io::Error::other(error)))??
    };
    let loaded: Vec<String> = toolbox
        .registry
        .specs()
        .map(|spec| spec.name.clone())
        .collect();
    tracing::info!(tools = ?loaded, skipped = toolbox.skipped.len(), "tool registry ready");

    let client = cluster_client().await;
    match &client {
        Ok(_) => tracing::info!("cluster configuration found"),
        Err(why) => tracing::warn!(%why, "no cluster configured; cluster tools are unavailable"),
    }

    let checks: Vec<Arc<dyn HealthCheck>> = vec![
        Arc::new(StoreCheck {
            database: database.clone(),
        }),
        Arc::new(ToolsCheck {
            dir: config.builtin_tools_dir.clone(),
            loaded,
        }),
        Arc::new(ClusterCheck { client }),
    ];
    let router = app(AppState {
        version: VERSION,
        checks: checks.into(),
    });
    let address = listener.local_addr().map_err(Error::Http)?;
    tracing::info!(%address, "deckhand listening on http://{address}");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Http)?;
    database.close().await;
    tracing::info!("deckhand stopped");
    Ok(())
}

/// A client for the cluster in `KUBECONFIG`, `~/.kube/config` or the in-cluster
/// ServiceAccount, or why there is none.
async fn cluster_client() -> std::result::Result<kube::Client, String> {
    let config = kube::Config::infer()
        .await
        .map_err(|error| error.to_string())?;
    kube::Client::try_from(config).map_err(|error| Error::Cluster(error).to_string())
}
