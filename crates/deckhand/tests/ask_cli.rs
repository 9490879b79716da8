//! The three requests, end to end through the real binary against a real
//! kube-apiserver, with the offline backend (no model configured): a diagnosis that
//! changes nothing, a scale that waits for the plan's hash, and a new Deployment and
//! Service generated into the workspace, dry-run, then applied on approval.

use deckhand_testkit::KubeApiServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools-wasm/dist")
}

fn deckhand(dir: &Path, kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .current_dir(dir)
        .args(args)
        .arg("--builtin-tools-dir")
        .arg(tools_dir())
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", dir)
        .env("DECKHAND_WASM_CACHE", dir.join("wasm-cache"))
        // Nothing from the machine: the offline backend plans and answers.
        .env_remove("DECKHAND_DATABASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .env_remove("AZURE_OPENAI_ENDPOINT")
        .env("OLLAMA_HOST", "http://127.0.0.1:9")
        .output()
        .expect("run deckhand");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

fn tools_of(plan: &Value) -> Vec<(String, bool)> {
    plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| {
            (
                step["tool"].as_str().unwrap_or("").to_owned(),
                step["mutating"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

async fn cluster() -> (KubeApiServer, kube::Client) {
    let cluster = KubeApiServer::start().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "shop"}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    (cluster, client)
}

#[tokio::test]
async fn a_crash_loop_is_diagnosed_without_changing_anything() {
    let (cluster, client) = cluster().await;
    let pods = Api::<Pod>::namespaced(client.clone(), "shop");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "checkout-5c8d9-x2x7q", "namespace": "shop", "labels": {"app": "checkout"}},
        "spec": {"containers": [{"name": "checkout", "image": "registry.local/checkout:4.0"}]}
    }))
    .expect("pod");
    // A new namespace's default ServiceAccount gets its token a moment later; until then
    // the API server refuses pods (and asks to retry).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Err(error) = pods.create(&PostParams::default(), &pod).await {
        assert!(std::time::Instant::now() < deadline, "pod: {error}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    pods.patch_status(
        "checkout-5c8d9-x2x7q",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "containerStatuses": [{
            "name": "checkout", "image": "registry.local/checkout:4.0", "imageID": "", "ready": false,
            "restartCount": 9,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container=checkout"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}
        }]}})),
    )
    .await
    .expect("status");
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "checkout-5c8d9-x2x7q.1", "namespace": "shop"},
        "involvedObject": {"kind": "Pod", "name": "checkout-5c8d9-x2x7q", "namespace": "shop"},
        "reason": "BackOff", "type": "Warning", "count": 40,
        "message": "Back-off restarting failed container checkout in pod checkout-5c8d9-x2x7q"
    }))
    .expect("event");
    Api::<Event>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &event)
        .await
        .expect("event");
    let before = pods.get("checkout-5c8d9-x2x7q").await.expect("pod");

    let dir = tempfile::tempdir().expect("dir");
    let (code, stdout, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &[
            "ask",
            "why is pod checkout-5c8d9-x2x7q crash-looping in namespace shop?",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let report = json_of(&stdout);
    let tools = tools_of(&report["plan"]);
    assert!(
        tools.iter().all(|(_, mutating)| !mutating),
        "a diagnosis changes nothing: {tools:?}"
    );
    assert!(
        tools.iter().any(|(tool, _)| tool == "pod_facts"),
        "{tools:?}"
    );
    let answer = report["answer"].as_str().expect("answer").to_lowercase();
    assert!(answer.contains("crash"), "{answer}");
    assert_eq!(report["offline"], true, "no model was configured");
    let after = pods.get("checkout-5c8d9-x2x7q").await.expect("pod");
    assert_eq!(
        before.metadata.resource_version,
        after.metadata.resource_version
    );
}

#[tokio::test]
async fn a_scale_runs_only_with_the_plans_hash() {
    let (cluster, client) = cluster().await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), "shop");
    let web: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.local/web:1.0"}]}}}
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &web)
        .await
        .expect("web");

    let dir = tempfile::tempdir().expect("dir");
    let (code, stdout, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &[
            "plan",
            "scale deployment web to 3 in namespace shop",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let plan = json_of(&stdout);
    let mutating: Vec<String> = tools_of(&plan)
        .into_iter()
        .filter(|(_, mutating)| *mutating)
        .map(|(tool, _)| tool)
        .collect();
    assert_eq!(mutating, vec!["kube_scale".to_string()], "{plan}");
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, &stdout).expect("plan file");
    let plan_arg = plan_file.to_str().expect("utf-8");

    let wrong = format!("sha256:{}", "f".repeat(64));
    let (code, _, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &["run", plan_arg, "--approve", &wrong],
    );
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        deployments
            .get("web")
            .await
            .expect("web")
            .spec
            .and_then(|s| s.replicas),
        Some(1)
    );
    let hash = plan["hash"].as_str().expect("hash");
    let (code, stdout, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &["run", plan_arg, "--approve", hash],
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert_eq!(
        deployments
            .get("web")
            .await
            .expect("web")
            .spec
            .and_then(|s| s.replicas),
        Some(3)
    );
}

