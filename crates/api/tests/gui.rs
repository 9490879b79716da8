//! The web command center: its page and assets through the router (content types, the
//! Content-Security-Policy, no authentication for the page while the API keeps its
//! own), the preview route it relies on, and the whole flow in a real headless Chromium
//! driven by `tests/gui/drive.mjs` against the API on a real socket.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::{identity, Fixture, MemoryDeckhand, WithoutPreview, KUBE_SYSTEM_DENIAL};
use deckhand_api::gui::CONTENT_SECURITY_POLICY;
use deckhand_api::model::{Approval, NewThread, Rating, Scope, StepPreview};
use deckhand_api::{ApiConfig, Deckhand};
use http_body_util::BodyExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

async fn get(
    fixture: &Fixture,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method(Method::GET).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = fixture
        .router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body.to_vec())
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_without_a_token_with_their_types_and_the_csp() {
    let fixture = Fixture::new(ApiConfig::default());
    for (path, content_type, contains) in [
        (
            "/",
            "text/html; charset=utf-8",
            "<title>deckhand command center</title>",
        ),
        ("/assets/app.css", "text/css; charset=utf-8", "--accent"),
        ("/assets/app.js", "text/javascript; charset=utf-8", "import"),
        (
            "/assets/api.js",
            "text/javascript; charset=utf-8",
            "bearer.",
        ),
        (
            "/assets/dag.js",
            "text/javascript; charset=utf-8",
            "renderDag",
        ),
        ("/assets/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let (status, headers, body) = get(&fixture, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert!(
            String::from_utf8(body).unwrap().contains(contains),
            "{path} does not contain {contains:?}"
        );
    }
    let csp = CONTENT_SECURITY_POLICY;
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self' ws: wss:"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
}

#[tokio::test]
async fn an_unchanged_asset_is_answered_304_by_its_etag() {
    let fixture = Fixture::new(ApiConfig::default());
    let (_, headers, _) = get(&fixture, "/assets/app.js", None).await;
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let request = Request::builder()
        .uri("/assets/app.js")
        .header(header::IF_NONE_MATCH, &etag)
        .body(Body::empty())
        .unwrap();
    let response = fixture.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()[header::ETAG], etag.as_str());
}

