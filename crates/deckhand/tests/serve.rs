//! End to end: the real `deckhand` binary serves health and readiness with a real SQLite
//! store, the real wasm tools and a real Kubernetes API server.

use deckhand_testkit::process::{free_port, ServerProcess};
use deckhand_testkit::KubeApiServer;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools-wasm/dist")
}

/// Starts `deckhand serve` in `dir` and waits until `/healthz` answers.
async fn start_deckhand(dir: &Path, kubeconfig: Option<&Path>) -> (ServerProcess, String) {
    let port = free_port().expect("port");
    let mut command = Command::new(env!("CARGO_BIN_EXE_deckhand"));
    command
        .current_dir(dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--builtin-tools-dir")
        .arg(tools_dir())
        .env_remove("DECKHAND_DATABASE_URL")
        .env("HOME", dir) // no ~/.kube/config of the machine's
        .env("RUST_LOG", "info");
    match kubeconfig {
        Some(path) => command.env("KUBECONFIG", path),
        None => command.env_remove("KUBECONFIG"),
    };
    let mut process = ServerProcess::spawn("deckhand", command, &dir.join("deckhand.log"))
        .expect("spawn deckhand");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(response) = reqwest::get(format!("{base}/healthz")).await {
            if response.status().is_success() {
                break;
            }
        }
        process.check_running().expect("deckhand keeps running");
        assert!(
            Instant::now() < deadline,
            "deckhand did not answer /healthz within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (process, base)
}

async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

fn component<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["components"]
        .as_array()
        .and_then(|components| {
            components
                .iter()
                .find(|component| component["name"] == name)
        })
        .unwrap_or_else(|| panic!("no component {name} in {report}"))
}

#[tokio::test]
async fn serve_with_embedded_defaults_and_a_real_cluster() {
    let cluster = KubeApiServer::start().await.expect("control plane");
    let dir = tempfile::tempdir().expect("dir");
    let (mut deckhand, base) = start_deckhand(dir.path(), Some(cluster.kubeconfig())).await;

    let (status, health) = get_json(&format!("{base}/healthz")).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");

    let (status, ready) = get_json(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(component(&ready, "cluster")["detail"], "Kubernetes v1.20.2");
    assert!(component(&ready, "tools")["detail"]
        .as_str()
        .expect("detail")
        .contains("read_file"));
    assert!(component(&ready, "store")["detail"]
        .as_str()
        .expect("detail")
        .starts_with("Sqlite"));

    // The embedded defaults: an SQLite file under ./data and ./workspace as sandbox root.
    assert!(dir.path().join("data/deckhand.db").is_file());
    assert!(dir.path().join("workspace").is_dir());

    // SIGTERM stops it cleanly.
    deckhand.stop();
    let log = std::fs::read_to_string(dir.path().join("deckhand.log")).expect("log");
    assert!(log.contains("deckhand stopped"), "{log}");
}

#[tokio::test]
async fn serve_without_a_cluster_still_answers_and_says_so() {
    let dir = tempfile::tempdir().expect("dir");
    let (_deckhand, base) = start_deckhand(dir.path(), None).await;
    let (status, ready) = get_json(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    let detail = component(&ready, "cluster")["detail"]
        .as_str()
        .expect("detail");
    assert!(detail.starts_with("no cluster configured"), "{detail}");
}

#[tokio::test]
async fn serve_reports_an_unreachable_cluster_as_not_ready() {
    let dir = tempfile::tempdir().expect("dir");
    // A kubeconfig whose server is a port nobody listens on.
    let closed_port = free_port().expect("port");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:{closed_port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: gone\n  context: {{cluster: gone, user: u}}\ncurrent-context: gone\n"
        ),
    )
    .expect("write kubeconfig");

    let (_deckhand, base) = start_deckhand(dir.path(), Some(&kubeconfig)).await;
    let (status, ready) = get_json(&format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(component(&ready, "cluster")["ok"], false);
    assert_eq!(component(&ready, "store")["ok"], true);
}

#[test]
fn invalid_arguments_are_usage_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .expect("run deckhand");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--listen"));
}

#[test]
fn a_policy_that_does_not_load_stops_the_start() {
    let dir = tempfile::tempdir().expect("dir");
    let policies = dir.path().join("rules");
    std::fs::create_dir(&policies).expect("rules");
    std::fs::write(
        policies.join("broken.rego"),
        "package deckhand.broken\ndeny contains msg if {\n",
    )
    .expect("policy");
    std::fs::write(
        dir.path().join("deckhand.toml"),
        "listen = \"127.0.0.1:0\"\n[policy]\ndirs = [\"rules\"]\n",
    )
    .expect("config");
    let output = Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .current_dir(dir.path())
        .arg("serve")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run deckhand");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("broken.rego"), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing is started before the policies load"
    );
}
