//! The Slack bot.
//!
//! - `POST /slack/events` (Events API): the `url_verification` challenge; `app_mention`
//!   and direct messages (`message` in an `im`) start a deckhand thread, or continue the
//!   one linked to that Slack thread (`slack:CHANNEL:THREAD_TS`).
//! - `POST /slack/interactivity`: Block Kit buttons (approve, reject, restore, rate) and
//!   the `/deckhand` modal's submission; the form field `payload` holds the JSON.
//! - `POST /slack/commands`: `/deckhand <request>`, `/deckhand threads`, `/deckhand help`,
//!   `/deckhand` alone opens a modal (`views.open`).
//!
//! Every request is verified with the signing secret ([`verify`]) before anything else.
//! Slack users act as the cluster identity `[api.slack.users]` maps them to; unmapped
//! users are told so and nothing runs. A thread started from Slack is watched: its plan
//! is posted with approve/reject buttons, its result with restore and rating buttons.

pub mod client;
pub mod verify;

pub use client::SlackClient;

use crate::config::SlackConfig;
use crate::error::{Error, Result};
use crate::model::{
    Approval, AuthSource, Identity, NewMessage, NewThread, PlanView, Rating, Rejection,
    ThreadEvent, ThreadEventKind, ThreadQuery,
};
use crate::ApiState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use deckhand_runtime::{PlanId, ThreadId};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// How long a thread started from Slack is watched for plans and results.
const WATCH_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// Event ids remembered to ignore Slack's retries of an event already handled.
const SEEN_EVENTS: usize = 1024;
/// The modal's callback id.
const ASK_VIEW: &str = "deckhand_ask";

/// The bot: configuration, Web API client, and the events already seen.
pub struct SlackBot {
    config: SlackConfig,
    client: SlackClient,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl std::fmt::Debug for SlackBot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackBot")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SlackBot {
    /// A bot from its configuration.
    pub fn new(config: SlackConfig, http: reqwest::Client) -> Self {
        let client = SlackClient::new(http, &config.api_base_url, &config.bot_token);
        Self {
            config,
            client,
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// The Web API client.
    pub fn client(&self) -> &SlackClient {
        &self.client
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<()> {
        verify::verify(
            &self.config.signing_secret,
            headers,
            body,
            chrono::Utc::now().timestamp(),
        )
    }

    /// The cluster identity of a Slack user, when mapped.
    pub fn identity(&self, user_id: &str) -> Option<Identity> {
        self.config.users.get(user_id).map(|user| Identity {
            subject: user.subject.clone(),
            groups: user.groups.clone(),
            scope: user.scope,
            source: AuthSource::Slack {
                user_id: user_id.to_owned(),
            },
        })
    }

    /// `true` the first time an event id is seen.
    fn first_sighting(&self, event_id: &str) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (set, order) = &mut *seen;
        if !set.insert(event_id.to_owned()) {
            return false;
        }
        order.push_back(event_id.to_owned());
        if order.len() > SEEN_EVENTS {
            if let Some(oldest) = order.pop_front() {
                set.remove(&oldest);
            }
        }
        true
    }
}

/// The `/slack/` routes (404 when Slack is not configured).
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/slack/events", post(events))
        .route("/slack/interactivity", post(interactivity))
        .route("/slack/commands", post(commands))
}

fn bot(state: &ApiState) -> Result<&SlackBot> {
    state.slack().ok_or_else(|| Error::NotFound {
        what: "route",
        id: "/slack (Slack is not configured)".to_owned(),
    })
}

fn verified(state: &ApiState, source: &str, headers: &HeaderMap, body: &[u8]) -> Result<()> {
    let bot = bot(state)?;
    bot.verify(headers, body).inspect_err(|_| {
        state.metrics().inbound(source, "unauthenticated");
    })
}

/// An Events API event deckhand reads.
#[derive(Debug, Clone, Deserialize)]
struct SlackEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    text: String,
    channel: String,
    ts: String,
    #[serde(default)]
    thread_ts: Option<String>,
    #[serde(default)]
    channel_type: Option<String>,
    #[serde(default)]
    bot_id: Option<String>,
    #[serde(default)]
    subtype: Option<String>,
}

