//! Child processes that are stopped when dropped, and free loopback ports.

use crate::error::{Error, Result};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A free TCP port on 127.0.0.1. The port is released before it is returned, so another
/// process could take it first; servers that fail to bind report it in their log.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
        context: "binding 127.0.0.1:0 to find a free port".into(),
        source,
    })?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|source| Error::Io {
            context: "reading a bound port".into(),
            source,
        })
}

/// A server process with its log file. Dropping it stops the process (SIGTERM, then
/// SIGKILL after a grace period) and waits for it.
#[derive(Debug)]
pub struct ServerProcess {
    name: &'static str,
    stop_signal: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl ServerProcess {
    /// Spawns `command` with stdout and stderr written to `log`; it is stopped with SIGTERM.
    pub fn spawn(name: &'static str, command: Command, log: &Path) -> Result<Self> {
        Self::spawn_with_stop_signal(name, command, log, "TERM")
    }

    /// Like [`ServerProcess::spawn`], but stopped with `stop_signal` (a `kill -s` name):
    /// PostgreSQL, for one, waits for its clients on SIGTERM and shuts down at once on INT.
    pub fn spawn_with_stop_signal(
        name: &'static str,
        mut command: Command,
        log: &Path,
        stop_signal: &'static str,
    ) -> Result<Self> {
        let io = |source| Error::Io {
            context: format!("opening the log {} for {name}", log.display()),
            source,
        };
        let stdout = File::create(log).map_err(io)?;
        let stderr = stdout.try_clone().map_err(io)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| Error::Io {
                context: format!("starting {name} ({command:?})"),
                source,
            })?;
        Ok(Self {
            name,
            stop_signal,
            child: Some(child),
            log: log.to_owned(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Err` with the log's tail when the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        let status = match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => return Ok(()),
            Some(Ok(Some(status))) => status.to_string(),
            Some(Err(error)) => error.to_string(),
            None => "already stopped".to_owned(),
        };
        Err(self.not_ready(format!("the process exited ({status})")))
    }

    /// A [`Error::NotReady`] for this server with the tail of its log.
    pub fn not_ready(&self, reason: String) -> Error {
        Error::NotReady {
            server: self.name,
            reason,
            log: self.log.clone(),
            log_tail: log_tail(&self.log),
        }
    }

    /// Stops the process: its stop signal, then SIGKILL if it is still running after the grace
    /// period. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // std only offers SIGKILL; `kill` sends others without any unsafe code here.
            let _ = Command::new("kill")
                .args(["-s", self.stop_signal, &child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last lines of a log file, for error messages.
pub fn log_tail(log: &Path) -> String {
    const LINES: usize = 30;
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LINES)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", log.display()),
    }
}

/// Runs a short helper command to completion; `Err` with its output when it fails.
pub fn run(mut command: Command) -> Result<()> {
    let output = command.output().map_err(|source| Error::Io {
        context: format!("running {command:?}"),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Command {
        command: format!("{command:?}"),
        output: format!(
            "{}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}
