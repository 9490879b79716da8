//! Pull and merge requests against local servers that speak GitHub's and GitLab's REST
//! APIs: they keep their open requests, check the token, and answer with the documented
//! shapes (201, 401, 404, GitHub's 422 validation error, GitLab's 409, rate limits);
//! every request is recorded and asserted exactly.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use deckhand_git::{Error, ForgeClient, ForgeConfig, PullRequestSpec, Token};
use serde_json::{json, Value};
use uuid::Uuid;

const TOKEN: &str = "ghp_test_9f8e7d";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Option<Value>,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    /// (number, head, base) of the open requests.
    open: Vec<(u64, String, String)>,
    rate_limited: bool,
}

type Shared = Arc<Mutex<State>>;

async fn serve(
    state: Shared,
    handler: fn(&mut State, &Seen, SocketAddr) -> Response,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(move |request: Request<Body>| {
        let state = state.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes = to_bytes(body, 1 << 20).await.unwrap();
            let seen = Seen {
                method: parts.method.clone(),
                path: parts.uri.path().to_owned(),
                query: parts
                    .uri
                    .query()
                    .map(|q| {
                        q.split('&')
                            .map(|pair| {
                                let (k, v) = pair.split_once('=').unwrap();
                                (decode(k), decode(v))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                headers: parts.headers.clone(),
                body: (!bytes.is_empty()).then(|| serde_json::from_slice(&bytes).unwrap()),
            };
            let mut state = state.lock().unwrap();
            state.seen.push(seen.clone());
            handler(&mut state, &seen, addr)
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Percent-decoding for query strings (`+` is a space in forms).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn answer(status: StatusCode, headers: &[(&'static str, String)], body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

/// GitHub's REST API for `acme/platform`, as documented for "Create a pull request" and
/// "List pull requests".
fn github(state: &mut State, seen: &Seen, addr: SocketAddr) -> Response {
    let docs = "https://docs.github.com/rest/pulls/pulls";
    if seen
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return answer(
            StatusCode::UNAUTHORIZED,
            &[],
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}),
        );
    }
    if state.rate_limited {
        return answer(
            StatusCode::FORBIDDEN,
            &[
                ("x-ratelimit-limit", "5000".into()),
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", "1767225600".into()),
            ],
            json!({"message": "API rate limit exceeded for user ID 1.", "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}),
        );
    }
    if seen.path != "/repos/acme/platform/pulls" {
        return answer(
            StatusCode::NOT_FOUND,
            &[],
            json!({"message": "Not Found", "documentation_url": docs, "status": "404"}),
        );
    }
    let pull = |number: u64, head: &str, base: &str| {
        json!({
            "url": format!("http://{addr}/repos/acme/platform/pulls/{number}"),
            "id": 1_000_000 + number,
            "number": number,
            "state": "open",
            "html_url": format!("https://github.com/acme/platform/pull/{number}"),
            "head": {"ref": head, "label": format!("acme:{head}")},
            "base": {"ref": base, "label": format!("acme:{base}")},
        })
    };
    match seen.method {
        Method::POST => {
            let body = seen.body.as_ref().unwrap();
            let head = body["head"].as_str().unwrap().to_owned();
            let base = body["base"].as_str().unwrap().to_owned();
            if state.open.iter().any(|(_, h, _)| *h == head) {
                return answer(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &[],
                    json!({
                        "message": "Validation Failed",
                        "errors": [{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for acme:{head}.")}],
                        "documentation_url": format!("{docs}#create-a-pull-request"),
                        "status": "422"
                    }),
                );
            }
            let number = 1347 + state.open.len() as u64;
            state.open.push((number, head.clone(), base.clone()));
            answer(
                StatusCode::CREATED,
                &[(
                    "location",
                    format!("http://{addr}/repos/acme/platform/pulls/{number}"),
                )],
                pull(number, &head, &base),
            )
        }
        Method::GET => {
            let query = |key: &str| {
                seen.query
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            let list: Vec<Value> = state
                .open
                .iter()
                .filter(|(_, head, base)| {
                    query("state").as_deref() == Some("open")
                        && query("head").is_none_or(|h| h == format!("acme:{head}"))
                        && query("base").is_none_or(|b| b == *base)
                })
                .map(|(n, h, b)| pull(*n, h, b))
                .collect();
            answer(StatusCode::OK, &[], Value::Array(list))
        }
        _ => answer(StatusCode::NOT_FOUND, &[], json!({"message": "Not Found"})),
    }
}

/// GitLab's REST API (v4) for project `acme/infra`: "Create MR" and "List project merge
/// requests".
fn gitlab(state: &mut State, seen: &Seen, _addr: SocketAddr) -> Response {
    if seen
        .headers
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        != Some(TOKEN)
    {
        return answer(
            StatusCode::UNAUTHORIZED,
            &[],
            json!({"message": "401 Unauthorized"}),
        );
    }
    if state.rate_limited {
        return answer(
            StatusCode::TOO_MANY_REQUESTS,
            &[
                ("retry-after", "42".into()),
                ("ratelimit-remaining", "0".into()),
                ("ratelimit-reset", "1767225642".into()),
            ],
            json!({"message": "Retry later"}),
        );
    }
    if seen.path != "/api/v4/projects/acme%2Finfra/merge_requests" {
        return answer(
            StatusCode::NOT_FOUND,
            &[],
            json!({"message": "404 Project Not Found"}),
        );
    }
    let mr = |iid: u64, source: &str, target: &str| {
        json!({
            "id": 90_000 + iid,
            "iid": iid,
            "project_id": 7,
            "state": "opened",
            "source_branch": source,
            "target_branch": target,
            "web_url": format!("https://gitlab.example/acme/infra/-/merge_requests/{iid}"),
        })
    };
    match seen.method {
        Method::POST => {
            let body = seen.body.as_ref().unwrap();
            let source = body["source_branch"].as_str().unwrap().to_owned();
            let target = body["target_branch"].as_str().unwrap().to_owned();
            if let Some((iid, _, _)) = state.open.iter().find(|(_, s, _)| *s == source) {
                return answer(
                    StatusCode::CONFLICT,
                    &[],
                    json!({"message": [format!("Another open merge request already exists for this source branch: !{iid}")]}),
                );
            }
            let iid = 1 + state.open.len() as u64;
            state.open.push((iid, source.clone(), target.clone()));
            answer(StatusCode::CREATED, &[], mr(iid, &source, &target))
        }
        Method::GET => {
            let query = |key: &str| {
                seen.query
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            let list: Vec<Value> = state
                .open
                .iter()
                .filter(|(_, s, t)| {
                    query("state").as_deref() == Some("opened")
                        && query("source_branch").is_none_or(|q| q == *s)
                        && query("target_branch").is_none_or(|q| q == *t)
                })
                .map(|(i, s, t)| mr(*i, s, t))
                .collect();
            answer(StatusCode::OK, &[], Value::Array(list))
        }
        _ => answer(
            StatusCode::NOT_FOUND,
            &[],
            json!({"message": "404 Not Found"}),
        ),
    }
}

fn github_forge(addr: SocketAddr, repo: &str) -> ForgeConfig {
    ForgeConfig::Github {
        api_url: format!("http://{addr}/"),
        owner: "acme".into(),
        repo: repo.into(),
    }
}

fn gitlab_forge(addr: SocketAddr, project: &str) -> ForgeConfig {
    ForgeConfig::Gitlab {
        api_url: format!("http://{addr}/api/v4"),
        project: project.into(),
    }
}

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

fn spec(thread: Uuid) -> PullRequestSpec {
    PullRequestSpec::for_thread(
        thread,
        "Scale checkout in shop",
        "checkout now runs 3 replicas.",
        "main",
    )
}

#[tokio::test]
async fn github_pull_request_is_created_with_the_exact_request() {
    let state = Shared::default();
    let addr = serve(state.clone(), github).await;
    let client = ForgeClient::new(github_forge(addr, "platform"), Token::new(TOKEN)).unwrap();
    let thread = Uuid::new_v4();
    let pr = client.open_pull_request(&spec(thread)).await.unwrap();
    assert_eq!(pr.number, 1347);
    assert_eq!(pr.url, "https://github.com/acme/platform/pull/1347");
    assert!(pr.created);

    let state = state.lock().unwrap();
    assert_eq!(state.seen.len(), 1);
    let seen = &state.seen[0];
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path, "/repos/acme/platform/pulls");
    assert!(seen.query.is_empty());
    assert_eq!(header(seen, "accept"), "application/vnd.github+json");
    assert_eq!(header(seen, "authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(header(seen, "x-github-api-version"), "2022-11-28");
    assert!(header(seen, "user-agent").starts_with("deckhand/"));
    assert_eq!(header(seen, "content-type"), "application/json");
    let expected = spec(thread);
    assert_eq!(
        seen.body.as_ref().unwrap(),
        &json!({"title": expected.title, "head": format!("deckhand/thread-{thread}"), "base": "main", "body": expected.body})
    );
}

#[tokio::test]
async fn github_existing_pull_request_is_found_instead() {
    let state = Shared::default();
    let addr = serve(state.clone(), github).await;
    let client = ForgeClient::new(github_forge(addr, "platform"), Token::new(TOKEN)).unwrap();
    let thread = Uuid::new_v4();
    let other = client
        .open_pull_request(&spec(Uuid::new_v4()))
        .await
        .unwrap();
    let first = client.open_pull_request(&spec(thread)).await.unwrap();
    let again = client.open_pull_request(&spec(thread)).await.unwrap();
    assert_ne!(other.number, first.number);
    assert!(!again.created);
    assert_eq!(
        (again.number, again.url.as_str()),
        (first.number, first.url.as_str())
    );

    let state = state.lock().unwrap();
    let methods: Vec<&Method> = state.seen.iter().map(|s| &s.method).collect();
    assert_eq!(
        methods,
        [&Method::POST, &Method::POST, &Method::POST, &Method::GET]
    );
    let lookup = &state.seen[3];
    assert_eq!(lookup.path, "/repos/acme/platform/pulls");
    assert_eq!(
        lookup.query,
        [
            ("head".to_owned(), format!("acme:deckhand/thread-{thread}")),
            ("base".to_owned(), "main".to_owned()),
            ("state".to_owned(), "open".to_owned()),
        ]
    );
    assert_eq!(header(lookup, "authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(header(lookup, "x-github-api-version"), "2022-11-28");
    assert!(lookup.body.is_none());
}

#[tokio::test]
async fn github_errors_say_what_went_wrong_without_the_token() {
    let state = Shared::default();
    let addr = serve(state.clone(), github).await;

    let wrong = ForgeClient::new(
        github_forge(addr, "platform"),
        Token::new("ghp_wrong_token"),
    )
    .unwrap();
    let err = wrong
        .open_pull_request(&spec(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { ref message, .. } if message == "Bad credentials"),
        "{err}"
    );
    assert!(!format!("{err} {err:?}").contains("ghp_wrong_token"));

    let missing = ForgeClient::new(github_forge(addr, "nope"), Token::new(TOKEN)).unwrap();
    let err = missing
        .open_pull_request(&spec(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { ref what, .. } if what == "repository acme/nope"),
        "{err}"
    );
    assert!(!format!("{err} {err:?}").contains(TOKEN));

    state.lock().unwrap().rate_limited = true;
    let client = ForgeClient::new(github_forge(addr, "platform"), Token::new(TOKEN)).unwrap();
    let err = client
        .open_pull_request(&spec(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::RateLimited {
                status: 403,
                reset_at: Some(1_767_225_600),
                retry_after: None,
                ..
            }
        ),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("limit resets at unix time 1767225600"));
}

#[tokio::test]
async fn gitlab_merge_request_is_created_with_the_exact_request() {
    let state = Shared::default();
    let addr = serve(state.clone(), gitlab).await;
    let client = ForgeClient::new(gitlab_forge(addr, "acme/infra"), Token::new(TOKEN)).unwrap();
    let thread = Uuid::new_v4();
    let mr = client.open_pull_request(&spec(thread)).await.unwrap();
    assert_eq!(mr.number, 1);
    assert_eq!(
        mr.url,
        "https://gitlab.example/acme/infra/-/merge_requests/1"
    );
    assert!(mr.created);

    let state = state.lock().unwrap();
    assert_eq!(state.seen.len(), 1);
    let seen = &state.seen[0];
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path, "/api/v4/projects/acme%2Finfra/merge_requests");
    assert_eq!(header(seen, "private-token"), TOKEN);
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(header(seen, "content-type"), "application/json");
    assert!(header(seen, "user-agent").starts_with("deckhand/"));
    let expected = spec(thread);
    assert_eq!(
        seen.body.as_ref().unwrap(),
        &json!({
            "source_branch": format!("deckhand/thread-{thread}"),
            "target_branch": "main",
            "title": expected.title,
            "description": expected.body,
        })
    );
}

#[tokio::test]
async fn gitlab_existing_merge_request_is_found_on_409() {
    let state = Shared::default();
    let addr = serve(state.clone(), gitlab).await;
    let client = ForgeClient::new(gitlab_forge(addr, "acme/infra"), Token::new(TOKEN)).unwrap();
    let thread = Uuid::new_v4();
    let first = client.open_pull_request(&spec(thread)).await.unwrap();
    let again = client.open_pull_request(&spec(thread)).await.unwrap();
    assert!(!again.created);
    assert_eq!((again.number, again.url), (first.number, first.url));

    let state = state.lock().unwrap();
    assert_eq!(state.seen.len(), 3);
    let lookup = &state.seen[2];
    assert_eq!(lookup.method, Method::GET);
    assert_eq!(lookup.path, "/api/v4/projects/acme%2Finfra/merge_requests");
    assert_eq!(
        lookup.query,
        [
            (
                "source_branch".to_owned(),
                format!("deckhand/thread-{thread}")
            ),
            ("target_branch".to_owned(), "main".to_owned()),
            ("state".to_owned(), "opened".to_owned()),
        ]
    );
    assert_eq!(header(lookup, "private-token"), TOKEN);
}

#[tokio::test]
async fn gitlab_errors_say_what_went_wrong() {
    let state = Shared::default();
    let addr = serve(state.clone(), gitlab).await;

    let wrong =
        ForgeClient::new(gitlab_forge(addr, "acme/infra"), Token::new("glpat-wrong")).unwrap();
    let err = wrong
        .open_pull_request(&spec(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { ref message, .. } if message == "401 Unauthorized"),
        "{err}"
    );

    let missing = ForgeClient::new(gitlab_forge(addr, "acme/nope"), Token::new(TOKEN)).unwrap();
    let err = missing
        .open_pull_request(&spec(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { ref message, .. } if message == "404 Project Not Found"),
        "{err}"
    );

    state.lock().unwrap().rate_limited = true;
    let client = ForgeClient::new(gitlab_forge(addr, "acme/infra"), Token::new(TOKEN)).unwrap();
    let err = client
        .open_pull_request(&spec(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { status: 429, retry_after: Some(d), reset_at: Some(1_767_225_642), .. } if d.as_secs() == 42),
        "{err}"
    );
}

#[tokio::test]
async fn a_forge_that_is_down_is_an_http_error_naming_it() {
    // Bind and drop: nothing listens on this port any more.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let client = ForgeClient::new(github_forge(addr, "platform"), Token::new(TOKEN)).unwrap();
    let err = client
        .open_pull_request(&spec(Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "github (http://{addr}): creating the pull request failed"
        )),
        "{err}"
    );
}
