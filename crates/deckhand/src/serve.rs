//! `deckhand serve`: starts every part and serves the HTTP API until shutdown.

use crate::checks::{ClusterCheck, StoreCheck, ToolsCheck};
use crate::config::Config;
use crate::error::{Error, Result};
use deckhand_api::{app, AppState, HealthCheck};
use deckhand_store::Database;
use deckhand_tools::sandbox::SandboxConfig;
use deckhand_tools::{SandboxLimits, ToolModule, WasmSandbox, WorkspaceAccess};
use std::future::Future;
use std::path::Path;
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

    let (sandbox, tools) = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || load_tools(&config))
            .await
            .map_err(|error| Error::Http(std::io::Error::other(error)))??
    };
    let loaded: Vec<String> = tools.iter().map(|tool| tool.name().to_owned()).collect();
    tracing::info!(tools = ?loaded, limits = ?sandbox.limits(), "tool sandbox ready");

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
            dir: config.tools_dir.clone(),
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

/// Sets up the sandbox and loads every `.wasm` module in the tools directory. A module
/// that does not load is reported and skipped, never half-loaded.
fn load_tools(config: &Config) -> Result<(WasmSandbox, Vec<ToolModule>)> {
    let sandbox = WasmSandbox::new(SandboxConfig {
        limits: SandboxLimits::default(),
        compile_cache_dir: Some(config.compile_cache_dir()),
    })?;
    let mut tools = Vec::new();
    for path in wasm_modules(&config.tools_dir)? {
        let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        match sandbox.load(name, &path, WorkspaceAccess::ReadOnly) {
            Ok(tool) => tools.push(tool),
            Err(error) => tracing::error!(tool = name, %error, "tool module skipped"),
        }
    }
    Ok((sandbox, tools))
}

/// The `.wasm` files in `dir`, sorted; none when the directory does not exist.
fn wasm_modules(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::ToolsDir {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut modules = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| Error::ToolsDir {
                path: dir.to_owned(),
                source,
            })?
            .path();
        if path
            .extension()
            .is_some_and(|extension| extension == "wasm")
        {
            modules.push(path);
        }
    }
    modules.sort();
    Ok(modules)
}

/// A client for the cluster in `KUBECONFIG`, `~/.kube/config` or the in-cluster
/// ServiceAccount, or why there is none.
async fn cluster_client() -> std::result::Result<kube::Client, String> {
    let config = kube::Config::infer()
        .await
        .map_err(|error| error.to_string())?;
    kube::Client::try_from(config).map_err(|error| Error::Cluster(error).to_string())
}
