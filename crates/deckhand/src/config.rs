//! deckhand's configuration, with the embedded defaults a fresh machine runs on.
//!
//! Settings come from, in rising precedence: the defaults below, the config file
//! (`deckhand.toml`, see [`FileConfig`]), environment variables and command-line flags.
//! Relative paths in the config file are relative to the file's own directory, so a config
//! file means the same thing wherever deckhand is started from.

use crate::error::{Error, Result};
use deckhand_tools::SandboxLimits;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default address of the HTTP API: loopback only, until auth is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default directory for the SQLite store and the compiled-module cache.
pub const DEFAULT_DATA_DIR: &str = "data";
/// Default sandbox root: the folder tools may read and write.
pub const DEFAULT_WORKSPACE: &str = "workspace";
/// Default directory of the built-in wasm tools.
pub const DEFAULT_BUILTIN_TOOLS_DIR: &str = "tools-wasm/dist";
/// The config file read from the working directory when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "deckhand.toml";
/// The user's own policies, loaded when present unless others are configured.
pub const DEFAULT_POLICY_DIR: &str = "policies/local";

/// Everything `deckhand serve` needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// Where the SQLite store and caches live.
    pub data_dir: PathBuf,
    /// The sandbox root tools are confined to.
    pub workspace: PathBuf,
    /// Directory of the built-in tools (`NAME.wasm` + `NAME.json`).
    pub builtin_tools_dir: PathBuf,
    /// Directories of third-party tool plugins.
    pub plugin_dirs: Vec<PathBuf>,
    /// Limits of every tool call (built-in and plugin alike).
    pub limits: SandboxLimits,
    /// A database URL (`postgres://...` or `sqlite:...`); `None` uses
    /// `DATA_DIR/deckhand.db`.
    pub database_url: Option<String>,
    /// The PostgreSQL shared by several clusters (`postgres://...`) that the local
    /// SQLite store is replicated to (docs/STORE.md); `None` keeps everything local.
    pub shared_database_url: Option<String>,
    /// The policy engine's user policies and guard settings.
    pub policy: PolicyConfig,
    /// The LLM backends and which agent uses which (docs/LLM.md); environment variables
    /// add backends, and with none the offline backend answers.
    pub llm: deckhand_llm::LlmConfig,
    /// The HTTP API: body limit, rate limits, CORS, WebSocket buffers, OIDC, Slack,
    /// Alertmanager (docs/API.md).
    pub api: deckhand_api::ApiConfig,
    /// The git repositories threads land in (docs/GIT.md); none by default.
    pub git: deckhand_git::GitConfig,
    /// Tasks deckhand starts on a cron schedule (docs/HEARTBEAT.md); none by default.
    pub heartbeat: Vec<deckhand_runtime::HeartbeatTask>,
    /// The terraform binary `terraform_plan` runs (docs/TOOLS.md); without one there is
    /// no such tool and the cloud agent only drafts Terraform.
    pub terraform: Option<deckhand_tools::terraform::TerraformConfig>,
    /// Whose identity cluster calls use, the access review before a plan, and where
    /// admin alerts are recorded (docs/CLUSTER.md).
    pub cluster: ClusterConfig,
    /// Where admin alerts go besides the Kubernetes Event and the metric: a webhook,
    /// Slack (docs/CLUSTER.md); nowhere else by default.
    pub alerts: deckhand_tools::cluster::AlertsConfig,
    /// Knowledge search: the optional embedding model (docs/STORE.md).
    pub knowledge: KnowledgeConfig,
}

/// The `[knowledge]` table: search by meaning besides full text, when an embedding model
/// is configured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnowledgeConfig {
    /// `[knowledge.embeddings]`: the model entries and queries are embedded with; none:
    /// full-text search only.
    pub embeddings: Option<deckhand_llm::EmbeddingConfig>,
    /// Entries less similar than this (cosine, −1 to 1) are not offered on similarity
    /// alone; it depends on the model.
    pub min_similarity: f32,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        Self {
            embeddings: None,
            min_similarity: deckhand_store::embeddings::DEFAULT_MIN_SIMILARITY,
        }
    }
}