async fn events(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    verified(&state, "slack", &headers, &body)?;
    let envelope: Value = serde_json::from_slice(&body)
        .map_err(|error| Error::invalid(format!("not an Events API payload: {error}")))?;
    match envelope.get("type").and_then(Value::as_str) {
        Some("url_verification") => {
            let challenge = envelope.get("challenge").cloned().unwrap_or(Value::Null);
            Ok(Json(json!({ "challenge": challenge })).into_response())
        }
        Some("event_callback") => {
            let event_id = envelope
                .get("event_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !event_id.is_empty() && !bot(&state)?.first_sighting(event_id) {
                state.metrics().inbound("slack", "retry_ignored");
                return Ok(().into_response());
            }
            let event: SlackEvent = envelope
                .get("event")
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|error| Error::invalid(format!("event: {error}")))?
                .ok_or_else(|| Error::invalid("event_callback without an event"))?;
            let wanted = match event.kind.as_str() {
                "app_mention" => true,
                "message" => {
                    event.channel_type.as_deref() == Some("im")
                        && event.bot_id.is_none()
                        && event.subtype.is_none()
                }
                _ => false,
            };
            if wanted {
                state.metrics().inbound("slack", "event");
                // Slack wants an answer within three seconds; planning takes longer.
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(error) = on_message(&state, event).await {
                        tracing::warn!(%error, "Slack message not handled");
                    }
                });
            }
            Ok(().into_response())
        }
        _ => Ok(().into_response()),
    }
}

/// Removes the leading `<@BOT>` of a mention.
fn request_text(text: &str) -> String {
    let text = text.trim();
    match text
        .strip_prefix("<@")
        .and_then(|rest| rest.split_once('>'))
    {
        Some((_, rest)) => rest.trim().to_owned(),
        None => text.to_owned(),
    }
}

fn link_key(channel: &str, thread_ts: &str) -> String {
    format!("slack:{channel}:{thread_ts}")
}

async fn on_message(state: &ApiState, event: SlackEvent) -> Result<()> {
    let bot = bot(state)?;
    let thread_ts = event.thread_ts.clone().unwrap_or_else(|| event.ts.clone());
    let reply = |text: String| {
        let channel = event.channel.clone();
        let thread_ts = thread_ts.clone();
        async move {
            bot.client()
                .post_message(&channel, Some(&thread_ts), &text, None)
                .await
        }
    };
    let user = event.user.clone().unwrap_or_default();
    let Some(who) = bot.identity(&user) else {
        reply(format!(
            "<@{user}> is not mapped to a cluster identity; an admin adds you under [api.slack.users]."
        ))
        .await?;
        return Ok(());
    };
    if who.scope < crate::Scope::Operator {
        reply(format!("{} may only read (viewer).", who.subject)).await?;
        return Ok(());
    }
    let text = request_text(&event.text);
    if text.is_empty() {
        reply("Tell me what to do, e.g. `why is checkout crash-looping in shop?`".to_owned())
            .await?;
        return Ok(());
    }
    let service = state.service();
    let key = link_key(&event.channel, &thread_ts);
    match service.linked_thread(&key).await? {
        Some(thread) => {
            service
                .post_message(&who, thread, NewMessage { text })
                .await?;
        }
        None => {
            let detail = match service
                .create_thread(
                    &who,
                    NewThread {
                        text,
                        namespace: None,
                    },
                )
                .await
            {
                Ok(detail) => detail,
                Err(error) => {
                    reply(format!("Could not start a thread: {error}")).await?;
                    return Err(error);
                }
            };
            service.link_thread(&key, detail.thread.id).await?;
            reply(format!(
                "Started thread `{}` as {}; Scarlet is planning.",
                detail.thread.id, who.subject
            ))
            .await?;
            watch(
                state.clone(),
                who,
                detail.thread.id,
                event.channel.clone(),
                thread_ts,
            );
        }
    }
    Ok(())
}

/// Announces `thread`, which deckhand started on its own (a scheduled task, an alert
/// triage), in the configured `notify_channel` with `text`, and follows it there as a
/// thread started from Slack is followed: its plan with approve/reject buttons, results,
/// errors. `who` is whose view of the thread is posted. Nothing happens without Slack or
/// a notify channel.
///
/// # Errors
/// Slack refuses the message, or the link cannot be stored.
pub async fn announce(state: &ApiState, who: Identity, thread: ThreadId, text: &str) -> Result<()> {
    let Some(bot) = state.slack() else {
        return Ok(());
    };
    let Some(channel) = bot.config.notify_channel.clone() else {
        return Ok(());
    };
    let ts = bot
        .client()
        .post_message(&channel, None, &format!("{text} (thread `{thread}`)"), None)
        .await?;
    state
        .service()
        .link_thread(&link_key(&channel, &ts), thread)
        .await?;
    watch(state.clone(), who, thread, channel, ts);
    Ok(())
}

