//! Pull requests on GitHub and merge requests on GitLab, over their REST APIs.
//!
//! GitHub: `POST /repos/{owner}/{repo}/pulls`; when one already exists for the branch
//! (422 "A pull request already exists"), the open one is found with
//! `GET /repos/{owner}/{repo}/pulls?head=owner:branch&state=open`. GitLab:
//! `POST /projects/:id/merge_requests`; on 409 the open one is found with
//! `GET /projects/:id/merge_requests?source_branch=…&target_branch=…&state=opened`.
//! The token travels only in a header and never appears in a log line or an error.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, USER_AGENT};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;
use uuid::Uuid;

use crate::config::ForgeConfig;
use crate::error::{Error, Result};
use crate::names::{branch_name, thread_folder};
use crate::record::one_line;
use crate::token::Token;

/// The GitHub REST API version requested.
pub const GITHUB_API_VERSION: &str = "2022-11-28";
/// The User-Agent sent (GitHub rejects requests without one).
pub const USER_AGENT_VALUE: &str = concat!("deckhand/", env!("CARGO_PKG_VERSION"));
/// A forge that has not answered in this long is treated as down.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error body is kept in an error message.
const MAX_MESSAGE: usize = 300;

/// The pull (merge) request to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestSpec {
    /// The title.
    pub title: String,
    /// The description (Markdown).
    pub body: String,
    /// The branch with the changes (`deckhand/thread-<id>`).
    pub head: String,
    /// The branch to merge into.
    pub base: String,
}

impl PullRequestSpec {
    /// The pull request for a thread rated 100: `title` is the thread's title,
    /// `summary` the resolution as people should read it in the review.
    pub fn for_thread(thread: Uuid, title: &str, summary: &str, base: &str) -> Self {
        let folder = thread_folder(thread);
        Self {
            title: format!("deckhand: {}", one_line(title)),
            body: format!(
                "{}\n\n---\nThread `{thread}` was rated 100 and closed. The request, the approved plan, the manifests, the prior state and the result are in `{folder}/`.\n\nOpened by deckhand for review; merging is up to you.\n",
                summary.trim()
            ),
            head: branch_name(thread),
            base: base.to_owned(),
        }
    }
}

/// A pull or merge request on the forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// GitHub's `number`, GitLab's `iid`: the number people see (`#12`, `!12`).
    pub number: u64,
    /// The page people open (`html_url` / `web_url`).
    pub url: String,
    /// False when it already existed and was found instead.
    pub created: bool,
}

