//! `deckhand serve`: starts every part and serves the HTTP API, the WebSocket streams and
//! the web command center until shutdown.

use crate::checks::{ClusterCheck, StoreCheck, ToolsCheck};
use crate::conductor::Conductor;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::service::{Service, StoreTokens};
use deckhand_api::{Api, AppState, HealthCheck};
use deckhand_runtime::token::TokenStore as _;
use deckhand_runtime::{ApiToken, Interface};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The version `deckhand` reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the first admin token is written (mode 0600) when the store has no token.
pub const INITIAL_TOKEN_FILE: &str = "initial-admin-token";

/// Starts the store, the tools, the cluster connection and the model router from
/// `config`, then serves the HTTP API and the command center on `listener` until
/// `shutdown` completes. In-flight requests finish first; background work (planning,
/// runs) is awaited.
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

    let conductor = Arc::new(Conductor::open(&config, Interface::Api).await?);
    let database = conductor.database().clone();
    tracing::info!(backend = ?database.backend(), "thread store ready");
    let loaded: Vec<String> = conductor
        .catalog()
        .entries()
        .map(|entry| entry.name.clone())
        .collect();
    tracing::info!(tools = ?loaded, "tool catalogue ready");
    for note in conductor.router().notes() {
        tracing::info!("llm: {note}");
    }

    let client = cluster_client().await;
    match &client {
        Ok(_) => tracing::info!("cluster configuration found"),
        Err(why) => tracing::warn!(%why, "no cluster configured; cluster tools are unavailable"),
    }
    let tokens = StoreTokens::new(database.clone());
    bootstrap_admin_token(&database, &config.data_dir, listener.local_addr().ok()).await?;

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
    let metrics = deckhand_api::Metrics::new();
    conductor.events().count_in(metrics.clone());
    conductor
        .router()
        .usage()
        .add_sink(llm_usage_sink(database.clone(), metrics.clone()));
    let service = Arc::new(Service::new(conductor.clone(), &config.policy.dirs));
    let stop = CancellationToken::new();
    let replication_gauges = database.is_replicated().then(|| {
        tokio::spawn(report_replication(
            database.clone(),
            metrics.clone(),
            stop.clone(),
        ))
    });
    let router = Api::new(
        service.clone(),
        Arc::new(tokens),
        AppState {
            version: VERSION,
            checks: checks.into(),
        },
    )
    .config(config.api.clone())
    .metrics(metrics)
    .shutdown(stop.clone())
    .build_with_state()?;
    let (router, api_state) = router;
    let heartbeat = if config.heartbeat.iter().any(|task| task.enabled) {
        let runner =
            deckhand_runtime::Heartbeat::new(config.heartbeat.clone()).map_err(|error| {
                Error::InvalidConfig {
                    problems: vec![format!("[[heartbeat]]: {error}")],
                }
            })?;
        tracing::info!(tasks = runner.tasks().len(), "heartbeat tasks scheduled");
        Some(tokio::spawn(runner.run(
            Arc::new(database.clone()),
            Arc::new(AnnouncedLauncher {
                service: service.clone(),
                api: api_state,
            }),
            Arc::new(deckhand_runtime::heartbeat::SystemClock),
            stop.clone(),
        )))
    } else {
        None
    };
    let address = listener.local_addr().map_err(Error::Http)?;
    tracing::info!(%address, "deckhand listening: the command center is at http://{address}/");
    let stopping = stop.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // WebSocket sessions are not waited for by axum: end them now.
            stopping.cancel();
        })
        .await
        .map_err(Error::Http)?;
    stop.cancel();
    if let Some(heartbeat) = heartbeat {
        let _ = heartbeat.await;
    }
    if let Some(gauges) = replication_gauges {
        let _ = gauges.await;
    }
    service.drain().await;
    drop(service);
    match Arc::try_unwrap(conductor) {
        Ok(conductor) => conductor.close().await,
        Err(_) => database.close().await,
    }
    tracing::info!("deckhand stopped");
    Ok(())
}

