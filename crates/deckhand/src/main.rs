//! The `deckhand` command line: parses arguments, installs logging and runs the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use deckhand::config::{
    Config, DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_TOOLS_DIR, DEFAULT_WORKSPACE,
};
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (health and readiness so far) with the store, the tool sandbox
    /// and the cluster from KUBECONFIG or the in-cluster config.
    Serve(ServeArgs),
    /// Check a request against the policy engine, or run policy tests.
    Policy(deckhand::cli::policy::PolicyArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DECKHAND_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Directory for the SQLite store and caches.
    #[arg(long, env = "DECKHAND_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The sandbox root tools are confined to.
    #[arg(long, env = "DECKHAND_WORKSPACE", default_value = DEFAULT_WORKSPACE)]
    workspace: PathBuf,
    /// Directory of the built wasm tools.
    #[arg(long, env = "DECKHAND_TOOLS_DIR", default_value = DEFAULT_TOOLS_DIR)]
    tools_dir: PathBuf,
    /// Database URL (postgres://... or sqlite:...); default: DATA_DIR/deckhand.db.
    #[arg(long, env = "DECKHAND_DATABASE_URL")]
    database_url: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The whole cause chain, one line per cause, without a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Serve(args) => {
            let config = Config {
                listen: args.listen,
                data_dir: args.data_dir,
                workspace: args.workspace,
                tools_dir: args.tools_dir,
                database_url: args.database_url,
            };
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            deckhand::serve(config, listener, shutdown_signal()).await?;
        }
        Command::Policy(args) => {
            let status =
                deckhand::cli::policy::run(args, &mut std::io::stdout(), &mut std::io::stderr());
            // `policy` has its own exit statuses (0 allowed, 1 denied, 2 unreadable).
            std::process::exit(i32::from(status));
        }
    }
    Ok(())
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
