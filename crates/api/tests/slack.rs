//! The Slack bot against a local server that speaks Slack's Web API (chat.postMessage,
//! chat.update, views.open: JSON bodies, bearer bot token, `{ok, error}` answers), with
//! every inbound request signed the way Slack signs it (HMAC-SHA256 over
//! `v0:TIMESTAMP:BODY`, computed here independently of the crate).
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use common::{identity, Fixture};
use deckhand_api::config::{SlackConfig, SlackUser};
use deckhand_api::model::{Scope, ThreadQuery};
use deckhand_api::slack::SlackClient;
use deckhand_api::{ApiConfig, Deckhand, Error};
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

const SECRET: &str = "e2e-signing-secret";
const BOT_TOKEN: &str = "xoxb-test-token";
const PATIENCE: Duration = Duration::from_secs(30);

/// What the fake Slack received: (method, body).
#[derive(Clone, Default)]
struct SlackLog {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    next_ts: Arc<Mutex<u64>>,
}

impl SlackLog {
    fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits until a call matching `wanted` arrived; returns it.
    async fn wait_for(&self, what: &str, wanted: impl Fn(&str, &Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some((_, body)) = self
                .calls()
                .into_iter()
                .find(|(method, body)| wanted(method, body))
            {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Slack never got {what}; got {:#?}",
                self.calls()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn web_api(
    State(log): State<SlackLog>,
    Path(method): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    // Slack answers 200 with ok:false for a bad token.
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {BOT_TOKEN}"))
    {
        return Json(json!({"ok": false, "error": "invalid_auth"}));
    }
    log.calls
        .lock()
        .unwrap()
        .push((method.clone(), body.clone()));
    let channel = body["channel"].clone();
    Json(match method.as_str() {
        "chat.postMessage" if channel == "C_ARCHIVED" => {
            json!({"ok": false, "error": "is_archived"})
        }
        "chat.postMessage" => {
            let mut next = log.next_ts.lock().unwrap();
            *next += 1;
            let ts = format!("1700000100.{:06}", *next);
            json!({"ok": true, "channel": channel, "ts": ts, "message": {"type": "message", "text": body["text"], "ts": ts}})
        }
        "chat.update" => {
            json!({"ok": true, "channel": channel, "ts": body["ts"], "text": body["text"]})
        }
        "views.open" => json!({"ok": true, "view": {"id": "V0001", "type": "modal"}}),
        _ => json!({"ok": false, "error": "unknown_method"}),
    })
}

async fn fake_slack() -> (String, SlackLog) {
    let log = SlackLog::default();
    let app = Router::new()
        .route("/api/{method}", post(web_api))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, log)
}

async fn fixture() -> (Fixture, SlackLog) {
    let (base, log) = fake_slack().await;
    let mut users = BTreeMap::new();
    users.insert(
        "U_ALICE".to_owned(),
        SlackUser {
            subject: "alice".into(),
            groups: vec!["devs".into()],
            scope: Scope::Operator,
        },
    );
    let config = ApiConfig {
        slack: Some(SlackConfig {
            signing_secret: SECRET.into(),
            bot_token: BOT_TOKEN.into(),
            api_base_url: base,
            users,
            notify_channel: None,
        }),
        ..ApiConfig::default()
    };
    (Fixture::new(config), log)
}

fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

async fn send(
    fixture: &Fixture,
    path: &str,
    content_type: &str,
    body: String,
    timestamp: i64,
    secret: &str,
) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header(
            "x-slack-signature",
            signature(secret, timestamp, body.as_bytes()),
        )
        .body(Body::from(body))
        .unwrap();
    let response = fixture.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn event(fixture: &Fixture, body: Value) -> (StatusCode, Value) {
    send(
        fixture,
        "/slack/events",
        "application/json",
        body.to_string(),
        chrono::Utc::now().timestamp(),
        SECRET,
    )
    .await
}

async fn click(fixture: &Fixture, payload: Value) -> (StatusCode, Value) {
    let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    send(
        fixture,
        "/slack/interactivity",
        "application/x-www-form-urlencoded",
        form,
        chrono::Utc::now().timestamp(),
        SECRET,
    )
    .await
}

async fn command(fixture: &Fixture, text: &str) -> (StatusCode, Value) {
    let form = serde_urlencoded::to_string([
        ("token", "legacy"),
        ("team_id", "T1"),
        ("channel_id", "C_OPS"),
        ("channel_name", "ops"),
        ("user_id", "U_ALICE"),
        ("user_name", "alice"),
        ("command", "/deckhand"),
        ("text", text),
        ("response_url", "https://hooks.slack.test/commands/1"),
        ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
    ])
    .unwrap();
    send(
        fixture,
        "/slack/commands",
        "application/x-www-form-urlencoded",
        form,
        chrono::Utc::now().timestamp(),
        SECRET,
    )
    .await
}

fn mention(event_id: &str, user: &str, text: &str, ts: &str, thread_ts: Option<&str>) -> Value {
    let mut event = json!({"type": "app_mention", "user": user, "text": text, "ts": ts, "channel": "C_OPS", "event_ts": ts});
    if let Some(thread_ts) = thread_ts {
        event["thread_ts"] = json!(thread_ts);
    }
    json!({"token": "legacy", "team_id": "T1", "api_app_id": "A1", "type": "event_callback", "event_id": event_id, "event_time": 1_700_000_000, "event": event})
}

#[tokio::test]
async fn the_url_verification_challenge_is_answered() {
    let (fixture, _) = fixture().await;
    let (status, body) = event(&fixture, json!({"token": "legacy", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
}

#[tokio::test]
async fn unsigned_wrongly_signed_and_replayed_requests_are_refused_on_every_route() {
    let (fixture, log) = fixture().await;
    let now = chrono::Utc::now().timestamp();
    for path in ["/slack/events", "/slack/interactivity", "/slack/commands"] {
        let body = json!({"type": "url_verification", "challenge": "x"}).to_string();
        let (status, _) = send(
            &fixture,
            path,
            "application/json",
            body.clone(),
            now,
            "not-the-secret",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} wrong secret");
        let (status, _) = send(
            &fixture,
            path,
            "application/json",
            body.clone(),
            now - 6 * 60,
            SECRET,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} replayed after six minutes"
        );
        let request = Request::post(path).body(Body::from(body)).unwrap();
        let response = fixture.router.clone().oneshot(request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{path} unsigned"
        );
    }
    assert!(log.calls().is_empty());
    // Without [api.slack] the routes do not exist.
    let plain = Fixture::new(ApiConfig::default());
    let (status, _) = send(
        &plain,
        "/slack/events",
        "application/json",
        "{}".into(),
        now,
        SECRET,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_mention_starts_a_thread_whose_plan_is_approved_run_and_rated_with_buttons() {
    let (fixture, log) = fixture().await;
    let (status, _) = event(
        &fixture,
        mention(
            "Ev1",
            "U_ALICE",
            "<@U_BOT> scale web to 3 in shop",
            "1700000000.000100",
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let started = log
        .wait_for("the start reply", |method, body| {
            method == "chat.postMessage"
                && body["text"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("Started thread")
        })
        .await;
    assert_eq!(started["thread_ts"], "1700000000.000100");
    assert_eq!(started["channel"], "C_OPS");
    let threads = fixture
        .service
        .list_threads(&identity("alice", Scope::Operator), ThreadQuery::default())
        .await
        .unwrap();
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].user, "alice");
    assert_eq!(threads[0].title, "scale web to 3 in shop");
    let thread = threads[0].id;

    // Slack retries an event it thinks was lost: handled once.
    event(
        &fixture,
        mention(
            "Ev1",
            "U_ALICE",
            "<@U_BOT> scale web to 3 in shop",
            "1700000000.000100",
            None,
        ),
    )
    .await;
    // A reply in the Slack thread continues the same deckhand thread.
    event(
        &fixture,
        mention(
            "Ev2",
            "U_ALICE",
            "<@U_BOT> only in shop please",
            "1700000000.000200",
            Some("1700000000.000100"),
        ),
    )
    .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let detail = fixture
            .service
            .thread(&identity("alice", Scope::Operator), thread)
            .await
            .unwrap();
        if detail.messages.len() == 2 {
            assert_eq!(detail.messages[1].text, "only in shop please");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reply never reached the thread"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        fixture
            .service
            .list_threads(&identity("alice", Scope::Operator), ThreadQuery::default())
            .await
            .unwrap()
            .len(),
        1
    );

    // The plan comes with approve and reject buttons.
    let plan_post = log
        .wait_for("the plan", |method, body| {
            method == "chat.postMessage" && body["blocks"][2]["type"] == "actions"
        })
        .await;
    let approve = &plan_post["blocks"][2]["elements"][0];
    assert_eq!(approve["action_id"], "approve");
    let plan_ts = log
        .calls()
        .iter()
        .filter(|(method, _)| method == "chat.postMessage")
        .position(|(_, body)| body == &plan_post)
        .map(|index| format!("1700000100.{:06}", index + 1))
        .unwrap();

    let (status, _) = click(&fixture, json!({
        "type": "block_actions", "user": {"id": "U_ALICE", "username": "alice"}, "trigger_id": "t1",
        "channel": {"id": "C_OPS"}, "message": {"ts": plan_ts, "thread_ts": "1700000000.000100"},
        "actions": [{"action_id": "approve", "block_id": "b", "value": approve["value"], "type": "button"}]
    })).await;
    assert_eq!(status, StatusCode::OK);
    let updated = log
        .wait_for("the buttons replaced", |method, _| method == "chat.update")
        .await;
    assert_eq!(updated["ts"], plan_ts.as_str());
    assert!(
        updated["text"]
            .as_str()
            .unwrap()
            .contains("Approved by alice"),
        "{updated}"
    );
    let detail = fixture
        .service
        .thread(&identity("alice", Scope::Operator), thread)
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(detail.plans[0].status).unwrap(),
        "succeeded"
    );

    // The result comes with restore and rating buttons; 100 closes the thread.
    let finished = log
        .wait_for("the result", |method, body| {
            method == "chat.postMessage" && body["text"] == "Plan succeeded."
        })
        .await;
    let rate_100 = finished["blocks"][1]["elements"][3].clone();
    assert_eq!(rate_100["action_id"], "rate_100");
    click(
        &fixture,
        json!({
            "type": "block_actions", "user": {"id": "U_ALICE"}, "channel": {"id": "C_OPS"},
            "message": {"ts": "1700000100.000009", "thread_ts": "1700000000.000100"},
            "actions": [{"action_id": "rate_100", "value": rate_100["value"], "type": "button"}]
        }),
    )
    .await;
    let detail = fixture
        .service
        .thread(&identity("alice", Scope::Operator), thread)
        .await
        .unwrap();
    assert_eq!(detail.thread.status, "closed");
    assert_eq!(detail.thread.rating, Some(100));
}

#[tokio::test]
async fn unmapped_users_are_told_and_nothing_runs_for_them() {
    let (fixture, log) = fixture().await;
    event(
        &fixture,
        mention(
            "Ev9",
            "U_STRANGER",
            "<@U_BOT> delete everything",
            "1700000000.000900",
            None,
        ),
    )
    .await;
    let told = log
        .wait_for("the refusal", |method, _| method == "chat.postMessage")
        .await;
    assert!(
        told["text"].as_str().unwrap().contains("is not mapped"),
        "{told}"
    );
    assert!(fixture
        .service
        .list_threads(&identity("x", Scope::Admin), ThreadQuery::default())
        .await
        .unwrap()
        .is_empty());

    let (status, body) = click(&fixture, json!({
        "type": "block_actions", "user": {"id": "U_STRANGER"}, "channel": {"id": "C_OPS"},
        "actions": [{"action_id": "restore", "value": json!({"thread": uuid::Uuid::new_v4()}).to_string()}]
    })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn the_slash_command_starts_lists_and_opens_a_modal() {
    let (fixture, log) = fixture().await;
    let (status, body) = command(&fixture, "restart deployment api in shop").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response_type"], "ephemeral");
    assert!(
        body["text"].as_str().unwrap().starts_with("Started thread"),
        "{body}"
    );
    let posted = log
        .wait_for("the thread's root message", |method, body| {
            method == "chat.postMessage" && body["thread_ts"].is_null()
        })
        .await;
    assert_eq!(posted["channel"], "C_OPS");
    assert!(posted["text"]
        .as_str()
        .unwrap()
        .contains("alice asked: restart deployment api in shop"));

    let (_, listed) = command(&fixture, "threads").await;
    assert!(
        listed["text"]
            .as_str()
            .unwrap()
            .contains("restart deployment api in shop"),
        "{listed}"
    );

    let (status, _) = command(&fixture, "").await;
    assert_eq!(status, StatusCode::OK);
    let view = log
        .wait_for("views.open", |method, _| method == "views.open")
        .await;
    assert_eq!(
        view["trigger_id"],
        "13345224609.738474920.8088930838d88f008e0"
    );
    assert_eq!(view["view"]["callback_id"], "deckhand_ask");
    let (status, _) = click(&fixture, json!({
        "type": "view_submission", "user": {"id": "U_ALICE"},
        "view": {"callback_id": "deckhand_ask", "private_metadata": view["view"]["private_metadata"],
                 "state": {"values": {"request": {"text": {"type": "plain_text_input", "value": "why is checkout crash-looping?"}}}}}
    })).await;
    assert_eq!(status, StatusCode::OK);
    let titles: Vec<String> = fixture
        .service
        .list_threads(&identity("alice", Scope::Operator), ThreadQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.title)
        .collect();
    assert!(
        titles.contains(&"why is checkout crash-looping?".to_owned()),
        "{titles:?}"
    );
}

#[tokio::test]
async fn the_web_api_client_reports_slacks_errors() {
    let (base, _) = fake_slack().await;
    let http = reqwest::Client::new();
    let wrong_token = SlackClient::new(http.clone(), &base, "xoxb-revoked");
    match wrong_token.post_message("C_OPS", None, "hi", None).await {
        Err(Error::Slack { method, error }) => assert_eq!(
            (method, error.as_str()),
            ("chat.postMessage", "invalid_auth")
        ),
        other => panic!("expected invalid_auth, got {other:?}"),
    }
    let client = SlackClient::new(http, &format!("{base}/"), BOT_TOKEN);
    match client.post_message("C_ARCHIVED", None, "hi", None).await {
        Err(Error::Slack { error, .. }) => assert_eq!(error, "is_archived"),
        other => panic!("expected is_archived, got {other:?}"),
    }
    let ts = client
        .post_message("C_OPS", Some("1.2"), "hi", Some(json!([])))
        .await
        .unwrap();
    assert!(ts.starts_with("1700000100."));
    client
        .update("C_OPS", &ts, "edited", json!([]))
        .await
        .unwrap();
    client
        .open_view("trigger", json!({"type": "modal"}))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_direct_message_starts_a_thread_and_bot_messages_are_ignored() {
    let (fixture, log) = fixture().await;
    let dm = |event_id: &str, extra: Value| {
        let mut event = json!({"type": "message", "channel": "D_ALICE", "channel_type": "im", "user": "U_ALICE",
                               "text": "why is checkout crash-looping in shop?", "ts": "1700000300.000100"});
        for (key, value) in extra.as_object().unwrap() {
            event[key] = value.clone();
        }
        json!({"type": "event_callback", "event_id": event_id, "event": event})
    };
    // The bot's own messages (bot_id) and edits (subtype) are not requests.
    event(&fixture, dm("EvBot", json!({"bot_id": "B1"}))).await;
    event(
        &fixture,
        dm("EvEdit", json!({"subtype": "message_changed"})),
    )
    .await;
    let (status, _) = event(&fixture, dm("EvDm", json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    let started = log
        .wait_for("the start reply", |method, body| {
            method == "chat.postMessage" && body["channel"] == "D_ALICE"
        })
        .await;
    assert_eq!(started["thread_ts"], "1700000300.000100");
    let threads = fixture
        .service
        .list_threads(&identity("alice", Scope::Operator), ThreadQuery::default())
        .await
        .unwrap();
    assert_eq!(
        threads.len(),
        1,
        "one thread, for the person's message only"
    );
    assert_eq!(threads[0].title, "why is checkout crash-looping in shop?");
}

#[tokio::test]
async fn an_alert_triage_is_announced_in_the_notify_channel_and_followed_there() {
    let (base, log) = fake_slack().await;
    let config = ApiConfig {
        slack: Some(SlackConfig {
            signing_secret: SECRET.into(),
            bot_token: BOT_TOKEN.into(),
            api_base_url: base,
            users: BTreeMap::new(),
            notify_channel: Some("C_ALERTS".into()),
        }),
        alertmanager: Some(deckhand_api::config::AlertmanagerConfig {
            bearer_token: Some("am-secret".into()),
            basic_auth: None,
            subject: "alertmanager".into(),
            groups: vec!["sre".into()],
        }),
        ..ApiConfig::default()
    };
    let fixture = Fixture::new(config);
    let payload = json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"KubePodCrashLooping\", namespace=\"shop\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "deckhand",
        "groupLabels": {"alertname": "KubePodCrashLooping", "namespace": "shop"},
        "commonLabels": {"alertname": "KubePodCrashLooping", "namespace": "shop"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.monitoring:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "checkout-1"},
            "annotations": {"summary": "Pod is crash looping."},
            "startsAt": "2026-11-23T01:02:03Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.monitoring:9090/graph",
            "fingerprint": "00aa11bb22cc33dd"
        }]
    });
    let request = Request::post("/hooks/alertmanager")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer am-secret")
        .body(Body::from(payload.to_string()))
        .unwrap();
    let response = fixture.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    let thread = answer["thread_id"].as_str().unwrap().to_owned();

    // Announced at the top of the channel, naming the thread...
    let announced = log
        .wait_for("the triage announcement", |method, body| {
            method == "chat.postMessage"
                && body["channel"] == "C_ALERTS"
                && body.get("thread_ts").is_none()
        })
        .await;
    let text = announced["text"].as_str().unwrap();
    assert!(text.starts_with(":rotating_light: Alert triage"), "{text}");
    assert!(text.contains(&thread), "{text}");
    // ...and the thread's plan follows in that message's Slack thread, with buttons.
    let announcement_ts = log
        .calls()
        .iter()
        .position(|(method, body)| method == "chat.postMessage" && body == &announced)
        .map(|index| format!("1700000100.{:06}", index + 1))
        .unwrap();
    let plan = log
        .wait_for("the plan in the Slack thread", |method, body| {
            method == "chat.postMessage"
                && body["channel"] == "C_ALERTS"
                && body["thread_ts"] == announcement_ts.as_str()
                && body["text"].as_str().unwrap_or("").starts_with("Plan")
        })
        .await;
    assert!(plan["blocks"].is_array(), "{plan}");
}
