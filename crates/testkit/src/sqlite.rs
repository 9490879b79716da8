//! SQLite needs no server: a database file in a temp dir that is removed on drop.

use crate::error::Result;
use std::path::{Path, PathBuf};

/// An SQLite database path in its own temp dir.
#[derive(Debug)]
pub struct SqliteFile {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl SqliteFile {
    /// A path for a new database file (the file itself is created by whoever opens it).
    pub fn new() -> Result<Self> {
        let dir = crate::temp_dir("sqlite")?;
        let path = dir.path().join("deckhand.db");
        Ok(Self { dir, path })
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding the file (and its WAL and shared-memory files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// An sqlx URL that creates the file when missing.
    pub fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.path.display())
    }
}