/// The policy engine's configuration: which user policies to load and what the built-in
/// guards protect beyond their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Directories of user policies (`.rego`, ConstraintTemplates and constraints).
    pub dirs: Vec<PathBuf>,
    /// Whether a directory in `dirs` may be missing (true only for the default one).
    pub dirs_optional: bool,
    /// Namespaces to protect besides kube-system, kube-public and kube-node-lease.
    pub protected_namespaces: Vec<String>,
    /// The namespace deckhand runs in; `None` keeps the default (`deckhand`).
    pub own_namespace: Option<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dirs: vec![PathBuf::from(DEFAULT_POLICY_DIR)],
            dirs_optional: true,
            protected_namespaces: Vec::new(),
            own_namespace: None,
        }
    }
}

impl PolicyConfig {
    /// Builds the policy engine: the built-in guards, configured upward, plus the user
    /// policies. A policy that does not load stops the build with its file and reason.
    pub fn engine(&self) -> Result<deckhand_policy::Engine> {
        let mut guards = deckhand_policy::GuardConfig::default();
        for namespace in &self.protected_namespaces {
            guards = guards.protect_namespace(namespace);
        }
        if let Some(namespace) = &self.own_namespace {
            guards = guards.own_namespace(namespace);
        }
        let mut builder = deckhand_policy::Engine::builder().guards(guards);
        for dir in &self.dirs {
            if self.dirs_optional && !dir.exists() {
                continue;
            }
            builder = builder.policy_directory(dir);
        }
        Ok(builder.build()?)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            workspace: PathBuf::from(DEFAULT_WORKSPACE),
            builtin_tools_dir: PathBuf::from(DEFAULT_BUILTIN_TOOLS_DIR),
            plugin_dirs: Vec::new(),
            limits: SandboxLimits::default(),
            database_url: None,
            shared_database_url: None,
            policy: PolicyConfig::default(),
            llm: deckhand_llm::LlmConfig::default(),
            api: deckhand_api::ApiConfig::default(),
            git: deckhand_git::GitConfig::default(),
            heartbeat: Vec::new(),
            terraform: None,
            cluster: ClusterConfig::default(),
            alerts: deckhand_tools::cluster::AlertsConfig::default(),
            knowledge: KnowledgeConfig::default(),
        }
    }
}

/// The config file, `deckhand.toml`. Every key is optional; unknown keys are errors (a
/// typo must not silently fall back to a default).
///
/// ```toml
/// listen = "127.0.0.1:8080"
/// data_dir = "data"
/// workspace = "workspace"
/// # database_url = "postgres://deckhand@db/deckhand"
/// # shared_database_url = "postgres://deckhand@shared-db/deckhand"
///
/// [tools]
/// builtin_dir = "tools-wasm/dist"
/// plugin_dirs = ["plugins"]
/// time_limit_ms = 2000
/// memory_mib = 64
///
/// [policy]
/// dirs = ["policies/local"]
/// protected_namespaces = ["monitoring"]
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where the HTTP API listens.
    pub listen: Option<SocketAddr>,
    /// Where the SQLite store and caches live.
    pub data_dir: Option<PathBuf>,
    /// The sandbox root.
    pub workspace: Option<PathBuf>,
    /// `postgres://...` or `sqlite:...`.
    pub database_url: Option<String>,
    /// `postgres://...`: the shared database the local store is replicated to.
    pub shared_database_url: Option<String>,
    /// `[tools]`.
    #[serde(default)]
    pub tools: FileTools,
    /// `[policy]`.
    #[serde(default)]
    pub policy: FilePolicy,
    /// `[llm]`: backends and routes (docs/LLM.md).
    #[serde(default)]
    pub llm: Option<deckhand_llm::LlmConfig>,
    /// `[api]`: the HTTP API's limits, OIDC, Slack and Alertmanager (docs/API.md).
    #[serde(default)]
    pub api: Option<deckhand_api::ApiConfig>,
    /// `[git]`: repositories threads land in as branches and pull requests (docs/GIT.md).
    #[serde(default)]
    pub git: Option<deckhand_git::GitConfig>,
    /// `[[heartbeat]]`: scheduled tasks (docs/HEARTBEAT.md).
    #[serde(default)]
    pub heartbeat: Option<Vec<deckhand_runtime::HeartbeatTask>>,
    /// `[terraform]`: the binary `terraform_plan` runs, its time limit and env allow-list.
    #[serde(default)]
    pub terraform: Option<deckhand_tools::terraform::TerraformConfig>,
    /// `[cluster]`: impersonation, the access review, where alerts are recorded.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// `[alerts]`: admin alert webhooks and Slack.
    #[serde(default)]
    pub alerts: Option<deckhand_tools::cluster::AlertsConfig>,
    /// `[knowledge]`: the optional embedding model (docs/STORE.md).
    #[serde(default)]
    pub knowledge: Option<KnowledgeConfig>,
}

