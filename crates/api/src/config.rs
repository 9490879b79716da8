//! The API's configuration: the `[api]` table of `deckhand.toml`. Unknown keys are
//! errors, so a typo never silently turns a protection off.

use crate::model::Scope;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default request body limit: plans and messages are small; a megabyte is generous.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Everything the API can be configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Serve `/metrics` without a token (Prometheus scrapes it inside the cluster);
    /// `false` requires a viewer token.
    pub metrics_public: bool,
    /// Origins allowed to call the API from a browser (CORS). Empty: none, the command
    /// center is served from the same origin and needs no CORS.
    pub cors_allowed_origins: Vec<String>,
    /// Per-caller rate limit.
    pub rate_limit: RateLimitConfig,
    /// WebSocket streams.
    pub websocket: WebSocketConfig,
    /// OIDC JWT validation, besides API tokens.
    pub oidc: Option<OidcConfig>,
    /// The Slack bot (routes answer 404 without it).
    pub slack: Option<SlackConfig>,
    /// Alertmanager's webhook (the route answers 404 without it).
    pub alertmanager: Option<AlertmanagerConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            metrics_public: true,
            cors_allowed_origins: Vec::new(),
            rate_limit: RateLimitConfig::default(),
            websocket: WebSocketConfig::default(),
            oidc: None,
            slack: None,
            alertmanager: None,
        }
    }
}

/// A token bucket per caller (per API token, per OIDC subject).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per second refilled; 0 turns the limit off.
    pub per_second: f64,
    /// Requests that may come at once.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 10.0,
            burst: 50,
        }
    }
}

/// How WebSocket streams treat their clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketConfig {
    /// Events buffered per connection before a client that does not keep up is closed
    /// (close code 1013; it reconnects with `?after=` and loses nothing).
    pub buffer: usize,
    /// Seconds between pings; a client that answers none of two is closed.
    pub ping_interval_secs: u64,
    /// Seconds one frame may take to send before the client counts as stuck.
    pub send_timeout_secs: u64,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            buffer: 1024,
            ping_interval_secs: 20,
            send_timeout_secs: 10,
        }
    }
}

/// Validation of OIDC JWTs (RS256 or ES256) against the provider's JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Where the provider publishes its keys (`https://issuer/.well-known/jwks.json`).
    pub jwks_url: String,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (deckhand's client id).
    pub audience: String,
    /// The claim that names the person (impersonated on the cluster).
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The claim that lists the person's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Groups whose members are admins.
    #[serde(default)]
    pub admin_groups: Vec<String>,
    /// Groups whose members are operators.
    #[serde(default)]
    pub operator_groups: Vec<String>,
    /// Groups whose members are viewers.
    #[serde(default)]
    pub viewer_groups: Vec<String>,
    /// The scope of a valid token in none of those groups (none: 403).
    #[serde(default)]
    pub default_scope: Option<Scope>,
    /// How long fetched keys are used before they are fetched again, in seconds.
    #[serde(default = "default_jwks_cache_secs")]
    pub jwks_cache_secs: u64,
}

fn default_subject_claim() -> String {
    "sub".to_owned()
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

fn default_jwks_cache_secs() -> u64 {
    300
}

/// The Slack app.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The app's signing secret: every request from Slack is verified with it.
    pub signing_secret: String,
    /// The bot token (`xoxb-...`) for the Web API.
    pub bot_token: String,
    /// The Web API's base URL.
    #[serde(default = "default_slack_api")]
    pub api_base_url: String,
    /// Slack user id (`U0123`) → the cluster identity deckhand acts as for them.
    /// Users not listed are refused.
    #[serde(default)]
    pub users: BTreeMap<String, SlackUser>,
    /// The channel (an id, `C0123`) where threads deckhand starts on its own (scheduled
    /// tasks, alert triage) are announced; their plans, results and buttons follow in
    /// that message's Slack thread. Unset: they are only in the GUI and the API.
    #[serde(default)]
    pub notify_channel: Option<String>,
}

fn default_slack_api() -> String {
    "https://slack.com/api".to_owned()
}

impl std::fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs.
        f.debug_struct("SlackConfig")
            .field("signing_secret", &"<redacted>")
            .field("bot_token", &"<redacted>")
            .field("api_base_url", &self.api_base_url)
            .field("users", &self.users)
            .field("notify_channel", &self.notify_channel)
            .finish()
    }
}

/// The cluster identity of one Slack user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackUser {
    /// The user name impersonated on the cluster.
    pub subject: String,
    /// Its groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// What they may do from Slack.
    #[serde(default = "default_slack_scope")]
    pub scope: Scope,
}

fn default_slack_scope() -> Scope {
    Scope::Operator
}

/// Alertmanager's webhook receiver.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// The bearer token Alertmanager sends (`http_config.authorization.credentials`).
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Basic auth Alertmanager sends (`http_config.basic_auth`).
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// The identity triage threads are opened as.
    #[serde(default = "default_alert_subject")]
    pub subject: String,
    /// Its groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_alert_subject() -> String {
    "alertmanager".to_owned()
}

impl std::fmt::Debug for AlertmanagerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertmanagerConfig")
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("basic_auth", &self.basic_auth.as_ref().map(|b| &b.username))
            .field("subject", &self.subject)
            .field("groups", &self.groups)
            .finish()
    }
}

/// A user name and password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}
