//! Test support for deckhand: real servers on loopback for integration tests.
//!
//! Each server starts in its own temporary directory on free ports and is torn down when
//! its handle is dropped. Nothing here is a mock: tests talk to a real kube-apiserver
//! (with etcd and the controller manager), a real PostgreSQL and real SQLite files.
//!
//! Binaries are found through environment variables, falling back to where
//! `scripts/test.sh` installs them:
//! - `DECKHAND_KUBE_APISERVER`, `DECKHAND_KUBE_CONTROLLER_MANAGER` (default
//!   `$DECKHAND_CACHE/kubernetes/v1.20.2/`, `DECKHAND_CACHE` defaulting to
//!   `~/.cache/deckhand`), `DECKHAND_ETCD` (default `/usr/bin/etcd`);
//! - `DECKHAND_PG_BIN` (default: the newest `/usr/lib/postgresql/*/bin`);
//! - `DECKHAND_TERRAFORM` (default `$DECKHAND_CACHE/terraform/terraform`, installed by
//!   `scripts/install-terraform.sh` when missing: [`terraform`]).
//!
//! # Layout
//! - [`kube`]: [`KubeApiServer`]: etcd + kube-apiserver + kube-controller-manager.
//! - [`postgres`]: [`Postgres`]: a throwaway PostgreSQL cluster (`initdb`, `postgres`).
//! - [`sqlite`]: [`SqliteFile`]: an SQLite database file in a temp dir.
//! - [`process`]: child processes that are stopped on drop, and free ports.
//! - [`error`]: this crate's error type.

pub mod error;
pub mod kube;
pub mod postgres;
pub mod process;
pub mod sqlite;

pub use error::{Error, Result};
pub use kube::KubeApiServer;
pub use postgres::Postgres;
pub use sqlite::SqliteFile;

/// Where `scripts/` install what the tests need: `$DECKHAND_CACHE`, else
/// `~/.cache/deckhand`.
pub fn cache_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    std::env::var_os("DECKHAND_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/deckhand"))
        })
        .unwrap_or_else(|| PathBuf::from("/root/.cache/deckhand"))
}

/// The terraform binary: `$DECKHAND_TERRAFORM`, else the one `scripts/install-terraform.sh`
/// installs under [`cache_dir`], which is run when it is missing. `None`, with a loud
/// message on stderr, only when it cannot be installed (no registry reachable).
pub fn terraform() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("DECKHAND_TERRAFORM") {
        return Some(path.into());
    }
    let binary = cache_dir().join("terraform/terraform");
    if binary.is_file() {
        return Some(binary);
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-terraform.sh");
    match std::process::Command::new("bash").arg(&script).output() {
        Ok(output) if output.status.success() && binary.is_file() => Some(binary),
        Ok(output) => {
            eprintln!(
                "\n!!!!! SKIPPED: terraform could not be installed by {}:\n{}\n",
                script.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            None
        }
        Err(error) => {
            eprintln!(
                "\n!!!!! SKIPPED: cannot run {}: {error}\n",
                script.display()
            );
            None
        }
    }
}

/// The directory name prefix of every server's temp dir: `scripts/test.sh` finds and stops
/// servers left behind by a test process that was killed, by this marker.
pub const TEMP_PREFIX: &str = "deckhand-testkit-";

/// A fresh temp dir marked with [`TEMP_PREFIX`].
fn temp_dir(kind: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{kind}-"))
        .tempdir()
        .map_err(|source| Error::Io {
            context: format!("creating a temp dir for {kind}"),
            source,
        })
}
