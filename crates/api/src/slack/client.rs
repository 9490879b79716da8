//! A client of Slack's Web API: `chat.postMessage`, `chat.update`, `views.open`. JSON
//! bodies with `Authorization: Bearer xoxb-...`; Slack answers HTTP 200 with
//! `{"ok": false, "error": "..."}` for most failures, which become [`Error::Slack`].

use crate::error::{Error, Result};
use serde_json::{json, Value};

/// A Web API client.
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl std::fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl SlackClient {
    /// A client of the Web API at `base_url` (`https://slack.com/api`) with a bot token.
    pub fn new(http: reqwest::Client, base_url: &str, token: &str) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// Calls a Web API method with a JSON body; Slack's answer when `ok` is true.
    ///
    /// # Errors
    /// [`Error::Slack`] with Slack's error code, the HTTP status, or the transport error.
    pub async fn call(&self, method: &'static str, body: &Value) -> Result<Value> {
        let failed = |error: String| Error::Slack { method, error };
        let response = self
            .http
            .post(format!("{}/{method}", self.base_url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|error| failed(error.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("?")
                .to_owned();
            return Err(failed(format!("ratelimited; retry after {wait} s")));
        }
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}")));
        }
        let answer: Value = response
            .json()
            .await
            .map_err(|error| failed(format!("answer is not JSON: {error}")))?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(answer)
        } else {
            Err(failed(
                answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("ok is not true")
                    .to_owned(),
            ))
        }
    }

    /// Posts a message (in a thread when `thread_ts` is given); returns its `ts`.
    ///
    /// # Errors
    /// As [`SlackClient::call`].
    pub async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        blocks: Option<Value>,
    ) -> Result<String> {
        let mut body = json!({ "channel": channel, "text": text });
        if let Some(thread_ts) = thread_ts {
            body["thread_ts"] = json!(thread_ts);
        }
        if let Some(blocks) = blocks {
            body["blocks"] = blocks;
        }
        let answer = self.call("chat.postMessage", &body).await?;
        answer
            .get("ts")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(Error::Slack {
                method: "chat.postMessage",
                error: "the answer has no ts".to_owned(),
            })
    }

    /// Replaces a message's text and blocks.
    ///
    /// # Errors
    /// As [`SlackClient::call`].
    pub async fn update(&self, channel: &str, ts: &str, text: &str, blocks: Value) -> Result<()> {
        let body = json!({ "channel": channel, "ts": ts, "text": text, "blocks": blocks });
        self.call("chat.update", &body).await.map(|_| ())
    }

    /// Opens a modal for the user who triggered `trigger_id`.
    ///
    /// # Errors
    /// As [`SlackClient::call`].
    pub async fn open_view(&self, trigger_id: &str, view: Value) -> Result<()> {
        let body = json!({ "trigger_id": trigger_id, "view": view });
        self.call("views.open", &body).await.map(|_| ())
    }
}
