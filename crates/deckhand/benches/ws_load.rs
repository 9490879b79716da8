//! Load: N people at once, each asking the real `deckhand serve` binary (real SQLite
//! store, offline planner) through the HTTP API and watching their thread over its own
//! WebSocket while Jamie's replies stream token by token from a model with a fixed
//! latency (a local server speaking OpenAI's streaming wire format: a fixed delay before
//! the first token and between tokens).
//!
//! Each session: `POST /api/threads`, then `/ws/threads/{id}?after=0` until the thread's
//! `result` event (the plan was made, explained, its steps ran, Jamie reported). Checked
//! per session: event ids 1, 2, 3... without a gap, both of Jamie's replies streamed
//! (token events), the WebSocket never closed early. Prints one line of figures:
//! sessions, errors, events and tokens delivered, time to first token and to the result
//! (p50, p99, max), wall time, and the server's peak memory.
//!
//! `cargo bench -p deckhand --bench ws_load [-- SESSIONS TOKENS TOKEN_MS]`
//! (defaults 1000 sessions, 16 tokens per reply, 25 ms per token). Run from the
//! repository root with the wasm tools built (scripts/build-tools-wasm.sh).
#![allow(clippy::unwrap_used, missing_docs)]

use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use deckhand_testkit::process::{free_port, ServerProcess};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// How long one session may take before it counts as an error.
const SESSION_LIMIT: Duration = Duration::from_secs(600);
/// Thread creations in flight at once (the sessions themselves all stay open).
const CREATING_AT_ONCE: usize = 64;

#[derive(Clone, Copy)]
struct Model {
    tokens: usize,
    token_delay: Duration,
}

/// `POST /v1/chat/completions`: a fixed-latency model. Streams `tokens` words, one every
/// `token_delay`; answers whole after the same total time when not streaming.
async fn completions(
    axum::extract::State(model): axum::extract::State<Model>,
    Json(request): Json<Value>,
) -> axum::response::Response {
    let words: Vec<String> = (0..model.tokens).map(|n| format!("word{n} ")).collect();
    if request["stream"].as_bool() != Some(true) {
        tokio::time::sleep(model.token_delay * model.tokens as u32).await;
        return Json(json!({
            "id": "fixed", "object": "chat.completion", "model": "fixed-latency",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": words.concat()}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": model.tokens, "total_tokens": 100 + model.tokens}
        }))
        .into_response();
    }
    let delay = model.token_delay;
    let count = words.len();
    let stream = futures_util::stream::iter(words.into_iter().enumerate()).then(move |(n, word)| async move {
        tokio::time::sleep(delay).await;
        let mut chunk = json!({"id": "fixed", "object": "chat.completion.chunk", "model": "fixed-latency",
            "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": null}]});
        if n + 1 == count {
            chunk["choices"][0]["finish_reason"] = json!("stop");
            chunk["usage"] = json!({"prompt_tokens": 100, "completion_tokens": count, "total_tokens": 100 + count});
        }
        Ok::<_, std::convert::Infallible>(Event::default().data(chunk.to_string()))
    });
    let done = futures_util::stream::once(async { Ok(Event::default().data("[DONE]")) });
    Sse::new(stream.chain(done)).into_response()
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

struct Session {
    first_token: Duration,
    result: Duration,
    events: usize,
    tokens: usize,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let sessions: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let tokens: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(16);
    let token_ms: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(25);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(
        sessions,
        Model {
            tokens,
            token_delay: Duration::from_millis(token_ms),
        },
    ));
}

