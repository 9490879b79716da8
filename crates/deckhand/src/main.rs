//! The `deckhand` command line: parses arguments, installs logging and runs the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use deckhand::config::{Config, DEFAULT_WORKSPACE};
use deckhand::toolbox::ToolsConfig;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// deckhand: a safe multi-agent DevOps runtime for Kubernetes.
///
/// AI suggests, the engineer decides: nothing mutating reaches a cluster without policy and
/// approval.
#[derive(Parser)]
#[command(name = "deckhand", version, about, long_about)]
struct Cli {
    /// The config file (TOML). Default: ./deckhand.toml when present. Flags and
    /// environment variables override it.
    #[arg(long, global = true, env = "DECKHAND_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (health and readiness so far) with the store, the tool sandbox
    /// and the cluster from KUBECONFIG or the in-cluster config.
    Serve(ServeArgs),
    /// List, describe and run the sandboxed tools.
    #[command(subcommand)]
    Tool(ToolCommand),
    /// Check a request against the policy engine, or run policy tests.
    Policy(deckhand::cli::policy::PolicyArgs),
    /// Plan a request and print the plan (Jamie's explanation, or JSON). Nothing runs.
    Plan(AskArgs),
    /// Plan a request, run its read-only steps and answer; nothing is changed.
    Ask(AskArgs),
    /// Run the evaluation cases in DIR (evals/) against the configured planner and print
    /// the pass rate per case and overall.
    Eval {
        /// The directory of cases.
        #[arg(default_value = "evals")]
        dir: PathBuf,
        /// Exit 1 when the overall pass rate is below this (0.0-1.0).
        #[arg(long, value_name = "RATE")]
        min_pass_rate: Option<f64>,
        #[command(flatten)]
        tools: ToolsArgs,
    },
    /// Carry out a plan approved by its hash (`deckhand plan ... --json` makes one).
    /// Exit status: 0 every step succeeded, 1 approval refused, plan invalid or a step
    /// failed, 2 unreadable plan or deckhand cannot start.
    Run {
        /// The plan, as JSON.
        plan: PathBuf,
        /// The plan's hash (`sha256:...`): the approval. Any other hash is refused.
        #[arg(long, value_name = "HASH")]
        approve: String,
        /// The sandbox root tools are confined to [default: workspace].
        #[arg(long, env = "DECKHAND_WORKSPACE", value_name = "DIR")]
        workspace: Option<PathBuf>,
        /// Directory for the SQLite store [default: data].
        #[arg(long, env = "DECKHAND_DATA_DIR", value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        tools: ToolsArgs,
    },
    /// The LLM layer: which backends are reachable and which model each agent uses.
    #[command(subcommand)]
    Llm(LlmCommand),
    /// Threads: list, show, rate, and restore the cluster to before a thread.
    #[command(subcommand)]
    Threads(ThreadsCommand),
    /// The knowledge base: resolved threads from every cluster sharing the store.
    #[command(subcommand)]
    Knowledge(KnowledgeCommand),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run the Kubernetes operator: plan, run and restore AIRequest objects (leader
    /// election through the Lease deckhand-operator; only the leader acts).
    Operator(OperatorArgs),
    /// Internal: confine itself with Landlock to the grants, then become PROGRAM (how
    /// `terraform_plan` runs terraform). `[--read PATH | --write PATH]... -- PROGRAM ARGS`.
    #[command(hide = true)]
    Confine {
        /// The grants, `--`, the program and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 1..)]
        args: Vec<std::ffi::OsString>,
    },
}

/// `deckhand operator`.
#[derive(Args)]
struct OperatorArgs {
    /// Watch AIRequests only in this namespace [default: all namespaces].
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// The namespace of the leader-election Lease.
    #[arg(long, env = "DECKHAND_LEASE_NAMESPACE", default_value = deckhand::operator::DEFAULT_LEASE_NAMESPACE)]
    lease_namespace: String,
    /// This replica's name in the Lease [default: $POD_NAME, else the host name and pid].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds the Lease holds without renewal (a crashed leader's replacement waits this long).
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Whose name a request runs under: `declared` takes `spec.user` as written (recorded,
    /// never impersonated: deckhand acts as itself); `attested` takes only the people the
    /// admission webhook recorded (creator, approver, who asked to restore) and, with
    /// `[cluster] impersonate`, acts as them. Requests without a record are refused.
    #[arg(
        long,
        env = "DECKHAND_IDENTITY_SOURCE",
        default_value = "declared",
        value_name = "SOURCE"
    )]
    identity_source: deckhand::operator::IdentitySource,
    /// Serve the AIRequest admission webhook (HTTPS, path /mutate-airequests) on this
    /// address, e.g. 0.0.0.0:8443. Every replica serves it.
    #[arg(long, env = "DECKHAND_WEBHOOK_LISTEN", value_name = "ADDR", requires_all = ["webhook_cert", "webhook_key"])]
    webhook_listen: Option<std::net::SocketAddr>,
    /// The webhook's certificate chain (PEM); read again when it or the key changes.
    #[arg(long, env = "DECKHAND_WEBHOOK_CERT", value_name = "FILE")]
    webhook_cert: Option<PathBuf>,
    /// The webhook's private key (PEM).
    #[arg(long, env = "DECKHAND_WEBHOOK_KEY", value_name = "FILE")]
    webhook_key: Option<PathBuf>,
    /// The sandbox root [default: workspace].
    #[arg(long, env = "DECKHAND_WORKSPACE", value_name = "DIR")]
    workspace: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    tools: ToolsArgs,
}

