//! `/ws/threads/{id}`: a thread's events as JSON text frames, one [`ThreadEvent`] each.
//!
//! A client that reconnects with `?after=<last id it saw>` (or a `Last-Event-ID`
//! header) gets every event after that one, then the live ones, with no gap and no
//! duplicate. Each session reads the service's stream through a bounded queue of its
//! own: memory per client is bounded, and a client whose socket takes nothing for
//! `send_timeout_secs` is closed with code 1013 ("try again later") and a reason naming
//! the id to resume after, without slowing anyone else. The server pings; a client that
//! answers two pings in a row with no pong is closed.

use crate::auth::Viewer;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::ThreadEvent;
use crate::routes::Params;
use crate::service::EventStream;
use crate::ApiState;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The subprotocol the server selects when a client offers it (browsers offer it next
/// to `bearer.<token>`, and need one selected).
pub const PROTOCOL: &str = "deckhand";

/// Close code for a client that did not keep up (RFC 6455 "Try Again Later").
pub const CLOSE_SLOW_CLIENT: u16 = 1013;
/// Close code for a client that stopped answering pings (RFC 6455 "Policy Violation").
pub const CLOSE_NO_PONG: u16 = 1008;
/// The read buffer of one session.
const CLIENT_READ_BUFFER: usize = 4 * 1024;
/// The largest message a client may send.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// How long a close frame may wait behind frames the client has not read yet.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Close code when the server shuts down or the service's stream ends ("Going Away").
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// The `/ws/` routes.
pub fn router() -> Router<ApiState> {
    Router::new().route("/ws/threads/{id}", get(stream_thread))
}

/// The query of `/ws/threads/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Resume after this event id.
    #[serde(default)]
    pub after: Option<u64>,
}

async fn stream_thread(
    Viewer(who): Viewer,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(query): Params<StreamQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response> {
    let thread = id
        .parse()
        .map_err(|_| Error::invalid(format!("{id:?} is not a thread id (a UUID)")))?;
    let after = match query.after {
        Some(after) => Some(after),
        None => match headers.get("last-event-id") {
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|text| text.trim().parse::<u64>().ok())
                    .ok_or_else(|| Error::invalid("Last-Event-ID is not an event id"))?,
            ),
            None => None,
        },
    };
    // Subscribing before the upgrade turns an unknown thread into a 404, not a socket
    // that closes at once.
    let events = state.service().subscribe(&who, thread, after).await?;
    let config = state.config().websocket.clone();
    let metrics = state.metrics().clone();
    let shutdown = state.shutdown().clone();
    let session = Session {
        buffer: config.buffer.max(1),
        ping_interval: Duration::from_secs(config.ping_interval_secs.max(1)),
        send_timeout: Duration::from_secs(config.send_timeout_secs.max(1)),
        after: after.unwrap_or(0),
    };
    Ok(upgrade
        .protocols([PROTOCOL])
        // Clients only answer pings: a small read buffer keeps thousands of sessions
        // cheap (the default is 128 KiB each), and nothing big is accepted from them.
        .read_buffer_size(CLIENT_READ_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            metrics.websocket_opened();
            session.run(socket, events, &metrics, &shutdown).await;
            metrics.websocket_closed();
        }))
}

struct Session {
    buffer: usize,
    ping_interval: Duration,
    send_timeout: Duration,
    after: u64,
}

enum End {
    /// The client left (or the connection broke): nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, String),
}

impl Session {
    /// Streams until the client leaves or must be closed.
    async fn run(
        self,
        socket: WebSocket,
        mut events: EventStream,
        metrics: &Metrics,
        shutdown: &CancellationToken,
    ) {
        let (mut sink, mut incoming) = socket.split();
        let (queue, mut queued) = mpsc::channel::<ThreadEvent>(self.buffer);
        // The pump waits while the queue is full: memory stays bounded, a replayed
        // backlog flows as fast as the client reads, and the service's stream (not
        // this session) decides what happens to a subscriber that falls behind.
        let pump = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if queue.send(event).await.is_err() {
                    return;
                }
            }
        });

        let mut last_sent = self.after;
        let mut unanswered_pings = 0_u32;
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let end = loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    break End::Close(
                        CLOSE_GOING_AWAY,
                        format!("server shutting down: reconnect with ?after={last_sent}"),
                    );
                }
                event = queued.recv() => {
                    let Some(event) = event else {
                        break End::Close(
                            CLOSE_GOING_AWAY,
                            format!("event stream ended: reconnect with ?after={last_sent}"),
                        );
                    };
                    // A service that replays an event already sent must not duplicate it.
                    if event.id <= last_sent {
                        continue;
                    }
                    let text = match serde_json::to_string(&event) {
                        Ok(text) => text,
                        Err(error) => {
                            tracing::error!(%error, event = event.id, "event not serialisable");
                            continue;
                        }
                    };
                    let frame = Message::Text(text.into());
                    match tokio::time::timeout(self.send_timeout, sink.send(frame)).await {
                        Ok(Ok(())) => last_sent = event.id,
                        Ok(Err(_)) => break End::Gone,
                        Err(_) => {
                            // The frame stays buffered ahead of the close frame: a client
                            // that reads the close frame has read this event too.
                            last_sent = event.id;
                            metrics.websocket_slow_client();
                            break End::Close(
                                CLOSE_SLOW_CLIENT,
                                format!("slow client: reconnect with ?after={last_sent}"),
                            );
                        }
                    }
                }
                message = incoming.next() => match message {
                    Some(Ok(Message::Pong(_))) => unanswered_pings = 0,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break End::Gone,
                    // Pings are answered by the WebSocket layer; text from the client has
                    // no meaning yet.
                    Some(Ok(_)) => {}
                },
                _ = ping.tick() => {
                    if unanswered_pings >= 2 {
                        break End::Close(
                            CLOSE_NO_PONG,
                            format!("no pong to two pings: reconnect with ?after={last_sent}"),
                        );
                    }
                    unanswered_pings += 1;
                    let sent = tokio::time::timeout(
                        self.send_timeout,
                        sink.send(Message::Ping(axum::body::Bytes::from_static(b"deckhand"))),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break End::Gone;
                    }
                }
            }
        };
        pump.abort();
        if let End::Close(code, reason) = end {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            // Behind the frame that did not go out: a slow client that reads again within
            // the grace period still learns where to resume.
            let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await;
        }
    }
}
