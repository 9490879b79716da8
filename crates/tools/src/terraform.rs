//! `terraform_plan`: runs `terraform init` and `terraform plan` on a root configuration in
//! the workspace, and never anything else.
//!
//! The tool exists only when a terraform binary is configured ([`TerraformConfig`]): with
//! none, it is not registered, so no plan can name it. Each call:
//!
//! - confines the directory to the workspace (canonicalized, so neither `..` nor a
//!   symbolic link leads out) and refuses a directory whose `.terraform`,
//!   `.terraform.lock.hcl` or `tfplan` is a symbolic link (terraform would write through it);
//! - runs `terraform init -input=false -backend=false -no-color`, then
//!   `terraform plan -input=false -no-color -lock=false -out=DIR/tfplan`, in that
//!   directory, in a process group of its own, with an empty environment but for `PATH`,
//!   a scratch `HOME` inside the workspace, the settings that keep terraform
//!   non-interactive and quiet, and the variables the configuration allow-lists;
//! - runs terraform confined with Landlock (see [`crate::confine`]) through the launcher
//!   deckhand passes in: it may read the system's libraries and certificates, its own
//!   binary and the configured `read_paths`, and read and write the workspace; nothing
//!   else (not `~/.kube`, deckhand's data, the ServiceAccount token, `/proc`), so a
//!   configuration's `file("/etc/...")` or a malicious provider cannot carry host files
//!   into a plan's output. `confinement = "none"` turns that off, explicitly;
//! - kills the whole process group (terraform and its provider plugins) when the time
//!   limit passes, and keeps at most a configured number of output bytes (head and tail);
//! - returns the plan's summary line and counts, or fails naming the stage: an `init`
//!   that cannot install a provider says so, and that no plan was run.
//!
//! Which subcommands exist is the closed [`Subcommand`] enum: `apply` and `destroy` are not
//! in it, so no input, configuration or environment variable can make this tool run them
//! (`TF_CLI_ARGS*` cannot be allow-listed either).

use crate::confine::{Grants, Launcher};
use crate::error::{Error, Result};
use crate::registry::{Tool, ToolContext, ToolFuture, ToolRegistry};
use crate::sandbox::{ToolFailure, WorkspaceAccess};
use crate::spec::ToolSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::Instrument;

/// The tool's name.
pub const TOOL_NAME: &str = "terraform_plan";
/// How long `init` and `plan` may take together by default: a plan of a large estate
/// refreshes many resources, but a hung provider must not hold a step for ever.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// The longest time limit accepted (an hour).
pub const MAX_TIMEOUT_SECS: u64 = 3600;
/// Output kept per call by default, in KiB: enough for the plan of a few dozen resources,
/// small enough for a step result and a model's prompt.
pub const DEFAULT_OUTPUT_KIB: u64 = 64;
/// The name of the saved plan, in the configuration's directory.
pub const PLAN_FILE: &str = "tfplan";
/// `HOME` for terraform, relative to the workspace: its caches and CLI state go there,
/// never into deckhand's own home.
pub const SCRATCH_HOME: &str = ".deckhand/terraform-home";
/// `TMPDIR` for terraform, relative to the workspace: a confined terraform can write
/// nowhere else.
pub const SCRATCH_TMP: &str = ".deckhand/terraform-tmp";
/// `PATH` when the environment deckhand runs in has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// How long the output pipes may stay open after terraform has exited or was killed (a
/// stray plugin holding them): then they are abandoned with what was read.
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// Read size for the output pipes.
const READ_CHUNK: usize = 8192;

/// The variables deckhand sets itself, whatever the allow-list says.
const FIXED_ENV: [(&str, &str); 4] = [
    // No prompts, and the shorter messages meant for automation.
    ("TF_IN_AUTOMATION", "1"),
    ("TF_INPUT", "0"),
    // No version check against checkpoint-api.hashicorp.com: a plan does not phone home.
    ("CHECKPOINT_DISABLE", "1"),
    // Terraform 1.0 re-executes itself as a child to catch panics; one process is one
    // thing to kill on a timeout.
    ("TF_FORK", "0"),
];

/// Where a call's environment variables come from: deckhand passes its own environment,
/// tests pass what they need. Called once per allow-listed name per call, so rotated
/// credentials are picked up.
pub type EnvSource = Arc<dyn Fn(&str) -> Option<OsString> + Send + Sync>;

/// The `[terraform]` table of deckhand's configuration. Without it there is no
/// `terraform_plan` tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerraformConfig {
    /// The terraform executable.
    pub binary: PathBuf,
    /// Time limit of one call (`init` and `plan` together), in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Output kept per call, in KiB (head and tail; the middle is dropped and counted).
    #[serde(default = "default_output_kib")]
    pub output_kib: u64,
    /// Environment variables passed to terraform from deckhand's environment when set,
    /// e.g. `AWS_PROFILE`, `AWS_REGION`, `TF_CLI_CONFIG_FILE` (a provider mirror),
    /// `TF_VAR_...`. Nothing else is passed but `PATH`.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// How terraform is confined; Landlock unless set to `none`.
    #[serde(default)]
    pub confinement: Confinement,
    /// Files or directories a confined terraform may also read (and run): a provider
    /// mirror, a plugin cache, the file `TF_CLI_CONFIG_FILE` names.
    #[serde(default)]
    pub read_paths: Vec<PathBuf>,
    /// How a confined terraform is started: the program that embeds deckhand sets it
    /// (the `deckhand` binary: itself, `deckhand confine`), never the configuration file.
    #[serde(skip)]
    pub launcher: Option<Launcher>,
}

