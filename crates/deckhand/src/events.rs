//! Thread events: every event is stored in the thread's event log first, then announced
//! to whoever watches the thread (the WebSocket, the Slack bot, the GUI).
//!
//! Ids come from the store (1, 2, 3... per thread), so a client that reconnects after id
//! N resumes exactly after N, across restarts. A watcher subscribes to the live channel
//! *before* reading the stored backlog and skips ids it has already seen: no event falls
//! between the two. Events of one thread are stored and announced under that thread's
//! lock, so they are announced in id order.

use chrono::Utc;
use deckhand_api::{EventStream, ThreadEvent, ThreadEventKind};
use deckhand_runtime::ThreadId;
use deckhand_store::Database;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// How many live events a watcher may fall behind before its stream ends (it then
/// reconnects after its last id and loses nothing: the store has every event).
const LIVE_BUFFER: usize = 1024;

/// How many stored events are read per page when a watcher catches up.
const BACKLOG_PAGE: u32 = 500;

/// One thread's live channel and the lock that keeps its events in order.
struct Channel {
    sender: broadcast::Sender<ThreadEvent>,
    order: Arc<tokio::sync::Mutex<()>>,
}

/// Stores and announces thread events.
#[derive(Clone)]
pub struct EventHub {
    database: Database,
    channels: Arc<Mutex<HashMap<ThreadId, Channel>>>,
    /// Where plans, steps, approvals and restores are counted, once `deckhand serve`
    /// sets it.
    metrics: crate::journal::MetricsCell,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("EventHub").finish_non_exhaustive()
    }
}

impl EventHub {
    /// A hub storing events in `database`, counting in `metrics` once it is set.
    pub fn new(database: Database, metrics: crate::journal::MetricsCell) -> Self {
        Self {
            database,
            channels: Arc::default(),
            metrics,
        }
    }

    /// Counts plans and steps by state in `metrics` (`deckhand_plans_total`,
    /// `deckhand_steps_total`); the tool executor and the gate's audit sink count tool
    /// calls and policy decisions in the same metrics. Set once; later calls are ignored.
    pub fn count_in(&self, metrics: deckhand_api::Metrics) {
        let _ = self.metrics.set(metrics);
    }

    /// The metrics events are counted in, once set.
    pub fn metrics(&self) -> Option<&deckhand_api::Metrics> {
        self.metrics.get()
    }

    fn count(&self, kind: ThreadEventKind, data: &Value) {
        let Some(metrics) = self.metrics.get() else {
            return;
        };
        let text = |field: &str| data.get(field).and_then(Value::as_str).unwrap_or("unknown");
        // Approvals and restores are counted by the API that took them.
        match kind {
            ThreadEventKind::PlanProposed => metrics.plan("proposed"),
            ThreadEventKind::PlanFinished => metrics.plan(text("outcome")),
            ThreadEventKind::Step => metrics.step(text("state")),
            _ => {}
        }
    }

    /// The thread's channel (made on first use) and its order lock.
    fn channel(
        &self,
        thread: ThreadId,
    ) -> (broadcast::Sender<ThreadEvent>, Arc<tokio::sync::Mutex<()>>) {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let channel = channels.entry(thread).or_insert_with(|| Channel {
            sender: broadcast::channel(LIVE_BUFFER).0,
            order: Arc::default(),
        });
        (channel.sender.clone(), channel.order.clone())
    }

    /// Stores an event of `thread` and announces it; returns its id. A store failure is
    /// logged and the event is not announced (an announced event must be resumable).
    pub async fn emit(&self, thread: ThreadId, kind: ThreadEventKind, data: Value) -> Option<u64> {
        let (sender, order) = self.channel(thread);
        let emitted = {
            let _in_order = order.lock().await;
            self.store_and_send(thread, kind, data, &sender).await
        };
        drop((sender, order));
        self.forget_if_idle(thread);
        emitted
    }

    async fn store_and_send(
        &self,
        thread: ThreadId,
        kind: ThreadEventKind,
        data: Value,
        sender: &broadcast::Sender<ThreadEvent>,
    ) -> Option<u64> {
        let name = kind_name(kind);
        let id = match self.database.insert_event(thread, name, &data).await {
            Ok(id) => id,
            Err(error) => {
                tracing::warn!(%thread, kind = name, error = %format!("{error:#}"), "cannot store a thread event");
                return None;
            }
        };
        let id = u64::try_from(id).unwrap_or_default();
        self.count(kind, &data);
        // Nobody watching is fine.
        let _ = sender.send(ThreadEvent {
            id,
            thread_id: thread,
            at: Utc::now(),
            kind,
            data,
        });
        Some(id)
    }

    /// Drops the thread's channel when nobody watches it and no one else is emitting or
    /// subscribing (they hold its order lock's `Arc`), so the map does not keep one
    /// channel per thread ever touched. The next event makes a new one.
    fn forget_if_idle(&self, thread: ThreadId) {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let idle = channels.get(&thread).is_some_and(|channel| {
            Arc::strong_count(&channel.order) == 1 && channel.sender.receiver_count() == 0
        });
        if idle {
            channels.remove(&thread);
        }
    }