/// Where the store is (shared by the store commands).
#[derive(Args)]
struct StoreArgs {
    /// Directory for the SQLite store [default: data].
    #[arg(long, env = "DECKHAND_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (postgres://... or sqlite:...); default: DATA_DIR/deckhand.db.
    #[arg(long, env = "DECKHAND_DATABASE_URL")]
    database_url: Option<String>,
    /// A PostgreSQL shared by several clusters (postgres://...) that the local SQLite
    /// store is replicated to; writes queue locally while it is unreachable.
    #[arg(long, env = "DECKHAND_SHARED_DATABASE_URL")]
    shared_database_url: Option<String>,
}

impl StoreArgs {
    fn config(self, config_file: Option<&std::path::Path>) -> anyhow::Result<Config> {
        let mut config = load_config(config_file)?;
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        if let Some(url) = self.database_url {
            config.database_url = Some(url);
        }
        if let Some(url) = self.shared_database_url {
            config.shared_database_url = Some(url);
        }
        Ok(config)
    }
}

#[derive(Subcommand)]
enum ThreadsCommand {
    /// The newest threads, one per line.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// A thread: its messages, plans, ratings and what it changed in the cluster.
    Show {
        /// The thread's id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Rate a thread from 0 to 100; 100 means resolved and closes it.
    Rate {
        /// The thread's id.
        id: String,
        /// 0 to 100.
        score: i64,
        /// What you think of the answer.
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Put every object the thread changed back as it was before the thread, and delete
    /// what it created. Shows the plan (with a diff per object) and asks for approval.
    /// Exit status: 0 restored or nothing to do, 1 not approved or refused, 2 bad input.
    Restore {
        /// The thread's id.
        id: String,
        /// Approve the plan as shown, without asking.
        #[arg(long, conflicts_with = "approve")]
        yes: bool,
        /// Approve a plan reviewed earlier by its hash; refused if the plan changed.
        #[arg(long, value_name = "HASH")]
        approve: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum KnowledgeCommand {
    /// Resolved threads like TEXT, best first (text relevance, rating, recency).
    Search {
        /// What to look for.
        text: String,
        /// At most this many.
        #[arg(long, default_value_t = 10)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the audit log's hash chain; exit status 1 names the first broken link.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// A request in plain words.
#[derive(Args)]
struct AskArgs {
    /// What you want, e.g. "why is checkout crash-looping in shop?".
    text: String,
    /// The namespace to work in when the text does not say.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Print JSON instead of prose.
    #[arg(long)]
    json: bool,
    /// The sandbox root [default: workspace].
    #[arg(long, env = "DECKHAND_WORKSPACE", value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Directory for the SQLite store [default: data].
    #[arg(long, env = "DECKHAND_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    tools: ToolsArgs,
}

impl AskArgs {
    fn config(&mut self, config_file: Option<&std::path::Path>) -> anyhow::Result<Config> {
        let mut config = load_config(config_file)?;
        if let Some(dir) = self.workspace.take() {
            config.workspace = dir;
        }
        if let Some(dir) = self.data_dir.take() {
            config.data_dir = dir;
        }
        ToolsArgs {
            builtin_tools_dir: self.tools.builtin_tools_dir.take(),
            plugin_dirs: std::mem::take(&mut self.tools.plugin_dirs),
        }
        .apply(&mut config);
        Ok(config)
    }
}

#[derive(Subcommand)]
enum LlmCommand {
    /// Probe every configured backend and show each agent's model chain. Exit status 0
    /// when every agent has a reachable backend (the offline one counts), 1 otherwise.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where tools come from (shared by `serve` and `tool`).
#[derive(Args)]
struct ToolsArgs {
    /// Directory of the built-in tools (NAME.wasm + NAME.json) [default: tools-wasm/dist].
    #[arg(long, env = "DECKHAND_BUILTIN_TOOLS_DIR", value_name = "DIR")]
    builtin_tools_dir: Option<PathBuf>,
    /// A directory of third-party tool plugins (NAME.wasm + NAME.json); repeat for more.
    /// Added to the config file's `tools.plugin_dirs`.
    #[arg(long = "tools-dir", value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "DECKHAND_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the SQLite store and caches [default: data].
    #[arg(long, env = "DECKHAND_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The sandbox root tools are confined to [default: workspace].
    #[arg(long, env = "DECKHAND_WORKSPACE", value_name = "DIR")]
    workspace: Option<PathBuf>,
    #[command(flatten)]
    tools: ToolsArgs,
    /// Database URL (postgres://... or sqlite:...); default: DATA_DIR/deckhand.db.
    #[arg(long, env = "DECKHAND_DATABASE_URL")]
    database_url: Option<String>,
    /// A PostgreSQL shared by several clusters (postgres://...) that the local SQLite
    /// store is replicated to; writes queue locally while it is unreachable.
    #[arg(long, env = "DECKHAND_SHARED_DATABASE_URL")]
    shared_database_url: Option<String>,
}

#[derive(Subcommand)]
enum ToolCommand {
    /// List the tools: name, workspace access, description.
    List {
        /// Print every manifest (with its schemas) as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        tools: ToolsArgs,
    },
    /// Print a tool's manifest: description, workspace access, input and output schemas.
    Schema {
        /// The tool's name.
        name: String,
        #[command(flatten)]
        tools: ToolsArgs,
    },
    /// Run a tool once and print its JSON result. Exit status: 0 success, 1 the tool
    /// failed or hit a limit, 2 usage error or input that fails the schema.
    Run {
        /// The tool's name.
        name: String,
        /// The workspace folder the tool is confined to.
        #[arg(long, default_value = DEFAULT_WORKSPACE)]
        workspace: PathBuf,
        /// The tool's input, a JSON object.
        #[arg(long)]
        input: String,
        #[command(flatten)]
        tools: ToolsArgs,
    },
}

impl ToolsArgs {
    /// Lays the flags over the configuration.
    fn apply(self, config: &mut Config) {
        if let Some(dir) = self.builtin_tools_dir {
            config.builtin_tools_dir = dir;
        }
        config.plugin_dirs.extend(self.plugin_dirs);
    }

    /// The tools configuration for one-shot commands: the config file's tools and limits
    /// with the flags over them. Compiled modules are cached in `DECKHAND_WASM_CACHE` or
    /// `~/.cache/deckhand/wasm-cache`, so only the first run pays for compiling them, and
    /// nothing is left in the working directory.
    fn config(self, config_file: Option<&std::path::Path>) -> anyhow::Result<ToolsConfig> {
        let mut config = load_config(config_file)?;
        self.apply(&mut config);
        let mut tools = config.tools();
        tools.compile_cache_dir = std::env::var_os("DECKHAND_WASM_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|home| PathBuf::from(home).join(".cache/deckhand/wasm-cache"))
            });
        Ok(tools)
    }
}

/// The configuration, with what only the binary knows: terraform runs confined through
/// this executable's `deckhand confine`.
fn load_config(file: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let mut config = Config::load(file)?;
    if let Some(terraform) = &mut config.terraform {
        let me = std::env::current_exe().context("finding the deckhand executable")?;
        terraform.launcher = Some(deckhand_tools::confine::Launcher::new(me, ["confine"]));
    }
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread exists: the restriction and the exec are this process's alone.
    if let Command::Confine { args } = cli.command {
        use deckhand_tools::confine::{exec_confined, Grants};
        let error = match Grants::parse_launcher_args(args) {
            Ok((grants, program, args)) => exec_confined(&grants, &program, &args),
            Err(error) => error,
        };
        eprintln!("error: {error}");
        return ExitCode::from(126);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            // The whole cause chain, one line per cause, without a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let default_level = match cli.command {
        Command::Serve(_) | Command::Operator(_) => "info",
        // One-shot commands print results on stdout; only problems go to stderr.
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Serve(args) => {
            let mut config = load_config(cli.config.as_deref())?;
            if let Some(listen) = args.listen {
                config.listen = listen;
            }
            if let Some(dir) = args.data_dir {
                config.data_dir = dir;
            }
            if let Some(dir) = args.workspace {
                config.workspace = dir;
            }
            if let Some(url) = args.database_url {
                config.database_url = Some(url);
            }
            if let Some(url) = args.shared_database_url {
                config.shared_database_url = Some(url);
            }
            args.tools.apply(&mut config);
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            deckhand::serve(config, listener, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tool(command) => {
            let config_file = cli.config.as_deref();
            Ok(match command {
                ToolCommand::List { json, tools } => {
                    deckhand::cli::tool::list(&tools.config(config_file)?, json)
                }
                ToolCommand::Schema { name, tools } => {
                    deckhand::cli::tool::schema(&tools.config(config_file)?, &name)
                }
                ToolCommand::Run {
                    name,
                    workspace,
                    input,
                    tools,
                } => {
                    let tools = match tools.config(config_file) {
                        Ok(tools) => tools,
                        Err(error) => {
                            eprintln!("error: {error:#}");
                            return Ok(ExitCode::from(2));
                        }
                    };
                    deckhand::cli::tool::run(&tools, &name, &workspace, &input).await
                }
            })
        }
        Command::Plan(mut args) => {
            let config = args.config(cli.config.as_deref())?;
            let status = deckhand::cli::plan::plan(
                &config,
                &args.text,
                args.namespace,
                args.json,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
            .await;
            Ok(ExitCode::from(status))
        }
        Command::Ask(mut args) => {
            let config = args.config(cli.config.as_deref())?;
            let status = deckhand::cli::plan::ask(
                &config,
                &args.text,
                args.namespace,
                args.json,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
            .await;
            Ok(ExitCode::from(status))
        }
        Command::Eval {
            dir,
            min_pass_rate,
            tools,
        } => {
            let mut config = load_config(cli.config.as_deref())?;
            tools.apply(&mut config);
            let status = deckhand::cli::plan::eval(
                &config,
                &dir,
                min_pass_rate,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
            .await;
            Ok(ExitCode::from(status))
        }
        Command::Run {
            plan,
            approve,
            workspace,
            data_dir,
            tools,
        } => {
            let mut config = load_config(cli.config.as_deref())?;
            if let Some(dir) = workspace {
                config.workspace = dir;
            }
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            tools.apply(&mut config);
            let status = deckhand::cli::run::run(
                &config,
                &plan,
                &approve,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
            .await;
            Ok(ExitCode::from(status))
        }
        Command::Llm(LlmCommand::Check { json }) => {
            let config = load_config(cli.config.as_deref())?;
            let env = |name: &str| std::env::var(name).ok();
            let report = deckhand::llm::check(&config.llm, &env)
                .await
                .context("the [llm] configuration is unusable")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(if report.routes.iter().all(|route| route.uses.is_some()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Threads(command) => {
            let config_file = cli.config.as_deref();
            let (out, err) = (&mut std::io::stdout(), &mut std::io::stderr());
            use deckhand::cli::threads;
            let status = match command {
                ThreadsCommand::List { limit, json, store } => {
                    threads::list(&store.config(config_file)?, limit, json, out, err).await
                }
                ThreadsCommand::Show { id, json, store } => {
                    threads::show(&store.config(config_file)?, &id, json, out, err).await
                }
                ThreadsCommand::Rate {
                    id,
                    score,
                    comment,
                    store,
                } => {
                    threads::rate(&store.config(config_file)?, &id, score, &comment, out, err).await
                }
                ThreadsCommand::Restore {
                    id,
                    yes,
                    approve,
                    store,
                } => {
                    let approval = match (yes, approve) {
                        (true, _) => threads::RestoreApproval::Yes,
                        (false, Some(hash)) => threads::RestoreApproval::Hash(hash),
                        (false, None) => threads::RestoreApproval::Ask,
                    };
                    let stdin = std::io::stdin();
                    let mut input = stdin.lock();
                    threads::restore(
                        &store.config(config_file)?,
                        &id,
                        approval,
                        &mut input,
                        out,
                        err,
                    )
                    .await
                }
            };
            Ok(ExitCode::from(status))
        }
        Command::Knowledge(KnowledgeCommand::Search {
            text,
            limit,
            json,
            store,
        }) => {
            let config = store.config(cli.config.as_deref())?;
            let status = deckhand::cli::threads::knowledge_search(
                &config,
                &text,
                limit,
                json,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
            .await;
            Ok(ExitCode::from(status))
        }
        Command::Audit(AuditCommand::Verify { store }) => {
            let config = store.config(cli.config.as_deref())?;
            let status = deckhand::cli::threads::audit_verify(
                &config,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
            .await;
            Ok(ExitCode::from(status))
        }
        // Handled in `main`, before the runtime started.
        Command::Confine { .. } => Ok(ExitCode::from(126)),
        Command::Operator(args) => {
            let mut config = args.store.config(cli.config.as_deref())?;
            if let Some(dir) = args.workspace {
                config.workspace = dir;
            }
            args.tools.apply(&mut config);
            let identity = args.identity.unwrap_or_else(|| {
                let host = std::fs::read_to_string("/etc/hostname")
                    .map(|name| name.trim().to_owned())
                    .unwrap_or_else(|_| "deckhand".to_owned());
                format!("{host}-{}", std::process::id())
            });
            let mut options = deckhand::operator::Options::new(identity);
            options.namespace = args.namespace;
            options.lease_namespace = args.lease_namespace;
            options.lease_duration = std::time::Duration::from_secs(args.lease_seconds.max(1));
            options.identity_source = args.identity_source;
            if let (Some(listen), Some(cert), Some(key)) =
                (args.webhook_listen, args.webhook_cert, args.webhook_key)
            {
                options.webhook = Some(deckhand::operator::WebhookOptions { listen, cert, key });
            }
            deckhand::operator::run(&config, options, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(args) => {
            let status =
                deckhand::cli::policy::run(args, &mut std::io::stdout(), &mut std::io::stderr());
            // `policy` has its own exit statuses (0 allowed, 1 denied, 2 unreadable).
            std::process::exit(i32::from(status));
        }
    }
}

/// Completes on Ctrl-C or SIGTERM (what Kubernetes sends before killing a pod).
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