/// How the terraform process is confined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confinement {
    /// Landlock: the workspace, the system's libraries and the allowed paths only. A
    /// kernel without Landlock makes every call fail rather than run unconfined.
    #[default]
    Landlock,
    /// None: terraform reads whatever deckhand's user can. Only where the kernel has no
    /// Landlock and every configuration planned is trusted.
    None,
}

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

fn default_output_kib() -> u64 {
    DEFAULT_OUTPUT_KIB
}

impl TerraformConfig {
    /// The configuration for `binary` with the defaults.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            output_kib: DEFAULT_OUTPUT_KIB,
            pass_env: Vec::new(),
            confinement: Confinement::default(),
            read_paths: Vec::new(),
            launcher: None,
        }
    }

    /// Every problem with this configuration, each naming its key (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match std::fs::metadata(&self.binary) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => problems.push(format!(
                "terraform.binary {} is not a file",
                self.binary.display()
            )),
            Err(error) => problems.push(format!(
                "terraform.binary {}: {error}",
                self.binary.display()
            )),
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.timeout_secs) {
            problems.push(format!(
                "terraform.timeout_secs must be 1-{MAX_TIMEOUT_SECS}"
            ));
        }
        if !(1..=16 * 1024).contains(&self.output_kib) {
            problems.push("terraform.output_kib must be 1-16384".to_owned());
        }
        for name in &self.pass_env {
            if let Some(why) = refused_env_name(name) {
                problems.push(format!("terraform.pass_env: {name:?} {why}"));
            }
        }
        for path in &self.read_paths {
            if !path.is_absolute() {
                problems.push(format!(
                    "terraform.read_paths: {} is not an absolute path",
                    path.display()
                ));
            }
        }
        problems
    }
}

/// Why `name` may not be allow-listed, or `None` when it may.
fn refused_env_name(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    let well_formed = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        return Some("is not a variable name");
    }
    if name.starts_with("TF_CLI_ARGS") {
        return Some("would add arguments to terraform's commands");
    }
    if name == "PATH" || name == "HOME" || FIXED_ENV.iter().any(|(fixed, _)| *fixed == name) {
        return Some("is set by deckhand itself");
    }
    None
}

/// The only terraform subcommands deckhand runs. There is deliberately no `Apply` or
/// `Destroy`: a plan changes nothing, and applying is for the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subcommand {
    /// `terraform init` without a backend (a plan needs no state).
    Init,
    /// `terraform plan`, saving the plan to `tfplan`.
    Plan,
}

impl Subcommand {
    /// Every subcommand (for tests that check none of them can change anything).
    pub const ALL: [Subcommand; 2] = [Self::Init, Self::Plan];

    /// The arguments of this subcommand; `plan_file` is where `plan` saves the plan.
    pub fn args(self, plan_file: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = match self {
            Self::Init => ["init", "-input=false", "-backend=false", "-no-color"].as_slice(),
            Self::Plan => ["plan", "-input=false", "-no-color", "-lock=false"].as_slice(),
        }
        .iter()
        .map(OsString::from)
        .collect();
        if self == Self::Plan {
            let mut out = OsString::from("-out=");
            out.push(plan_file);
            args.push(out);
        }
        args
    }

    fn name(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Plan => "plan",
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PlanInput {
    /// The directory of the root configuration, relative to the workspace (e.g.
    /// `terraform/my-bucket`).
    path: String,
}

/// What the plan would change, from its summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Changes {
    /// Resources to create.
    pub add: u64,
    /// Resources to update in place.
    pub change: u64,
    /// Resources to destroy (replacements count here and in `add`).
    pub destroy: u64,
    /// Resources to import (terraform 1.5 and later).
    #[serde(default)]
    pub import: u64,
}

/// The result of a plan that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanOutput {
    /// The directory, as given.
    pub path: String,
    /// `terraform plan`'s exit status (0: the plan was made).
    pub exit_status: i32,
    /// The summary: terraform's `Plan: ...` or `No changes.` line, or what deckhand read
    /// from the output when there is neither.
    pub summary: String,
    /// The counts of the `Plan:` line; zero when nothing changes.
    pub changes: Changes,
    /// The saved plan, relative to the workspace (`terraform apply` of it is for the
    /// person).
    pub plan_file: String,
    /// `terraform plan`'s output (stdout, then stderr), capped.
    pub output: String,
    /// `terraform init`'s output, capped.
    pub init_output: String,
}

/// The `terraform_plan` tool.
pub struct TerraformPlan {
    spec: ToolSpec,
    binary: PathBuf,
    timeout: Duration,
    output_bytes: usize,
    pass_env: Vec<String>,
    env: EnvSource,
    confinement: Confinement,
    read_paths: Vec<PathBuf>,
    launcher: Option<Launcher>,
}

impl std::fmt::Debug for TerraformPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerraformPlan")
            .field("binary", &self.binary)
            .field("timeout", &self.timeout)
            .field("output_bytes", &self.output_bytes)
            .field("pass_env", &self.pass_env)
            .field("confinement", &self.confinement)
            .field("launcher", &self.launcher)
            .finish_non_exhaustive()
    }
}

/// The tool's manifest.
pub fn terraform_plan_spec() -> ToolSpec {
    let schema = |value: schemars::Schema| serde_json::to_value(value).unwrap_or(json!({}));
    ToolSpec {
        name: TOOL_NAME.to_owned(),
        description: "Runs `terraform init` and `terraform plan` on a root configuration in the workspace and reports what would change (never applies). Providers must be installable.".to_owned(),
        workspace: WorkspaceAccess::Write,
        mutating: false,
        input_schema: schema(schemars::schema_for!(PlanInput)),
        output_schema: schema(schemars::schema_for!(PlanOutput)),
    }
}

