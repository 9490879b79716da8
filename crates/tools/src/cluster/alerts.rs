//! Admin alerts out of deckhand: to any HTTP endpoint as JSON ([`WebhookTarget::Json`]),
//! to a Slack incoming webhook ([`WebhookTarget::SlackWebhook`]) or to a Slack channel
//! through `chat.postMessage` with a bot token ([`WebhookTarget::SlackApi`]), and to
//! several sinks at once ([`FanoutAlerts`]).
//!
//! Raising an alert never waits on the network: [`WebhookAlerts::raise`] puts the alert on
//! a bounded queue and a background task sends it, with bounded retries and exponential
//! backoff (honouring `Retry-After`). When the queue is full the alert is dropped, counted
//! and logged: a flood of refusals must not slow down, or fail, the refusals themselves.
//!
//! Configured as `[alerts]` in deckhand.toml ([`AlertsConfig`]); secrets (a bot token, a
//! Slack webhook URL) are named by environment variable, never written in the file.

use super::access::{Alert, AlertSink};
use crate::error::{Error, Result};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Alerts waiting to be sent per sink before new ones are dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;
/// Tries per alert (the first send and the retries) before it is given up.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// The wait before the first retry; it doubles with each retry.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two tries, whatever `Retry-After` asks.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one request may take.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack's Web API.
pub const SLACK_API_URL: &str = "https://slack.com/api";

