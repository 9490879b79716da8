//! A thread lands in git through the conductor: with `[git]` naming a real (bare, local)
//! repository and a GitHub forge (a local server speaking GitHub's REST API), the
//! approval commits the request, the plan and the manifests on `deckhand/thread-<id>`,
//! the finished run commits the result, and the rating of 100 opens a pull request from
//! that branch — each told in the thread.

#![allow(clippy::unwrap_used)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use deckhand::cli::session::{Cluster, Parts};
use deckhand::conductor::Conductor;
use deckhand::llm::{LlmConfig, Router as ModelRouter};
use deckhand::runtime::store::ConversationStore;
use deckhand::runtime::Interface;
use deckhand::store::Database;
use deckhand::Config;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "ghp_landingtesttoken";

/// What the forge was sent: (authorization header, body).
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

async fn create_pull(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let authorization = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    seen.lock().unwrap().push((authorization, body.clone()));
    let head = body["head"].as_str().unwrap_or_default();
    (
        StatusCode::CREATED,
        Json(json!({
            "id": 1_000_042, "number": 42, "state": "open",
            "html_url": "https://github.com/acme/platform/pull/42",
            "head": {"ref": head}, "base": {"ref": body["base"]},
        })),
    )
}

/// A bare repository with `main` holding a README: the remote.
fn remote(dir: &std::path::Path) -> (PathBuf, git2::Repository) {
    let path = dir.join("platform.git");
    let repo = git2::Repository::init_bare(&path).unwrap();
    {
        let seed = git2::Signature::now("Seed", "seed@example.com").unwrap();
        let blob = repo.blob(b"# platform\n").unwrap();
        let mut builder = repo.treebuilder(None).unwrap();
        builder.insert("README.md", blob, 0o100_644).unwrap();
        let tree = repo.find_tree(builder.write().unwrap()).unwrap();
        repo.commit(Some("refs/heads/main"), &seed, &seed, "initial", &tree, &[])
            .unwrap();
        repo.set_head("refs/heads/main").unwrap();
    }
    (path, repo)
}

/// The files of a branch's head commit, by path.
fn files(repo: &git2::Repository, branch: &str) -> Vec<(String, String)> {
    let commit = repo
        .find_reference(&format!("refs/heads/{branch}"))
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let mut found = Vec::new();
    commit
        .tree()
        .unwrap()
        .walk(git2::TreeWalkMode::PreOrder, |root, entry| {
            if let Ok(blob) = entry
                .to_object(repo)
                .and_then(|object| object.peel_to_blob())
            {
                found.push((
                    format!("{root}{}", entry.name().unwrap_or_default()),
                    String::from_utf8_lossy(blob.content()).into_owned(),
                ));
            }
            git2::TreeWalkResult::Ok
        })
        .unwrap();
    found
}

#[tokio::test]
async fn a_thread_lands_as_a_branch_and_a_pull_request() {
    land_a_thread("apply").await;
}

/// GitOps mode: the same landing, but deckhand does not apply the manifests itself — the
/// step is checked (policies, server-side dry run) and Argo CD / Flux apply the branch's
/// manifests (a kustomization lists them).
#[tokio::test]
async fn in_gitops_mode_the_manifests_are_committed_not_applied() {
    land_a_thread("gitops").await;
}