/// How often `/metrics` learns the replication queue's length.
const REPLICATION_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps `/metrics` told how many writes wait for the shared database and whether it
/// answers, until `stop`.
async fn report_replication(
    database: deckhand_store::Database,
    metrics: deckhand_api::Metrics,
    stop: CancellationToken,
) {
    loop {
        match database.replication_pending().await {
            Ok(pending) => metrics.store_replication(pending, database.shared_reachable()),
            Err(error) => tracing::debug!(%error, "cannot count the replication queue"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(REPLICATION_REPORT_INTERVAL) => {}
        }
    }
}

/// Every model call is kept per thread in the store (`llm_usage`) and counted in
/// `/metrics` (`deckhand_llm_*` by backend and model).
fn llm_usage_sink(
    database: deckhand_store::Database,
    metrics: deckhand_api::Metrics,
) -> Arc<dyn deckhand_llm::UsageSink> {
    deckhand_llm::sink_fn("store", move |record: deckhand_llm::UsageRecord| {
        let database = database.clone();
        metrics.llm_call(&deckhand_api::metrics::LlmCall {
            backend: &record.backend,
            model: &record.model,
            agent: &record.agent,
            outcome: match (&record.error, record.answered) {
                (None, _) => "ok",
                (Some(kind), _) if kind == "timeout" => "timeout",
                _ => "error",
            },
            took: record.latency,
            prompt_tokens: record.tokens_in,
            completion_tokens: record.tokens_out,
            cost_usd: record.cost_usd,
        });
        async move {
            database
                .record_llm_usage(&deckhand_store::LlmUsage {
                    thread_id: record.thread_id,
                    at: chrono::DateTime::<chrono::Utc>::from(record.at),
                    agent: record.agent,
                    backend: record.backend,
                    model: record.model,
                    purpose: record.purpose.as_str().to_owned(),
                    tokens_in: record.tokens_in,
                    tokens_out: record.tokens_out,
                    latency_ms: u64::try_from(record.latency.as_millis()).unwrap_or(u64::MAX),
                    answered: record.answered,
                    error_kind: record.error,
                    error_message: record.error_message,
                    cost_usd: record.cost_usd,
                    redactions: record.redactions,
                })
                .await
        }
    })
}

/// With no API token in the store, issues an admin token, writes it to
/// `DATA_DIR/initial-admin-token` (readable by the owner only) and says where it is:
/// the person opening the command center for the first time logs in with it.
async fn bootstrap_admin_token(
    database: &deckhand_store::Database,
    data_dir: &Path,
    address: Option<std::net::SocketAddr>,
) -> Result<()> {
    let existing = database
        .tokens()
        .await
        .map_err(|error| Error::Bootstrap(format!("{error:#}")))?;
    let path: PathBuf = data_dir.join(INITIAL_TOKEN_FILE);
    if !existing.is_empty() {
        if path.is_file() {
            tracing::info!(file = %path.display(), "the first admin token is in this file (delete it once you made your own tokens)");
        }
        return Ok(());
    }
    let (token, secret) = ApiToken::issue("initial admin", vec!["admin".to_owned()]);
    let token = token.for_identity("admin", Vec::new(), "deckhand serve");
    write_private(&path, &format!("{secret}\n"))?;
    database
        .create_token(&token)
        .await
        .map_err(|error| Error::Bootstrap(format!("{error:#}")))?;
    let url = address.map_or_else(String::new, |address| {
        format!("http://{address}/#token={secret}")
    });
    tracing::warn!(
        file = %path.display(),
        "no API token existed: issued an admin token and wrote it to this file; log in with it{}",
        if url.is_empty() { String::new() } else { format!(" or open {url}") }
    );
    Ok(())
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|error| Error::Bootstrap(format!("{}: {error}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(|error| Error::Bootstrap(format!("{}: {error}", path.display())))
}

/// A client for the cluster in `KUBECONFIG`, `~/.kube/config` or the in-cluster
/// ServiceAccount, or why there is none.
async fn cluster_client() -> std::result::Result<kube::Client, String> {
    let config = kube::Config::infer()
        .await
        .map_err(|error| error.to_string())?;
    kube::Client::try_from(config).map_err(|error| Error::Cluster(error).to_string())
}

/// Scheduled tasks start through the service and are announced in Slack's notify
/// channel (when one is configured), where their plans and results follow.
struct AnnouncedLauncher {
    service: Arc<Service>,
    api: deckhand_api::ApiState,
}

impl deckhand_runtime::HeartbeatLauncher for AnnouncedLauncher {
    async fn launch(
        &self,
        task: &deckhand_runtime::HeartbeatTask,
        scheduled_for: chrono::DateTime<chrono::Utc>,
    ) -> std::result::Result<deckhand_runtime::ThreadId, String> {
        let thread = self.service.launch(task, scheduled_for).await?;
        let who = deckhand_api::model::Identity {
            subject: format!("heartbeat:{}", task.name),
            groups: Vec::new(),
            scope: deckhand_api::model::Scope::Viewer,
            source: deckhand_api::model::AuthSource::Scheduled {
                task: task.name.clone(),
            },
        };
        let text = format!(
            ":heartbeat: Scheduled task `{}`: {}",
            task.name,
            task.request_text()
        );
        // The run goes on whether or not Slack takes the announcement.
        if let Err(error) = deckhand_api::slack::announce(&self.api, who, thread, &text).await {
            tracing::warn!(%error, task = %task.name, "the scheduled run was not announced in Slack");
        }
        Ok(thread)
    }
}
