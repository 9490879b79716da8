//! `deckhand run PLAN.json --approve HASH` as the real binary against a real
//! kube-apiserver: a generator writes YAML into the workspace, the policy-checked dry
//! run passes, and the apply and the scale happen only with the plan's own hash.

use deckhand_runtime::plan::{CatalogEntry, PlanDraft, Step, ToolCatalog};
use deckhand_runtime::{AgentRole, Plan, ThreadId};
use deckhand_testkit::KubeApiServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools-wasm/dist")
}

fn step(id: &str, agent: AgentRole, tool: &str, input: Value, depends_on: &[&str]) -> Step {
    Step {
        id: id.into(),
        agent,
        title: id.into(),
        tool: tool.into(),
        input,
        depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        mutating: false,
        rationale: String::new(),
    }
}

/// The plan Scarlet makes for "create a deployment for nginx:1.27 with 2 replicas in
/// shop, then scale it to 3", written out by hand.
fn plan() -> Plan {
    // Only names and mutating flags matter here; `deckhand run` checks the inputs
    // against the real tools' schemas.
    let catalog = ToolCatalog::new(
        [
            ("deployment", false),
            ("kube_dry_run", false),
            ("kube_apply", true),
            ("kube_scale", true),
        ]
        .map(|(name, mutating)| CatalogEntry {
            name: name.into(),
            description: name.into(),
            input_schema: json!({"type": "object"}),
            mutating,
        }),
    );
    let file = "k8s/web/deployment.yaml";
    Plan::new(
        ThreadId::new(),
        "create a deployment for nginx:1.27 with 2 replicas in shop, then scale it to 3",
        "test",
        PlanDraft {
            steps: vec![
                step(
                    "generate",
                    AgentRole::Jamie,
                    "deployment",
                    json!({"path": file, "name": "web", "namespace": "shop", "image": "nginx:1.27", "replicas": 2}),
                    &[],
                ),
                step("dry-run", AgentRole::Jamie, "kube_dry_run", json!({"file": "{{steps.generate.output.path}}"}), &["generate"]),
                step("apply", AgentRole::Jamie, "kube_apply", json!({"file": file}), &["dry-run"]),
                step(
                    "scale",
                    AgentRole::Sre,
                    "kube_scale",
                    json!({"kind": "Deployment", "namespace": "shop", "name": "web", "replicas": 3}),
                    &["apply"],
                ),
            ],
        },
        &catalog,
    )
    .expect("plan")
}

fn deckhand(dir: &Path, kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deckhand"));
    command.current_dir(dir).args(args);
    if args.first() == Some(&"run") {
        command.arg("--builtin-tools-dir").arg(tools_dir());
    }
    let output = command
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", dir)
        .env("DECKHAND_WASM_CACHE", dir.join("wasm-cache"))
        .env_remove("DECKHAND_DATABASE_URL")
        .output()
        .expect("run deckhand");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_plan_runs_only_with_its_own_hash() {
    let cluster = KubeApiServer::start().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "shop"}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    let dir = tempfile::tempdir().expect("dir");
    let plan = plan();
    assert!(plan.steps[2].mutating && plan.steps[3].mutating);
    let plan_file = dir.path().join("plan.json");
    std::fs::write(
        &plan_file,
        serde_json::to_string_pretty(&plan).expect("json"),
    )
    .expect("plan file");
    let plan_arg = plan_file.to_str().expect("utf-8");
    let deployments = Api::<Deployment>::namespaced(client.clone(), "shop");

    // Another hash: refused, nothing runs.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let (code, _, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &["run", plan_arg, "--approve", &wrong],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("approval refused"), "{stderr}");
    assert!(!dir.path().join("workspace/k8s").exists());

    // An edited plan no longer matches its approval.
    let mut edited = plan.clone();
    edited.steps[3].input["replicas"] = json!(30);
    let edited_file = dir.path().join("edited.json");
    std::fs::write(&edited_file, serde_json::to_string(&edited).expect("json")).expect("file");
    let (code, _, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &[
            "run",
            edited_file.to_str().expect("utf-8"),
            "--approve",
            &plan.hash,
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("changed after"), "{stderr}");

    // Its own hash: generated, dry-run, applied, scaled.
    let (code, stdout, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &["run", plan_arg, "--approve", &plan.hash],
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON outcome");
    assert_eq!(report["state"], "succeeded", "{report}");
    assert_eq!(
        report["outputs"]["dry-run"]["results"][0]["operation"],
        "create"
    );
    assert!(
        dir.path()
            .join("workspace/k8s/web/deployment.yaml")
            .is_file(),
        "the manifest is in the workspace"
    );
    let web = deployments.get("web").await.expect("web exists");
    assert_eq!(web.spec.and_then(|spec| spec.replicas), Some(3));
    for step in ["generate", "dry-run", "apply", "scale"] {
        assert!(
            stderr.contains(&format!("[{step}] succeeded")),
            "progress for {step}: {stderr}"
        );
    }
    assert!(
        dir.path().join("data/deckhand.db").is_file(),
        "the same store as `serve`"
    );

    // Later, in other processes: the thread is in the store with what it changed.
    let thread = plan.thread_id.to_string();
    let (code, stdout, stderr) = deckhand(dir.path(), cluster.kubeconfig(), &["threads", "list"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&thread), "{stdout}");
    let (code, stdout, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &["threads", "show", &thread],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("created apps/v1 Deployment shop/web"),
        "{stdout}"
    );

    // Restore: the plan and its hash are shown; without an approval nothing happens.
    let (code, stdout, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &["threads", "restore", &thread],
    );
    assert_eq!(code, 1, "{stderr}\n{stdout}");
    assert!(stdout.contains("delete"), "{stdout}");
    assert!(stderr.contains("not restored"), "{stderr}");
    assert!(deployments.get_opt("web").await.expect("read").is_some());
    let hash = stdout
        .lines()
        .find_map(|line| line.strip_prefix("plan hash: "))
        .expect("the plan's hash is shown")
        .to_owned();
    let (code, stdout, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &["threads", "restore", &thread, "--approve", &hash],
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(stdout.contains("restored"), "{stdout}");
    let gone = deployments.get_opt("web").await.expect("read");
    assert!(
        gone.is_none()
            || gone
                .and_then(|web| web.metadata.deletion_timestamp)
                .is_some(),
        "the Deployment the thread created is deleted"
    );
    // Again: nothing left to do.
    let (code, stdout, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &["threads", "restore", &thread, "--yes"],
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(stdout.contains("nothing to do"), "{stdout}");

    // Every decision and write is in the audit log, and the chain holds.
    let (code, stdout, stderr) = deckhand(dir.path(), cluster.kubeconfig(), &["audit", "verify"]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let records: u64 = stdout
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .expect("a record count");
    assert!(records >= 8, "{stdout}");

    // Rated 100: closed.
    let (code, stdout, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &[
            "threads",
            "rate",
            &thread,
            "100",
            "--comment",
            "exactly right",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("closed"), "{stdout}");
    let (code, _, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &["threads", "rate", &thread, "101"],
    );
    assert_eq!(code, 2, "{stderr}");
}
