//! Admin alerts out, against a local HTTP server on 127.0.0.1:0 that records every
//! request: the exact path, headers and body a JSON webhook, a Slack incoming webhook and
//! Slack's chat.postMessage receive; retries with backoff and `Retry-After`; refusals not
//! retried; a full queue dropping (and counting) instead of blocking; the fan-out.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use deckhand_tools::cluster::alerts::{slack_text, AlertStats, DeliveryOptions};
use deckhand_tools::cluster::{
    Alert, AlertSink, AlertsConfig, FanoutAlerts, WebhookAlerts, WebhookTarget,
};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// How long a test waits for something that should happen (a hang, not a timing check).
const PATIENCE: Duration = Duration::from_secs(30);

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// What the server answers, in order; once the script runs out, 200 with `{"ok": true}`
/// (what chat.postMessage wants; the webhooks look only at the status).
struct Reply {
    status: StatusCode,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status: StatusCode::from_u16(status).expect("status"),
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

#[derive(Clone)]
struct Server {
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<watch::Sender<usize>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// When set, each request waits for a permit before it is answered.
    hold: Option<Arc<Semaphore>>,
    base: String,
}

impl Server {
    async fn start(script: Vec<Reply>, hold: Option<Arc<Semaphore>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let server = Server {
            seen: Arc::default(),
            count: Arc::new(watch::channel(0).0),
            script: Arc::new(Mutex::new(script.into())),
            hold,
            base,
        };
        let app = axum::Router::new()
            .fallback(record)
            .with_state(server.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        server
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    async fn wait_for(&self, requests: usize) {
        let mut count = self.count.subscribe();
        tokio::time::timeout(PATIENCE, count.wait_for(|n| *n >= requests))
            .await
            .unwrap_or_else(|_| panic!("the server never saw {requests} requests"))
            .expect("server alive");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

async fn record(
    State(server): State<Server>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    server.seen.lock().expect("lock").push(Seen {
        method,
        path: uri.path().to_owned(),
        headers,
        body,
    });
    server.count.send_modify(|n| *n += 1);
    if let Some(hold) = &server.hold {
        hold.acquire().await.expect("semaphore open").forget();
    }
    let next = server.script.lock().expect("lock").pop_front();
    let reply = next.unwrap_or_else(|| reply(200, r#"{"ok": true}"#));
    let mut response = (reply.status, reply.body).into_response();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    response
}

fn alert(n: u32) -> Alert {
    Alert {
        reason: "policy_denied".into(),
        user: "alice@example.com".into(),
        message: format!("delete v1 Namespace prod-{n} refused: [builtin/no-namespace-deletion] namespaces are never deleted"),
    }
}

fn fast() -> DeliveryOptions {
    DeliveryOptions {
        initial_backoff: Duration::from_millis(1),
        ..DeliveryOptions::default()
    }
}

async fn close(sink: &WebhookAlerts) -> AlertStats {
    sink.close(PATIENCE).await
}

#[tokio::test]
async fn a_json_webhook_gets_each_alert_with_the_exact_body_and_token() {
    let server = Server::start(Vec::new(), None).await;
    let sink = WebhookAlerts::start(
        WebhookTarget::Json {
            url: server.url("/hooks/deckhand"),
            bearer_token: Some("s3cret".into()),
        },
        fast(),
        Some("prod-eu".into()),
    )
    .expect("start");
    sink.raise(&alert(1));
    sink.raise(&alert(2));
    let stats = close(&sink).await;
    assert_eq!(
        stats,
        AlertStats {
            raised: 2,
            sent: 2,
            failed: 0,
            dropped: 0
        }
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for (request, n) in seen.iter().zip([1, 2]) {
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path, "/hooks/deckhand");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
        assert_eq!(request.header("user-agent"), Some("deckhand/0.1.0"));
        let mut body = request.body.clone();
        let raised_at = body
            .as_object_mut()
            .and_then(|fields| fields.remove("raised_at"))
            .and_then(|at| at.as_str().map(str::to_owned))
            .expect("raised_at");
        assert!(
            chrono::DateTime::parse_from_rfc3339(&raised_at).is_ok(),
            "{raised_at}"
        );
        assert_eq!(
            body,
            json!({"source": "deckhand", "cluster": "prod-eu", "reason": "policy_denied",
                   "user": "alice@example.com", "message": alert(n).message}),
            "in the order raised"
        );
    }
}

#[tokio::test]
async fn a_slack_incoming_webhook_gets_its_text_and_nothing_else() {
    let server = Server::start(Vec::new(), None).await;
    let sink = WebhookAlerts::start(
        WebhookTarget::SlackWebhook {
            url: server.url("/services/T0001/B0001/XXXXXXXX"),
        },
        fast(),
        Some("prod-eu".into()),
    )
    .expect("start");
    let tricky = Alert {
        reason: "access_denied".into(),
        user: "bob@example.com".into(),
        message: "missing permission: patch deployments.apps \"web\" in namespace <shop> & more"
            .into(),
    };
    sink.raise(&tricky);
    assert_eq!(close(&sink).await.sent, 1);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/services/T0001/B0001/XXXXXXXX");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("authorization"), None);
    assert_eq!(
        request.body,
        json!({"text": ":rotating_light: *deckhand alert on prod-eu: access_denied*\nbob@example.com: missing permission: patch deployments.apps \"web\" in namespace &lt;shop&gt; &amp; more"})
    );
    assert_eq!(
        request.body["text"],
        slack_text(&tricky, Some("prod-eu")),
        "the same text the library documents"
    );
}

#[tokio::test]
async fn chat_post_message_carries_the_bot_token_channel_and_charset() {
    let server = Server::start(
        vec![
            reply(
                200,
                r#"{"ok": true, "channel": "C0123456789", "ts": "1700000000.000100"}"#,
            ),
            // Slack refuses for good: not retried.
            reply(200, r#"{"ok": false, "error": "channel_not_found"}"#),
            // Rate limited inside a 200, then fine.
            reply(200, r#"{"ok": false, "error": "ratelimited"}"#),
            reply(200, r#"{"ok": true, "ts": "1700000000.000200"}"#),
        ],
        None,
    )
    .await;
    let sink = WebhookAlerts::start(
        WebhookTarget::SlackApi {
            api_url: server.url("/api"),
            token: "xoxb-test-token".into(),
            channel: "C0123456789".into(),
        },
        fast(),
        None,
    )
    .expect("start");
    for n in 1..=3 {
        sink.raise(&alert(n));
    }
    let stats = close(&sink).await;
    assert_eq!((stats.sent, stats.failed, stats.dropped), (2, 1, 0));
    let seen = server.seen();
    assert_eq!(seen.len(), 4, "{seen:#?}");
    for request in &seen {
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path, "/api/chat.postMessage");
        assert_eq!(
            request.header("authorization"),
            Some("Bearer xoxb-test-token")
        );
        assert_eq!(
            request.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
    assert_eq!(
        seen[0].body,
        json!({"channel": "C0123456789", "text": slack_text(&alert(1), None)})
    );
    assert_eq!(seen[1].body["text"], slack_text(&alert(2), None));
    assert_eq!(
        seen[2].body, seen[3].body,
        "the rate-limited message is sent again as it was"
    );
    assert_eq!(seen[3].body["text"], slack_text(&alert(3), None));
}

#[tokio::test]
async fn errors_are_retried_with_backoff_and_refusals_are_not() {
    let mut retry_after = reply(429, "slow down");
    retry_after.headers.push(("retry-after", "0"));
    let server = Server::start(
        vec![
            // Alert 1: a server error, a rate limit with Retry-After, then delivered.
            reply(500, "boom"),
            retry_after,
            reply(200, "ok"),
            // Alert 2: refused (a bad payload) once; never retried.
            reply(400, "invalid_payload"),
            // Alert 3: unavailable until the tries run out.
            reply(503, "down"),
            reply(503, "down"),
            reply(503, "down"),
        ],
        None,
    )
    .await;
    let sink = WebhookAlerts::start(
        WebhookTarget::SlackWebhook {
            url: server.url("/services/T/B/x"),
        },
        DeliveryOptions {
            max_attempts: 3,
            ..fast()
        },
        None,
    )
    .expect("start");
    for n in 1..=3 {
        sink.raise(&alert(n));
    }
    let stats = close(&sink).await;
    assert_eq!(
        stats,
        AlertStats {
            raised: 3,
            sent: 1,
            failed: 2,
            dropped: 0
        }
    );
    let texts: Vec<Value> = server
        .seen()
        .iter()
        .map(|request| request.body["text"].clone())
        .collect();
    let text = |n| Value::String(slack_text(&alert(n), None));
    assert_eq!(
        texts,
        vec![
            text(1),
            text(1),
            text(1),
            text(2),
            text(3),
            text(3),
            text(3)
        ]
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let hold = Arc::new(Semaphore::new(0));
    let server = Server::start(Vec::new(), Some(hold.clone())).await;
    let sink = WebhookAlerts::start(
        WebhookTarget::Json {
            url: server.url("/in"),
            bearer_token: None,
        },
        DeliveryOptions {
            queue_capacity: 1,
            ..fast()
        },
        None,
    )
    .expect("start");
    // The first alert is taken off the queue and held up at the server.
    sink.raise(&alert(1));
    server.wait_for(1).await;
    // One fits in the queue; the next is dropped at once, with the server still stuck.
    sink.raise(&alert(2));
    sink.raise(&alert(3));
    assert_eq!(
        sink.stats(),
        AlertStats {
            raised: 3,
            sent: 0,
            failed: 0,
            dropped: 1
        }
    );
    hold.add_permits(2);
    let stats = close(&sink).await;
    assert_eq!((stats.sent, stats.dropped), (2, 1));
    let messages: Vec<Value> = server
        .seen()
        .iter()
        .map(|request| request.body["message"].clone())
        .collect();
    assert_eq!(
        messages,
        vec![json!(alert(1).message), json!(alert(2).message)]
    );
    // A closed sink drops what it is given.
    sink.raise(&alert(4));
    assert_eq!(sink.stats().dropped, 2);
}

#[tokio::test]
async fn closing_stops_at_its_grace_and_counts_what_was_left() {
    // The server never answers.
    let server = Server::start(Vec::new(), Some(Arc::new(Semaphore::new(0)))).await;
    let sink = WebhookAlerts::start(
        WebhookTarget::Json {
            url: server.url("/in"),
            bearer_token: None,
        },
        fast(),
        None,
    )
    .expect("start");
    sink.raise(&alert(1));
    sink.raise(&alert(2));
    server.wait_for(1).await;
    let stats = sink.close(Duration::from_millis(100)).await;
    assert_eq!((stats.sent, stats.failed, stats.dropped), (0, 0, 2));
}

#[tokio::test]
async fn the_config_starts_every_destination_and_the_fanout_reaches_each() {
    // No script: the three sinks' requests arrive in any order.
    let server = Server::start(Vec::new(), None).await;
    let config: AlertsConfig = serde_json::from_value(json!({
        "webhook_url": server.url("/generic"),
        "webhook_token_env": "ALERT_TOKEN",
        "slack_webhook_url_env": "SLACK_HOOK",
        "slack_bot_token_env": "SLACK_BOT",
        "slack_channel": "#ops-alerts",
        "slack_api_url": server.url("/slack-api/"),
        "initial_backoff_ms": 1,
    }))
    .expect("config");
    let hook = server.url("/services/T9/B9/hook");
    let env = move |name: &str| match name {
        "ALERT_TOKEN" => Some("generic-token".to_owned()),
        "SLACK_HOOK" => Some(hook.clone()),
        "SLACK_BOT" => Some("xoxb-bot".to_owned()),
        _ => None,
    };
    let sinks = config.start(&env, Some("staging")).expect("start");
    assert_eq!(sinks.len(), 3);
    let fanout = FanoutAlerts::new(sinks.iter().map(|sink| sink.clone() as Arc<dyn AlertSink>));
    fanout.raise(&alert(7));
    for sink in &sinks {
        assert_eq!(close(sink).await.sent, 1);
    }
    let mut seen = server.seen();
    seen.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/generic",
            "/services/T9/B9/hook",
            "/slack-api/chat.postMessage"
        ]
    );
    assert_eq!(
        seen[0].header("authorization"),
        Some("Bearer generic-token")
    );
    assert_eq!(seen[0].body["cluster"], "staging");
    assert_eq!(
        seen[1].body,
        json!({"text": slack_text(&alert(7), Some("staging"))})
    );
    assert_eq!(seen[2].header("authorization"), Some("Bearer xoxb-bot"));
    assert_eq!(
        seen[2].body,
        json!({"channel": "#ops-alerts", "text": slack_text(&alert(7), Some("staging"))})
    );

    // A secret that is not in the environment is a clear error naming the key.
    let error = config.start(&|_: &str| None, None).expect_err("no secrets");
    let text = error.to_string();
    assert!(
        text.contains("alerts.webhook_token_env") && text.contains("ALERT_TOKEN"),
        "{text}"
    );
}
