//! Readiness checks of the parts `deckhand serve` depends on.

use deckhand_api::HealthCheck;
use deckhand_store::Database;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// The thread store answers queries.
pub struct StoreCheck {
    /// The store.
    pub database: Database,
}

impl HealthCheck for StoreCheck {
    fn name(&self) -> &str {
        "store"
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            self.database
                .ping()
                .await
                .map_err(|error| error.to_string())?;
            let migrations = self
                .database
                .applied_migrations()
                .await
                .map_err(|error| error.to_string())?;
            Ok(format!(
                "{:?}, {} migrations applied",
                self.database.backend(),
                migrations.len()
            ))
        })
    }
}

/// At least one sandboxed tool was loaded.
pub struct ToolsCheck {
    /// Where tools were loaded from.
    pub dir: PathBuf,
    /// The names of the tools that loaded.
    pub loaded: Vec<String>,
}

impl HealthCheck for ToolsCheck {
    fn name(&self) -> &str {
        "tools"
    }

    fn check(&self) -> CheckFuture<'_> {
        let result = match self.loaded.is_empty() {
            true => Err(format!(
                "no tool modules loaded from {}; build them with scripts/build-tools-wasm.sh",
                self.dir.display()
            )),
            false => Ok(format!(
                "{} loaded: {}",
                self.loaded.len(),
                self.loaded.join(", ")
            )),
        };
        Box::pin(async move { result })
    }
}

/// The Kubernetes API server answers, when a cluster is configured. Without one deckhand
/// still serves (it can write manifests), and says so.
pub struct ClusterCheck {
    /// The client, or why there is none.
    pub client: Result<kube::Client, String>,
}

impl HealthCheck for ClusterCheck {
    fn name(&self) -> &str {
        "cluster"
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match &self.client {
                Err(why) => Ok(format!("no cluster configured: {why}")),
                Ok(client) => client
                    .apiserver_version()
                    .await
                    .map(|version| format!("Kubernetes {}", version.git_version))
                    .map_err(|error| format!("the API server does not answer: {error}")),
            }
        })
    }
}
