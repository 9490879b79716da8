//! Confining a host process that runs outside the wasm sandbox (terraform) to the files
//! it needs, with Landlock: the kernel's unprivileged access control (Linux 5.13+).
//!
//! A process can only restrict itself, and `unsafe` (a `pre_exec` hook) is not allowed
//! here, so confinement goes through a launcher: a small program (`deckhand confine`, or
//! the `deckhand-confine` binary of this crate) started with the grants and the command,
//! which restricts itself with [`restrict_current_thread`] and then `exec`s the command.
//! The restriction survives `exec` and is inherited by every child (terraform's provider
//! plugins too), and nothing can lift it.
//!
//! What a confined process may touch is a [`Grants`]: directories (or files) it may read
//! and run, and ones it may also write. Everything else on the filesystem is refused with
//! `EACCES` — `$HOME/.kube/config`, deckhand's data directory and its tokens, the
//! ServiceAccount token under `/var/run/secrets`, `/proc` (other processes' environments).
//! The network is not restricted (`terraform init` downloads providers).
//!
//! A kernel without Landlock cannot confine: [`restrict_current_thread`] fails then, and
//! so does the launcher, rather than running the command unconfined.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// System locations any dynamically linked program, a TLS client or a resolver reads.
/// Missing ones are skipped.
pub const SYSTEM_READ: [&str; 12] = [
    "/usr",
    "/lib",
    "/lib64",
    "/bin",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/ld.so.cache",
];

/// Device files a program writes to or reads from without them being data: output
/// thrown away and randomness.
pub const SYSTEM_DEVICES: [&str; 4] = ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"];

/// The argument that ends the grants and starts the command in the launcher's arguments.
const COMMAND_SEPARATOR: &str = "--";

/// Why a process could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The launcher's arguments are not `[--read P | --write P]... -- PROGRAM [ARGS]`.
    #[error("confine: {message}")]
    Usage {
        /// What is wrong.
        message: String,
    },
    /// The kernel refused or does not support the restriction.
    #[error("cannot confine the process with Landlock: {source}")]
    Landlock {
        /// The Landlock error.
        #[source]
        source: landlock::RulesetError,
    },
    /// The kernel has no (enabled) Landlock: the command would run unconfined.
    #[error(
        "this kernel does not enforce Landlock (Linux 5.13+ with the landlock LSM enabled is \
         needed); refusing to run the command unconfined"
    )]
    Unsupported,
    /// `exec` of the command failed.
    #[error("cannot run {program}: {source}")]
    Exec {
        /// The command.
        program: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a confined process may touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Read and execute beneath these (files or directories).
    pub read: Vec<PathBuf>,
    /// Read, execute, create, write and remove beneath these.
    pub write: Vec<PathBuf>,
}

impl Grants {
    /// The grants every program needs ([`SYSTEM_READ`] to read, [`SYSTEM_DEVICES`] to
    /// write), plus nothing else.
    pub fn system() -> Self {
        Self {
            read: SYSTEM_READ.iter().map(PathBuf::from).collect(),
            write: SYSTEM_DEVICES.iter().map(PathBuf::from).collect(),
        }
    }

    /// The same, also reading beneath `path`.
    #[must_use]
    pub fn reading(mut self, path: impl Into<PathBuf>) -> Self {
        self.read.push(path.into());
        self
    }

    /// The same, also writing beneath `path`.
    #[must_use]
    pub fn writing(mut self, path: impl Into<PathBuf>) -> Self {
        self.write.push(path.into());
        self
    }

    /// The launcher's arguments for these grants and `program args...`.
    pub fn launcher_args(&self, program: &Path, args: &[OsString]) -> Vec<OsString> {
        let mut out = Vec::new();
        for (flag, paths) in [("--read", &self.read), ("--write", &self.write)] {
            for path in paths {
                out.push(OsString::from(flag));
                out.push(path.as_os_str().to_owned());
            }
        }
        out.push(OsString::from(COMMAND_SEPARATOR));
        out.push(program.as_os_str().to_owned());
        out.extend(args.iter().cloned());
        out
    }

    /// Reads what [`Grants::launcher_args`] wrote: the grants, the program and its
    /// arguments.
    ///
    /// # Errors
    /// [`ConfineError::Usage`] naming what is wrong.
    pub fn parse_launcher_args(
        args: impl IntoIterator<Item = OsString>,
    ) -> Result<(Self, PathBuf, Vec<OsString>), ConfineError> {
        let usage = |message: &str| ConfineError::Usage {
            message: format!(
                "{message} (usage: [--read PATH | --write PATH]... -- PROGRAM [ARGS]...)"
            ),
        };
        let mut grants = Self::default();
        let mut args = args.into_iter();
        loop {
            let Some(flag) = args.next() else {
                return Err(usage("no command after the grants"));
            };
            let list = match flag.to_str() {
                Some(COMMAND_SEPARATOR) => break,
                Some("--read") => &mut grants.read,
                Some("--write") => &mut grants.write,
                _ => return Err(usage(&format!("unknown argument {flag:?}"))),
            };
            let path = args
                .next()
                .ok_or_else(|| usage(&format!("{flag:?} needs a path")))?;
            list.push(PathBuf::from(path));
        }
        let program = args.next().ok_or_else(|| usage("no program to run"))?;
        Ok((grants, PathBuf::from(program), args.collect()))
    }
}