/// The `[cluster]` table: whose identity deckhand uses on the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Act as the person on the cluster (`Impersonate-User` / `Impersonate-Group` with
    /// the identity they authenticated with), so their own RBAC applies on top of the
    /// policies. deckhand's ServiceAccount then needs `impersonate` on them (k8s/).
    /// Off: every call is deckhand's own ServiceAccount's.
    pub impersonate: bool,
    /// Before a plan is proposed, ask the cluster (SubjectAccessReview) whether the
    /// person may do each of its cluster steps, and say which permission is missing.
    /// Unset: on exactly when `impersonate` is (their permissions are the ones that
    /// count then); set it to check people's RBAC while deckhand acts as itself.
    pub check_access: Option<bool>,
    /// The namespace of the object admin alerts are recorded on as Kubernetes Events.
    pub alert_namespace: String,
    /// That object's kind (`Deployment`) and name: deckhand's own Deployment.
    pub alert_object_kind: String,
    /// See `alert_object_kind`.
    pub alert_object_name: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            impersonate: false,
            check_access: None,
            alert_namespace: "deckhand".to_owned(),
            alert_object_kind: "Deployment".to_owned(),
            alert_object_name: "deckhand".to_owned(),
        }
    }
}

/// The `[tools]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTools {
    /// Directory of the built-in tools.
    pub builtin_dir: Option<PathBuf>,
    /// Plugin directories (each must exist).
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
    /// CPU-time budget of one call, in milliseconds.
    pub time_limit_ms: Option<u64>,
    /// Memory of one call, in MiB.
    pub memory_mib: Option<u64>,
    /// Output of one call, in KiB.
    pub output_kib: Option<u64>,
    /// Input document of one call, in KiB.
    pub input_kib: Option<u64>,
    /// Calls running at the same time.
    pub max_concurrent_calls: Option<u32>,
}

/// The `[policy]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePolicy {
    /// Directories of user policies (each must exist); replaces the default
    /// `policies/local`.
    pub dirs: Option<Vec<PathBuf>>,
    /// Namespaces to protect besides the defaults.
    #[serde(default)]
    pub protected_namespaces: Vec<String>,
    /// The namespace deckhand runs in.
    pub own_namespace: Option<String>,
}

