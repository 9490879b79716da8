//! `/ws/threads/{id}`: a thread's events as JSON text frames, one [`ThreadEvent`] each.
//!
//! A client that reconnects with `?after=<last id it saw>` (or a `Last-Event-ID`
//! header) gets every event after that one, then the live ones, with no gap and no
//! duplicate. Each session reads the service's stream into a bounded buffer of its own:
//! a client that does not keep up fills only its own buffer and is closed with code
//! 1013 ("try again later") and a reason naming the id to resume after, rather than
//! holding memory or slowing anyone else. The server pings; a client that answers two
//! pings in a row with no pong is closed.

use crate::auth::Viewer;
use crate::error::{Error, Result};
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
use tokio::sync::{mpsc, oneshot};

/// The subprotocol the server selects when a client offers it (browsers offer it next
/// to `bearer.<token>`, and need one selected).
pub const PROTOCOL: &str = "deckhand";

/// Close code for a client that did not keep up (RFC 6455 "Try Again Later").
pub const CLOSE_SLOW_CLIENT: u16 = 1013;
/// Close code for a client that stopped answering pings (RFC 6455 "Policy Violation").
pub const CLOSE_NO_PONG: u16 = 1008;
/// Close code when the service's stream ends (shutdown: "Going Away").
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
    let session = Session {
        buffer: config.buffer.max(1),
        ping_interval: Duration::from_secs(config.ping_interval_secs.max(1)),
        send_timeout: Duration::from_secs(config.send_timeout_secs.max(1)),
        after: after.unwrap_or(0),
    };
    Ok(upgrade
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| async move {
            metrics.websocket_opened();
            let slow = session.run(socket, events).await;
            metrics.websocket_closed(slow);
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
    /// Streams until the client leaves or must be closed; `true` when it was closed for
    /// not keeping up.
    async fn run(self, socket: WebSocket, mut events: EventStream) -> bool {
        let (mut sink, mut incoming) = socket.split();
        let (queue, mut queued) = mpsc::channel::<ThreadEvent>(self.buffer);
        let (overflow, mut overflowed) = oneshot::channel::<()>();
        let pump = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                match queue.try_send(event) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        let _ = overflow.send(());
                        return;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        });

        let mut last_sent = self.after;
        let mut unanswered_pings = 0_u32;
        let mut overflow_open = true;
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut slow = false;
        let end = loop {
            tokio::select! {
                biased;
                signal = &mut overflowed, if overflow_open => {
                    overflow_open = false;
                    if signal.is_ok() {
                        slow = true;
                        break End::Close(
                            CLOSE_SLOW_CLIENT,
                            format!("slow client: reconnect with ?after={last_sent}"),
                        );
                    }
                }
                event = queued.recv() => {
                    let Some(event) = event else {
                        break End::Close(CLOSE_GOING_AWAY, "the event stream ended".to_owned());
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
                    match tokio::time::timeout(self.send_timeout, sink.send(Message::Text(text.into()))).await {
                        Ok(Ok(())) => last_sent = event.id,
                        Ok(Err(_)) => break End::Gone,
                        Err(_) => {
                            slow = true;
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
                        break End::Close(CLOSE_NO_PONG, "no pong to two pings".to_owned());
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
            let _ = tokio::time::timeout(self.send_timeout, sink.send(Message::Close(Some(frame))))
                .await;
        }
        slow
    }
}