/// Reads an environment variable: the caller decides where from (the process, a test).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// `[alerts]` in deckhand.toml: where admin alerts go besides Kubernetes Events.
///
/// ```toml
/// [alerts]
/// webhook_url = "https://alerts.example.com/deckhand"   # each alert POSTed as JSON
/// webhook_token_env = "DECKHAND_ALERT_TOKEN"            # optional bearer token
/// slack_webhook_url_env = "DECKHAND_SLACK_WEBHOOK_URL"  # a Slack incoming webhook
/// slack_bot_token_env = "SLACK_BOT_TOKEN"               # or chat.postMessage ...
/// slack_channel = "C0123456789"                         # ... to this channel
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// An HTTP(S) endpoint that receives each alert as a JSON POST.
    pub webhook_url: Option<String>,
    /// The environment variable holding a bearer token sent to `webhook_url`.
    pub webhook_token_env: Option<String>,
    /// A Slack incoming-webhook URL. It is a credential (anyone holding it can post): prefer
    /// `slack_webhook_url_env`.
    pub slack_webhook_url: Option<String>,
    /// The environment variable holding a Slack incoming-webhook URL.
    pub slack_webhook_url_env: Option<String>,
    /// The environment variable holding a Slack bot token (`xoxb-…`, scope `chat:write`)
    /// for `chat.postMessage` to `slack_channel`.
    pub slack_bot_token_env: Option<String>,
    /// The channel `chat.postMessage` posts to: an ID (`C0123456789`) or `#name`.
    pub slack_channel: Option<String>,
    /// Slack's Web API base URL.
    pub slack_api_url: String,
    /// Alerts waiting per destination before new ones are dropped.
    pub queue_capacity: usize,
    /// Tries per alert before it is given up.
    pub max_attempts: u32,
    /// The wait before the first retry, in milliseconds (doubling, at most 30 s).
    pub initial_backoff_ms: u64,
    /// How long one request may take, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_token_env: None,
            slack_webhook_url: None,
            slack_webhook_url_env: None,
            slack_bot_token_env: None,
            slack_channel: None,
            slack_api_url: SLACK_API_URL.to_owned(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff_ms: u64::try_from(DEFAULT_INITIAL_BACKOFF.as_millis())
                .unwrap_or(u64::MAX),
            timeout_ms: u64::try_from(DEFAULT_REQUEST_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl AlertsConfig {
    /// Where alerts go, with the secrets read from `env`; every problem at once.
    ///
    /// # Errors
    /// [`Error::InvalidAlerts`], each problem naming its key.
    pub fn targets(&self, env: Env<'_>) -> Result<Vec<WebhookTarget>> {
        let mut problems = Vec::new();
        let mut targets = Vec::new();
        let secret = |key: &str, variable: &str, problems: &mut Vec<String>| match env(variable) {
            Some(value) if !value.trim().is_empty() => Some(value.trim().to_owned()),
            _ => {
                problems.push(format!(
                    "alerts.{key}: the environment variable {variable} is not set"
                ));
                None
            }
        };

        let token = self
            .webhook_token_env
            .as_deref()
            .and_then(|variable| secret("webhook_token_env", variable, &mut problems));
        match &self.webhook_url {
            Some(url) => {
                if let Some(url) = checked_url("webhook_url", url, &mut problems) {
                    targets.push(WebhookTarget::Json {
                        url,
                        bearer_token: token,
                    });
                }
            }
            None if self.webhook_token_env.is_some() => problems
                .push("alerts.webhook_token_env: is set but alerts.webhook_url is not".to_owned()),
            None => {}
        }

        let slack_url = match (&self.slack_webhook_url, &self.slack_webhook_url_env) {
            (Some(_), Some(_)) => {
                problems.push(
                    "alerts.slack_webhook_url and alerts.slack_webhook_url_env: set one, not both"
                        .to_owned(),
                );
                None
            }
            (Some(url), None) => Some(("slack_webhook_url", url.clone())),
            (None, Some(variable)) => secret("slack_webhook_url_env", variable, &mut problems)
                .map(|url| ("slack_webhook_url_env", url)),
            (None, None) => None,
        };
        if let Some((key, url)) = slack_url {
            if let Some(url) = checked_url(key, &url, &mut problems) {
                targets.push(WebhookTarget::SlackWebhook { url });
            }
        }

        match (&self.slack_bot_token_env, &self.slack_channel) {
            (Some(variable), Some(channel)) => {
                let token = secret("slack_bot_token_env", variable, &mut problems);
                let api_url = checked_url("slack_api_url", &self.slack_api_url, &mut problems);
                if channel.trim().is_empty() {
                    problems.push("alerts.slack_channel: is empty".to_owned());
                } else if let (Some(token), Some(api_url)) = (token, api_url) {
                    targets.push(WebhookTarget::SlackApi {
                        api_url: api_url.trim_end_matches('/').to_owned(),
                        token,
                        channel: channel.trim().to_owned(),
                    });
                }
            }
            (Some(_), None) => problems.push(
                "alerts.slack_bot_token_env: needs alerts.slack_channel (where to post)".to_owned(),
            ),
            (None, Some(_)) => problems.push(
                "alerts.slack_channel: needs alerts.slack_bot_token_env (an incoming webhook \
                 always posts to the channel it was created for)"
                    .to_owned(),
            ),
            (None, None) => {}
        }

        if self.queue_capacity == 0 {
            problems.push("alerts.queue_capacity: must be at least 1".to_owned());
        }
        if self.max_attempts == 0 {
            problems.push("alerts.max_attempts: must be at least 1".to_owned());
        }
        if self.timeout_ms == 0 {
            problems.push("alerts.timeout_ms: must be at least 1".to_owned());
        }
        if problems.is_empty() {
            Ok(targets)
        } else {
            Err(Error::InvalidAlerts { problems })
        }
    }

    /// How alerts are queued and retried.
    pub fn delivery(&self) -> DeliveryOptions {
        DeliveryOptions {
            queue_capacity: self.queue_capacity.max(1),
            max_attempts: self.max_attempts.max(1),
            initial_backoff: Duration::from_millis(self.initial_backoff_ms),
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
        }
    }

    /// Starts one [`WebhookAlerts`] per configured destination (none when nothing is
    /// configured). `cluster` names this cluster in every alert. Call inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// [`Error::InvalidAlerts`].
    pub fn start(&self, env: Env<'_>, cluster: Option<&str>) -> Result<Vec<Arc<WebhookAlerts>>> {
        let delivery = self.delivery();
        self.targets(env)?
            .into_iter()
            .map(|target| WebhookAlerts::start(target, delivery, cluster.map(str::to_owned)))
            .collect()
    }
}

fn checked_url(key: &str, url: &str, problems: &mut Vec<String>) -> Option<String> {
    match reqwest::Url::parse(url.trim()) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
            Some(url.trim().to_owned())
        }
        Ok(_) => {
            problems.push(format!("alerts.{key}: must be an http:// or https:// URL"));
            None
        }
        Err(error) => {
            problems.push(format!("alerts.{key}: not a URL ({error})"));
            None
        }
    }
}