async fn run(sessions: usize, model: Model) {
    let dir = tempfile::tempdir().unwrap();
    let model_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let model_address = model_listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(model);
    tokio::spawn(async move { axum::serve(model_listener, app).await.unwrap() });

    // Scarlet plans offline (rules); Jamie's words come from the fixed-latency model.
    std::fs::write(
        dir.path().join("deckhand.toml"),
        format!(
            r#"
[api.rate_limit]
per_second = 0

[llm]
discover = false

[llm.backends.fixed]
kind = "openai_compatible"
model = "fixed-latency"
base_url = "http://{model_address}/v1"

[llm.routes]
planner = ["offline"]
copilot = ["fixed"]
default = ["offline"]
"#
        ),
    )
    .unwrap();
    let port = free_port().unwrap();
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools-wasm/dist");
    let mut command = Command::new(env!("CARGO_BIN_EXE_deckhand"));
    command
        .current_dir(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--builtin-tools-dir")
        .arg(&tools)
        .env("HOME", dir.path())
        .env("RUST_LOG", "warn")
        .env_remove("KUBECONFIG")
        .env_remove("DECKHAND_DATABASE_URL");
    let mut server =
        ServerProcess::spawn("deckhand", command, &dir.path().join("deckhand.log")).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(180);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        server.check_running().unwrap();
        assert!(Instant::now() < deadline, "deckhand did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = std::fs::read_to_string(dir.path().join("data/initial-admin-token"))
        .unwrap()
        .trim()
        .to_owned();

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CREATING_AT_ONCE)
        .build()
        .unwrap();
    let creating = Arc::new(Semaphore::new(CREATING_AT_ONCE));
    let started = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|n| {
            let (http, base, token, creating) =
                (http.clone(), base.clone(), token.clone(), creating.clone());
            tokio::spawn(async move {
                tokio::time::timeout(
                    SESSION_LIMIT,
                    session(n, &http, &base, &token, &creating, model),
                )
                .await
                .unwrap_or_else(|_| Err(format!("session {n} timed out")))
            })
        })
        .collect();
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(session) => done.push(session),
            Err(error) => errors.push(error),
        }
    }
    let wall = started.elapsed();
    let rss = server.pid().map_or(0, peak_rss_kib);
    server.stop();

    let mut first: Vec<Duration> = done.iter().map(|s| s.first_token).collect();
    let mut result: Vec<Duration> = done.iter().map(|s| s.result).collect();
    first.sort();
    result.sort();
    let events: usize = done.iter().map(|s| s.events).sum();
    let tokens: usize = done.iter().map(|s| s.tokens).sum();
    println!(
        "ws_load: {sessions} sessions, {} ok, {} errors; {events} events ({tokens} tokens) delivered; \
         first token p50 {:.2} s p99 {:.2} s max {:.2} s; result p50 {:.2} s p99 {:.2} s max {:.2} s; \
         wall {:.1} s; server peak RSS {} MiB; model: {} tokens x {} ms per reply",
        done.len(),
        errors.len(),
        percentile(&first, 0.5).as_secs_f64(),
        percentile(&first, 0.99).as_secs_f64(),
        first.last().copied().unwrap_or_default().as_secs_f64(),
        percentile(&result, 0.5).as_secs_f64(),
        percentile(&result, 0.99).as_secs_f64(),
        result.last().copied().unwrap_or_default().as_secs_f64(),
        wall.as_secs_f64(),
        rss / 1024,
        model.tokens,
        model.token_delay.as_millis(),
    );
    for error in errors.iter().take(10) {
        println!("  error: {error}");
    }
    assert!(errors.is_empty(), "{} sessions failed", errors.len());
}

async fn session(
    n: usize,
    http: &reqwest::Client,
    base: &str,
    token: &str,
    creating: &Semaphore,
    model: Model,
) -> Result<Session, String> {
    let asked = Instant::now();
    let thread = {
        let _turn = creating.acquire().await.map_err(|e| e.to_string())?;
        let response = http
            .post(format!("{base}/api/threads"))
            .bearer_auth(token)
            .json(&json!({"text": format!("scale web{n} to 3 in shop")}))
            .send()
            .await
            .map_err(|e| format!("session {n}: create: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("session {n}: create: {}", response.status()));
        }
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        body["thread"]["id"].as_str().unwrap_or_default().to_owned()
    };
    let url = format!(
        "{}/ws/threads/{thread}?after=0",
        base.replacen("http", "ws", 1)
    );
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| format!("session {n}: connect: {e}"))?;
    let (mut events, mut tokens, mut last_id) = (0, 0, 0);
    let mut first_token = None;
    loop {
        let Some(message) = socket.next().await else {
            return Err(format!(
                "session {n}: the stream ended after event {last_id}"
            ));
        };
        let message = message.map_err(|e| format!("session {n}: {e}"))?;
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                return Err(format!(
                    "session {n}: closed after event {last_id}: {frame:?}"
                ))
            }
            _ => continue,
        };
        let event: Value = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
        let id = event["id"].as_u64().unwrap_or_default();
        if id != last_id + 1 {
            return Err(format!("session {n}: event {id} after {last_id}"));
        }
        last_id = id;
        events += 1;
        match event["kind"].as_str() {
            Some("token") => {
                tokens += 1;
                first_token.get_or_insert_with(|| asked.elapsed());
            }
            Some("result") => break,
            _ => {}
        }
    }
    let _ = socket.close(None).await;
    // Jamie streams the explanation and the report.
    if tokens < 2 * model.tokens {
        return Err(format!(
            "session {n}: {tokens} token events, expected {}",
            2 * model.tokens
        ));
    }
    Ok(Session {
        first_token: first_token.unwrap_or_default(),
        result: asked.elapsed(),
        events,
        tokens,
    })
}
