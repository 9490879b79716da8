//! The HTTP API and WebSocket of the real `deckhand serve` binary, on a real SQLite
//! store, a real kube-apiserver and the offline planner: log in with the first admin
//! token, ask, watch the plan arrive over the WebSocket, preview the diff, approve, run,
//! see the result in the cluster, restore it, rate it 100, find it in the knowledge
//! base, and resume the event stream after a restart of the process.

#![allow(clippy::unwrap_used)]

mod common;

use common::{serve, Caller, WAIT};
use deckhand_testkit::process::free_port;
use deckhand_testkit::KubeApiServer;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Generous: the machine may be busy compiling, and the first start compiles the tools.
/// Creates `manifest` through `api`.
async fn create<K>(api: &Api<K>, manifest: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(manifest).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

async fn cluster() -> (KubeApiServer, Client) {
    let cluster = KubeApiServer::start().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(&namespaces, json!({"metadata": {"name": "shop"}})).await;
    let web: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.local/web:1.0"}]}}}
    }))
    .unwrap();
    // The namespace may take a moment to be usable right after it is made.
    let deployments = Api::<Deployment>::namespaced(client.clone(), "shop");
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(error) = deployments.create(&PostParams::default(), &web).await {
        assert!(Instant::now() < deadline, "cannot create web: {error}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (cluster, client)
}

async fn replicas(client: &Client) -> Option<i32> {
    Api::<Deployment>::namespaced(client.clone(), "shop")
        .get("web")
        .await
        .unwrap()
        .spec
        .and_then(|spec| spec.replicas)
}

impl Caller {
    /// Polls the thread until `done` says its latest plan is where the test wants it.
    async fn thread_until(&self, thread: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, detail) = self.get(&format!("/api/threads/{thread}")).await;
            assert_eq!(status, 200, "{detail}");
            if done(&detail) {
                return detail;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {detail:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What a local peer (a webhook receiver, Slack's Web API) was sent: (path, JSON body).
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Value)>>>);

impl Received {
    fn all(&self) -> Vec<(String, Value)> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until a request matching `wanted` arrived; returns its body.
    async fn wait_for(&self, what: &str, wanted: impl Fn(&str, &Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((_, body)) = self
                .all()
                .into_iter()
                .find(|(path, body)| wanted(path, body))
            {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "never received {what}; got {:#?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A local HTTP peer taking JSON POSTs on any path: it answers Slack's Web API
/// (`/api/chat.postMessage` → `{ok, ts}`) and any webhook (`{ok: true}`).
async fn local_peer() -> (String, Received) {
    let received = Received::default();
    let log = received.clone();
    let app = axum::Router::new().fallback(axum::routing::post(
        move |uri: axum::http::Uri, body: String| {
            let log = log.clone();
            async move {
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
                let mut calls = log.0.lock().unwrap();
                calls.push((uri.path().to_owned(), body.clone()));
                let ts = format!("1700000200.{:06}", calls.len());
                axum::Json(json!({"ok": true, "channel": body["channel"], "ts": ts}))
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, received)
}

fn latest_plan(detail: &Value) -> Option<&Value> {
    detail["plans"].as_array().and_then(|plans| plans.last())
}

/// Reads WebSocket events until one of `kind` arrives; returns every event read.
async fn events_until(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    kind: &str,
) -> Vec<Value> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event; got {events:#?}"))
            .expect("the stream goes on")
            .unwrap();
        if let WsMessage::Text(text) = message {
            let event: Value = serde_json::from_str(text.as_str()).unwrap();
            let found = event["kind"] == kind;
            events.push(event);
            if found {
                return events;
            }
        }
    }
}

async fn connect(
    base: &str,
    token: &str,
    thread: &str,
    after: Option<u64>,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let query = after
        .map(|after| format!("?after={after}"))
        .unwrap_or_default();
    let url = format!(
        "{}/ws/threads/{thread}{query}",
        base.replacen("http", "ws", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
}

#[tokio::test]
async fn a_request_through_the_api_from_question_to_restore() {
    let (cluster, client) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let mut deckhand = serve(dir.path(), port, Some(cluster.kubeconfig()), "info").await;
    let base = format!("http://127.0.0.1:{port}");

    // The first start issued an admin token, readable by its owner only.
    let token_file = dir.path().join("data/initial-admin-token");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(token.starts_with("dh_"), "{token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the token file is private: {mode:o}");
    }
    let admin = Caller {
        http: reqwest::Client::new(),
        base: base.clone(),
        token,
    };

    // Without a token, nothing but health.
    let anonymous = reqwest::get(format!("{base}/api/threads")).await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let (status, whoami) = admin.get("/api/whoami").await;
    assert_eq!(status, 200, "{whoami}");
    assert_eq!(whoami["identity"]["scope"], "admin");

    // An operator token for the person who asks.
    let (status, created) = admin
        .post(
            "/api/tokens",
            json!({"name": "ana laptop", "subject": "ana", "groups": ["devs"], "scope": "operator"}),
        )
        .await;
    assert!(status == 200 || status == 201, "{created}");
    let ana = Caller {
        http: reqwest::Client::new(),
        base: base.clone(),
        token: created["token"].as_str().unwrap().to_owned(),
    };
    let (_, namespaces) = ana.get("/api/namespaces").await;
    assert!(
        namespaces["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!("shop")),
        "{namespaces}"
    );

    // Ask. The thread comes back at once; the plan arrives as an event.
    let (status, thread) = ana
        .post(
            "/api/threads",
            json!({"text": "scale web to 3 in shop", "namespace": "shop"}),
        )
        .await;
    assert!(status == 200 || status == 201, "{thread}");
    let thread_id = thread["thread"]["id"].as_str().unwrap().to_owned();
    assert_eq!(thread["thread"]["user"], "ana");
    let mut socket = connect(&base, &ana.token, &thread_id, None).await;
    let events = events_until(&mut socket, "plan_proposed").await;
    assert_eq!(events[0]["kind"], "message", "{events:#?}");
    assert_eq!(events[0]["data"]["text"], "scale web to 3 in shop");
    assert_eq!(
        events[0]["data"]["seq"], 1,
        "message events carry their place in the thread"
    );
    let ids: Vec<u64> = events
        .iter()
        .map(|event| event["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "ids count up from 1"
    );
    let proposed = &events.last().unwrap()["data"];
    let hash = proposed["hash"].as_str().unwrap().to_owned();
    let plan_id = proposed["id"].as_str().unwrap().to_owned();
    let steps = proposed["steps"].as_array().unwrap();
    let scale = steps
        .iter()
        .find(|step| step["tool"] == "kube_scale")
        .unwrap_or_else(|| panic!("{proposed:#}"));
    assert_eq!(scale["mutating"], true);

    // The read-only steps run; the plan then waits for approval and nothing changed.
    let detail = ana
        .thread_until(&thread_id, "awaiting approval", |detail| {
            latest_plan(detail).is_some_and(|plan| plan["status"] == "awaiting_approval")
        })
        .await;
    assert!(
        detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["author"] == "jamie"),
        "Jamie explains the plan: {detail:#}"
    );
    assert_eq!(
        replicas(&client).await,
        Some(1),
        "nothing runs before approval"
    );

    // The preview: the dry-run diff of the scale, allowed by policy.
    let (status, previews) = ana
        .get(&format!("/api/threads/{thread_id}/plans/{plan_id}/preview"))
        .await;
    assert_eq!(status, 200, "{previews}");
    let preview = previews
        .as_array()
        .unwrap()
        .iter()
        .find(|preview| preview["tool"] == "kube_scale")
        .unwrap_or_else(|| panic!("{previews:#}"));
    assert_eq!(preview["target"], "apps/v1 Deployment shop/web");
    let diff = preview["diff"].as_str().unwrap();
    assert!(
        diff.contains("-  replicas: 1") && diff.contains("+  replicas: 3"),
        "{diff}"
    );
    assert!(
        !diff.contains("autoscaling") && diff.matches("\n-").count() == 1,
        "only the replica count changes: {diff}"
    );
    assert_eq!(preview["denied_by"], json!([]));

    // Another operator may not approve ana's plan; a stale hash is refused.
    let (_, other) = admin
        .post(
            "/api/tokens",
            json!({"name": "bo", "subject": "bo", "scope": "operator"}),
        )
        .await;
    let bo = Caller {
        http: reqwest::Client::new(),
        base: base.clone(),
        token: other["token"].as_str().unwrap().to_owned(),
    };
    let approve_path = format!("/api/threads/{thread_id}/plans/{plan_id}/approve");
    let (status, _) = bo.post(&approve_path, json!({"hash": hash})).await;
    assert_eq!(status, 403);
    let stale = format!("sha256:{}", "0".repeat(64));
    let (status, refused) = ana.post(&approve_path, json!({"hash": stale})).await;
    assert_eq!(status, 409, "{refused}");

    // Approve, run, and see the result.
    let (status, approved) = ana.post(&approve_path, json!({"hash": hash})).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["approved_by"], "ana");
    let (status, running) = ana
        .post(
            &format!("/api/threads/{thread_id}/plans/{plan_id}/run"),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{running}");
    let events = events_until(&mut socket, "plan_finished").await;
    let finished = events.last().unwrap();
    assert_eq!(finished["data"]["outcome"], "succeeded", "{events:#?}");
    assert!(events.iter().any(|event| event["kind"] == "step"
        && event["data"]["step_id"] == scale["id"]
        && event["data"]["state"] == "succeeded"));
    assert_eq!(replicas(&client).await, Some(3));
    let detail = ana
        .thread_until(&thread_id, "succeeded", |detail| {
            latest_plan(detail).is_some_and(|plan| plan["status"] == "succeeded")
        })
        .await;
    let last_event = detail["last_event_id"].as_u64().unwrap();
    assert!(last_event >= finished["id"].as_u64().unwrap());

    // Restore puts the deployment back.
    let (status, restored) = ana
        .post(&format!("/api/threads/{thread_id}/restore"), json!({}))
        .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(
        restored["restored"],
        json!(["replace apps/v1 Deployment shop/web"])
    );
    assert_eq!(replicas(&client).await, Some(1));

    // Rate 100: the thread closes and can be found by later threads.
    let (status, rated) = ana
        .post(
            &format!("/api/threads/{thread_id}/rating"),
            json!({"rating": 100, "comment": "spot on"}),
        )
        .await;
    assert_eq!(status, 200, "{rated}");
    assert_eq!(rated["status"], "closed");
    assert_eq!(rated["rating"], 100);
    let (status, hits) = ana.get("/api/knowledge?q=scale%20web").await;
    assert_eq!(status, 200, "{hits}");
    assert_eq!(hits[0]["thread_id"], json!(thread_id), "{hits:#}");
    let (status, closed) = ana
        .post(
            &format!("/api/threads/{thread_id}/messages"),
            json!({"text": "and again?"}),
        )
        .await;
    assert_eq!(status, 409, "a closed thread takes no messages: {closed}");
    drop(socket);

    // The model calls (here the offline backend's) are counted in /metrics and kept per
    // thread in the store.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("deckhand_llm_requests_total{backend=\"offline\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("deckhand_http_requests_total{"),
        "{metrics}"
    );
    for counted in [
        "deckhand_plans_total{state=\"proposed\"}",
        "deckhand_plans_total{state=\"succeeded\"}",
        "deckhand_steps_total{state=\"succeeded\"}",
        "deckhand_tool_calls_total{tool=\"kube_scale\",outcome=\"ok\"}",
        "deckhand_approvals_total{decision=\"approved\",target=\"plan\"} 1",
        "deckhand_restores_total{outcome=\"ok\"}",
        "deckhand_policy_decisions_total{policy=\"all\",result=\"allowed\"}",
    ] {
        assert!(metrics.contains(counted), "no {counted} in\n{metrics}");
    }

    // Stop and start again: the events are stored, so a client resumes after its id.
    deckhand.stop();
    let port = free_port().unwrap();
    let _deckhand = serve(dir.path(), port, Some(cluster.kubeconfig()), "info").await;
    let base = format!("http://127.0.0.1:{port}");
    let mut socket = connect(&base, &ana.token, &thread_id, Some(last_event - 1)).await;
    let resumed = events_until(&mut socket, "rating").await;
    assert_eq!(resumed[0]["id"].as_u64(), Some(last_event), "{resumed:#?}");
    let _ = socket.close(None).await;
    // Usage per thread survived in the store.
    let database = deckhand::store::Database::open_sqlite(&dir.path().join("data/deckhand.db"))
        .await
        .unwrap();
    let usage = database.thread_llm_usage(&thread_id).await.unwrap();
    assert!(
        !usage.calls.is_empty(),
        "no model calls kept for the thread"
    );
    // No second admin token once tokens exist.
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap().trim(),
        admin.token
    );
}

/// Where playwright-core is (scripts/install-chromium.sh puts it there); a missing
/// browser, node or playwright-core fails the test (CI installs them).
fn browser_prerequisites() -> PathBuf {
    const HINT: &str = "run scripts/install-chromium.sh (CI's scripts/test.sh does)";
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium at /usr/bin/chromium: {HINT}"
    );
    let node_dir = std::env::var_os("DECKHAND_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("DECKHAND_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/deckhand")
                })
                .join("node")
        });
    assert!(
        node_dir
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "the browser test needs playwright-core in {}: {HINT}",
        node_dir.display()
    );
    node_dir
}

/// The command center in a real headless Chromium against the real binary: log in with
/// the first admin token's link, ask, see the plan, preview, approve, run, see the
/// result, restore, rate 100, with a screenshot per stage kept under
/// `$CARGO_TARGET_DIR/gui-artifacts/serve-flow/`.
#[tokio::test]
async fn the_command_center_in_chromium_against_the_real_binary() {
    let node_dir = browser_prerequisites();
    let (cluster, client) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let _deckhand = serve(dir.path(), port, Some(cluster.kubeconfig()), "info").await;
    let token = std::fs::read_to_string(dir.path().join("data/initial-admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let artifacts = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("gui-artifacts/serve-flow");
    let _ = std::fs::remove_dir_all(&artifacts);
    let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../api/tests/gui/drive.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&driver)
        .args(["--base-url", &format!("http://127.0.0.1:{port}/")])
        .args(["--token", &token])
        .arg("--artifacts")
        .arg(&artifacts)
        .args(["--scenario", "flow", "--subject", "admin"])
        .args(["--request", "scale web to 3 in shop", "--namespace", "shop"])
        .env("DECKHAND_NODE_DIR", &node_dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser scenario did not finish in 240 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser scenario failed ({}); screenshots in {}:\n{stdout}\n{stderr}",
        output.status,
        artifacts.display()
    );
    for stage in [
        "03-logged-in",
        "04-plan",
        "06-preview",
        "07-approved",
        "08-result",
        "09-restored",
        "10-rated",
    ] {
        let screenshot = artifacts.join(format!("{stage}.png"));
        let bytes = std::fs::read(&screenshot)
            .unwrap_or_else(|error| panic!("{}: {error}", screenshot.display()));
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            screenshot.display()
        );
    }
    // What the browser did happened in the cluster: scaled, then restored.
    assert_eq!(replicas(&client).await, Some(1));
}

/// A `[[heartbeat]]` task in deckhand.toml starts on its schedule as a thread of its own,
/// planned like a person's request (no cluster here: its reads fail and say so).
#[tokio::test]
async fn a_heartbeat_task_starts_a_thread_on_its_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let (slack, slack_received) = local_peer().await;
    std::fs::write(
        dir.path().join("deckhand.toml"),
        format!(
            "[[heartbeat]]\nname = \"every-minute\"\nschedule = \"* * * * *\"\n\
             task = {{ request = {{ text = \"list pods in shop\" }} }}\n\n\
             [api.slack]\nsigning_secret = \"s3cret\"\nbot_token = \"xoxb-1\"\n\
             api_base_url = \"{slack}/api\"\nnotify_channel = \"C_OPS\"\n"
        ),
    )
    .unwrap();
    let port = free_port().unwrap();
    let _deckhand = serve(dir.path(), port, None, "info").await;
    let admin = Caller::admin(dir.path(), port);
    // A new task waits for its first slot: at most a minute.
    let deadline = Instant::now() + Duration::from_secs(150);
    let thread = loop {
        let (status, threads) = admin.get("/api/threads?user=heartbeat:every-minute").await;
        assert_eq!(status, 200, "{threads}");
        if let Some(thread) = threads.as_array().and_then(|threads| threads.first()) {
            break thread["id"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no heartbeat thread within 150 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let detail = admin
        .thread_until(&thread, "the heartbeat's plan", |detail| {
            latest_plan(detail).is_some()
        })
        .await;
    assert_eq!(detail["messages"][0]["text"], "list pods in shop");
    assert_eq!(detail["thread"]["user"], "heartbeat:every-minute");

    // The run is announced in Slack's notify channel, and its plan follows there.
    let announced = slack_received
        .wait_for("the heartbeat announcement", |path, body| {
            path == "/api/chat.postMessage"
                && body["channel"] == "C_OPS"
                && body.get("thread_ts").is_none()
        })
        .await;
    let text = announced["text"].as_str().unwrap();
    assert!(
        text.starts_with(":heartbeat: Scheduled task `every-minute`"),
        "{text}"
    );
    assert!(text.contains(&thread), "{text}");
    slack_received
        .wait_for("the plan in the Slack thread", |path, body| {
            path == "/api/chat.postMessage"
                && body["thread_ts"] == "1700000200.000001"
                && body["text"].as_str().unwrap_or("").starts_with("Plan")
        })
        .await;
}

#[tokio::test]
async fn deckhand_acts_as_the_person_and_says_up_front_what_they_may_not_do() {
    let (cluster, client) = cluster().await;
    // Admin alerts are Events on deckhand's own object in its namespace.
    create(
        &Api::<Namespace>::all(client.clone()),
        json!({"metadata": {"name": "deckhand"}}),
    )
    .await;
    // carol may do anything in shop; bob nothing.
    create(
        &Api::<Role>::namespaced(client.clone(), "shop"),
        json!({
            "metadata": {"name": "shop-admin", "namespace": "shop"},
            "rules": [{"apiGroups": ["", "apps"], "resources": ["*"], "verbs": ["*"]}]
        }),
    )
    .await;
    create(
        &Api::<RoleBinding>::namespaced(client.clone(), "shop"),
        json!({
            "metadata": {"name": "carol-admin", "namespace": "shop"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "shop-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "shop-team"}]
        }),
    )
    .await;

    let (webhook, alerts) = local_peer().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("deckhand.toml"),
        format!(
            "[cluster]\nimpersonate = true\nalert_namespace = \"deckhand\"\n\n\
             [alerts]\nwebhook_url = \"{webhook}/alerts\"\n"
        ),
    )
    .unwrap();
    let port = free_port().unwrap();
    let _deckhand = serve(dir.path(), port, Some(cluster.kubeconfig()), "info").await;
    let base = format!("http://127.0.0.1:{port}");
    let admin = Caller::admin(dir.path(), port);
    let person = |subject: &str, groups: Value| {
        let admin = &admin;
        let base = base.clone();
        let subject = subject.to_owned();
        async move {
            let (status, created) = admin
                .post(
                    "/api/tokens",
                    json!({"name": subject, "subject": subject, "groups": groups, "scope": "operator"}),
                )
                .await;
            assert!(status == 200 || status == 201, "{created}");
            Caller {
                http: reqwest::Client::new(),
                base,
                token: created["token"].as_str().unwrap().to_owned(),
            }
        }
    };
    let bob = person("bob", json!(["devs"])).await;
    let carol = person("carol", json!(["shop-team"])).await;
    let ask = |caller: &Caller| {
        let caller = caller.clone();
        async move {
            let (status, thread) = caller
                .post(
                    "/api/threads",
                    json!({"text": "scale web to 3 in shop", "namespace": "shop"}),
                )
                .await;
            assert!(status == 200 || status == 201, "{thread}");
            thread["thread"]["id"].as_str().unwrap().to_owned()
        }
    };

    // bob is told before approving exactly which permission he lacks...
    let bob_thread = ask(&bob).await;
    let detail = bob
        .thread_until(&bob_thread, "the access review", |detail| {
            detail["messages"].as_array().unwrap().iter().any(|m| {
                m["author"] == "deckhand"
                    && m["text"]
                        .as_str()
                        .unwrap_or("")
                        .contains("lacks permissions")
            })
        })
        .await;
    let review = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["text"]
                .as_str()
                .unwrap_or("")
                .contains("lacks permissions")
        })
        .unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(review.contains("bob lacks permissions"), "{review}");
    assert!(
        review.contains("patch deployments.apps/scale \"web\" in namespace shop"),
        "{review}"
    );
    // ...the admins hear of it: the webhook, a Kubernetes Event, the metric.
    let alert = alerts
        .wait_for("an access_denied alert", |path, body| {
            path == "/alerts" && body["reason"] == "access_denied" && body["user"] == "bob"
        })
        .await;
    assert!(
        alert["message"]
            .as_str()
            .unwrap()
            .contains("missing permission"),
        "{alert}"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), "deckhand");
    let deadline = Instant::now() + WAIT;
    loop {
        let found = events.list(&Default::default()).await.unwrap().items;
        if found.iter().any(|event| {
            event.reason.as_deref() == Some("AccessDenied")
                && event.involved_object.name.as_deref() == Some("deckhand")
                && event.message.as_deref().unwrap_or("").starts_with("bob")
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no AccessDenied event: {found:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("deckhand_alerts_total{reason=\"access_denied\"}")),
        "{metrics}"
    );

    // Acting as bob, even the plan's first read is refused by the API server (deckhand's
    // own identity could have read and scaled it); nothing changes.
    let detail = bob
        .thread_until(&bob_thread, "bob's read to be refused", |detail| {
            latest_plan(detail).is_some_and(|plan| plan["status"] == "failed")
        })
        .await;
    let check = &latest_plan(&detail).unwrap()["steps"][0];
    assert_eq!(check["tool"], "kube_get", "{detail:#}");
    let error = check["error"].as_str().unwrap();
    assert!(
        error.contains("forbidden") && error.contains("bob"),
        "{error}"
    );
    assert_eq!(replicas(&client).await, Some(1));
    // His preview's dry run is made as him too: refused, where deckhand's would pass.
    let bob_plan = latest_plan(&detail).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, previews) = bob
        .get(&format!(
            "/api/threads/{bob_thread}/plans/{bob_plan}/preview"
        ))
        .await;
    assert_eq!(status, 200, "{previews}");
    let refusal = previews[0]["denied_by"][0].as_str().unwrap_or_default();
    assert!(
        refusal.contains("forbidden") && refusal.contains("bob"),
        "{previews:#}"
    );

    // carol, whose group may, is told nothing is missing and her run scales web.
    let carol_thread = ask(&carol).await;
    let detail = carol
        .thread_until(&carol_thread, "awaiting approval", |detail| {
            latest_plan(detail).is_some_and(|plan| plan["status"] == "awaiting_approval")
        })
        .await;
    let plan = latest_plan(&detail).unwrap().clone();
    let plan_path = format!(
        "/api/threads/{carol_thread}/plans/{}",
        plan["id"].as_str().unwrap()
    );
    let (status, previews) = carol.get(&format!("{plan_path}/preview")).await;
    assert_eq!(status, 200, "{previews}");
    assert_eq!(previews[0]["denied_by"], json!([]), "{previews:#}");
    assert!(
        previews[0]["diff"]
            .as_str()
            .unwrap()
            .contains("replicas: 3"),
        "{previews:#}"
    );
    let (status, approved) = carol
        .post(
            &format!("{plan_path}/approve"),
            json!({"hash": plan["hash"]}),
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    let (status, _) = carol.post(&format!("{plan_path}/run"), json!({})).await;
    assert_eq!(status, 202);
    let detail = carol
        .thread_until(&carol_thread, "carol's run", |detail| {
            latest_plan(detail).is_some_and(|plan| plan["status"] == "succeeded")
        })
        .await;
    assert!(
        !detail.to_string().contains("lacks permissions"),
        "nothing is missing for carol: {detail:#}"
    );
    assert_eq!(replicas(&client).await, Some(3));
}

/// A planning call that takes too long can be stopped from the API: the model's request
/// is dropped (its connection closes), no plan comes of it, and the thread says who
/// stopped it. A second stop finds nothing to stop.
#[tokio::test]
async fn planning_can_be_stopped_while_the_model_thinks() {
    // A model server that accepts and never answers.
    let model = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let model_address = model.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("deckhand.toml"),
        format!(
            "[llm]\ndiscover = false\n\n[llm.backends.slow]\nkind = \"openai_compatible\"\n\
             model = \"slow\"\nbase_url = \"http://{model_address}/v1\"\n\n\
             [llm.routes]\nplanner = [\"slow\"]\ndefault = [\"offline\"]\n"
        ),
    )
    .unwrap();
    let port = free_port().unwrap();
    let _deckhand = serve(dir.path(), port, None, "info").await;
    let admin = Caller::admin(dir.path(), port);
    let (status, created) = admin
        .post(
            "/api/threads",
            json!({"text": "scale web to 3 in shop", "namespace": "shop"}),
        )
        .await;
    assert!(status == 200 || status == 201, "{created}");
    let thread = created["thread"]["id"].as_str().unwrap().to_owned();

    // Scarlet's request reaches the model, which keeps it waiting.
    let (mut connection, _) = tokio::time::timeout(Duration::from_secs(120), model.accept())
        .await
        .expect("the planner never called the model")
        .unwrap();
    let (status, body) = admin
        .post(&format!("/api/threads/{thread}/planning/cancel"), json!({}))
        .await;
    assert_eq!(status, 204, "{body}");

    // The request was dropped: the connection closes without waiting for an answer.
    let mut sink = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::AsyncReadExt::read_to_end(&mut connection, &mut sink),
    )
    .await
    .expect("the model's connection stayed open after the planning was stopped")
    .unwrap();
    let detail = admin
        .thread_until(&thread, "the stop to be told", |detail| {
            detail["messages"].as_array().unwrap().iter().any(|m| {
                m["text"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("Planning stopped by ")
            })
        })
        .await;
    assert!(latest_plan(&detail).is_none(), "{detail:#}");
    let (status, body) = admin
        .post(&format!("/api/threads/{thread}/planning/cancel"), json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
}
