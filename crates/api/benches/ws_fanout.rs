//! WebSocket fan-out: N clients on one thread, each over its own loopback socket, while
//! the in-memory service emits E events at a fixed interval (a stand-in for a model
//! producing tokens at a fixed rate). Prints one line of figures: connect time, delivery
//! latency from emit to client (p50, p99, max), errors, and the process's peak memory.
//!
//! `cargo bench -p deckhand-api --bench ws_fanout [-- CLIENTS EVENTS INTERVAL_MS]`
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use deckhand_api::config::RateLimitConfig;
use deckhand_api::model::{NewThread, Scope};
use deckhand_api::{ApiConfig, Deckhand, ThreadEvent, ThreadEventKind};
use futures_util::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
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

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let clients: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let events: u64 = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(200);
    let interval = Duration::from_millis(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(20));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(clients, events, interval));
}

async fn run(clients: usize, events: u64, interval: Duration) {
    // One token for every client: the per-token limit is off for the measurement.
    let fixture = common::Fixture::new(ApiConfig {
        rate_limit: RateLimitConfig {
            per_second: 0.0,
            burst: 0,
        },
        ..ApiConfig::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = fixture.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let thread = fixture
        .service
        .create_thread(
            &common::identity("olga", Scope::Operator),
            NewThread {
                text: "bench".into(),
                namespace: None,
            },
        )
        .await
        .unwrap()
        .thread
        .id;
    let backlog = 2; // the request and the plan
    let last_id = backlog + events;

    let connecting = Instant::now();
    let mut sessions = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut request = format!("ws://{address}/ws/threads/{thread}")
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", fixture.viewer).parse().unwrap(),
        );
        // Clients as small as the server's sessions, so the peak memory is mostly the server's.
        let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
        let (client, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), false)
                .await
                .unwrap();
        sessions.push(client);
    }
    let connect_time = connecting.elapsed();

    let readers: Vec<_> = sessions
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut expected = 1;
                let mut errors = 0_u64;
                while expected <= last_id {
                    match tokio::time::timeout(Duration::from_secs(60), client.next()).await {
                        Ok(Some(Ok(Message::Text(text)))) => {
                            let event: ThreadEvent = serde_json::from_str(&text).unwrap();
                            if event.id != expected {
                                errors += 1;
                            }
                            expected = event.id + 1;
                            if let Some(sent) =
                                event.data.get("sent_at_micros").and_then(|v| v.as_i64())
                            {
                                latencies.push(now_micros() - sent);
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => {
                            errors += 1;
                            break;
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();

    let streaming = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    for index in 0..events {
        ticker.tick().await;
        fixture
            .service
            .emit(thread, ThreadEventKind::Token, json!({"agent": "jamie", "text": format!("token {index} "), "sent_at_micros": now_micros()}))
            .unwrap();
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for reader in readers {
        let (mut own, own_errors) = reader.await.unwrap();
        latencies.append(&mut own);
        errors += own_errors;
    }
    let stream_time = streaming.elapsed();
    latencies.sort_unstable();
    let at = |fraction: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * fraction) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "ws_fanout clients={clients} events={events} interval={interval:?}: connect {connect_time:.2?} ({:.0} µs/session), streamed in {stream_time:.2?}, delivered {} frames, latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms, errors {errors}, peak RSS {} MiB",
        connect_time.as_micros() as f64 / clients as f64,
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        peak_rss_kib() / 1024,
    );
}