/// Posts a thread's milestones to its Slack thread: plans with approve/reject buttons,
/// results with restore and rating buttons, errors.
fn watch(state: ApiState, who: Identity, thread: ThreadId, channel: String, thread_ts: String) {
    tokio::spawn(async move {
        let Some(bot) = state.slack() else { return };
        let mut events = match state.service().subscribe(&who, thread, None).await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, %thread, "cannot watch the thread for Slack");
                return;
            }
        };
        let watching = async {
            while let Some(event) = events.next().await {
                if let Some((text, blocks)) = milestone(&event) {
                    if let Err(error) = bot
                        .client()
                        .post_message(&channel, Some(&thread_ts), &text, blocks)
                        .await
                    {
                        tracing::warn!(%error, %thread, "Slack post failed");
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(WATCH_FOR, watching) => {}
            () = state.shutdown().cancelled() => {}
        }
    });
}

/// What to post for an event, if anything.
fn milestone(event: &ThreadEvent) -> Option<(String, Option<Value>)> {
    match event.kind {
        ThreadEventKind::PlanProposed => {
            let plan: PlanView = serde_json::from_value(event.data.clone()).ok()?;
            Some((
                format!("Plan `{}` proposed", plan.hash),
                Some(plan_blocks(&plan)),
            ))
        }
        ThreadEventKind::PlanFinished => {
            let outcome = event
                .data
                .get("outcome")
                .and_then(Value::as_str)
                .unwrap_or("finished");
            let text = format!("Plan {outcome}.");
            Some((text.clone(), Some(finished_blocks(event.thread_id, &text))))
        }
        ThreadEventKind::Result => {
            let text = event.data.get("text").and_then(Value::as_str)?.to_owned();
            Some((text, None))
        }
        ThreadEventKind::Error => {
            let message = event
                .data
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error");
            Some((format!(":warning: {message}"), None))
        }
        ThreadEventKind::Access => {
            let missing: Vec<String> = event
                .data
                .get("missing")
                .and_then(Value::as_array)?
                .iter()
                .filter_map(|entry| {
                    let step = entry.get("step_id").and_then(Value::as_str)?;
                    let permission = entry.get("permission").and_then(Value::as_str)?;
                    Some(format!("• step {step}: {permission}"))
                })
                .collect();
            let user = event
                .data
                .get("user")
                .and_then(Value::as_str)
                .unwrap_or("you");
            Some((
                format!(
                    ":lock: {user} lacks permissions this plan needs:\n{}",
                    missing.join("\n")
                ),
                None,
            ))
        }
        _ => None,
    }
}

fn plan_blocks(plan: &PlanView) -> Value {
    let steps: Vec<String> = plan
        .steps
        .iter()
        .map(|step| {
            let marker = if step.mutating { ":pencil2:" } else { ":mag:" };
            format!(
                "{marker} *{}* `{}` ({}): {}",
                step.id, step.tool, step.agent, step.title
            )
        })
        .collect();
    let value = json!({ "thread": plan.thread_id, "plan": plan.id, "hash": plan.hash }).to_string();
    json!([
        { "type": "section", "text": { "type": "mrkdwn",
            "text": format!("*Plan for:* {}\n{}", plan.request, steps.join("\n")) } },
        { "type": "context", "elements": [ { "type": "mrkdwn", "text": format!("hash `{}`", plan.hash) } ] },
        { "type": "actions", "elements": [
            { "type": "button", "action_id": "approve", "style": "primary",
              "text": { "type": "plain_text", "text": "Approve and run" }, "value": value },
            { "type": "button", "action_id": "reject", "style": "danger",
              "text": { "type": "plain_text", "text": "Reject" }, "value": value }
        ] }
    ])
}

fn finished_blocks(thread: ThreadId, text: &str) -> Value {
    let value = |rating: Option<u8>| json!({ "thread": thread, "rating": rating }).to_string();
    json!([
        { "type": "section", "text": { "type": "mrkdwn", "text": text } },
        { "type": "actions", "elements": [
            { "type": "button", "action_id": "restore", "style": "danger",
              "text": { "type": "plain_text", "text": "Restore" }, "value": value(None) },
            { "type": "button", "action_id": "rate_0",
              "text": { "type": "plain_text", "text": "Not useful (0)" }, "value": value(Some(0)) },
            { "type": "button", "action_id": "rate_50",
              "text": { "type": "plain_text", "text": "Partly (50)" }, "value": value(Some(50)) },
            { "type": "button", "action_id": "rate_100", "style": "primary",
              "text": { "type": "plain_text", "text": "Resolved (100)" }, "value": value(Some(100)) }
        ] }
    ])
}