#[tokio::test]
async fn a_new_app_is_generated_dry_run_and_applied_on_approval() {
    let (cluster, client) = cluster().await;
    let dir = tempfile::tempdir().expect("dir");
    let (code, stdout, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &[
            "plan",
            "create a deployment for nginx:1.27 with 2 replicas and a service",
            "--namespace",
            "shop",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let plan = json_of(&stdout);
    let tools = tools_of(&plan);
    for expected in ["deployment", "service", "kube_dry_run", "kube_apply"] {
        assert!(
            tools.iter().any(|(tool, _)| tool == expected),
            "{expected} in {tools:?}"
        );
    }
    let mutating: Vec<&str> = tools
        .iter()
        .filter(|(_, mutating)| *mutating)
        .map(|(tool, _)| tool.as_str())
        .collect();
    assert!(
        mutating.iter().all(|tool| *tool == "kube_apply"),
        "{mutating:?}"
    );
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, &stdout).expect("plan file");
    let hash = plan["hash"].as_str().expect("hash");
    let (code, stdout, stderr) = deckhand(
        dir.path(),
        cluster.kubeconfig(),
        &["run", plan_file.to_str().expect("utf-8"), "--approve", hash],
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let deployments = Api::<Deployment>::namespaced(client.clone(), "shop");
    let nginx = deployments.list(&Default::default()).await.expect("list");
    let nginx = nginx
        .items
        .iter()
        .find(|d| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .is_some_and(|pod| {
                    pod.containers
                        .iter()
                        .any(|c| c.image.as_deref() == Some("nginx:1.27"))
                })
        })
        .expect("an nginx:1.27 Deployment");
    assert_eq!(nginx.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let services = Api::<Service>::namespaced(client.clone(), "shop")
        .list(&Default::default())
        .await
        .expect("services");
    assert_eq!(services.items.len(), 1, "one Service");
    let yaml_files = walk(&dir.path().join("workspace"));
    assert!(
        yaml_files.len() >= 2,
        "the manifests stay in the workspace: {yaml_files:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files
}

/// `deckhand eval` over the repository's set with the offline backend: each case's line
/// as soon as it is done (stderr), the report and the overall rate at the end (stdout),
/// and `--min-pass-rate` met exits 0.
#[test]
fn eval_reports_each_case_as_it_goes_and_the_overall_rate() {
    let dir = tempfile::tempdir().unwrap();
    let evals = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../evals");
    let evals = evals.to_str().unwrap();
    let no_cluster = dir.path().join("no-kubeconfig");
    let (code, stdout, stderr) = deckhand(
        dir.path(),
        &no_cluster,
        &["eval", evals, "--min-pass-rate", "0.9"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let total = std::fs::read_dir(evals)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        })
        .count();
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(progress.len(), total, "{stderr}");
    assert!(
        progress[0].starts_with(&format!("[1/{total}] ")),
        "{stderr}"
    );
    assert!(
        progress
            .iter()
            .any(|l| l.contains(" PASS scale-deployment-explicit ")),
        "{stderr}"
    );
    assert!(stdout.contains("overall: "), "{stdout}");
}
