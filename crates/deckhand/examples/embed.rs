//! Embedding deckhand in another Rust service: the service brings its own store, its
//! own model router and its own cluster (or none), and runs a request in-process
//! through the same conductor `deckhand serve` uses: the plan is made, explained,
//! checked against the tools, its read-only steps run, and everything lands in the
//! embedder's store as a thread.
//!
//! Run it from the repository root (the built-in tools must be built:
//! `scripts/build-tools-wasm.sh`):
//!
//! ```text
//! cargo run -p deckhand --example embed
//! ```
//!
//! With `KUBECONFIG` set it works on that cluster; without, cluster steps are planned
//! but not run. It exits non-zero when anything fails. `tests/embed.rs` runs it in the
//! test suite.

use anyhow::{ensure, Context};
use deckhand::cli::session::{Cluster, Parts};
use deckhand::conductor::Conductor;
use deckhand::llm::{LlmConfig, Router};
use deckhand::runtime::store::ConversationStore;
use deckhand::runtime::Interface;
use deckhand::store::Database;
use deckhand::Config;
use std::path::PathBuf;

#[tokio::main]
#[allow(dead_code)] // `tests/embed.rs` runs `embed()` itself.
async fn main() -> anyhow::Result<()> {
    let root = std::env::temp_dir().join(format!("deckhand-embed-{}", std::process::id()));
    let cluster = match kube::Config::infer().await {
        Ok(kube_config) => Cluster::Config(Box::new(kube_config)),
        Err(_) => Cluster::None,
    };
    embed(&root, cluster).await?;
    std::fs::remove_dir_all(&root).context("cleaning up")
}

/// Runs one request in-process with the embedder's own parts, in folders under `root`,
/// on `cluster`.
pub async fn embed(root: &std::path::Path, cluster: Cluster) -> anyhow::Result<()> {
    let config = Config {
        data_dir: root.join("data"),
        workspace: root.join("workspace"),
        builtin_tools_dir: std::env::var_os("DECKHAND_BUILTIN_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools-wasm/dist")
            }),
        ..Config::default()
    };

    // The embedder's own store (it could be its PostgreSQL), model router (here: no
    // model, the offline backend) and cluster.
    std::fs::create_dir_all(root).context("creating the example's folder")?;
    let database = Database::open_sqlite(&root.join("service.db"))
        .await
        .context("opening the store")?;
    let router = Router::new(&LlmConfig::default()).context("building the model router")?;
    let connected = !matches!(cluster, Cluster::None);
    let conductor = Conductor::open_with(
        &config,
        Interface::Api,
        Parts {
            database: Some(database.clone()),
            cluster,
        },
        Some(router),
    )
    .await
    .context("opening deckhand")?;

    let request = "create a deployment for nginx:1.27 with 2 replicas in shop";
    let planned = conductor
        .start("embedding-service", request, Some("shop".to_owned()))
        .await
        .context("planning")?;
    println!("plan {} for {request:?}:", planned.plan.hash);
    for step in &planned.plan.steps {
        println!(
            "  [{}] {} ({}{})",
            step.id,
            step.title,
            step.tool,
            if step.mutating {
                ", needs approval"
            } else {
                ""
            }
        );
    }
    println!("\n{}\n", planned.explanation);

    // Only what reads (or writes the workspace) runs without an approval.
    let ran = conductor
        .run_read_only(&planned.plan, "embedding-service")
        .await
        .context("running the read-only steps")?;
    println!("after the read-only steps: {:?}\n{}", ran.state, ran.report);
    // Without a cluster the cluster steps cannot run; everything else must have.
    let unexpected: Vec<_> = ran
        .failures
        .iter()
        .filter(|(_, why)| connected || !why.contains("no tool named \"kube_"))
        .collect();
    ensure!(unexpected.is_empty(), "steps failed: {unexpected:?}");
    let written = config.workspace.join("k8s/nginx/deployment.yaml");
    ensure!(
        written.is_file(),
        "the generator wrote no manifest at {}",
        written.display()
    );

    // The thread is in the embedder's own store.
    let messages = database
        .messages(planned.thread_id)
        .await
        .context("reading the thread back")?;
    ensure!(
        messages.len() >= 3,
        "the thread holds the request, the explanation and the report"
    );
    println!(
        "thread {} holds {} messages",
        planned.thread_id,
        messages.len()
    );
    conductor.close().await;
    Ok(())
}