/// What a button carries.
#[derive(Debug, Deserialize)]
struct ButtonValue {
    thread: ThreadId,
    #[serde(default)]
    plan: Option<PlanId>,
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    rating: Option<u8>,
}

#[derive(Debug, Deserialize)]
struct FormPayload {
    payload: String,
}

async fn interactivity(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    verified(&state, "slack", &headers, &body)?;
    let form: FormPayload = serde_urlencoded::from_bytes(&body)
        .map_err(|error| Error::invalid(format!("interactivity form: {error}")))?;
    let payload: Value = serde_json::from_str(&form.payload)
        .map_err(|error| Error::invalid(format!("interactivity payload: {error}")))?;
    let bot = bot(&state)?;
    let user = payload
        .pointer("/user/id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let who = bot.identity(user).ok_or_else(|| Error::Forbidden {
        reason: format!("Slack user {user} is not mapped to a cluster identity"),
    });
    match payload.get("type").and_then(Value::as_str) {
        Some("block_actions") => {
            let who = who?;
            let action = payload
                .pointer("/actions/0")
                .cloned()
                .unwrap_or(Value::Null);
            let action_id = action
                .get("action_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let value: ButtonValue = action
                .get("value")
                .and_then(Value::as_str)
                .map(serde_json::from_str)
                .transpose()
                .map_err(|error| Error::invalid(format!("button value: {error}")))?
                .ok_or_else(|| Error::invalid("button without a value"))?;
            let channel = payload
                .pointer("/channel/id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let message_ts = payload
                .pointer("/message/ts")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let thread_ts = payload
                .pointer("/message/thread_ts")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| message_ts.clone());
            state.metrics().inbound("slack", "action");
            let outcome = match on_button(&state, &who, &action_id, &value).await {
                Ok(text) => text,
                Err(error) => format!(":no_entry: {error}"),
            };
            // The buttons are replaced by what happened, so nobody presses them twice.
            if let (Some(channel), Some(ts)) = (&channel, &message_ts) {
                let blocks =
                    json!([{ "type": "section", "text": { "type": "mrkdwn", "text": outcome } }]);
                if let Err(error) = bot.client().update(channel, ts, &outcome, blocks).await {
                    tracing::warn!(%error, "Slack update failed");
                }
            }
            if let Some(channel) = &channel {
                bot.client()
                    .post_message(channel, thread_ts.as_deref(), &outcome, None)
                    .await?;
            }
            Ok(().into_response())
        }
        Some("view_submission")
            if payload.pointer("/view/callback_id").and_then(Value::as_str) == Some(ASK_VIEW) =>
        {
            let who = who?;
            let text = payload
                .pointer("/view/state/values/request/text/value")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let channel = payload
                .pointer("/view/private_metadata")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            start_from_command(&state, who, &channel, text).await?;
            // An empty 200 closes the modal.
            Ok(().into_response())
        }
        _ => Ok(().into_response()),
    }
}

/// Carries a button out; returns what to tell the channel.
async fn on_button(
    state: &ApiState,
    who: &Identity,
    action_id: &str,
    value: &ButtonValue,
) -> Result<String> {
    let service = state.service();
    let thread = value.thread;
    crate::routes::check_owner(state, who, thread).await?;
    let plan_and_hash = || match (value.plan, value.hash.clone()) {
        (Some(plan), Some(hash)) => Ok((plan, hash)),
        _ => Err(Error::invalid("the button names no plan")),
    };
    match action_id {
        "approve" => {
            let (plan, hash) = plan_and_hash()?;
            service
                .approve(who, thread, plan, Approval { hash, step: None })
                .await?;
            state.metrics().approval("approved", "plan");
            match service.run(who, thread, plan).await {
                Ok(_) | Err(Error::Conflict { .. }) => {}
                Err(error) => return Err(error),
            }
            Ok(format!(
                ":white_check_mark: Approved by {}; running.",
                who.subject
            ))
        }
        "reject" => {
            let (plan, hash) = plan_and_hash()?;
            service
                .reject(
                    who,
                    thread,
                    plan,
                    Rejection {
                        hash,
                        step: None,
                        reason: None,
                    },
                )
                .await?;
            state.metrics().approval("rejected", "plan");
            Ok(format!(":x: Rejected by {}.", who.subject))
        }
        "restore" => {
            let restored = service.restore(who, thread).await?;
            state.metrics().restore(if restored.failed.is_empty() {
                "ok"
            } else {
                "partial"
            });
            Ok(format!(
                ":rewind: Restored by {}: {}{}",
                who.subject,
                if restored.restored.is_empty() {
                    "nothing to restore".to_owned()
                } else {
                    restored.restored.join(", ")
                },
                if restored.failed.is_empty() {
                    String::new()
                } else {
                    format!("; not restored: {}", restored.failed.join(", "))
                }
            ))
        }
        rate if rate.starts_with("rate_") => {
            let rating = value
                .rating
                .ok_or_else(|| Error::invalid("the button names no rating"))?;
            if rating > 100 {
                return Err(Error::invalid("ratings go from 0 to 100"));
            }
            service
                .rate(
                    who,
                    thread,
                    Rating {
                        rating,
                        comment: None,
                    },
                )
                .await?;
            Ok(format!(":star: Rated {rating} by {}.", who.subject))
        }
        other => Err(Error::invalid(format!("unknown action {other:?}"))),
    }
}