#[tokio::test]
async fn unknown_assets_are_404_and_the_api_still_wants_its_token() {
    let fixture = Fixture::new(ApiConfig::default());
    assert_eq!(
        get(&fixture, "/assets/missing.js", None).await.0,
        StatusCode::NOT_FOUND
    );
    for path in [
        "/api/threads",
        "/api/whoami",
        "/api/namespaces",
        "/openapi.json",
    ] {
        let (status, headers, _) = get(&fixture, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(headers.contains_key(header::WWW_AUTHENTICATE), "{path}");
        assert!(
            !headers.contains_key(header::CONTENT_SECURITY_POLICY),
            "{path} is not a page"
        );
    }
    let (status, _, _) = get(&fixture, "/api/threads", Some(&fixture.viewer)).await;
    assert_eq!(status, StatusCode::OK);
}

async fn olgas_plan(fixture: &Fixture, namespace: &str) -> (String, String, String) {
    let detail = fixture
        .service
        .create_thread(
            &identity("olga", Scope::Operator),
            NewThread {
                text: format!("scale web to 3 in {namespace}"),
                namespace: Some(namespace.into()),
            },
        )
        .await
        .unwrap();
    let plan = &detail.plans[0];
    (
        detail.thread.id.to_string(),
        plan.id.to_string(),
        plan.hash.clone(),
    )
}

#[tokio::test]
async fn the_preview_shows_the_manifest_its_diff_against_the_live_object_and_denials() {
    let fixture = Fixture::new(ApiConfig::default());
    let (thread, plan, _) = olgas_plan(&fixture, "shop").await;
    let path = format!("/api/threads/{thread}/plans/{plan}/preview");
    let (status, _, body) = get(&fixture, &path, Some(&fixture.viewer)).await;
    assert_eq!(status, StatusCode::OK);
    let previews: Vec<StepPreview> = serde_json::from_slice(&body).unwrap();
    assert_eq!(previews.len(), 1, "one changing step: {previews:?}");
    let scale = &previews[0];
    assert_eq!(
        (
            scale.step_id.as_str(),
            scale.tool.as_str(),
            scale.target.as_str()
        ),
        ("scale", "kube_scale", "apps/v1 Deployment shop/web")
    );
    assert!(scale.yaml.contains("kind: Deployment"), "{}", scale.yaml);
    assert!(scale.yaml.contains("replicas: 3"), "{}", scale.yaml);
    assert!(scale.diff.contains("-  replicas: 1"), "{}", scale.diff);
    assert!(scale.diff.contains("+  replicas: 3"), "{}", scale.diff);
    assert!(scale.denied_by.is_empty());

    let (thread, plan, _) = olgas_plan(&fixture, "kube-system").await;
    let path = format!("/api/threads/{thread}/plans/{plan}/preview");
    let (_, _, body) = get(&fixture, &path, Some(&fixture.viewer)).await;
    let previews: Vec<StepPreview> = serde_json::from_slice(&body).unwrap();
    assert_eq!(previews[0].denied_by, vec![KUBE_SYSTEM_DENIAL.to_owned()]);

    let unknown_plan = uuid::Uuid::new_v4();
    let path = format!("/api/threads/{thread}/plans/{unknown_plan}/preview");
    assert_eq!(
        get(&fixture, &path, Some(&fixture.viewer)).await.0,
        StatusCode::NOT_FOUND
    );
    let path = format!("/api/threads/{thread}/plans/not-a-plan/preview");
    assert_eq!(
        get(&fixture, &path, Some(&fixture.viewer)).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn after_a_run_the_preview_diffs_against_the_new_live_state_and_restore_puts_it_back() {
    let fixture = Fixture::new(ApiConfig::default());
    let olga = identity("olga", Scope::Operator);
    let (thread, plan, hash) = olgas_plan(&fixture, "shop").await;
    let (thread, plan) = (thread.parse().unwrap(), plan.parse().unwrap());
    let service = &fixture.service;
    service
        .approve(&olga, thread, plan, Approval { hash, step: None })
        .await
        .unwrap();
    service.run(&olga, thread, plan).await.unwrap();
    let preview = service.preview(&olga, thread, plan).await.unwrap();
    assert_eq!(preview[0].diff, "", "web already has 3 replicas");
    service.restore(&olga, thread).await.unwrap();
    let preview = service.preview(&olga, thread, plan).await.unwrap();
    assert!(
        preview[0].diff.contains("-  replicas: 1"),
        "{}",
        preview[0].diff
    );
}

#[tokio::test]
async fn a_service_that_cannot_preview_answers_503_with_why() {
    let service = MemoryDeckhand::new();
    let fixture = Fixture::serving(
        ApiConfig::default(),
        service.clone(),
        Arc::new(WithoutPreview(service)),
    );
    let (thread, plan, _) = olgas_plan(&fixture, "shop").await;
    let path = format!("/api/threads/{thread}/plans/{plan}/preview");
    let (status, _, body) = get(&fixture, &path, Some(&fixture.viewer)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "unavailable");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cannot preview plans"),
        "{body}"
    );
}

/// Where the browser test leaves its screenshots: `$CARGO_TARGET_DIR/gui-artifacts`,
/// else the target dir this test binary was built into (`target/debug/deps/gui-…`).
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("gui-artifacts")
}

/// What the browser test needs; a missing piece fails the test (CI installs them).
fn browser_prerequisites() -> PathBuf {
    const HINT: &str = "run scripts/install-chromium.sh (CI's scripts/test.sh does)";
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "the command center's browser test needs Debian's chromium at /usr/bin/chromium: {HINT}"
    );
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false);
    assert!(node, "the command center's browser test needs node: {HINT}");
    let node_dir = std::env::var_os("DECKHAND_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("DECKHAND_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/deckhand")
                });
            cache.join("node")
        });
    assert!(
        node_dir
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "the command center's browser test needs playwright-core in {}: {HINT}",
        node_dir.display()
    );
    node_dir
}

