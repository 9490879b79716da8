//! A scripted HTTP server on 127.0.0.1:0: it records every request and answers each with
//! the next scripted reply, streamed in chunks when asked, cut off when asked.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub chunks: Vec<String>,
    /// Wait before answering at all.
    pub delay: Duration,
    /// Wait between chunks.
    pub chunk_delay: Duration,
    /// Break the connection after the chunks instead of ending the body.
    pub abort: bool,
}

impl Reply {
    pub fn json(value: Value) -> Self {
        Self::status(200, &value.to_string()).header("content-type", "application/json")
    }

    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            chunks: vec![body.to_owned()],
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            abort: false,
        }
    }

    /// Server-sent events, one chunk per event: `(event name, data)`.
    pub fn sse(events: &[(Option<&str>, Value)]) -> Self {
        let chunks = events
            .iter()
            .map(|(name, data)| match name {
                Some(name) => format!("event: {name}\ndata: {data}\n\n"),
                None => format!("data: {data}\n\n"),
            })
            .collect();
        Self::chunks(chunks).header("content-type", "text/event-stream")
    }

    /// Newline-delimited JSON, one chunk per line.
    pub fn ndjson(lines: &[Value]) -> Self {
        Self::chunks(lines.iter().map(|l| format!("{l}\n")).collect())
            .header("content-type", "application/x-ndjson")
    }

    pub fn chunks(chunks: Vec<String>) -> Self {
        Self {
            chunks,
            ..Self::status(200, "")
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    pub fn abort(mut self) -> Self {
        self.abort = true;
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Script {
    requests: Vec<Recorded>,
    replies: VecDeque<Reply>,
}

/// The server; it stops when the test's runtime ends.
#[derive(Clone)]
pub struct Mock {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl Mock {
    pub async fn start(replies: Vec<Reply>) -> Self {
        let script = Arc::new(Mutex::new(Script {
            requests: Vec::new(),
            replies: replies.into(),
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, script }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.script.lock().unwrap().requests.clone()
    }

    /// Every byte the server received, for secret scans.
    pub fn wire(&self) -> String {
        self.requests()
            .iter()
            .map(|r| {
                let headers: String = r
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("")))
                    .collect();
                format!("{} {}\n{headers}\n{}\n", r.method, r.uri, r.body)
            })
            .collect()
    }
}

async fn handle(State(script): State<Arc<Mutex<Script>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let reply = {
        let mut script = script.lock().unwrap();
        script.requests.push(Recorded {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers: parts.headers.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        script.replies.pop_front()
    };
    let Some(reply) = reply else {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from("the test scripted no more replies"))
            .unwrap();
    };
    tokio::time::sleep(reply.delay).await;
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    let chunks = reply.chunks.clone();
    tokio::spawn(async move {
        for (i, chunk) in chunks.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(reply.chunk_delay).await;
            }
            if sender.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
        }
        if reply.abort {
            // Let the chunks reach the client before the connection is cut.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = sender
                .send(Err(std::io::Error::other("connection cut by the test")))
                .await;
        }
    });
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    response
        .body(Body::from_stream(Chunks { receiver }))
        .unwrap()
}

struct Chunks {
    receiver: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}