impl TerraformPlan {
    /// The tool for `config`, passing no environment variables but `PATH` defaults until
    /// [`TerraformPlan::with_env`] says where they come from.
    ///
    /// # Errors
    /// [`Error::InvalidTerraform`] listing every problem with `config`.
    pub fn new(config: &TerraformConfig) -> Result<Self> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(Error::InvalidTerraform { problems });
        }
        let output_bytes = usize::try_from(config.output_kib)
            .ok()
            .and_then(|kib| kib.checked_mul(1024))
            .ok_or_else(|| Error::InvalidTerraform {
                problems: vec!["terraform.output_kib is too large".to_owned()],
            })?;
        Ok(Self {
            spec: terraform_plan_spec(),
            binary: config.binary.clone(),
            timeout: Duration::from_secs(config.timeout_secs),
            output_bytes,
            pass_env: config.pass_env.clone(),
            env: Arc::new(|_| None),
            confinement: config.confinement,
            read_paths: config.read_paths.clone(),
            launcher: config.launcher.clone(),
        })
    }

    /// Starts terraform through `launcher` (`deckhand confine`), which confines it,
    /// instead of the configuration's. Without one, a tool configured for Landlock
    /// refuses every call.
    #[must_use]
    pub fn with_launcher(mut self, launcher: Launcher) -> Self {
        self.launcher = Some(launcher);
        self
    }

    /// What a confined terraform may touch: the system, its own binary, the configured
    /// paths, and the workspace.
    fn grants(&self, workspace: &Path) -> Grants {
        let mut grants = Grants::system().reading(&self.binary).writing(workspace);
        grants.read.extend(self.read_paths.iter().cloned());
        grants
    }

    /// Takes `PATH` and the allow-listed variables from `source` (deckhand passes its own
    /// environment).
    #[must_use]
    pub fn with_env(mut self, source: EnvSource) -> Self {
        self.env = source;
        self
    }

    /// The environment terraform runs with: nothing but `PATH`, `HOME`, the fixed
    /// settings and the allow-listed variables that are set.
    fn environment(&self, home: &Path) -> Vec<(OsString, OsString)> {
        let mut env = vec![
            (
                OsString::from("PATH"),
                (self.env)("PATH").unwrap_or_else(|| OsString::from(DEFAULT_PATH)),
            ),
            (OsString::from("HOME"), home.as_os_str().to_owned()),
        ];
        env.extend(
            FIXED_ENV
                .iter()
                .map(|(name, value)| (OsString::from(name), OsString::from(value))),
        );
        for name in &self.pass_env {
            if let Some(value) = (self.env)(name) {
                env.push((OsString::from(name), value));
            }
        }
        env
    }

    fn failed(kind: &str, message: String) -> Error {
        Error::Failed {
            tool: TOOL_NAME.to_owned(),
            failure: ToolFailure {
                kind: kind.to_owned(),
                message,
            },
        }
    }

    async fn run(&self, context: &ToolContext, input: &Value) -> Result<Value> {
        let input: PlanInput =
            serde_json::from_value(input.clone()).map_err(|error| Error::InvalidChange {
                message: format!("{TOOL_NAME}: {error}"),
            })?;
        let place = confine(&context.workspace, &input.path)
            .map_err(|(kind, message)| Self::failed(kind, message))?;
        let home = scratch_dir(&place.root, SCRATCH_HOME)
            .map_err(|message| Self::failed("workspace", message))?;
        let tmp = scratch_dir(&place.root, SCRATCH_TMP)
            .map_err(|message| Self::failed("workspace", message))?;
        let mut env = self.environment(&home);
        env.push((OsString::from("TMPDIR"), tmp.into_os_string()));
        let span = tracing::info_span!("terraform", tool = TOOL_NAME, path = %input.path);
        self.init_and_plan(input.path, &place, &env)
            .instrument(span)
            .await
    }

    /// `init`, then `plan` when `init` succeeded, within one time limit.
    async fn init_and_plan(
        &self,
        path: String,
        place: &Place,
        env: &[(OsString, OsString)],
    ) -> Result<Value> {
        let plan_file = place.dir.join(PLAN_FILE);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let init = self
            .exec(
                Subcommand::Init,
                &place.root,
                &place.dir,
                &plan_file,
                env,
                deadline,
            )
            .await?;
        if init.status != Some(0) {
            return Err(Self::failed(
                "terraform_init_failed",
                init_failure(&path, &init),
            ));
        }
        let plan = self
            .exec(
                Subcommand::Plan,
                &place.root,
                &place.dir,
                &plan_file,
                env,
                deadline,
            )
            .await?;
        let exit_status = plan.status.unwrap_or(-1);
        if exit_status != 0 {
            return Err(Self::failed(
                "terraform_plan_failed",
                format!(
                    "terraform plan in {} failed (exit status {exit_status}): {}",
                    path,
                    error_excerpt(&plan.stderr, &plan.stdout)
                ),
            ));
        }
        let (summary, changes) = summarize(&plan.stdout);
        let relative_plan = place
            .relative
            .join(PLAN_FILE)
            .to_string_lossy()
            .into_owned();
        let output = PlanOutput {
            path,
            exit_status,
            summary,
            changes,
            plan_file: relative_plan,
            output: joined(&plan.stdout, &plan.stderr),
            init_output: joined(&init.stdout, &init.stderr),
        };
        serde_json::to_value(output).map_err(|error| Error::MalformedResult {
            tool: TOOL_NAME.to_owned(),
            message: error.to_string(),
        })
    }

    /// Runs one subcommand in `dir` until it exits or `deadline` passes.
    async fn exec(
        &self,
        subcommand: Subcommand,
        workspace: &Path,
        dir: &Path,
        plan_file: &Path,
        env: &[(OsString, OsString)],
        deadline: tokio::time::Instant,
    ) -> Result<Finished> {
        let args = subcommand.args(plan_file);
        let mut command = match (self.confinement, &self.launcher) {
            (Confinement::None, _) => {
                let mut command = tokio::process::Command::new(&self.binary);
                command.args(&args);
                command
            }
            (Confinement::Landlock, Some(launcher)) => {
                let mut command = tokio::process::Command::new(&launcher.program);
                command.args(launcher.args_for(&self.grants(workspace), &self.binary, &args));
                command
            }
            (Confinement::Landlock, None) => {
                return Err(Self::failed(
                    "terraform_unconfined",
                    "terraform is to run confined (Landlock) but no launcher was given to the \
                     tool; refusing to run it unconfined (set terraform.confinement = \"none\" \
                     to accept that)"
                        .to_owned(),
                ))
            }
        };
        command
            .current_dir(dir)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a timeout kills the provider plugins with it.
            .process_group(0)
            .kill_on_drop(true);
        let started = std::time::Instant::now();
        let finished = run_bounded(command, deadline, self.output_bytes / 2)
            .await
            .map_err(|error| {
                Self::failed(
                    "terraform_unavailable",
                    format!("cannot run {}: {error}", self.binary.display()),
                )
            })?;
        tracing::info!(
            subcommand = subcommand.name(),
            status = ?finished.status,
            timed_out = finished.timed_out,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "terraform finished"
        );
        if finished.timed_out {
            return Err(Self::failed(
                "timeout",
                format!(
                    "terraform {} ran past the time limit of {} s and was killed (with its plugins){}",
                    subcommand.name(),
                    self.timeout.as_secs(),
                    match subcommand {
                        Subcommand::Init => "; the plan was not run",
                        Subcommand::Plan => "; no plan was saved",
                    }
                ),
            ));
        }
        Ok(finished)
    }
}