/// Where a [`WebhookAlerts`] sends.
#[derive(Clone, PartialEq, Eq)]
pub enum WebhookTarget {
    /// Any HTTP endpoint: each alert POSTed as JSON:
    /// `{"source": "deckhand", "cluster", "reason", "user", "message", "raised_at"}`.
    Json {
        /// The endpoint.
        url: String,
        /// Sent as `Authorization: Bearer …` when set.
        bearer_token: Option<String>,
    },
    /// A Slack incoming webhook: `{"text": "…"}`.
    SlackWebhook {
        /// The webhook URL (`https://hooks.slack.com/services/…`).
        url: String,
    },
    /// Slack's `chat.postMessage` with a bot token: `{"channel", "text"}`.
    SlackApi {
        /// The Web API base URL ([`SLACK_API_URL`]).
        api_url: String,
        /// The bot token.
        token: String,
        /// The channel.
        channel: String,
    },
}

impl std::fmt::Debug for WebhookTarget {
    /// Never shows a token or a webhook URL (both are credentials).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json { url, bearer_token } => f
                .debug_struct("Json")
                .field("url", url)
                .field("bearer_token", &bearer_token.as_ref().map(|_| "<redacted>"))
                .finish(),
            Self::SlackWebhook { .. } => f
                .debug_struct("SlackWebhook")
                .field("url", &"<redacted>")
                .finish(),
            Self::SlackApi {
                api_url, channel, ..
            } => f
                .debug_struct("SlackApi")
                .field("api_url", api_url)
                .field("channel", channel)
                .finish_non_exhaustive(),
        }
    }
}

impl WebhookTarget {
    /// A short name for logs: `webhook`, `slack-webhook`, `slack`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Json { .. } => "webhook",
            Self::SlackWebhook { .. } => "slack-webhook",
            Self::SlackApi { .. } => "slack",
        }
    }
}