/// Serves the API over `service` on a loopback port and runs `drive.mjs --scenario
/// NAME` against it as `token`; returns where the screenshots are.
async fn drive(fixture: &Fixture, scenario: &str, token: &str, subject: &str) -> PathBuf {
    let node_dir = browser_prerequisites();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = fixture.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let artifacts = artifacts_dir().join(scenario);
    let _ = std::fs::remove_dir_all(&artifacts);
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gui/drive.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&driver)
        .args(["--base-url", &format!("http://{address}/")])
        .args(["--token", token])
        .arg("--artifacts")
        .arg(&artifacts)
        .args(["--scenario", scenario, "--subject", subject])
        .env("DECKHAND_NODE_DIR", &node_dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    // Under nextest's 300 s limit, so this message is the one a hung browser leaves.
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser scenario did not finish in 240 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the browser scenario {scenario} failed ({}); screenshots in {}:\n{stdout}\n{stderr}",
        output.status,
        artifacts.display()
    );
    artifacts
}

fn assert_screenshots(artifacts: &Path, stages: &[&str]) {
    for stage in stages {
        let screenshot = artifacts.join(format!("{stage}.png"));
        let bytes = std::fs::read(&screenshot)
            .unwrap_or_else(|error| panic!("{}: {error}", screenshot.display()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
            "{} is not a real screenshot ({} bytes)",
            screenshot.display(),
            bytes.len()
        );
    }
}

/// A thread olga asked for and rated 100: the history's and similar threads' content.
async fn seed_resolved_thread(service: &MemoryDeckhand) {
    let olga = identity("olga", Scope::Operator);
    let seeded = service
        .create_thread(
            &olga,
            NewThread {
                text: "scale web to 2 replicas in shop".into(),
                namespace: Some("shop".into()),
            },
        )
        .await
        .unwrap();
    service
        .rate(
            &olga,
            seeded.thread.id,
            Rating {
                rating: 100,
                comment: Some("quick".into()),
            },
        )
        .await
        .unwrap();
}

/// The whole flow in headless Chromium: log in, ask, the plan's DAG, preview and diff,
/// approve, run, restore, rate 100 (and the history after a reload), a step approved
/// alone and a policy denial, a rejection with its reason, a cancellation, a `#token=`
/// link, a 401 back to the login page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_drives_the_command_center_in_a_real_browser() {
    // Paced: replies stream a word at a time and plans run a step at a time, as a
    // person sees them.
    let service = MemoryDeckhand::paced(Duration::from_millis(40));
    let fixture = Fixture::serving(ApiConfig::default(), service.clone(), service.clone());
    seed_resolved_thread(&service).await;
    let artifacts = drive(&fixture, "memory", &fixture.operator, "olga").await;
    assert_screenshots(
        &artifacts,
        &[
            "01-login-page",
            "02-login-refused",
            "03-logged-in",
            "04-plan",
            "05-step-detail",
            "06-preview",
            "07-approved",
            "08-result",
            "09-restored",
            "10-rated",
            "11-policy-denied",
            "12-rejected",
            "13-cancelled",
            "14-same-here",
            "15-token-link",
            "16-session-ended",
        ],
    );
}

/// A viewer's token: the history and plans are there, every control that acts is
/// disabled, previews are not; logging out forgets the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_watches_but_cannot_act_in_the_command_center() {
    let service = MemoryDeckhand::paced(Duration::from_millis(40));
    let fixture = Fixture::serving(ApiConfig::default(), service.clone(), service.clone());
    seed_resolved_thread(&service).await;
    let artifacts = drive(&fixture, "smoke", &fixture.viewer, "vera").await;
    assert_screenshots(
        &artifacts,
        &[
            "01-login-page",
            "02-login-refused",
            "03-logged-in",
            "04-viewer-watches",
            "05-logged-out",
        ],
    );
}