/// Restricts the calling thread, and every process it starts from now on, to `grants`.
/// Paths that do not exist are skipped (nothing beneath them can be opened anyway).
///
/// # Errors
/// [`ConfineError::Unsupported`] when the kernel enforces nothing;
/// [`ConfineError::Landlock`] when a rule cannot be added or the restriction fails.
pub fn restrict_current_thread(grants: &Grants) -> Result<(), ConfineError> {
    use landlock::{
        path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, ABI,
    };
    // Every filesystem right the crate knows is handled (denied unless granted); on an
    // older kernel the ones it lacks are dropped, which is what "partially enforced"
    // reports: reading and writing files are in every ABI.
    let abi = ABI::V5;
    let landlock = |source| ConfineError::Landlock { source };
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(landlock)?
        .create()
        .map_err(landlock)?
        .add_rules(path_beneath_rules(&grants.read, AccessFs::from_read(abi)))
        .map_err(landlock)?
        .add_rules(path_beneath_rules(&grants.write, AccessFs::from_all(abi)))
        .map_err(landlock)?
        .restrict_self()
        .map_err(landlock)?;
    match status.ruleset {
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => Ok(()),
        RulesetStatus::NotEnforced => Err(ConfineError::Unsupported),
    }
}

/// The launcher's work: restricts itself to `grants`, then replaces itself with
/// `program args...`. Returns only when something failed.
pub fn exec_confined(grants: &Grants, program: &Path, args: &[OsString]) -> ConfineError {
    use std::os::unix::process::CommandExt;
    if let Err(error) = restrict_current_thread(grants) {
        return error;
    }
    let source = std::process::Command::new(program).args(args).exec();
    ConfineError::Exec {
        program: program.to_owned(),
        source,
    }
}

/// How a host process is started confined: the launcher program and the arguments that
/// come before the grants (`deckhand confine` is `["<deckhand>", "confine"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    /// The launcher executable.
    pub program: PathBuf,
    /// Its arguments before the grants.
    pub args: Vec<OsString>,
}

impl Launcher {
    /// `program` with `args` before the grants.
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// The whole argument list for running `program args...` under `grants`.
    pub fn args_for(&self, grants: &Grants, program: &Path, args: &[OsString]) -> Vec<OsString> {
        let mut out = self.args.clone();
        out.extend(grants.launcher_args(program, args));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_arguments_round_trip() {
        let grants = Grants::default().reading("/opt/tf").writing("/work space");
        let args = grants.launcher_args(
            Path::new("/opt/tf/terraform"),
            &[OsString::from("plan"), OsString::from("--")],
        );
        let (parsed, program, rest) = Grants::parse_launcher_args(args).unwrap();
        assert_eq!(parsed, grants);
        assert_eq!(program, Path::new("/opt/tf/terraform"));
        // A `--` of the command's own stays the command's.
        assert_eq!(rest, [OsString::from("plan"), OsString::from("--")]);
    }

    #[test]
    fn malformed_launcher_arguments_say_what_is_wrong() {
        for (args, expected) in [
            (vec!["--read"], "needs a path"),
            (vec!["--read", "/x"], "no command"),
            (vec!["--execute", "/x", "--", "ls"], "unknown argument"),
            (vec!["--"], "no program"),
        ] {
            let error = Grants::parse_launcher_args(args.into_iter().map(OsString::from))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    /// The restriction itself, on a thread of its own (it holds for that thread only):
    /// granted paths open, everything else is refused by the kernel.
    #[test]
    fn a_restricted_thread_reads_and_writes_only_what_it_was_granted() {
        let granted = tempfile::tempdir().unwrap();
        let secret = tempfile::tempdir().unwrap();
        std::fs::write(secret.path().join("token"), "s3cret").unwrap();
        std::fs::write(granted.path().join("main.tf"), "locals {}").unwrap();
        let grants = Grants::system().writing(granted.path());
        let (granted_path, secret_path) = (granted.path().to_owned(), secret.path().to_owned());
        let outcome = std::thread::spawn(move || {
            restrict_current_thread(&grants)?;
            Ok::<_, ConfineError>((
                std::fs::read_to_string(granted_path.join("main.tf")).is_ok(),
                std::fs::write(granted_path.join("tfplan"), "plan").is_ok(),
                std::fs::read_to_string(secret_path.join("token")).map_err(|e| e.kind()),
                std::fs::write(secret_path.join("dropped"), "x").map_err(|e| e.kind()),
                std::fs::read_to_string("/proc/self/environ").map_err(|e| e.kind()),
            ))
        })
        .join()
        .unwrap();
        let (read, wrote, secret_read, secret_write, environ) = match outcome {
            Ok(outcome) => outcome,
            // Only a kernel without Landlock may skip this; it says so loudly.
            Err(ConfineError::Unsupported) => {
                eprintln!("\n!!!!! SKIPPED: this kernel does not enforce Landlock\n");
                return;
            }
            Err(error) => panic!("{error}"),
        };
        assert!(read && wrote, "the granted directory is usable");
        assert_eq!(secret_read, Err(std::io::ErrorKind::PermissionDenied));
        assert_eq!(secret_write, Err(std::io::ErrorKind::PermissionDenied));
        assert_eq!(environ, Err(std::io::ErrorKind::PermissionDenied));
        // This thread was not restricted.
        assert!(std::fs::read_to_string(secret.path().join("token")).is_ok());
    }
}