/// How a [`WebhookAlerts`] queues and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryOptions {
    /// Alerts waiting before new ones are dropped.
    pub queue_capacity: usize,
    /// Tries per alert.
    pub max_attempts: u32,
    /// The wait before the first retry (doubling, at most [`MAX_BACKOFF`]).
    pub initial_backoff: Duration,
    /// How long one request may take.
    pub timeout: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// What happened to a sink's alerts so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AlertStats {
    /// Alerts raised to this sink.
    pub raised: u64,
    /// Delivered.
    pub sent: u64,
    /// Given up after the last try, or refused for good by the receiver.
    pub failed: u64,
    /// Never sent: the queue was full, the sink was closed, or shutdown cut them off.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    raised: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Queued or being sent.
    pending: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> AlertStats {
        AlertStats {
            raised: self.raised.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// One alert as queued: the alert and when it was raised.
struct Queued {
    alert: Alert,
    raised_at: chrono::DateTime<Utc>,
}

/// Alerts to a webhook or Slack, sent by a background task from a bounded queue.
pub struct WebhookAlerts {
    label: &'static str,
    queue: Mutex<Option<mpsc::Sender<Queued>>>,
    counters: Arc<Counters>,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for WebhookAlerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookAlerts")
            .field("target", &self.label)
            .field("stats", &self.stats())
            .finish()
    }
}

impl WebhookAlerts {
    /// Starts the sender for `target`. `cluster` names this cluster in every alert.
    ///
    /// # Errors
    /// [`Error::InvalidAlerts`] outside a tokio runtime, or when no HTTP client can be
    /// made.
    pub fn start(
        target: WebhookTarget,
        options: DeliveryOptions,
        cluster: Option<String>,
    ) -> Result<Arc<Self>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::InvalidAlerts {
            problems: vec!["alert senders must start inside a tokio runtime".to_owned()],
        })?;
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .user_agent(concat!("deckhand/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| Error::InvalidAlerts {
                problems: vec![format!("cannot make an HTTP client: {error}")],
            })?;
        let (sender, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let label = target.label();
        let delivery = Delivery {
            http,
            target,
            options,
            cluster,
            counters: counters.clone(),
        };
        let span = tracing::info_span!("alerts", target = label);
        let worker = runtime.spawn(tracing::Instrument::instrument(
            delivery.run(receiver),
            span,
        ));
        Ok(Arc::new(Self {
            label,
            queue: Mutex::new(Some(sender)),
            counters,
            worker: Mutex::new(Some(worker)),
        }))
    }

    /// What happened to the alerts so far.
    pub fn stats(&self) -> AlertStats {
        self.counters.snapshot()
    }

    /// Stops taking alerts, sends what is queued for at most `grace`, then stops; alerts
    /// still unsent then are counted as dropped. Returns the final counts.
    pub async fn close(&self, grace: Duration) -> AlertStats {
        // Dropping the sender ends the worker once the queue is empty.
        drop(lock(&self.queue).take());
        let worker = lock(&self.worker).take();
        if let Some(mut worker) = worker {
            if tokio::time::timeout(grace, &mut worker).await.is_err() {
                worker.abort();
                let unsent = self.counters.pending.swap(0, Ordering::Relaxed);
                self.counters.dropped.fetch_add(unsent, Ordering::Relaxed);
                tracing::warn!(
                    target = self.label,
                    unsent,
                    "alerts still unsent at shutdown were dropped"
                );
            }
        }
        self.stats()
    }

    fn drop_alert(&self, why: &str) {
        let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // The first drop, then every hundredth: a flood must not flood the log too.
        if dropped == 1 || dropped % 100 == 0 {
            tracing::warn!(target = self.label, dropped, "alert dropped: {why}");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AlertSink for WebhookAlerts {
    /// Queues the alert and returns at once; a full queue drops it (counted, logged).
    fn raise(&self, alert: &Alert) {
        self.counters.raised.fetch_add(1, Ordering::Relaxed);
        let queued = Queued {
            alert: alert.clone(),
            raised_at: Utc::now(),
        };
        let result = match lock(&self.queue).as_ref() {
            Some(queue) => {
                // Counted before it is queued, so the worker never finishes it first.
                self.counters.pending.fetch_add(1, Ordering::Relaxed);
                queue.try_send(queued).map_err(|error| {
                    self.counters.pending.fetch_sub(1, Ordering::Relaxed);
                    match error {
                        mpsc::error::TrySendError::Full(_) => "the queue is full",
                        mpsc::error::TrySendError::Closed(_) => "the sender stopped",
                    }
                })
            }
            None => Err("the sink is closed"),
        };
        if let Err(why) = result {
            self.drop_alert(why);
        }
    }
}

/// The background side: sends queued alerts one by one.
struct Delivery {
    http: reqwest::Client,
    target: WebhookTarget,
    options: DeliveryOptions,
    cluster: Option<String>,
    counters: Arc<Counters>,
}

/// Why one try failed.
enum TryFailed {
    /// Worth trying again (after the server's `Retry-After`, when it gave one).
    Retry {
        message: String,
        after: Option<Duration>,
    },
    /// The receiver refused the alert for good (bad URL, bad token, unknown channel).
    Permanent(String),
}

impl Delivery {
    async fn run(self, mut queue: mpsc::Receiver<Queued>) {
        while let Some(queued) = queue.recv().await {
            self.deliver(&queued).await;
            self.counters.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    async fn deliver(&self, queued: &Queued) {
        let mut backoff = self.options.initial_backoff;
        for attempt in 1..=self.options.max_attempts {
            match self.send(queued).await {
                Ok(()) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(TryFailed::Permanent(message)) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(reason = %queued.alert.reason, attempt, %message, "alert refused; not retried");
                    return;
                }
                Err(TryFailed::Retry { message, after }) => {
                    if attempt == self.options.max_attempts {
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(reason = %queued.alert.reason, attempt, %message, "alert not delivered; giving up");
                        return;
                    }
                    let wait = after.unwrap_or(backoff).min(MAX_BACKOFF);
                    tracing::debug!(attempt, %message, ?wait, "alert not delivered; retrying");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One try.
    async fn send(&self, queued: &Queued) -> std::result::Result<(), TryFailed> {
        let request = match &self.target {
            WebhookTarget::Json { url, bearer_token } => {
                let request = self.http.post(url).json(&webhook_payload(
                    &queued.alert,
                    self.cluster.as_deref(),
                    queued.raised_at,
                ));
                match bearer_token {
                    Some(token) => request.bearer_auth(token),
                    None => request,
                }
            }
            WebhookTarget::SlackWebhook { url } => self.http.post(url).json(&json!({
                "text": slack_text(&queued.alert, self.cluster.as_deref()),
            })),
            WebhookTarget::SlackApi {
                api_url,
                token,
                channel,
            } => {
                let body = json!({
                    "channel": channel,
                    "text": slack_text(&queued.alert, self.cluster.as_deref()),
                });
                // Slack asks for the charset on JSON bodies (else a `missing_charset`
                // warning); reqwest's `json()` sends none.
                self.http
                    .post(format!("{api_url}/chat.postMessage"))
                    .bearer_auth(token)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/json; charset=utf-8",
                    )
                    .body(body.to_string())
            }
        };
        let response = request.send().await.map_err(|error| TryFailed::Retry {
            // Without the URL: a Slack webhook URL is a credential.
            message: error.without_url().to_string(),
            after: None,
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.unwrap_or_default();
        let said = |body: &str| body.chars().take(200).collect::<String>();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            return Err(TryFailed::Retry {
                message: format!("HTTP {status}: {}", said(&body)),
                after: retry_after,
            });
        }
        if !status.is_success() {
            return Err(TryFailed::Permanent(format!(
                "HTTP {status}: {}",
                said(&body)
            )));
        }
        if let WebhookTarget::SlackApi { .. } = self.target {
            // The Web API answers 200 with `ok: false` for most failures.
            let answer: Value = serde_json::from_str(&body).map_err(|_| TryFailed::Retry {
                message: format!("the answer is not JSON: {}", said(&body)),
                after: None,
            })?;
            if answer.get("ok").and_then(Value::as_bool) != Some(true) {
                let error = answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("ok is not true")
                    .to_owned();
                return Err(match error.as_str() {
                    "ratelimited"
                    | "internal_error"
                    | "fatal_error"
                    | "service_unavailable"
                    | "request_timeout" => TryFailed::Retry {
                        message: format!("chat.postMessage: {error}"),
                        after: retry_after,
                    },
                    _ => TryFailed::Permanent(format!("chat.postMessage: {error}")),
                });
            }
        }
        Ok(())
    }
}

/// The JSON a [`WebhookTarget::Json`] endpoint receives.
pub fn webhook_payload(
    alert: &Alert,
    cluster: Option<&str>,
    raised_at: chrono::DateTime<Utc>,
) -> Value {
    json!({
        "source": "deckhand",
        "cluster": cluster,
        "reason": alert.reason,
        "user": alert.user,
        "message": alert.message,
        "raised_at": raised_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    })
}

/// The text Slack shows for an alert (mrkdwn, with `&`, `<` and `>` escaped as Slack
/// requires).
pub fn slack_text(alert: &Alert, cluster: Option<&str>) -> String {
    let on = cluster
        .map(|cluster| format!(" on {}", slack_escape(cluster)))
        .unwrap_or_default();
    format!(
        ":rotating_light: *deckhand alert{on}: {}*\n{}: {}",
        slack_escape(&alert.reason),
        slack_escape(&alert.user),
        slack_escape(&alert.message)
    )
}

/// Escapes the three characters Slack's message formatting reserves.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Alerts to several sinks at once (Kubernetes Events, a webhook, Slack).
#[derive(Clone, Default)]
pub struct FanoutAlerts {
    sinks: Vec<Arc<dyn AlertSink>>,
}

impl std::fmt::Debug for FanoutAlerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutAlerts")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl FanoutAlerts {
    /// Alerts to every one of `sinks`, in order.
    pub fn new(sinks: impl IntoIterator<Item = Arc<dyn AlertSink>>) -> Self {
        Self {
            sinks: sinks.into_iter().collect(),
        }
    }

    /// The same fan-out with one more sink.
    #[must_use]
    pub fn with(mut self, sink: Arc<dyn AlertSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// How many sinks alerts go to.
    pub fn len(&self) -> usize {
        self.sinks.len()
    }

    /// Whether alerts go nowhere.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }
}

impl AlertSink for FanoutAlerts {
    fn raise(&self, alert: &Alert) {
        for sink in &self.sinks {
            sink.raise(alert);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            vars.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        }
    }

    #[test]
    fn the_config_fills_in_defaults_and_rejects_unknown_keys() {
        let config: AlertsConfig = from_json(
            r#"{"webhook_url": "https://alerts.example.com/in", "slack_webhook_url_env": "HOOK",
                "slack_bot_token_env": "BOT", "slack_channel": "C0123", "max_attempts": 3}"#,
        )
        .expect("valid");
        assert_eq!(config.max_attempts, 3);
        assert_eq!(
            config.queue_capacity, DEFAULT_QUEUE_CAPACITY,
            "defaults fill in"
        );
        let targets = config
            .targets(&env(&[
                ("HOOK", "https://hooks.slack.com/services/T/B/x"),
                ("BOT", "xoxb-1"),
            ]))
            .expect("targets");
        assert_eq!(
            targets.iter().map(WebhookTarget::label).collect::<Vec<_>>(),
            vec!["webhook", "slack-webhook", "slack"]
        );
        let debug = format!("{targets:?}");
        assert!(
            !debug.contains("xoxb-1") && !debug.contains("hooks.slack.com"),
            "{debug}"
        );
        let error = from_json(r#"{"webhook_uri": "https://x"}"#).expect_err("typo");
        assert!(error.contains("webhook_uri"), "{error}");
        assert!(AlertsConfig::default()
            .targets(&env(&[]))
            .expect("nothing configured")
            .is_empty());
    }

    fn from_json(json: &str) -> std::result::Result<AlertsConfig, String> {
        serde_json::from_str(json).map_err(|error| error.to_string())
    }

    #[test]
    fn every_problem_is_reported_naming_its_key() {
        let config = AlertsConfig {
            webhook_url: Some("ftp://alerts.example.com".into()),
            slack_webhook_url: Some("https://hooks.slack.com/services/x".into()),
            slack_webhook_url_env: Some("HOOK".into()),
            slack_bot_token_env: Some("MISSING".into()),
            slack_channel: Some("C1".into()),
            queue_capacity: 0,
            ..AlertsConfig::default()
        };
        let Err(Error::InvalidAlerts { problems }) = config.targets(&env(&[])) else {
            panic!("invalid");
        };
        let text = problems.join("\n");
        for expected in [
            "alerts.webhook_url: must be an http:// or https:// URL",
            "set one, not both",
            "alerts.slack_bot_token_env: the environment variable MISSING is not set",
            "alerts.queue_capacity",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
        let channel_only = AlertsConfig {
            slack_channel: Some("C1".into()),
            ..AlertsConfig::default()
        };
        let error = channel_only.targets(&env(&[])).expect_err("no token");
        assert!(error.to_string().contains("slack_bot_token_env"), "{error}");
    }

    #[test]
    fn slack_text_escapes_what_slack_reserves() {
        let alert = Alert {
            reason: "policy_denied".into(),
            user: "<alice>".into(),
            message: "delete a & b".into(),
        };
        assert_eq!(
            slack_text(&alert, Some("prod")),
            ":rotating_light: *deckhand alert on prod: policy_denied*\n&lt;alice&gt;: delete a &amp; b"
        );
    }

    #[derive(Default)]
    struct Counting(AtomicU64);

    impl AlertSink for Counting {
        fn raise(&self, _alert: &Alert) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn fanout_raises_to_every_sink() {
        let (a, b) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
        let fanout = FanoutAlerts::new([a.clone() as Arc<dyn AlertSink>]).with(b.clone());
        assert_eq!(fanout.len(), 2);
        fanout.raise(&Alert {
            reason: "access_denied".into(),
            user: "bob".into(),
            message: "x".into(),
        });
        assert_eq!(
            (a.0.load(Ordering::Relaxed), b.0.load(Ordering::Relaxed)),
            (1, 1)
        );
    }

    #[test]
    fn raising_outside_a_runtime_is_refused_clearly() {
        let error = WebhookAlerts::start(
            WebhookTarget::SlackWebhook {
                url: "http://127.0.0.1:9/".into(),
            },
            DeliveryOptions::default(),
            None,
        )
        .expect_err("no runtime");
        assert!(error.to_string().contains("tokio runtime"), "{error}");
    }
}
