//! What every HTTP provider shares: sending a request and turning HTTP failures into
//! classified [`Error`]s, and reading a response body line by line or as server-sent
//! events.

use crate::error::{Error, Result, TimeoutPhase};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response, StatusCode};
use std::time::{Duration, SystemTime};

/// The most of an error body quoted in an error message.
const MAX_ERROR_BODY: usize = 600;

/// The longest line accepted from a stream: a model's single event is far smaller, and a
/// server that never sends a newline must not grow memory without bound.
const MAX_LINE: usize = 4 << 20;

/// A reqwest client with our connect timeout.
pub(crate) fn client(connect_timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|error| Error::Config {
            problems: vec![format!("cannot build the HTTP client: {error}")],
        })
}

/// Maps a transport error.
pub(crate) fn transport(backend: &str, error: reqwest::Error) -> Error {
    if error.is_timeout() {
        // reqwest's only deadline here is the connect timeout; the others are ours.
        Error::Timeout {
            backend: backend.to_owned(),
            phase: TimeoutPhase::Connect,
            after: Duration::ZERO,
        }
    } else if error.is_connect() || error.is_request() {
        Error::Connect {
            backend: backend.to_owned(),
            message: error_chain(&error),
            source: Some(error),
        }
    } else if error.is_decode() || error.is_body() {
        Error::BadResponse {
            backend: backend.to_owned(),
            message: format!("the response broke off: {}", error_chain(&error)),
        }
    } else {
        Error::Connect {
            backend: backend.to_owned(),
            message: error_chain(&error),
            source: Some(error),
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Sends `request`; a non-success status becomes a classified error.
pub(crate) async fn send(backend: &str, request: RequestBuilder) -> Result<Response> {
    let response = request
        .send()
        .await
        .map_err(|error| transport(backend, error))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    Err(classify(backend, status, &headers, &body))
}

/// Reads a whole JSON body.
pub(crate) async fn json(backend: &str, response: Response) -> Result<serde_json::Value> {
    let text = response
        .text()
        .await
        .map_err(|error| transport(backend, error))?;
    serde_json::from_str(&text).map_err(|error| Error::BadResponse {
        backend: backend.to_owned(),
        message: format!("the body is not JSON ({error}): {}", quote(&text)),
    })
}

/// Turns an HTTP failure into an error the router can act on.
pub(crate) fn classify(
    backend: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> Error {
    let backend = backend.to_owned();
    let message = error_message(body);
    let lower = message.to_lowercase();
    let code = status.as_u16();
    if code == 429 {
        return Error::RateLimited {
            backend,
            retry_after: retry_after(headers, SystemTime::now()),
            message,
        };
    }
    if code == 401 || code == 403 {
        return Error::Auth { backend, message };
    }
    if code == 413 || mentions_context_length(&lower) {
        return Error::ContextTooLong {
            backend,
            model: String::new(),
            needed: 0,
            window: 0,
        };
    }
    if status.is_server_error() || code == 408 || code == 409 || code == 529 {
        return Error::Server {
            backend,
            status: code,
            message,
        };
    }
    Error::BadRequest {
        backend,
        status: code,
        message,
    }
}

/// Whether an error text says the prompt was too long, in the words the providers use.
pub(crate) fn mentions_context_length(lower: &str) -> bool {
    [
        "context_length_exceeded",
        "maximum context length",
        "context length",
        "prompt is too long",
        "too many tokens",
        "exceeds the context",
        "input token count",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// The human-readable message in an error body (`{"error":{"message":..}}`,
/// `{"error":".."}`, Anthropic's `{"type":"error","error":{..}}`), or the body itself.
pub(crate) fn error_message(body: &str) -> String {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body) {
        let error = value.get("error").unwrap_or(&value);
        if let Some(text) = error.as_str() {
            return quote(text);
        }
        let message = error.get("message").and_then(|m| m.as_str());
        let code = ["code", "type", "status"]
            .iter()
            .find_map(|key| error.get(*key).and_then(|c| c.as_str()));
        match (message, code) {
            (Some(message), Some(code)) => return quote(&format!("{message} ({code})")),
            (Some(message), None) => return quote(message),
            _ => {}
        }
    }
    quote(body)
}

/// `text`, cut to a length fit for an error message.
pub(crate) fn quote(text: &str) -> String {
    let text = text.trim();
    if text.len() <= MAX_ERROR_BODY {
        return text.to_owned();
    }
    let mut end = MAX_ERROR_BODY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// The wait a `Retry-After` (seconds or an HTTP date) or `retry-after-ms` header asks for.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A response body read line by line, without holding the whole body.
pub(crate) struct Lines {
    backend: String,
    response: Response,
    buffer: Vec<u8>,
    done: bool,
}

impl Lines {
    pub(crate) fn new(backend: &str, response: Response) -> Self {
        Self {
            backend: backend.to_owned(),
            response,
            buffer: Vec::new(),
            done: false,
        }
    }

    /// The next line without its line ending; `None` at the end of the body.
    pub(crate) async fn next_line(&mut self) -> Result<Option<String>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return self.decode(line).map(Some);
            }
            if self.done {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                let line = std::mem::take(&mut self.buffer);
                return self.decode(line).map(Some);
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => {
                    self.buffer.extend_from_slice(&chunk);
                    if self.buffer.len() > MAX_LINE {
                        return Err(Error::BadResponse {
                            backend: self.backend.clone(),
                            message: format!("a stream line is longer than {MAX_LINE} bytes"),
                        });
                    }
                }
                Ok(None) => self.done = true,
                Err(error) => {
                    return Err(Error::BadResponse {
                        backend: self.backend.clone(),
                        message: format!("the stream broke off: {}", error_chain(&error)),
                    })
                }
            }
        }
    }

    fn decode(&self, line: Vec<u8>) -> Result<String> {
        String::from_utf8(line).map_err(|_| Error::BadResponse {
            backend: self.backend.clone(),
            message: "the stream is not UTF-8".into(),
        })
    }
}

/// One server-sent event.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, when there is one.
    pub event: Option<String>,
    /// The `data:` lines, joined with newlines.
    pub data: String,
}

/// A response body read as server-sent events.
pub(crate) struct Sse {
    lines: Lines,
}

impl Sse {
    pub(crate) fn new(backend: &str, response: Response) -> Self {
        Self {
            lines: Lines::new(backend, response),
        }
    }

    /// The next event; `None` at the end of the body.
    pub(crate) async fn next_event(&mut self) -> Result<Option<SseEvent>> {
        let mut event = SseEvent::default();
        let mut has_data = false;
        loop {
            let Some(line) = self.lines.next_line().await? else {
                return Ok(has_data.then_some(event));
            };
            if line.is_empty() {
                if has_data {
                    return Ok(Some(event));
                }
                event = SseEvent::default();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_str(), ""),
            };
            match field {
                "event" => event.event = Some(value.to_owned()),
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                _ => {}
            }
        }
    }
}

/// Parses one streamed JSON document.
pub(crate) fn parse_chunk(backend: &str, data: &str) -> Result<serde_json::Value> {
    serde_json::from_str(data).map_err(|error| Error::BadResponse {
        backend: backend.to_owned(),
        message: format!("a stream event is not JSON ({error}): {}", quote(data)),
    })
}

/// A stream that ended before the backend said it was done.
pub(crate) fn truncated(backend: &str) -> Error {
    Error::BadResponse {
        backend: backend.to_owned(),
        message: "the stream ended before the answer was complete".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_dates_and_millis() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        headers.insert("retry-after", HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_millis(250)));
        headers.clear();
        headers.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn classification_by_status_and_body() {
        let h = HeaderMap::new();
        let e = classify(
            "b",
            StatusCode::BAD_REQUEST,
            &h,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(e.kind(), "context_too_long");
        let e = classify(
            "b",
            StatusCode::from_u16(529).unwrap(),
            &h,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(e.kind(), "server");
        assert!(e.to_string().contains("Overloaded (overloaded_error)"));
        let e = classify(
            "b",
            StatusCode::NOT_FOUND,
            &h,
            r#"{"error":"model \"x\" not found"}"#,
        );
        assert_eq!(e.kind(), "bad_request");
        assert!(e.to_string().contains("not found"));
        assert_eq!(
            classify("b", StatusCode::UNAUTHORIZED, &h, "").kind(),
            "auth"
        );
    }
}