/// A client for one repository's forge.
#[derive(Debug, Clone)]
pub struct ForgeClient {
    forge: ForgeConfig,
    token: Token,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct GithubPull {
    number: u64,
    html_url: String,
}

#[derive(Deserialize)]
struct GitlabMergeRequest {
    iid: u64,
    web_url: String,
}

impl ForgeClient {
    /// A client with deckhand's own HTTP client (rustls, timeouts, User-Agent).
    pub fn new(forge: ForgeConfig, token: Token) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT_VALUE)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|source| Error::Http {
                forge: describe(&forge),
                operation: "building the HTTP client".into(),
                source,
            })?;
        Ok(Self::with_http_client(forge, token, http))
    }

    /// A client on a given `reqwest::Client` (shared connection pool, proxy settings).
    pub fn with_http_client(forge: ForgeConfig, token: Token, http: reqwest::Client) -> Self {
        Self { forge, token, http }
    }

    /// The forge this client talks to.
    pub fn forge(&self) -> &ForgeConfig {
        &self.forge
    }

    /// Opens the pull (merge) request, or returns the open one for the same branch when
    /// the forge says it already exists.
    pub async fn open_pull_request(&self, spec: &PullRequestSpec) -> Result<PullRequest> {
        let span = tracing::info_span!("forge_pull_request", forge = self.forge.kind(), head = %spec.head, base = %spec.base);
        async {
            let result = match &self.forge {
                ForgeConfig::Github { owner, repo, .. } => self.github(owner, repo, spec).await,
                ForgeConfig::Gitlab { project, .. } => self.gitlab(project, spec).await,
            };
            match &result {
                Ok(pr) => tracing::info!(number = pr.number, url = %pr.url, created = pr.created, "pull request ready"),
                Err(e) => tracing::warn!(error = %e, "pull request failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn github(&self, owner: &str, repo: &str, spec: &PullRequestSpec) -> Result<PullRequest> {
        let url = format!(
            "{}/repos/{}/{}/pulls",
            self.forge.api_url(),
            encode_segment(owner),
            encode_segment(repo)
        );
        let body =
            json!({"title": spec.title, "head": spec.head, "base": spec.base, "body": spec.body});
        let operation = "creating the pull request";
        let response = self
            .send(self.request(Method::POST, &url).json(&body), operation)
            .await?;
        let status = response.status();
        if status == StatusCode::CREATED {
            let pull: GithubPull = self.read_json(response, operation).await?;
            return Ok(PullRequest {
                number: pull.number,
                url: pull.html_url,
                created: true,
            });
        }
        let headers = response.headers().clone();
        let text = self.read_text(response, operation).await?;
        if status == StatusCode::UNPROCESSABLE_ENTITY && github_says_exists(&text) {
            let operation = "finding the existing pull request";
            let head = format!("{owner}:{}", spec.head);
            let request = self.request(Method::GET, &url).query(&[
                ("head", head.as_str()),
                ("base", spec.base.as_str()),
                ("state", "open"),
            ]);
            let response = self.send(request, operation).await?;
            if response.status() != StatusCode::OK {
                let status = response.status();
                let headers = response.headers().clone();
                let text = self.read_text(response, operation).await?;
                return Err(self.failure(
                    status,
                    &headers,
                    &text,
                    operation,
                    &format!("{owner}/{repo}"),
                ));
            }
            let pulls: Vec<GithubPull> = self.read_json(response, operation).await?;
            return pulls
                .into_iter()
                .next()
                .map(|pull| PullRequest {
                    number: pull.number,
                    url: pull.html_url,
                    created: false,
                })
                .ok_or_else(|| Error::ExistingPullRequestNotFound {
                    forge: describe(&self.forge),
                    branch: spec.head.clone(),
                });
        }
        Err(self.failure(
            status,
            &headers,
            &text,
            operation,
            &format!("repository {owner}/{repo}"),
        ))
    }

    async fn gitlab(&self, project: &str, spec: &PullRequestSpec) -> Result<PullRequest> {
        let url = format!(
            "{}/projects/{}/merge_requests",
            self.forge.api_url(),
            encode_segment(project)
        );
        let body = json!({
            "source_branch": spec.head,
            "target_branch": spec.base,
            "title": spec.title,
            "description": spec.body,
        });
        let operation = "creating the merge request";
        let response = self
            .send(self.request(Method::POST, &url).json(&body), operation)
            .await?;
        let status = response.status();
        if status == StatusCode::CREATED {
            let mr: GitlabMergeRequest = self.read_json(response, operation).await?;
            return Ok(PullRequest {
                number: mr.iid,
                url: mr.web_url,
                created: true,
            });
        }
        let headers = response.headers().clone();
        let text = self.read_text(response, operation).await?;
        if status == StatusCode::CONFLICT {
            let operation = "finding the existing merge request";
            let request = self.request(Method::GET, &url).query(&[
                ("source_branch", spec.head.as_str()),
                ("target_branch", spec.base.as_str()),
                ("state", "opened"),
            ]);
            let response = self.send(request, operation).await?;
            if response.status() != StatusCode::OK {
                let status = response.status();
                let headers = response.headers().clone();
                let text = self.read_text(response, operation).await?;
                return Err(self.failure(
                    status,
                    &headers,
                    &text,
                    operation,
                    &format!("project {project}"),
                ));
            }
            let mrs: Vec<GitlabMergeRequest> = self.read_json(response, operation).await?;
            return mrs
                .into_iter()
                .next()
                .map(|mr| PullRequest {
                    number: mr.iid,
                    url: mr.web_url,
                    created: false,
                })
                .ok_or_else(|| Error::ExistingPullRequestNotFound {
                    forge: describe(&self.forge),
                    branch: spec.head.clone(),
                });
        }
        Err(self.failure(
            status,
            &headers,
            &text,
            operation,
            &format!("project {project}"),
        ))
    }

    /// A request with the forge's authentication and content-negotiation headers.
    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let builder = self
            .http
            .request(method, url)
            .header(USER_AGENT, USER_AGENT_VALUE);
        match &self.forge {
            ForgeConfig::Github { .. } => builder
                .header(ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", GITHUB_API_VERSION)
                .header(
                    AUTHORIZATION,
                    secret_header(&format!("Bearer {}", self.token.expose())),
                ),
            ForgeConfig::Gitlab { .. } => builder
                .header(ACCEPT, "application/json")
                .header("PRIVATE-TOKEN", secret_header(self.token.expose())),
        }
    }

    async fn send(&self, request: RequestBuilder, operation: &str) -> Result<reqwest::Response> {
        request.send().await.map_err(|source| Error::Http {
            forge: describe(&self.forge),
            operation: operation.to_owned(),
            source: source.without_url(),
        })
    }

    async fn read_text(&self, response: reqwest::Response, operation: &str) -> Result<String> {
        response.text().await.map_err(|source| Error::Http {
            forge: describe(&self.forge),
            operation: format!("{operation}: reading the answer"),
            source: source.without_url(),
        })
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
        operation: &str,
    ) -> Result<T> {
        let status = response.status().as_u16();
        let text = self.read_text(response, operation).await?;
        serde_json::from_str(&text).map_err(|e| Error::Forge {
            forge: describe(&self.forge),
            operation: operation.to_owned(),
            status,
            message: format!("unexpected answer ({e}): {}", shorten(&text)),
        })
    }

    fn failure(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        text: &str,
        operation: &str,
        what: &str,
    ) -> Error {
        let forge = describe(&self.forge);
        let message = api_message(text);
        if let Some(limited) = rate_limit(status, headers) {
            return Error::RateLimited {
                forge,
                status: status.as_u16(),
                retry_after: limited.0,
                reset_at: limited.1,
            };
        }
        match status {
            StatusCode::UNAUTHORIZED => Error::Unauthorized { forge, message },
            StatusCode::NOT_FOUND => Error::NotFound {
                forge,
                what: what.to_owned(),
                message,
            },
            _ => Error::Forge {
                forge,
                operation: operation.to_owned(),
                status: status.as_u16(),
                message,
            },
        }
    }
}

/// A header value marked sensitive, so reqwest and hyper never print it.
fn secret_header(value: &str) -> HeaderValue {
    // A token holding bytes a header cannot carry would make the request fail with a
    // 401 instead; it is never echoed either way.
    let mut header =
        HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    header.set_sensitive(true);
    header
}

/// `github (https://api.github.com)`: which forge, in errors and logs.
fn describe(forge: &ForgeConfig) -> String {
    format!("{} ({})", forge.kind(), forge.api_url())
}

/// Whether a GitHub 422 says a pull request for the branch already exists (its
/// validation error shape: `{"message":"Validation Failed","errors":[{"message":…}]}`).
fn github_says_exists(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Validation {
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    serde_json::from_str::<Validation>(text).is_ok_and(|v| {
        v.errors.iter().any(|e| {
            e.get("message")
                .and_then(|m| m.as_str())
                .is_some_and(|m| m.starts_with("A pull request already exists"))
        })
    })
}

/// The forge's own message: GitHub's `message` (plus its validation `errors`), GitLab's
/// `message` (a string, a list or an object of lists) or `error`; else the body, short.
fn api_message(text: &str) -> String {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return shorten(text);
    };
    let mut parts = Vec::new();
    for key in ["message", "error", "error_description"] {
        match value.get(key) {
            Some(serde_json::Value::String(s)) => parts.push(s.clone()),
            Some(serde_json::Value::Null) | None => {}
            Some(other) => parts.push(other.to_string()),
        }
    }
    if let Some(errors) = value.get("errors").and_then(|e| e.as_array()) {
        for error in errors {
            match error.get("message").and_then(|m| m.as_str()) {
                Some(message) => parts.push(message.to_owned()),
                None => parts.push(error.to_string()),
            }
        }
    }
    if parts.is_empty() {
        shorten(text)
    } else {
        shorten(&parts.join(": "))
    }
}

/// `(retry_after, reset_at)` when the answer is a rate limit: GitHub's primary limit
/// (403/429 with `x-ratelimit-remaining: 0`), its secondary limit (403/429 with
/// `retry-after`), GitLab's 429.
fn rate_limit(status: StatusCode, headers: &HeaderMap) -> Option<(Option<Duration>, Option<u64>)> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let retry_after = number("retry-after").map(Duration::from_secs);
    let reset_at = number("x-ratelimit-reset").or_else(|| number("ratelimit-reset"));
    let exhausted =
        number("x-ratelimit-remaining") == Some(0) || number("ratelimit-remaining") == Some(0);
    if status == StatusCode::TOO_MANY_REQUESTS || exhausted || retry_after.is_some() {
        Some((retry_after, reset_at))
    } else {
        None
    }
}

fn shorten(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_MESSAGE {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX_MESSAGE).collect();
        format!("{cut}…")
    }
}