/// A slash command's form.
#[derive(Debug, Deserialize)]
struct SlashCommand {
    #[serde(default)]
    text: String,
    user_id: String,
    channel_id: String,
    #[serde(default)]
    trigger_id: String,
}

fn ephemeral(text: impl Into<String>) -> Response {
    Json(json!({ "response_type": "ephemeral", "text": text.into() })).into_response()
}

async fn commands(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    verified(&state, "slack", &headers, &body)?;
    let command: SlashCommand = serde_urlencoded::from_bytes(&body)
        .map_err(|error| Error::invalid(format!("slash command form: {error}")))?;
    let bot = bot(&state)?;
    state.metrics().inbound("slack", "command");
    let Some(who) = bot.identity(&command.user_id) else {
        return Ok(ephemeral(format!(
            "<@{}> is not mapped to a cluster identity; an admin adds you under [api.slack.users].",
            command.user_id
        )));
    };
    let text = command.text.trim();
    let (verb, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    match verb {
        "" => {
            bot.client().open_view(&command.trigger_id, ask_view(&command.channel_id)).await?;
            Ok(().into_response())
        }
        "help" => Ok(ephemeral(
            "`/deckhand <request>` starts a thread here; `/deckhand threads` lists yours; `/deckhand` alone opens a form.",
        )),
        "threads" => {
            let query = ThreadQuery { limit: Some(10), status: None, user: Some(who.subject.clone()) };
            let threads = state.service().list_threads(&who, query).await?;
            let lines: Vec<String> = threads
                .iter()
                .map(|thread| format!("`{}` {} ({})", thread.id, thread.title, thread.status))
                .collect();
            Ok(ephemeral(if lines.is_empty() { "No threads yet.".to_owned() } else { lines.join("\n") }))
        }
        _ => {
            let request = if verb == "ask" { rest.trim().to_owned() } else { text.to_owned() };
            if who.scope < crate::Scope::Operator {
                return Ok(ephemeral(format!("{} may only read (viewer).", who.subject)));
            }
            let thread = start_from_command(&state, who, &command.channel_id, request).await?;
            Ok(ephemeral(format!("Started thread `{thread}`.")))
        }
    }
}

/// Starts a thread from the slash command or its modal: a message in the channel that
/// the Slack thread hangs from.
async fn start_from_command(
    state: &ApiState,
    who: Identity,
    channel: &str,
    text: String,
) -> Result<ThreadId> {
    let bot = bot(state)?;
    if text.trim().is_empty() {
        return Err(Error::invalid("the request is empty"));
    }
    let detail = state
        .service()
        .create_thread(
            &who,
            NewThread {
                text: text.clone(),
                namespace: None,
            },
        )
        .await?;
    let ts = bot
        .client()
        .post_message(
            channel,
            None,
            &format!(
                "{} asked: {text}\nThread `{}`; Scarlet is planning.",
                who.subject, detail.thread.id
            ),
            None,
        )
        .await?;
    state
        .service()
        .link_thread(&link_key(channel, &ts), detail.thread.id)
        .await?;
    watch(state.clone(), who, detail.thread.id, channel.to_owned(), ts);
    Ok(detail.thread.id)
}

fn ask_view(channel: &str) -> Value {
    json!({
        "type": "modal",
        "callback_id": ASK_VIEW,
        "private_metadata": channel,
        "title": { "type": "plain_text", "text": "Ask deckhand" },
        "submit": { "type": "plain_text", "text": "Ask" },
        "blocks": [ {
            "type": "input", "block_id": "request",
            "label": { "type": "plain_text", "text": "What should deckhand do?" },
            "element": { "type": "plain_text_input", "action_id": "text", "multiline": true }
        } ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mention_is_removed_from_the_request() {
        assert_eq!(request_text("<@U0BOT> scale web to 3 "), "scale web to 3");
        assert_eq!(request_text("scale web"), "scale web");
    }
}