impl Tool for TerraformPlan {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call<'a>(&'a self, context: &'a ToolContext, input: &'a Value) -> ToolFuture<'a> {
        Box::pin(self.run(context, input))
    }
}

/// Registers `tool` as `terraform_plan`.
///
/// # Errors
/// [`Error::DuplicateTool`] when a tool of that name is already registered.
pub fn register_terraform(registry: &mut ToolRegistry, tool: TerraformPlan) -> Result<()> {
    registry.register(Arc::new(tool), "terraform")
}

/// A directory inside the workspace.
#[derive(Debug)]
struct Place {
    /// The workspace, canonical.
    root: PathBuf,
    /// The directory, canonical.
    dir: PathBuf,
    /// The directory relative to `root`.
    relative: PathBuf,
}

/// The canonical directory `path` names inside `workspace`, or the failure's kind and
/// message: absolute paths, `..`, and anything that resolves (through links) outside
/// the workspace are refused.
fn confine(workspace: &Path, path: &str) -> std::result::Result<Place, (&'static str, String)> {
    let relative = Path::new(path);
    if path.is_empty()
        || path.contains('\0')
        || relative.is_absolute()
        || relative
            .components()
            .any(|part| !matches!(part, Component::Normal(_) | Component::CurDir))
    {
        return Err((
            "outside_workspace",
            format!("{path:?} must be a relative path inside the workspace, without `..`"),
        ));
    }
    let root = workspace.canonicalize().map_err(|error| {
        (
            "workspace",
            format!("the workspace {} is unusable: {error}", workspace.display()),
        )
    })?;
    let dir = root
        .join(relative)
        .canonicalize()
        .map_err(|error| ("not_found", format!("{path}: {error}")))?;
    let Ok(inside) = dir.strip_prefix(&root) else {
        return Err((
            "outside_workspace",
            format!("{path} leads outside the workspace"),
        ));
    };
    let inside = inside.to_owned();
    if !dir.is_dir() {
        return Err(("not_found", format!("{path} is not a directory")));
    }
    // terraform writes these; through a link it would write outside the workspace.
    for name in [".terraform", ".terraform.lock.hcl", PLAN_FILE] {
        let is_link = std::fs::symlink_metadata(dir.join(name))
            .map(|meta| meta.file_type().is_symlink())
            .unwrap_or(false);
        if is_link {
            return Err((
                "outside_workspace",
                format!("{path}/{name} is a symbolic link; terraform would write through it"),
            ));
        }
    }
    Ok(Place {
        root,
        dir,
        relative: inside,
    })
}

/// Creates (once) the scratch `HOME` in the workspace, refusing a link in its place.
fn scratch_dir(root: &Path, relative: &str) -> std::result::Result<PathBuf, String> {
    let home = root.join(relative);
    std::fs::create_dir_all(&home)
        .map_err(|error| format!("cannot create {}: {error}", home.display()))?;
    let canonical = home
        .canonicalize()
        .map_err(|error| format!("{}: {error}", home.display()))?;
    if !canonical.starts_with(root) {
        return Err(format!("{relative} leads outside the workspace"));
    }
    Ok(canonical)
}

/// How a process ended and what it wrote.
#[derive(Debug, Default)]
struct Finished {
    /// The exit code; `None` when killed by a signal.
    status: Option<i32>,
    /// Whether the deadline passed and the process group was killed.
    timed_out: bool,
    stdout: String,
    stderr: String,
}

