//! A throwaway PostgreSQL cluster: `initdb` in a temp dir, `postgres` on a free loopback
//! port, trust authentication, durability settings off (tests never survive a host crash).

use crate::error::{Error, Result};
use crate::process::{free_port, run, ServerProcess};
use sqlx::Connection;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long PostgreSQL may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The superuser `initdb` creates.
const SUPERUSER: &str = "deckhand";

/// A running PostgreSQL server. Stopped and deleted on drop.
#[derive(Debug)]
pub struct Postgres {
    server: Option<ServerProcess>,
    bin: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Creates a new cluster and starts it.
    pub async fn start() -> Result<Self> {
        let bin = pg_bin_dir()?;
        let dir = crate::temp_dir("postgres")?;
        // PostgreSQL refuses to run as root: as root, run it as the `postgres` user.
        let run_as = if running_as_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|source| {
                Error::Io {
                    context: format!("handing {} to the postgres user", dir.path().display()),
                    source,
                }
            })?;
        }
        let data = dir.path().join("data");
        let mut initdb = command(run_as, &bin.join("initdb"));
        initdb
            .arg("--pgdata")
            .arg(&data)
            .args([
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
            ])
            .args(["--no-sync", "--no-instructions"]);
        run(initdb)?;
        let mut postgres = Self {
            server: None,
            bin,
            port: free_port()?,
            run_as,
            dir,
        };
        postgres.start_server().await?;
        Ok(postgres)
    }

    async fn start_server(&mut self) -> Result<()> {
        let mut server = command(self.run_as, &self.bin.join("postgres"));
        server
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(["-c", "max_connections=100", "-c", "shared_buffers=32MB"]);
        let log = self.dir.path().join("postgres.log");
        let mut process = ServerProcess::spawn_with_stop_signal("postgres", server, &log, "INT")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(connection) = sqlx::PgConnection::connect(&self.url()).await {
                let _ = connection.close().await;
                break;
            }
            process.check_running()?;
            if Instant::now() > deadline {
                return Err(process.not_ready(format!("no connection after {READY_TIMEOUT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.server = Some(process);
        Ok(())
    }

    /// The port the server listens on (the same across [`Postgres::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the default `postgres` database.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` on this server.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL: one server can hold many isolated
    /// test databases.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        let database = |context: String| move |source| Error::Database { context, source };
        let mut connection = sqlx::PgConnection::connect(&self.url())
            .await
            .map_err(database(format!("connecting to {}", self.url())))?;
        // Identifiers cannot be bound as parameters; quote it.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut connection)
            .await
            .map_err(database(format!("creating database {name}")))?;
        let _ = connection.close().await;
        Ok(self.database_url(name))
    }

    /// Stops the server (fast shutdown), keeping its data. Clients see it go away, as they
    /// would in an outage.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop();
        }
    }

    /// Starts the server again on the same port with the same data.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.start_server().await
    }

    /// The server's temp dir (data, socket, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Stop before the temp dir is removed.
        self.stop();
    }
}

/// A command that runs `program` as `run_as` (uid, gid) when set. `setpriv` execs the
/// program itself, so the child's pid is the server's and signals reach it directly.
fn command(run_as: Option<(u32, u32)>, program: &Path) -> Command {
    match run_as {
        Some((uid, gid)) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// `DECKHAND_PG_BIN`, or the newest `/usr/lib/postgresql/*/bin` that has `initdb`.
fn pg_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DECKHAND_PG_BIN") {
        let dir = PathBuf::from(dir);
        return match dir.join("initdb").is_file() {
            true => Ok(dir),
            false => Err(Error::BinaryMissing {
                what: "initdb",
                path: dir.join("initdb"),
                env_var: "DECKHAND_PG_BIN",
            }),
        };
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(Error::BinaryMissing {
            what: "PostgreSQL (initdb)",
            path: root.join("*/bin/initdb"),
            env_var: "DECKHAND_PG_BIN",
        })
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self")
        .map(|metadata| metadata.uid() == 0)
        .unwrap_or(false)
}

/// The uid and gid of the `postgres` user that Debian's package creates.
fn postgres_user() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|source| Error::Io {
        context: "reading /etc/passwd".into(),
        source,
    })?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .ok_or(Error::BinaryMissing {
            what: "the postgres user (running as root needs it)",
            path: PathBuf::from("/etc/passwd"),
            env_var: "DECKHAND_PG_BIN",
        })
}