async fn land_a_thread(mode: &str) {
    let gitops = mode == "gitops";
    // A real cluster: a plan is approved only when every tool it names can run here.
    let cluster = deckhand_testkit::KubeApiServer::start().await.unwrap();
    let client = cluster.client().await.unwrap();
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(client.clone());
    namespaces
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "shop"}})).unwrap(),
        )
        .await
        .unwrap();
    let kube_config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (remote_path, remote_repo) = remote(dir.path());
    let seen: Seen = Arc::default();
    let forge = Router::new()
        .route("/repos/acme/platform/pulls", post(create_pull))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forge_address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, forge).await.unwrap() });
    // The token comes from the environment, as configured.
    std::env::set_var("DECKHAND_LANDING_TEST_TOKEN", TOKEN);

    let git = serde_json::from_value(json!({
        "mode": mode,
        "cache_dir": dir.path().join("clones"),
        "repositories": [{
            "name": "platform",
            "url": remote_path,
            "author": {"name": "deckhand", "email": "deckhand@example.com"},
            "token": {"env": "DECKHAND_LANDING_TEST_TOKEN"},
            "forge": {"kind": "github", "api_url": format!("http://{forge_address}"), "owner": "acme", "repo": "platform"}
        }]
    }))
    .unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        workspace: dir.path().join("workspace"),
        builtin_tools_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools-wasm/dist"),
        git,
        ..Config::default()
    };
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let database = Database::open_sqlite(&config.data_dir.join("deckhand.db"))
        .await
        .unwrap();
    let conductor = Conductor::open_with(
        &config,
        Interface::Api,
        Parts {
            database: Some(database.clone()),
            cluster: Cluster::Config(Box::new(kube_config)),
        },
        Some(ModelRouter::new(&LlmConfig::default()).unwrap()),
    )
    .await
    .unwrap();

    let planned = conductor
        .start(
            "ana",
            "create a deployment for nginx:1.27 with 2 replicas in shop",
            Some("shop".into()),
        )
        .await
        .unwrap();
    let thread = planned.thread_id;
    let plan = planned.plan;
    let branch = format!("deckhand/thread-{thread}");
    // The generator writes the manifest and the dry run passes; nothing is committed
    // before approval.
    conductor.run_read_only(&plan, "ana").await.unwrap();
    assert!(remote_repo
        .find_reference(&format!("refs/heads/{branch}"))
        .is_err());

    conductor
        .approve(&plan, &plan.hash, "ana", None, Interface::Api)
        .await
        .unwrap();
    let approved = files(&remote_repo, &branch);
    let folder = format!("threads/{thread}/");
    let file = |name: &str| {
        approved
            .iter()
            .find(|(path, _)| path == &format!("{folder}{name}"))
            .map(|(_, text)| text.clone())
            .unwrap_or_else(|| panic!("no {name} in {approved:#?}"))
    };
    assert!(file("request.md").contains("create a deployment for nginx:1.27"));
    assert!(file("plan.json").contains(&plan.hash));
    let manifest = approved
        .iter()
        .find(|(path, _)| path.starts_with(&format!("{folder}manifests/")))
        .map(|(_, text)| text.clone())
        .unwrap_or_else(|| panic!("no manifest in {approved:#?}"));
    assert!(manifest.contains("nginx:1.27"), "{manifest}");
    assert_eq!(
        approved
            .iter()
            .any(|(path, _)| path == &format!("{folder}manifests/kustomization.yaml")),
        gitops,
        "{approved:#?}"
    );

    // The run applies the manifest; the result and the prior state are committed.
    conductor
        .run(&plan, "ana", &CancellationToken::new())
        .await
        .unwrap();
    let completed = files(&remote_repo, &branch);
    // Applied by deckhand, or left for Argo CD / Flux with the step saying so.
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client, "shop");
    let created = deployments.list(&Default::default()).await.unwrap().items;
    let apply = plan
        .steps
        .iter()
        .find(|step| step.tool == "kube_apply")
        .unwrap();
    let step = database
        .step_states(plan.id)
        .await
        .unwrap()
        .remove(&apply.id)
        .unwrap();
    let output = step.output.unwrap_or_default();
    if gitops {
        assert!(created.is_empty(), "deckhand applied in GitOps mode");
        assert_eq!(output["applied_by_deckhand"], false, "{output:#}");
        assert_eq!(output["gitops"]["branch"], json!(branch), "{output:#}");
    } else {
        assert_eq!(created.len(), 1, "the run applies the manifest");
        assert!(output.get("gitops").is_none(), "{output:#}");
    }
    assert!(
        completed
            .iter()
            .any(|(path, _)| path == &format!("{folder}result.md")),
        "{completed:#?}"
    );

    // Rated 100: a pull request from the branch to main, with the configured token.
    conductor.rate(thread, "ana", 100, "spot on").await.unwrap();
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let (authorization, body) = &requests[0];
    assert_eq!(authorization, &format!("Bearer {TOKEN}"));
    assert_eq!(body["head"], json!(branch));
    assert_eq!(body["base"], "main");
    assert!(body["title"].as_str().unwrap().starts_with("deckhand: "));

    // Each step is told in the thread.
    let messages: Vec<String> = database
        .messages(thread)
        .await
        .unwrap()
        .into_iter()
        .map(|message| message.text)
        .collect();
    for expected in [
        "Recorded the approved plan on branch",
        "Recorded the result on branch",
        "Opened pull request #42",
    ] {
        assert!(
            messages.iter().any(|text| text.contains(expected)),
            "no {expected:?} in {messages:#?}"
        );
    }
    conductor.close().await;
}
