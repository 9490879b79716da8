//! What the plan-handling commands (`plan`, `ask`, `run`, `eval`) open: the store, the
//! tools (wasm tools, the analyzers, and the cluster tools when a cluster is
//! configured), and who is asking. One place, so a plan `deckhand plan` makes is checked
//! by `deckhand run` against the same tools.

use crate::alerting::Alerting;
use crate::config::Config;
use crate::journal::{AuditFlush, StoreAudit, StoreJournal};
use deckhand_agents::register_analyzers;
use deckhand_runtime::scheduler::{EventKind, PlanEvent};
use deckhand_store::Database;
use deckhand_tools::cluster::{register_cluster_tools, ClusterGate};
use deckhand_tools::ToolRegistry;
use std::io::Write;
use std::sync::Arc;

/// The person running the command, for approvals, threads and the audit log.
pub fn whoami() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "cli".to_owned())
}

/// The store and the tools of one command.
pub struct Session {
    /// The same store as `deckhand serve`.
    pub database: Database,
    /// Every tool a step may call.
    pub registry: Arc<ToolRegistry>,
    /// Whether the cluster tools are registered (a cluster is configured).
    pub connected: bool,
    /// The cluster gate, when a cluster is configured: prior states go to the store's
    /// snapshots, decisions and writes to its audit log.
    pub gate: Option<ClusterGate>,
    /// Where `deckhand serve` has everything counted (empty for the CLI).
    pub metrics: crate::journal::MetricsCell,
    /// Whether cluster calls act as the person they are made for (`[cluster]
    /// impersonate`, with a cluster connected).
    pub impersonate: bool,
    /// Whether each plan's cluster steps are checked against the person's permissions
    /// before it is proposed (`[cluster] check_access`, with a cluster connected).
    pub check_access: bool,
    audit_flush: Option<AuditFlush>,
    alerting: Option<Alerting>,
}

impl Session {
    /// Ends the session: waits until every audit record is stored, then closes the store.
    pub async fn close(self) {
        let Session {
            database,
            registry,
            gate,
            audit_flush,
            alerting,
            ..
        } = self;
        // The writer stops once every sender (held by the gate and its tools) is gone.
        drop(registry);
        drop(gate);
        if let Some(flush) = audit_flush {
            flush.finish().await;
        }
        if let Some(alerting) = alerting {
            alerting.close().await;
        }
        database.close().await;
    }
}

/// What an embedder brings instead of what the configuration names: its own store and
/// its own cluster client configuration.
#[derive(Default)]
pub struct Parts {
    /// The store to use instead of `database_url` / the SQLite file, as given
    /// (`shared_database_url` is not applied to it: replicate it with
    /// `Database::replicate_to` before passing it).
    pub database: Option<Database>,
    /// The cluster to work on instead of `KUBECONFIG` / the in-cluster config;
    /// [`Cluster::None`] runs without one.
    pub cluster: Cluster,
}

/// Which cluster a session works on.
#[derive(Default)]
pub enum Cluster {
    /// The one `KUBECONFIG`, `~/.kube/config` or the in-cluster ServiceAccount names.
    #[default]
    Inferred,
    /// This one (boxed: a kube config is large).
    Config(Box<kube::Config>),
    /// None: cluster tools are planned but cannot run.
    None,
}

/// Opens the store the configuration names (`database_url`, else the SQLite file),
/// replicated to `shared_database_url` when one is set. Closing it
/// ([`Database::close`]) sends what is queued for a bounded time. The error is one line
/// for the person.
pub async fn open_database(config: &Config) -> Result<Database, String> {
    if let Some(problem) = config.shared_database_problem() {
        return Err(problem);
    }
    let database = match &config.database_url {
        Some(url) => Database::connect(url).await,
        None => Database::open_sqlite(&config.sqlite_path()).await,
    }
    .map_err(|error| format!("{error:#}"))?;
    match &config.shared_database_url {
        Some(url) => database
            .replicate_to(deckhand_store::ReplicationConfig::new(url))
            .map_err(|error| format!("{error:#}")),
        None => Ok(database),
    }
}

/// Creates the data and workspace directories, opens the store and loads the tools.
/// Errors are one line for the person.
pub async fn open(config: &Config) -> Result<Session, String> {
    open_with(config, Parts::default()).await
}

/// [`open`] with an embedder's own parts.
pub async fn open_with(config: &Config, parts: Parts) -> Result<Session, String> {
    for dir in [&config.data_dir, &config.workspace] {
        std::fs::create_dir_all(dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    }
    let database = match parts.database {
        Some(database) => database,
        None => open_database(config).await?,
    };
    let tools = config.tools();
    let mut registry = tokio::task::spawn_blocking(move || crate::toolbox::build(&tools))
        .await
        .map_err(|error| format!("loading the tools: {error}"))?
        .map_err(|error| format!("{error:#}"))?
        .registry;
    register_analyzers(&mut registry).map_err(|error| format!("{error:#}"))?;
    let mut gate = None;
    let mut audit_flush = None;
    let mut alerting = None;
    let metrics = crate::journal::MetricsCell::default();
    let kube_config = match parts.cluster {
        Cluster::Inferred => kube::Config::infer().await.ok(),
        Cluster::Config(kube_config) => Some(*kube_config),
        Cluster::None => None,
    };
    if let Some(kube_config) = kube_config {
        let policy = config
            .policy
            .engine()
            .map_err(|error| format!("{error:#}"))?;
        let (audit, flush) = StoreAudit::start(database.clone(), metrics.clone());
        let cluster = ClusterGate::from_config(kube_config, policy)
            .map_err(|error| format!("the Kubernetes configuration is unusable: {error:#}"))?
            .with_journal(Arc::new(StoreJournal::new(database.clone())))
            .with_audit(Arc::new(audit));
        let alerts = Alerting::start(config, cluster.client().clone(), metrics.clone())?;
        let cluster = cluster.with_alerts(alerts.sink());
        alerting = Some(alerts);
        register_cluster_tools(&mut registry, &cluster).map_err(|error| format!("{error:#}"))?;
        gate = Some(cluster);
        audit_flush = Some(flush);
    }
    Ok(Session {
        database,
        registry: Arc::new(registry),
        connected: gate.is_some(),
        impersonate: gate.is_some() && config.cluster.impersonate,
        check_access: gate.is_some()
            && config
                .cluster
                .check_access
                .unwrap_or(config.cluster.impersonate),
        gate,
        metrics,
        audit_flush,
        alerting,
    })
}

/// Prints a step's transition as one progress line (`[step] state: reason`).
pub fn print_step_event(event: &PlanEvent, err: &mut (dyn Write + Send)) {
    if let (Some(step), EventKind::Step { state, reason, .. }) = (&event.step_id, &event.kind) {
        let reason = reason
            .as_deref()
            .map(|reason| format!(": {reason}"))
            .unwrap_or_default();
        let _ = writeln!(err, "[{step}] {}{reason}", state.as_str());
    }
}
