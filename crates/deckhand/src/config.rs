//! deckhand's configuration, with the embedded defaults a fresh machine runs on.

use crate::error::{Error, Result};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Default address of the HTTP API: loopback only, until auth is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default directory for the SQLite store and the compiled-module cache.
pub const DEFAULT_DATA_DIR: &str = "data";
/// Default sandbox root: the folder tools may read and write.
pub const DEFAULT_WORKSPACE: &str = "workspace";
/// Default directory of the built-in wasm tools.
pub const DEFAULT_BUILTIN_TOOLS_DIR: &str = "tools-wasm/dist";

/// Everything `deckhand serve` needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// A database URL (`postgres://...` or `sqlite:...`); `None` uses
    /// `DATA_DIR/deckhand.db`.
    pub database_url: Option<String>,
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
            database_url: None,
        }
    }
}

impl Config {
    /// The SQLite file used when no database URL is given.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("deckhand.db")
    }

    /// Where compiled wasm modules are cached between runs.
    pub fn compile_cache_dir(&self) -> PathBuf {
        self.data_dir.join("wasm-cache")
    }

    /// Where tools come from, with the default limits.
    pub fn tools(&self) -> crate::toolbox::ToolsConfig {
        crate::toolbox::ToolsConfig {
            builtin_dir: self.builtin_tools_dir.clone(),
            plugin_dirs: self.plugin_dirs.clone(),
            compile_cache_dir: Some(self.compile_cache_dir()),
            limits: deckhand_tools::SandboxLimits::default(),
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
        if let Some(url) = &self.database_url {
            let known = ["sqlite:", "postgres://", "postgresql://"];
            if !known.iter().any(|scheme| url.starts_with(scheme)) {
                problems.push(
                    "database URL must start with sqlite:, postgres:// or postgresql://".to_owned(),
                );
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
}