    /// Every stored event of the thread, oldest first.
    ///
    /// # Errors
    /// The store fails.
    pub async fn stored(&self, thread: ThreadId) -> Result<Vec<ThreadEvent>, String> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .database
                .thread_events_after(thread, after, BACKLOG_PAGE)
                .await
                .map_err(|error| format!("{error:#}"))?;
            let Some(last) = page.last() else {
                return Ok(events);
            };
            after = last.id;
            events.extend(page.into_iter().filter_map(api_event));
        }
    }

    /// The thread's events after `after` (all for `None`), then its live events, with no
    /// gap and no repeat.
    pub fn subscribe(&self, thread: ThreadId, after: Option<u64>) -> EventStream {
        // Subscribe first: whatever is stored after the backlog read arrives live.
        let live = self.channel(thread).0.subscribe();
        let database = self.database.clone();
        let start = after.unwrap_or(0);
        let stream = async_stream(database, thread, start, live);
        Box::pin(stream)
    }
}

/// The stored backlog page by page, then the live channel, skipping ids already sent.
fn async_stream(
    database: Database,
    thread: ThreadId,
    start: u64,
    live: broadcast::Receiver<ThreadEvent>,
) -> impl futures_util::Stream<Item = ThreadEvent> + Send {
    enum Phase {
        Backlog(Vec<ThreadEvent>),
        Live,
    }
    struct State {
        database: Database,
        thread: ThreadId,
        last: u64,
        live: broadcast::Receiver<ThreadEvent>,
        phase: Phase,
    }
    let state = State {
        database,
        thread,
        last: start,
        live,
        phase: Phase::Backlog(Vec::new()),
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            match &mut state.phase {
                Phase::Backlog(buffered) => {
                    if let Some(event) = buffered.pop() {
                        state.last = event.id;
                        return Some((event, state));
                    }
                    let page = match state
                        .database
                        .thread_events_after(
                            state.thread,
                            i64::try_from(state.last).unwrap_or(i64::MAX),
                            BACKLOG_PAGE,
                        )
                        .await
                    {
                        Ok(page) => page,
                        Err(error) => {
                            tracing::warn!(thread = %state.thread, error = %format!("{error:#}"), "cannot read thread events");
                            return None;
                        }
                    };
                    if page.is_empty() {
                        state.phase = Phase::Live;
                        continue;
                    }
                    // Reversed so `pop` hands them out oldest first.
                    let mut page: Vec<ThreadEvent> =
                        page.into_iter().filter_map(api_event).collect();
                    page.reverse();
                    state.phase = Phase::Backlog(page);
                }
                Phase::Live => match state.live.recv().await {
                    Ok(event) if event.id > state.last => {
                        state.last = event.id;
                        return Some((event, state));
                    }
                    Ok(_) => {}
                    // Too far behind: end; the client resumes after its last id.
                    Err(_) => return None,
                },
            }
        }
    })
}

/// The wire name of a kind (`plan_proposed`), as stored.
pub fn kind_name(kind: ThreadEventKind) -> &'static str {
    match kind {
        ThreadEventKind::Message => "message",
        ThreadEventKind::Token => "token",
        ThreadEventKind::PlanProposed => "plan_proposed",
        ThreadEventKind::Step => "step",
        ThreadEventKind::Approval => "approval",
        ThreadEventKind::Rejection => "rejection",
        ThreadEventKind::PlanFinished => "plan_finished",
        ThreadEventKind::Result => "result",
        ThreadEventKind::Restore => "restore",
        ThreadEventKind::Rating => "rating",
        ThreadEventKind::Error => "error",
        ThreadEventKind::Access => "access",
    }
}

/// A stored event as the API shows it; an event of a kind this version does not know
/// (written by a newer deckhand on a shared store) is skipped.
fn api_event(event: deckhand_runtime::ThreadEvent) -> Option<ThreadEvent> {
    let kind: ThreadEventKind = serde_json::from_value(Value::String(event.kind.clone())).ok()?;
    Some(ThreadEvent {
        id: u64::try_from(event.id).ok()?,
        thread_id: event.thread_id,
        at: event.at,
        kind,
        data: event.payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn channels_kept(hub: &EventHub) -> usize {
        hub.channels
            .lock()
            .map(|channels| channels.len())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_threads_channel_is_kept_only_while_someone_watches() {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = Database::open_sqlite(&dir.path().join("events.db"))
            .await
            .expect("store opens");
        let thread = deckhand_runtime::Thread::new("default", "ana", "scale web");
        deckhand_runtime::store::ThreadStore::create_thread(&database, &thread)
            .await
            .expect("thread stored");
        let hub = EventHub::new(database, crate::journal::MetricsCell::default());
        let error = json!({"message": "x"});

        hub.emit(thread.id, ThreadEventKind::Error, error.clone())
            .await;
        assert_eq!(channels_kept(&hub), 0, "nobody watches: nothing kept");

        let watching = hub.subscribe(thread.id, None);
        hub.emit(thread.id, ThreadEventKind::Error, error.clone())
            .await;
        assert_eq!(channels_kept(&hub), 1, "kept while watched");

        drop(watching);
        hub.emit(thread.id, ThreadEventKind::Error, error).await;
        assert_eq!(channels_kept(&hub), 0, "dropped once the watcher left");
    }

    #[test]
    fn every_kind_has_the_name_serde_gives_it() {
        for kind in [
            ThreadEventKind::Message,
            ThreadEventKind::Token,
            ThreadEventKind::PlanProposed,
            ThreadEventKind::Step,
            ThreadEventKind::Approval,
            ThreadEventKind::Rejection,
            ThreadEventKind::PlanFinished,
            ThreadEventKind::Result,
            ThreadEventKind::Restore,
            ThreadEventKind::Rating,
            ThreadEventKind::Error,
            ThreadEventKind::Access,
        ] {
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(Value::String(kind_name(kind).to_owned()))
            );
        }
    }
}