/// Percent-encodes one path segment (GitLab's `group/project` becomes
/// `group%2Fproject`, as its API requires).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("acme/infra"), "acme%2Finfra");
        assert_eq!(encode_segment("42"), "42");
        assert_eq!(encode_segment("a b?c"), "a%20b%3Fc");
    }

    #[test]
    fn github_validation_errors_are_recognised() {
        let exists = r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for acme:deckhand/thread-1."}],"documentation_url":"https://docs.github.com/rest/pulls/pulls#create-a-pull-request","status":"422"}"#;
        assert!(github_says_exists(exists));
        let other = r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"base","code":"invalid"}]}"#;
        assert!(!github_says_exists(other));
        assert!(api_message(other).starts_with("Validation Failed: {"));
        assert!(!github_says_exists("not json"));
    }

    #[test]
    fn messages_come_from_either_forge_shape() {
        assert_eq!(
            api_message(r#"{"message":"Bad credentials","documentation_url":"x"}"#),
            "Bad credentials"
        );
        assert_eq!(
            api_message(
                r#"{"message":["Another open merge request already exists for this source branch: !4"]}"#
            ),
            r#"["Another open merge request already exists for this source branch: !4"]"#
        );
        assert_eq!(
            api_message(r#"{"error":"insufficient_scope"}"#),
            "insufficient_scope"
        );
        assert_eq!(
            api_message(&"x".repeat(1000)).chars().count(),
            MAX_MESSAGE + 1
        );
    }

    #[test]
    fn rate_limits_are_told_apart_from_permission_errors() {
        let mut headers = HeaderMap::new();
        assert_eq!(rate_limit(StatusCode::FORBIDDEN, &headers), None);
        assert_eq!(
            rate_limit(StatusCode::TOO_MANY_REQUESTS, &headers),
            Some((None, None))
        );
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("1700000000"));
        assert_eq!(
            rate_limit(StatusCode::FORBIDDEN, &headers),
            Some((None, Some(1_700_000_000)))
        );
        let mut secondary = HeaderMap::new();
        secondary.insert("retry-after", HeaderValue::from_static("60"));
        assert_eq!(
            rate_limit(StatusCode::FORBIDDEN, &secondary),
            Some((Some(Duration::from_secs(60)), None))
        );
        assert_eq!(rate_limit(StatusCode::NOT_FOUND, &secondary), None);
    }

    #[test]
    fn the_thread_pull_request_names_branch_folder_and_summary() {
        let thread = Uuid::nil();
        let spec = PullRequestSpec::for_thread(
            thread,
            "Scale checkout\nto 3",
            "Scaled checkout to 3 replicas.",
            "main",
        );
        assert_eq!(spec.title, "deckhand: Scale checkout");
        assert_eq!(spec.head, branch_name(thread));
        assert_eq!(spec.base, "main");
        assert!(spec
            .body
            .starts_with("Scaled checkout to 3 replicas.\n\n---\n"));
        assert!(spec.body.contains(&format!("`threads/{thread}/`")));
    }

    /// The runtime spawns these calls on tokio's multi-threaded runtime.
    #[allow(dead_code)]
    fn futures_are_send(client: &ForgeClient, spec: &PullRequestSpec) {
        fn is_send<T: Send>(_: T) {}
        is_send(client.open_pull_request(spec));
        is_send(client.clone());
    }

    #[test]
    fn the_client_never_prints_its_token() {
        let client = ForgeClient::new(
            ForgeConfig::Github {
                api_url: "https://api.github.com".into(),
                owner: "acme".into(),
                repo: "platform".into(),
            },
            Token::new("ghp_very_secret"),
        )
        .expect("client");
        assert!(!format!("{client:?}").contains("ghp_very_secret"));
    }
}