impl FileConfig {
    /// Reads and parses a config file; errors name the file, line and key.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| Error::ParseConfig {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses config text.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        toml::from_str(text).map_err(|error| error.to_string().trim_end().to_owned())
    }

    /// Lays the file's settings over `config`; relative paths are resolved against
    /// `base` (the file's directory). Limits out of range are reported by [`Config::validate`].
    pub fn apply(self, base: &Path, config: &mut Config) -> Result<()> {
        let resolve = |path: PathBuf| {
            if path.is_absolute() {
                path
            } else {
                base.join(path)
            }
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(dir) = self.data_dir {
            config.data_dir = resolve(dir);
        }
        if let Some(dir) = self.workspace {
            config.workspace = resolve(dir);
        }
        if let Some(url) = self.database_url {
            config.database_url = Some(url);
        }
        if let Some(url) = self.shared_database_url {
            config.shared_database_url = Some(url);
        }
        let tools = self.tools;
        if let Some(dir) = tools.builtin_dir {
            config.builtin_tools_dir = resolve(dir);
        }
        config
            .plugin_dirs
            .extend(tools.plugin_dirs.into_iter().map(resolve));
        let limits = &mut config.limits;
        let too_big = |key: &str| Error::InvalidConfig {
            problems: vec![format!("tools.{key} is too large")],
        };
        if let Some(ms) = tools.time_limit_ms {
            limits.time_limit = Duration::from_millis(ms);
        }
        if let Some(mib) = tools.memory_mib {
            limits.memory_bytes = usize::try_from(mib)
                .ok()
                .and_then(|mib| mib.checked_mul(1 << 20))
                .ok_or_else(|| too_big("memory_mib"))?;
        }
        if let Some(kib) = tools.output_kib {
            limits.output_bytes = usize::try_from(kib)
                .ok()
                .and_then(|kib| kib.checked_mul(1 << 10))
                .ok_or_else(|| too_big("output_kib"))?;
        }
        if let Some(kib) = tools.input_kib {
            limits.input_bytes = usize::try_from(kib)
                .ok()
                .and_then(|kib| kib.checked_mul(1 << 10))
                .ok_or_else(|| too_big("input_kib"))?;
        }
        if let Some(calls) = tools.max_concurrent_calls {
            limits.max_concurrent_calls = calls;
        }
        let policy = self.policy;
        if let Some(dirs) = policy.dirs {
            config.policy.dirs = dirs.into_iter().map(resolve).collect();
            config.policy.dirs_optional = false;
        }
        config
            .policy
            .protected_namespaces
            .extend(policy.protected_namespaces);
        if let Some(namespace) = policy.own_namespace {
            config.policy.own_namespace = Some(namespace);
        }
        if let Some(llm) = self.llm {
            config.llm = llm;
        }
        if let Some(api) = self.api {
            config.api = api;
        }
        if let Some(heartbeat) = self.heartbeat {
            config.heartbeat = heartbeat;
        }
        if let Some(mut terraform) = self.terraform {
            terraform.binary = resolve(terraform.binary);
            config.terraform = Some(terraform);
        }
        if let Some(cluster) = self.cluster {
            config.cluster = cluster;
        }
        if let Some(alerts) = self.alerts {
            config.alerts = alerts;
        }
        if let Some(knowledge) = self.knowledge {
            config.knowledge = knowledge;
        }
        if let Some(mut git) = self.git {
            git.cache_dir = resolve(git.cache_dir);
            for repository in &mut git.repositories {
                repository.path = repository.path.take().map(&resolve);
            }
            config.git = git;
        }
        Ok(())
    }
}