/// Runs `command` (already set to pipe stdout and stderr and to start its own process
/// group) until it exits or `deadline` passes, keeping at most `cap` bytes of each stream.
/// On the deadline the whole process group is killed.
async fn run_bounded(
    mut command: tokio::process::Command,
    deadline: tokio::time::Instant,
    cap: usize,
) -> std::io::Result<Finished> {
    let mut child = command.spawn()?;
    let pid = child.id();
    let stdout = Arc::new(Mutex::new(Capped::new(cap)));
    let stderr = Arc::new(Mutex::new(Capped::new(cap)));
    let mut readers = tokio::task::JoinSet::new();
    if let Some(pipe) = child.stdout.take() {
        readers.spawn(drain(pipe, stdout.clone()));
    }
    if let Some(pipe) = child.stderr.take() {
        readers.spawn(drain(pipe, stderr.clone()));
    }
    let status = tokio::select! {
        status = child.wait() => Some(status?),
        () = tokio::time::sleep_until(deadline) => None,
    };
    let timed_out = status.is_none();
    let status = match status {
        Some(status) => status,
        None => {
            // The child is not reaped yet, so its id still names its group.
            if let Some(pid) = pid {
                kill_group(pid).await;
            }
            // Whether or not `kill` ran, the leader goes.
            let _ = child.start_kill();
            child.wait().await?
        }
    };
    let drained = tokio::time::timeout(PIPE_GRACE, async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // Something terraform started still holds the pipes: its group is still alive
        // (so the id cannot have been reused); end it and keep what was read.
        if let Some(pid) = pid {
            kill_group(pid).await;
        }
        readers.abort_all();
    }
    let take = |capped: &Arc<Mutex<Capped>>| {
        capped
            .lock()
            .map(|capped| capped.text())
            .unwrap_or_default()
    };
    Ok(Finished {
        status: status.code(),
        timed_out,
        stdout: take(&stdout),
        stderr: take(&stderr),
    })
}

/// Sends SIGKILL to process group `pgid` with `kill(1)`: std offers no way to signal a
/// group, and this crate has no unsafe code.
async fn kill_group(pgid: u32) {
    let killed = tokio::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(error) = killed {
        tracing::warn!(%error, pgid, "cannot run kill(1); only terraform itself is killed");
    }
}

async fn drain(mut pipe: impl AsyncRead + Unpin, into: Arc<Mutex<Capped>>) {
    let mut buffer = vec![0u8; READ_CHUNK];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut capped) = into.lock() {
                    capped.push(&buffer[..n]);
                }
            }
        }
    }
}

/// A byte stream kept to its first and last `limit / 2` bytes; the middle is counted.
#[derive(Debug)]
struct Capped {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    head_limit: usize,
    tail_limit: usize,
    dropped: u64,
}

impl Capped {
    fn new(limit: usize) -> Self {
        let head_limit = limit / 2;
        Self {
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            head_limit,
            tail_limit: limit - head_limit,
            dropped: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        let room = self.head_limit.saturating_sub(self.head.len());
        let (head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(head);
        bytes = rest;
        if bytes.len() >= self.tail_limit {
            self.dropped += (self.tail.len() + bytes.len() - self.tail_limit) as u64;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_limit..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_limit);
        self.tail.drain(..overflow);
        self.dropped += overflow as u64;
        self.tail.extend(bytes);
    }

    /// The kept bytes as text (invalid UTF-8, including characters cut at the edges,
    /// becomes U+FFFD), with a marker where bytes were dropped.
    fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.dropped > 0 {
            text.push_str(&format!("\n… {} bytes dropped …\n", self.dropped));
        }
        let (front, back) = self.tail.as_slices();
        let tail = [front, back].concat();
        text.push_str(&String::from_utf8_lossy(&tail));
        text
    }
}

/// Stdout, then stderr when there is any.
fn joined(stdout: &str, stderr: &str) -> String {
    match (stdout.trim().is_empty(), stderr.trim().is_empty()) {
        (_, true) => stdout.to_owned(),
        (true, false) => stderr.to_owned(),
        (false, false) => format!("{stdout}\n{stderr}"),
    }
}

/// The most characters of terraform's error text a failure message carries.
const MAX_ERROR_CHARS: usize = 2000;

/// Terraform's error text (stderr, else stdout), trimmed and cut for a one-paragraph
/// message.
fn error_excerpt(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{} …", &text[..cut]),
        None if text.is_empty() => "terraform printed nothing".to_owned(),
        None => text,
    }
}

/// Why `init` failed, for the person: a provider that could not be installed is named as
/// such (the usual cause: no access to the registry), and it always says that no plan
/// was run.
fn init_failure(path: &str, init: &Finished) -> String {
    let all = format!("{}\n{}", init.stdout, init.stderr);
    let provider = [
        "Failed to query available provider packages",
        "Failed to install provider",
        "Failed to install providers",
        "could not connect to registry",
        "Incompatible provider version",
    ]
    .iter()
    .any(|marker| all.contains(marker));
    let status = init.status.map_or_else(
        || "killed by a signal".to_owned(),
        |code| format!("exit status {code}"),
    );
    let cause = if provider {
        "a provider could not be installed (terraform init could not download it: no access to its registry, or no mirror configured); "
    } else {
        ""
    };
    format!(
        "terraform init in {path} failed ({status}): {cause}{}. The plan was not run.",
        error_excerpt(&init.stderr, &init.stdout).trim_end_matches('.')
    )
}

