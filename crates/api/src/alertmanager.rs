//! `POST /hooks/alertmanager`: Alertmanager's webhook (payload version 4). Each POST is
//! one alert group; the first one of a group opens an SRE triage thread through
//! [`Deckhand::triage_alerts`](crate::Deckhand::triage_alerts), later ones of the same
//! group (same `groupKey`: re-notifications, resolution) are added to that thread as a
//! message. The hook takes the bearer token or basic credentials configured in
//! `[api.alertmanager]`, not API tokens.

use crate::auth::secrets_match;
use crate::config::AlertmanagerConfig;
use crate::error::{Error, Result};
use crate::model::{AuthSource, Identity, NewMessage, Scope};
use crate::ApiState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use chrono::{DateTime, Utc};
use deckhand_runtime::ThreadId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use utoipa::ToSchema;

/// The webhook payload version this receiver understands.
pub const PAYLOAD_VERSION: &str = "4";

/// One notification from Alertmanager: an alert group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertGroup {
    /// The payload version (`4`).
    pub version: String,
    /// Identifies the group (used to continue its thread).
    pub group_key: String,
    /// Alerts left out because of `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// `firing` or `resolved`.
    pub status: String,
    /// The receiver's name.
    pub receiver: String,
    /// The labels the group is grouped by.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert has.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert has.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Alertmanager's URL.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
}

/// One alert of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Its labels (`alertname`, `namespace`, `pod`, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its annotations (`summary`, `description`, `runbook_url`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing.
    pub starts_at: DateTime<Utc>,
    /// When it resolved (`0001-01-01T00:00:00Z` while firing).
    pub ends_at: DateTime<Utc>,
    /// The URL of the expression that fired.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Identifies the alert.
    #[serde(default)]
    pub fingerprint: String,
}

impl AlertGroup {
    /// The thread-link key of the group.
    pub fn link_key(&self) -> String {
        format!("alertmanager:{}", self.group_key)
    }

    /// A summary for a person: status, count, the alerts with their pods and summaries.
    pub fn summary(&self) -> String {
        let name = self
            .common_labels
            .get("alertname")
            .or_else(|| self.group_labels.get("alertname"))
            .map_or("alerts", String::as_str);
        let mut text = format!(
            "[{}:{}] {name}",
            self.status.to_uppercase(),
            self.alerts.len() as u64 + self.truncated_alerts
        );
        for alert in &self.alerts {
            let place: Vec<String> = ["namespace", "pod", "deployment", "container", "node"]
                .iter()
                .filter_map(|key| alert.labels.get(*key).map(|value| format!("{key}={value}")))
                .collect();
            let what = alert
                .annotations
                .get("summary")
                .or_else(|| alert.annotations.get("description"))
                .map_or("", String::as_str);
            let _ = write!(
                text,
                "\n- {} {} {}: {what}",
                alert.status,
                alert.labels.get("alertname").map_or(name, String::as_str),
                place.join(" ")
            );
        }
        if self.truncated_alerts > 0 {
            let _ = write!(text, "\n- and {} more", self.truncated_alerts);
        }
        text
    }
}

/// What the hook answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HookAnswer {
    /// The triage thread.
    #[schema(value_type = String, format = Uuid)]
    pub thread_id: ThreadId,
    /// Whether the thread was opened by this notification.
    pub created: bool,
}

/// The `/hooks/` routes.
pub fn router() -> Router<ApiState> {
    Router::new().route("/hooks/alertmanager", post(receive))
}

fn check_credentials(config: &AlertmanagerConfig, headers: &HeaderMap) -> Result<()> {
    if config.bearer_token.is_none() && config.basic_auth.is_none() {
        return Ok(());
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .ok_or_else(|| Error::Unauthenticated {
            reason: "the Alertmanager hook needs its configured credentials".to_owned(),
        })?;
    let accepted = match presented {
        (scheme, token) if scheme.eq_ignore_ascii_case("bearer") => config
            .bearer_token
            .as_ref()
            .is_some_and(|expected| secrets_match(token.trim().as_bytes(), expected.as_bytes())),
        (scheme, encoded) if scheme.eq_ignore_ascii_case("basic") => {
            config.basic_auth.as_ref().is_some_and(|expected| {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .unwrap_or_default();
                let wanted = format!("{}:{}", expected.username, expected.password);
                secrets_match(&decoded, wanted.as_bytes())
            })
        }
        _ => false,
    };
    if accepted {
        Ok(())
    } else {
        Err(Error::Unauthenticated {
            reason: "wrong credentials for the Alertmanager hook".to_owned(),
        })
    }
}

/// Receives one Alertmanager notification (an alert group).
#[utoipa::path(post, path = "/hooks/alertmanager", tag = "hooks", request_body = AlertGroup,
    responses((status = 201, body = HookAnswer, description = "a triage thread was opened"),
        (status = 200, body = HookAnswer, description = "added to the group's thread"),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody, description = "the hook is not configured")),
    security((), ("bearer" = []), ("basic" = [])))]
pub async fn receive(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<HookAnswer>)> {
    let config = state
        .config()
        .alertmanager
        .clone()
        .ok_or_else(|| Error::NotFound {
            what: "route",
            id: "/hooks/alertmanager (not configured)".to_owned(),
        })?;
    if let Err(error) = check_credentials(&config, &headers) {
        state.metrics().inbound("alertmanager", "unauthenticated");
        return Err(error);
    }
    // Credentials first: strangers learn nothing from how their body is parsed.
    let group: AlertGroup = serde_json::from_slice(&body).map_err(|error| {
        state.metrics().inbound("alertmanager", "invalid");
        Error::invalid(format!("not an Alertmanager webhook payload: {error}"))
    })?;
    if group.version != PAYLOAD_VERSION {
        state.metrics().inbound("alertmanager", "invalid");
        return Err(Error::invalid(format!(
            "payload version {:?}; this receiver reads version {PAYLOAD_VERSION}",
            group.version
        )));
    }
    let who = Identity {
        subject: config.subject.clone(),
        groups: config.groups.clone(),
        scope: Scope::Operator,
        source: AuthSource::Alertmanager,
    };
    let service = state.service();
    let key = group.link_key();
    if let Some(thread) = service.linked_thread(&key).await? {
        let message = NewMessage {
            text: group.summary(),
        };
        match service.post_message(&who, thread, message).await {
            Ok(_) => {
                state.metrics().inbound("alertmanager", "continued");
                return Ok((
                    StatusCode::OK,
                    Json(HookAnswer {
                        thread_id: thread,
                        created: false,
                    }),
                ));
            }
            // The old thread is closed (resolved and rated): the group firing again is a
            // new incident.
            Err(Error::Conflict { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    let summary = group.summary();
    let detail = service.triage_alerts(&who, group).await?;
    service.link_thread(&key, detail.thread.id).await?;
    // The triage goes to Slack too, when a channel is configured; the hook still
    // answers if Slack does not.
    if let Err(error) = crate::slack::announce(
        &state,
        who.clone(),
        detail.thread.id,
        &format!(":rotating_light: Alert triage: {summary}"),
    )
    .await
    {
        tracing::warn!(%error, thread = %detail.thread.id, "the alert triage was not announced in Slack");
    }
    state.metrics().inbound("alertmanager", "opened");
    Ok((
        StatusCode::CREATED,
        Json(HookAnswer {
            thread_id: detail.thread.id,
            created: true,
        }),
    ))
}