impl Config {
    /// The defaults with the config file laid over them: `path` when given (it must
    /// exist), else `./deckhand.toml` when present.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let mut config = Self::default();
        let path = match path {
            Some(path) => Some(path.to_owned()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|path| path.is_file()),
        };
        if let Some(path) = path {
            let file = FileConfig::read(&path)?;
            let base = path
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            file.apply(base, &mut config)?;
            tracing::debug!(path = %path.display(), "config file read");
        }
        Ok(config)
    }

    /// What is wrong with `shared_database_url`, if anything: it must name a PostgreSQL
    /// server, and it replicates the local SQLite store only.
    pub fn shared_database_problem(&self) -> Option<String> {
        let url = self.shared_database_url.as_deref()?;
        if !["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return Some(
                "shared database URL must start with postgres:// or postgresql://".to_owned(),
            );
        }
        match &self.database_url {
            Some(local) if !local.starts_with("sqlite:") => Some(
                "shared_database_url replicates a local SQLite store: database_url must be \
                 unset or sqlite:... (a PostgreSQL database_url is shared already)"
                    .to_owned(),
            ),
            _ => None,
        }
    }

    /// The SQLite file used when no database URL is given.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("deckhand.db")
    }

    /// Where compiled wasm modules are cached between runs.
    pub fn compile_cache_dir(&self) -> PathBuf {
        self.data_dir.join("wasm-cache")
    }

    /// Where tools come from, with the configured limits, for `deckhand serve`.
    pub fn tools(&self) -> crate::toolbox::ToolsConfig {
        crate::toolbox::ToolsConfig {
            builtin_dir: self.builtin_tools_dir.clone(),
            plugin_dirs: self.plugin_dirs.clone(),
            compile_cache_dir: Some(self.compile_cache_dir()),
            limits: self.limits.clone(),
            terraform: self.terraform.clone(),
        }
    }

    /// Checks the configuration and reports every problem at once.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        let mut not_a_dir = |what: &str, path: &PathBuf| {
            if path.exists() && !path.is_dir() {
                problems.push(format!(
                    "{what} {} exists and is not a directory",
                    path.display()
                ));
            }
        };
        not_a_dir("data dir", &self.data_dir);
        not_a_dir("workspace", &self.workspace);
        not_a_dir("built-in tools dir", &self.builtin_tools_dir);
        for dir in &self.plugin_dirs {
            if !dir.is_dir() {
                problems.push(format!(
                    "plugin tools dir {} is not a directory",
                    dir.display()
                ));
            }
        }
        if !self.policy.dirs_optional {
            for dir in &self.policy.dirs {
                if !dir.is_dir() {
                    problems.push(format!("policy dir {} is not a directory", dir.display()));
                }
            }
        }
        if let Some(url) = &self.database_url {
            let known = ["sqlite:", "postgres://", "postgresql://"];
            if !known.iter().any(|scheme| url.starts_with(scheme)) {
                problems.push(
                    "database URL must start with sqlite:, postgres:// or postgresql://".to_owned(),
                );
            }
        }
        problems.extend(self.shared_database_problem());
        let limits = &self.limits;
        if limits.time_limit < Duration::from_millis(10) {
            problems.push("tools.time_limit_ms must be at least 10".to_owned());
        }
        if limits.memory_bytes < 1 << 20 {
            problems.push("tools.memory_mib must be at least 1".to_owned());
        }
        if limits.output_bytes == 0 || limits.input_bytes == 0 {
            problems.push("tools.output_kib and tools.input_kib must be at least 1".to_owned());
        }
        if limits.max_concurrent_calls == 0 {
            problems.push("tools.max_concurrent_calls must be at least 1".to_owned());
        }
        if let Some(terraform) = &self.terraform {
            problems.extend(terraform.problems());
        }
        if let Some(embeddings) = &self.knowledge.embeddings {
            problems.extend(embeddings.problems());
        }
        if !(-1.0..=1.0).contains(&self.knowledge.min_similarity) {
            problems.push(format!(
                "knowledge.min_similarity must be between -1 and 1, not {}",
                self.knowledge.min_similarity
            ));
        }
        if let Err(deckhand_tools::Error::InvalidAlerts { problems: bad }) =
            self.alerts.targets(&|name| std::env::var(name).ok())
        {
            problems.extend(bad);
        }
        let cluster = &self.cluster;
        for (key, value) in [
            ("alert_namespace", &cluster.alert_namespace),
            ("alert_object_kind", &cluster.alert_object_kind),
            ("alert_object_name", &cluster.alert_object_name),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("cluster.{key} must not be empty"));
            }
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(Error::InvalidConfig { problems }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_ones() {
        let config = Config::default();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.sqlite_path(), PathBuf::from("data/deckhand.db"));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn cluster_and_alerts_tables_are_read_and_checked() {
        let file = FileConfig::parse(
            "[cluster]\nimpersonate = true\nalert_namespace = \"ops\"\n\n[alerts]\nwebhook_url = \"ftp://nope\"\n",
        )
        .expect("parses");
        let mut config = Config::default();
        file.apply(Path::new("."), &mut config).expect("applies");
        assert!(config.cluster.impersonate);
        assert_eq!(config.cluster.check_access, None, "follows impersonate");
        assert_eq!(config.cluster.alert_namespace, "ops");
        let Err(Error::InvalidConfig { problems }) = config.validate() else {
            panic!("a non-HTTP webhook is refused");
        };
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains("alerts.webhook_url")),
            "{problems:?}"
        );
        assert!(FileConfig::parse("[cluster]\nimpersonat = true\n").is_err());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let config = Config {
            workspace: file.path().to_owned(),
            database_url: Some("mysql://db".into()),
            ..Config::default()
        };
        let Err(Error::InvalidConfig { problems }) = config.validate() else {
            panic!("expected invalid config");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn a_shared_database_is_postgres_and_replicates_a_local_sqlite_store() {
        let file = FileConfig::parse("shared_database_url = \"postgres://deckhand@shared/db\"\n")
            .expect("parses");
        let mut config = Config::default();
        file.apply(Path::new("."), &mut config).expect("applies");
        assert_eq!(
            config.shared_database_url.as_deref(),
            Some("postgres://deckhand@shared/db")
        );
        assert_eq!(config.shared_database_problem(), None);
        config.database_url = Some("sqlite:///var/lib/deckhand/deckhand.db".into());
        assert_eq!(config.shared_database_problem(), None);
        config.database_url = Some("postgres://deckhand@db/deckhand".into());
        let problem = config.shared_database_problem().expect("refused");
        assert!(problem.contains("SQLite"), "{problem}");
        config.database_url = None;
        config.shared_database_url = Some("sqlite:shared.db".into());
        let problem = config.shared_database_problem().expect("refused");
        assert!(problem.contains("postgres://"), "{problem}");
    }

    #[test]
    fn file_settings_resolve_against_the_files_directory() {
        let file = FileConfig::parse(
            r#"
            listen = "0.0.0.0:9000"
            workspace = "ws"
            data_dir = "/var/lib/deckhand"
            [tools]
            plugin_dirs = ["plugins"]
            time_limit_ms = 500
            memory_mib = 32
            [policy]
            dirs = ["rules"]
            protected_namespaces = ["monitoring"]
            "#,
        )
        .unwrap();
        let mut config = Config::default();
        file.apply(Path::new("/etc/deckhand"), &mut config).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.workspace, PathBuf::from("/etc/deckhand/ws"));
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/deckhand"));
        assert_eq!(
            config.plugin_dirs,
            vec![PathBuf::from("/etc/deckhand/plugins")]
        );
        assert_eq!(config.limits.time_limit, Duration::from_millis(500));
        assert_eq!(config.limits.memory_bytes, 32 << 20);
        assert_eq!(
            config.policy.dirs,
            vec![PathBuf::from("/etc/deckhand/rules")]
        );
        assert!(!config.policy.dirs_optional);
        assert_eq!(config.policy.protected_namespaces, vec!["monitoring"]);
    }

    #[test]
    fn the_example_file_parses_and_states_the_defaults() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let file = FileConfig::read(&repo.join("deckhand.example.toml")).unwrap();
        let mut config = Config::default();
        file.apply(&repo, &mut config).unwrap();
        let defaults = Config::default();
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.limits, defaults.limits);
        assert_eq!(config.workspace, repo.join(DEFAULT_WORKSPACE));
        assert_eq!(config.policy.dirs, vec![repo.join(DEFAULT_POLICY_DIR)]);
        assert!(config.validate().is_ok(), "{:?}", config.validate());
    }

    #[test]
    fn an_embedding_model_is_configured_under_knowledge_and_checked() {
        let file = FileConfig::parse(
            "[knowledge]\nmin_similarity = 0.6\n\n[knowledge.embeddings]\n\
             provider = \"ollama\"\nmodel = \"nomic-embed-text\"\ntimeout_secs = 5\n",
        )
        .unwrap();
        let mut config = Config::default();
        file.apply(Path::new("."), &mut config).unwrap();
        let embeddings = config.knowledge.embeddings.clone().unwrap();
        assert_eq!(embeddings.provider, deckhand_llm::EmbeddingProvider::Ollama);
        assert_eq!(embeddings.model, "nomic-embed-text");
        assert_eq!(embeddings.timeout_secs, 5.0);
        assert_eq!(config.knowledge.min_similarity, 0.6);
        assert!(config.validate().is_ok(), "{:?}", config.validate());

        // openai_compatible needs its endpoint; a similarity outside −1..1 means nothing.
        let file = FileConfig::parse(
            "[knowledge]\nmin_similarity = 2.0\n[knowledge.embeddings]\n\
             provider = \"openai_compatible\"\nmodel = \"bge\"\n",
        )
        .unwrap();
        let mut config = Config::default();
        file.apply(Path::new("."), &mut config).unwrap();
        let Err(Error::InvalidConfig { problems }) = config.validate() else {
            panic!("accepted");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        let error =
            FileConfig::parse("[knowledge.embeddings]\nprovider = \"ollama\"\nmodle = \"x\"\n")
                .unwrap_err();
        assert!(error.contains("modle"), "{error}");
    }

    #[test]
    fn a_typo_in_the_file_is_an_error_naming_the_key() {
        let error = FileConfig::parse("[tools]\nplugin_dir = [\"p\"]\n").unwrap_err();
        assert!(error.contains("plugin_dir"), "{error}");
        assert!(error.contains("line 2"), "{error}");
        let error = FileConfig::parse("listen = \"nowhere\"\n").unwrap_err();
        assert!(error.contains("listen"), "{error}");
    }

    #[test]
    fn limits_out_of_range_are_rejected() {
        let mut config = Config::default();
        FileConfig::parse("[tools]\ntime_limit_ms = 0\nmax_concurrent_calls = 0\n")
            .unwrap()
            .apply(Path::new("."), &mut config)
            .unwrap();
        let Err(Error::InvalidConfig { problems }) = config.validate() else {
            panic!("expected invalid config");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        let mut config = Config::default();
        let error = FileConfig::parse("[tools]\nmemory_mib = 18446744073709551615\n")
            .unwrap()
            .apply(Path::new("."), &mut config)
            .unwrap_err();
        assert!(error.to_string().contains("memory_mib"), "{error}");
    }

    #[test]
    fn the_terraform_table_resolves_its_binary_and_is_checked() {
        let mut config = Config::default();
        FileConfig::parse("[terraform]\nbinary = \"bin/terraform\"\ntimeout_secs = 0\npass_env = [\"TF_CLI_ARGS\"]\n")
            .unwrap()
            .apply(Path::new("/etc/deckhand"), &mut config)
            .unwrap();
        let terraform = config.terraform.clone().unwrap();
        assert_eq!(
            terraform.binary,
            PathBuf::from("/etc/deckhand/bin/terraform")
        );
        assert_eq!(config.tools().terraform, Some(terraform));
        let Err(Error::InvalidConfig { problems }) = config.validate() else {
            panic!("expected invalid config");
        };
        // The missing binary, the time limit and the refused variable.
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(FileConfig::parse("[terraform]\nbinary = \"t\"\ntimeout = 5\n").is_err());
        assert_eq!(Config::default().terraform, None);
    }

    #[test]
    fn a_missing_default_policy_dir_is_fine_but_a_named_one_is_not() {
        let config = Config::default();
        assert!(config.validate().is_ok());
        let config = Config {
            policy: PolicyConfig {
                dirs: vec![PathBuf::from("/nonexistent/policies")],
                dirs_optional: false,
                ..PolicyConfig::default()
            },
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }
}