/// The summary of a plan's output and its counts.
fn summarize(stdout: &str) -> (String, Changes) {
    for line in stdout.lines().map(str::trim) {
        if let Some(counts) = line.strip_prefix("Plan: ") {
            let mut changes = Changes::default();
            for part in counts.trim_end_matches('.').split(", ") {
                let mut words = part.split_whitespace();
                let (Some(number), Some("to"), Some(what)) =
                    (words.next(), words.next(), words.next())
                else {
                    continue;
                };
                let Ok(number) = number.parse::<u64>() else {
                    continue;
                };
                match what {
                    "add" => changes.add = number,
                    "change" => changes.change = number,
                    "destroy" => changes.destroy = number,
                    "import" => changes.import = number,
                    _ => {}
                }
            }
            return (line.to_owned(), changes);
        }
        if line.starts_with("No changes.") {
            return ("No changes.".to_owned(), Changes::default());
        }
    }
    let summary = if stdout.contains("Changes to Outputs:") {
        "No resource changes; only outputs change."
    } else {
        "terraform plan printed no summary line."
    };
    (summary.to_owned(), Changes::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn no_subcommand_can_apply_or_destroy() {
        let plan_file = Path::new("/w/tf/tfplan");
        for subcommand in Subcommand::ALL {
            // Exhaustive: a new subcommand fails to compile here until it is listed in
            // ALL and so checked below.
            match subcommand {
                Subcommand::Init | Subcommand::Plan => {}
            }
            let args = subcommand.args(plan_file);
            let first = args.first().and_then(|a| a.to_str());
            assert!(
                matches!(first, Some("init" | "plan")),
                "{subcommand:?} runs {first:?}"
            );
            for arg in &args {
                let arg = arg.to_string_lossy();
                for forbidden in [
                    "apply",
                    "destroy",
                    "-destroy",
                    "-auto-approve",
                    "import",
                    "state",
                ] {
                    assert_ne!(arg, forbidden, "{subcommand:?} passes {arg}");
                }
            }
        }
        assert_eq!(
            Subcommand::Plan
                .args(plan_file)
                .last()
                .map(|a| a.to_string_lossy().into_owned()),
            Some("-out=/w/tf/tfplan".to_owned())
        );
    }

    #[test]
    fn the_allow_list_cannot_reach_the_commands_or_the_fixed_settings() {
        for name in [
            "TF_CLI_ARGS",
            "TF_CLI_ARGS_plan",
            "TF_CLI_ARGS_apply",
            "HOME",
            "PATH",
            "TF_INPUT",
            "TF_FORK",
            "CHECKPOINT_DISABLE",
            "TF_IN_AUTOMATION",
            "A-B",
            "",
            "1X",
            "A B",
        ] {
            assert!(refused_env_name(name).is_some(), "{name:?} was accepted");
        }
        for name in [
            "AWS_PROFILE",
            "AWS_REGION",
            "TF_CLI_CONFIG_FILE",
            "TF_VAR_region",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "_X1",
        ] {
            assert_eq!(refused_env_name(name), None, "{name:?}");
        }
        let mut config = TerraformConfig::new("/nonexistent/terraform");
        config.timeout_secs = 0;
        config.output_kib = 0;
        config.pass_env = vec!["TF_CLI_ARGS_plan".into(), "AWS_PROFILE".into()];
        let problems = config.problems();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("terraform.binary"), "{problems:?}");
        assert!(problems[3].contains("TF_CLI_ARGS_plan"), "{problems:?}");
        assert!(matches!(
            TerraformPlan::new(&config),
            Err(Error::InvalidTerraform { .. })
        ));
    }

    #[test]
    fn the_config_table_refuses_unknown_keys_and_fills_defaults() {
        let config: TerraformConfig =
            serde_json::from_value(json!({"binary": "/usr/bin/terraform"})).unwrap();
        assert_eq!(config, TerraformConfig::new("/usr/bin/terraform"));
        let typo = serde_json::from_value::<TerraformConfig>(
            json!({"binary": "/usr/bin/terraform", "timeout": 5}),
        );
        assert!(typo.is_err());
    }

    #[test]
    fn paths_are_confined_to_the_workspace_links_included() {
        let outside = tempfile::tempdir().unwrap();
        let workspace = tempfile::tempdir().unwrap();
        let root = workspace.path();
        std::fs::create_dir_all(root.join("tf/ok")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("tf/out")).unwrap();
        std::os::unix::fs::symlink("ok", root.join("tf/back")).unwrap();
        std::fs::write(root.join("tf/file"), "x").unwrap();

        let place = confine(root, "tf/ok").unwrap();
        assert_eq!(place.relative, PathBuf::from("tf/ok"));
        assert_eq!(place.dir, root.canonicalize().unwrap().join("tf/ok"));
        // A link that stays inside is fine: it is where it leads that counts.
        assert_eq!(
            confine(root, "tf/back").unwrap().relative,
            PathBuf::from("tf/ok")
        );
        for (path, kind) in [
            ("tf/out", "outside_workspace"),
            ("../x", "outside_workspace"),
            ("tf/../../x", "outside_workspace"),
            ("/etc", "outside_workspace"),
            ("", "outside_workspace"),
            ("tf/missing", "not_found"),
            ("tf/file", "not_found"),
        ] {
            let error = confine(root, path).unwrap_err();
            assert_eq!(error.0, kind, "{path}: {}", error.1);
        }

        // A link where terraform writes would carry its writes out.
        std::os::unix::fs::symlink(outside.path().join("plan"), root.join("tf/ok/tfplan")).unwrap();
        let error = confine(root, "tf/ok").unwrap_err();
        assert_eq!(error.0, "outside_workspace");
        assert!(error.1.contains("tfplan"), "{}", error.1);
    }

    #[test]
    fn output_keeps_head_and_tail_and_counts_the_rest() {
        let mut capped = Capped::new(10);
        capped.push(b"0123");
        capped.push(b"456789abcdefghij");
        capped.push(b"KLM");
        // 23 bytes: the first 5 and the last 5 kept, 13 dropped.
        assert_eq!(capped.text(), "01234\n… 13 bytes dropped …\nijKLM");

        let mut small = Capped::new(64);
        small.push(b"short");
        assert_eq!(small.text(), "short", "nothing dropped, no marker");

        // Byte by byte gives the same as one big push.
        let mut bytes = Capped::new(7);
        for b in b"abcdefghijklmnopqrstuvwxyz" {
            bytes.push(&[*b]);
        }
        let mut whole = Capped::new(7);
        whole.push(b"abcdefghijklmnopqrstuvwxyz");
        assert_eq!(bytes.text(), whole.text());
        assert_eq!(whole.text(), "abc\n… 19 bytes dropped …\nwxyz");

        // A character cut at the edge becomes U+FFFD, never a panic.
        let mut cut = Capped::new(4);
        cut.push("ééééé".as_bytes());
        assert!(cut.text().contains('\u{FFFD}') || cut.text().contains('é'));
    }

    #[test]
    fn summaries_are_read_from_the_plan_output() {
        let (summary, changes) = summarize(
            "Terraform will perform the following actions:\n\n  # aws_s3_bucket.b will be created\n\nPlan: 2 to add, 1 to change, 3 to destroy.\n",
        );
        assert_eq!(summary, "Plan: 2 to add, 1 to change, 3 to destroy.");
        assert_eq!(
            changes,
            Changes {
                add: 2,
                change: 1,
                destroy: 3,
                import: 0
            }
        );
        let (_, changes) = summarize("Plan: 1 to import, 0 to add, 0 to change, 0 to destroy.");
        assert_eq!(changes.import, 1);
        let (summary, changes) = summarize(
            "\nNo changes. Your infrastructure matches the configuration.\n\nTerraform has compared...",
        );
        assert_eq!(summary, "No changes.");
        assert_eq!(changes, Changes::default());
        let (summary, _) = summarize("\nChanges to Outputs:\n  + greeting = \"hello\"\n");
        assert_eq!(summary, "No resource changes; only outputs change.");
        let (summary, _) = summarize("something else");
        assert_eq!(summary, "terraform plan printed no summary line.");
    }

    #[test]
    fn init_failures_name_an_uninstallable_provider_and_the_plan_not_run() {
        let init = Finished {
            status: Some(1),
            timed_out: false,
            stdout: "Initializing provider plugins...\n- Finding latest version of hashicorp/aws...\n".into(),
            stderr: "\nError: Failed to query available provider packages\n\nCould not retrieve the list of available versions for provider hashicorp/aws:\ncould not connect to registry.terraform.io\n".into(),
        };
        let message = init_failure("terraform/b", &init);
        assert!(message.starts_with("terraform init in terraform/b failed (exit status 1): a provider could not be installed"), "{message}");
        assert!(message.contains("hashicorp/aws"), "{message}");
        assert!(message.ends_with("The plan was not run."), "{message}");
        let other = Finished {
            status: Some(1),
            stderr: "Error: Unsupported block type".into(),
            ..Finished::default()
        };
        let message = init_failure("x", &other);
        assert!(!message.contains("provider could not"), "{message}");
        assert!(message.contains("Unsupported block type"), "{message}");
        let long = Finished {
            status: None,
            stderr: "e ".repeat(5000),
            ..Finished::default()
        };
        let message = init_failure("x", &long);
        assert!(message.contains("killed by a signal"));
        assert!(message.len() < MAX_ERROR_CHARS + 200, "{}", message.len());
    }

    /// A stand-in terraform: records its arguments and environment, and behaves as
    /// `script` says.
    fn fake_terraform(dir: &Path, script: &str) -> PathBuf {
        let path = dir.join("terraform");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn tool(binary: &Path, pass_env: &[&str], env: HashMap<String, String>) -> TerraformPlan {
        let mut config = TerraformConfig::new(binary);
        // The stand-in writes its log outside the workspace; confinement is tested
        // against the real terraform (tests/terraform.rs) and in confine.rs.
        config.confinement = Confinement::None;
        config.timeout_secs = 2;
        config.pass_env = pass_env.iter().map(|n| (*n).to_owned()).collect();
        TerraformPlan::new(&config)
            .unwrap()
            .with_env(Arc::new(move |name| env.get(name).map(OsString::from)))
    }

    fn context(workspace: &Path) -> ToolContext {
        ToolContext {
            workspace: workspace.to_owned(),
            ..ToolContext::default()
        }
    }

    #[tokio::test]
    async fn terraform_sees_only_init_and_plan_and_a_scrubbed_environment() {
        let bin = tempfile::tempdir().unwrap();
        let workspace = tempfile::tempdir().unwrap();
        let log = bin.path().join("log");
        std::fs::create_dir_all(workspace.path().join("tf")).unwrap();
        let binary = fake_terraform(
            bin.path(),
            &format!(
                "echo \"ARGS $*\" >> {log}\necho \"CWD $(pwd)\" >> {log}\nenv | sort | sed 's/^/ENV /' >> {log}\n\
                 [ \"$1\" = plan ] && echo 'Plan: 1 to add, 0 to change, 0 to destroy.'\nexit 0",
                log = log.display()
            ),
        );
        let env: HashMap<String, String> = [
            ("PATH", "/usr/bin:/bin"),
            ("AWS_PROFILE", "dev"),
            ("AWS_SECRET_ACCESS_KEY", "must-not-pass"),
            ("TF_CLI_ARGS", "-auto-approve"),
            ("HOME", "/root"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let tool = tool(&binary, &["AWS_PROFILE", "AWS_REGION"], env);
        let output = tool
            .call(&context(workspace.path()), &json!({"path": "tf"}))
            .await
            .unwrap();
        assert_eq!(
            output["summary"],
            "Plan: 1 to add, 0 to change, 0 to destroy."
        );
        assert_eq!(output["changes"]["add"], 1);
        assert_eq!(output["plan_file"], "tf/tfplan");

        let log = std::fs::read_to_string(&log).unwrap();
        let root = workspace.path().canonicalize().unwrap();
        let args: Vec<&str> = log
            .lines()
            .filter_map(|l| l.strip_prefix("ARGS "))
            .collect();
        assert_eq!(
            args,
            [
                "init -input=false -backend=false -no-color".to_owned(),
                format!(
                    "plan -input=false -no-color -lock=false -out={}/tf/tfplan",
                    root.display()
                ),
            ]
        );
        assert!(log.contains(&format!("CWD {}/tf", root.display())), "{log}");
        // Both runs' environments; the shell adds PWD, SHLVL and `_` itself.
        let env: std::collections::BTreeSet<&str> = log
            .lines()
            .filter_map(|l| l.strip_prefix("ENV "))
            .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
            .collect();
        let home = format!("HOME={}/{SCRATCH_HOME}", root.display());
        let tmp = format!("TMPDIR={}/{SCRATCH_TMP}", root.display());
        assert_eq!(
            env.into_iter().collect::<Vec<_>>(),
            [
                "AWS_PROFILE=dev",
                "CHECKPOINT_DISABLE=1",
                home.as_str(),
                "PATH=/usr/bin:/bin",
                "TF_FORK=0",
                "TF_INPUT=0",
                "TF_IN_AUTOMATION=1",
                tmp.as_str(),
            ],
            "{log}"
        );
    }

    #[tokio::test]
    async fn a_hung_terraform_is_killed_with_its_children_at_the_time_limit() {
        let bin = tempfile::tempdir().unwrap();
        let workspace = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(workspace.path().join("tf")).unwrap();
        let pids = bin.path().join("pids");
        // A plugin-like child in the background, then terraform itself hangs.
        let binary = fake_terraform(
            bin.path(),
            &format!(
                "sleep 300 &\necho $! >> {pids}\necho $$ >> {pids}\necho started\nexec sleep 300",
                pids = pids.display()
            ),
        );
        let tool = tool(
            &binary,
            &[],
            HashMap::from([("PATH".into(), "/usr/bin:/bin".into())]),
        );
        let started = std::time::Instant::now();
        let error = tool
            .call(&context(workspace.path()), &json!({"path": "tf"}))
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(error.kind(), "timeout", "{error}");
        assert!(
            error.to_string().contains("the plan was not run"),
            "{error}"
        );
        assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
        let pids = std::fs::read_to_string(&pids).unwrap();
        for pid in pids.split_whitespace() {
            // Killed and reaped (the background one by init once its parent died): a
            // dead process has no /proc entry, or is at most a zombie.
            let mut alive = true;
            for _ in 0..50 {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                alive = !stat.is_empty() && !stat.contains(") Z ");
                if !alive {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(!alive, "process {pid} survived the time limit");
        }
    }

    #[tokio::test]
    async fn a_failing_plan_and_a_missing_binary_are_failures_with_the_reason() {
        let bin = tempfile::tempdir().unwrap();
        let workspace = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(workspace.path().join("tf")).unwrap();
        let binary = fake_terraform(
            bin.path(),
            "[ \"$1\" = plan ] && { echo 'Error: Reference to undeclared input variable' >&2; exit 1; }\nexit 0",
        );
        let tool = tool(&binary, &[], HashMap::new());
        let error = tool
            .call(&context(workspace.path()), &json!({"path": "tf"}))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "terraform_plan_failed");
        assert!(error.to_string().contains("exit status 1"), "{error}");
        assert!(
            error.to_string().contains("undeclared input variable"),
            "{error}"
        );

        std::fs::remove_file(&binary).unwrap();
        let error = tool
            .call(&context(workspace.path()), &json!({"path": "tf"}))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "terraform_unavailable", "{error}");
    }

    #[tokio::test]
    async fn floods_are_capped() {
        let bin = tempfile::tempdir().unwrap();
        let workspace = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(workspace.path().join("tf")).unwrap();
        // 1 MiB of output from plan, well over a 1 KiB cap.
        let binary = fake_terraform(
            bin.path(),
            "[ \"$1\" = plan ] && { echo 'Plan: 0 to add, 0 to change, 1 to destroy.'; head -c 1048576 /dev/zero | tr '\\0' x; echo; echo END; }\nexit 0",
        );
        let mut config = TerraformConfig::new(&binary);
        config.confinement = Confinement::None;
        config.output_kib = 1;
        let tool = TerraformPlan::new(&config).unwrap();
        let output = tool
            .call(&context(workspace.path()), &json!({"path": "tf"}))
            .await
            .unwrap();
        let text = output["output"].as_str().unwrap();
        assert!(text.len() < 1200, "{}", text.len());
        assert!(text.starts_with("Plan: 0 to add"), "{text}");
        assert!(text.ends_with("END\n"), "{text}");
        assert!(text.contains("bytes dropped"), "{text}");
        // The summary comes from what was kept: the head.
        assert_eq!(output["changes"]["destroy"], 1);
    }
}
