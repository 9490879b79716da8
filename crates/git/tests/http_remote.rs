//! The token on the wire: against a local HTTP server that asks for credentials the way
//! GitHub's smart HTTP endpoint does (401 + `WWW-Authenticate: Basic`), deckhand answers
//! once with the forge's user name and the token, and gives up when it is refused
//! instead of asking forever. Then a real push: `git http-backend` (git's own smart HTTP
//! server, as CGI) behind a local server that demands the token.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use deckhand_git::{
    Approval, Author, Error, ForgeConfig, Mode, RepositoryConfig, ThreadRepository, Token,
};
use uuid::Uuid;

#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    authorization: Option<String>,
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Starts the server on its own runtime thread (libgit2 blocks the caller) and returns
/// its address and what it saw.
fn serve() -> (std::net::SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let record = seen.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = Router::new().fallback(move |request: Request<Body>| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push(Seen {
                        path_and_query: request.uri().path_and_query().unwrap().to_string(),
                        authorization: request
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_owned()),
                    });
                    (
                        StatusCode::UNAUTHORIZED,
                        [("www-authenticate", "Basic realm=\"GitHub\"")],
                        "",
                    )
                        .into_response()
                }
            });
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), seen)
}

fn config(url: String, clone: std::path::PathBuf) -> RepositoryConfig {
    RepositoryConfig {
        name: "platform".into(),
        url: Some(url),
        path: Some(clone),
        base_branch: "main".into(),
        remote: "origin".into(),
        author: Author {
            name: "deckhand".into(),
            email: "deckhand@acme.example".into(),
        },
        token: None,
        forge: Some(ForgeConfig::Github {
            api_url: "https://api.github.com".into(),
            owner: "acme".into(),
            repo: "platform".into(),
        }),
    }
}

fn approval() -> Approval {
    Approval {
        title: "t".into(),
        request: "r".into(),
        requested_by: None,
        cluster: None,
        plan: serde_json::json!({}),
        plan_hash: "h".into(),
        approved_by: "ana".into(),
        manifests: vec![],
        backups: vec![],
    }
}

#[test]
fn the_token_is_offered_once_as_basic_auth_and_a_refusal_is_reported() {
    let (addr, seen) = serve();
    let dir = tempfile::tempdir().unwrap();
    let repo = ThreadRepository::open(
        &config(
            format!("http://{addr}/acme/platform.git"),
            dir.path().join("clone"),
        ),
        dir.path(),
        Mode::Apply,
        Some(Token::new("ghp_wire_token")),
    )
    .unwrap();
    let err = repo
        .record_approval(Uuid::new_v4(), &approval())
        .unwrap_err();
    let Error::Git {
        ref operation,
        ref source,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert!(operation.starts_with("fetching `main`"), "{operation}");
    assert!(
        source
            .message()
            .contains("the remote rejected the configured token"),
        "{source}"
    );
    assert!(!format!("{err} {err:?}").contains("ghp_wire_token"));

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen
        .iter()
        .all(|s| s.path_and_query == "/acme/platform.git/info/refs?service=git-upload-pack"));
    assert_eq!(seen[0].authorization, None);
    assert_eq!(
        seen[1].authorization.as_deref(),
        Some(format!("Basic {}", base64(b"x-access-token:ghp_wire_token")).as_str())
    );
}

#[test]
fn without_a_token_the_remote_s_question_is_answered_with_a_clear_error() {
    let (addr, seen) = serve();
    let dir = tempfile::tempdir().unwrap();
    let repo = ThreadRepository::open(
        &config(
            format!("http://{addr}/acme/platform.git"),
            dir.path().join("clone"),
        ),
        dir.path(),
        Mode::Apply,
        None,
    )
    .unwrap();
    let err = repo
        .record_approval(Uuid::new_v4(), &approval())
        .unwrap_err();
    let Error::Git { ref source, .. } = err else {
        panic!("{err:?}")
    };
    assert!(
        source
            .message()
            .contains("no token is configured for this repository"),
        "{source}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn base64_matches_the_rfc_vectors() {
    for (input, output) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), output);
    }
}

/// Git's smart HTTP server for the bare repositories under `root`, behind Basic
/// authentication with `user:token`, the way a forge serves pushes.
fn serve_git(
    root: std::path::PathBuf,
    credentials: &str,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let expected = format!("Basic {}", base64(credentials.as_bytes()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let record = seen.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = Router::new().fallback(move |request: Request<Body>| {
                let record = record.clone();
                let root = root.clone();
                let expected = expected.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let authorization = parts
                        .headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    record.lock().unwrap().push(Seen {
                        path_and_query: parts.uri.path_and_query().unwrap().to_string(),
                        authorization: authorization.clone(),
                    });
                    if authorization.as_deref() != Some(expected.as_str()) {
                        return (
                            StatusCode::UNAUTHORIZED,
                            [("www-authenticate", "Basic realm=\"git\"")],
                            Vec::new(),
                        )
                            .into_response();
                    }
                    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
                    cgi(&root, &parts, body.to_vec()).await
                }
            });
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), seen)
}

/// Runs one request through `git http-backend` and turns its CGI answer into a response.
async fn cgi(
    root: &std::path::Path,
    parts: &axum::http::request::Parts,
    body: Vec<u8>,
) -> axum::response::Response {
    use tokio::io::AsyncWriteExt;
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", "deckhand")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&body).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let text = output.stdout;
    let split = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| text.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
        .unwrap();
    let head = String::from_utf8(text[..split.0].to_vec()).unwrap();
    let mut response =
        axum::response::Response::new(Body::from(text[split.0 + split.1..].to_vec()));
    for line in head.lines() {
        let (name, value) = line.split_once(':').unwrap();
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            *response.status_mut() = StatusCode::from_u16(value[..3].parse().unwrap()).unwrap();
        } else {
            response.headers_mut().insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
    }
    response
}

#[test]
fn approval_and_completion_are_pushed_over_http_with_the_token() {
    let remote = support::Remote::new();
    let (addr, seen) = serve_git(
        remote.dir.path().to_owned(),
        "x-access-token:ghp_push_token",
    );
    let url = format!("http://{addr}/platform.git");
    let open = |clone: &str| {
        ThreadRepository::open(
            &config(url.clone(), remote.dir.path().join(clone)),
            remote.dir.path(),
            Mode::Apply,
            Some(Token::new("ghp_push_token")),
        )
        .unwrap()
    };
    let thread = Uuid::new_v4();
    let mut with_manifest = approval();
    with_manifest.manifests = vec![deckhand_git::Manifest::new(
        "app.yaml",
        "kind: Deployment\n",
    )];
    let approved = open("writer")
        .record_approval(thread, &with_manifest)
        .unwrap();
    let completed = open("writer")
        .record_completion(
            thread,
            &deckhand_git::Completion {
                result: "done".into(),
                backups: vec![],
            },
        )
        .unwrap();
    assert!(approved.new_commit && completed.new_commit);

    let head = remote.branch(&deckhand_git::branch_name(thread)).unwrap();
    assert_eq!(head.id().to_string(), completed.commit);
    assert_eq!(
        head.parent_ids().collect::<Vec<_>>(),
        [approved.commit.parse().unwrap()]
    );
    let manifests = open("reader").read_manifests(thread).unwrap();
    assert_eq!(
        manifests,
        [deckhand_git::Manifest::new(
            "app.yaml",
            "kind: Deployment\n"
        )]
    );

    let seen = seen.lock().unwrap();
    let pushes: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path_and_query == "/platform.git/git-receive-pack")
        .collect();
    assert_eq!(pushes.len(), 2, "{seen:?}");
    assert!(pushes.iter().all(|s| s.authorization.is_some()));
}

#[test]
fn a_rejected_push_is_fetched_and_tried_again_once_then_reported() {
    use std::os::unix::fs::PermissionsExt;
    let remote = support::Remote::new();
    // The remote's own hook plays a busy or protected branch; git runs it on every push.
    let hook = remote.path.join("hooks").join("pre-receive");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(
        &hook,
        "#!/bin/sh\nif [ -e \"$GIT_DIR/reject-once\" ]; then rm \"$GIT_DIR/reject-once\"; exit 1; fi\nif [ -e \"$GIT_DIR/reject-always\" ]; then exit 1; fi\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (addr, seen) = serve_git(
        remote.dir.path().to_owned(),
        "x-access-token:ghp_push_token",
    );
    let repo = ThreadRepository::open(
        &config(
            format!("http://{addr}/platform.git"),
            remote.dir.path().join("clone"),
        ),
        remote.dir.path(),
        Mode::Apply,
        Some(Token::new("ghp_push_token")),
    )
    .unwrap();
    let thread = Uuid::new_v4();
    let branch = deckhand_git::branch_name(thread);

    std::fs::write(remote.path.join("reject-once"), "").unwrap();
    let approved = repo.record_approval(thread, &approval()).unwrap();
    assert_eq!(
        remote.branch(&branch).unwrap().id().to_string(),
        approved.commit
    );
    let receive_packs = |seen: &Mutex<Vec<Seen>>| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|s| s.path_and_query == "/platform.git/git-receive-pack")
            .count()
    };
    assert_eq!(receive_packs(&seen), 2);

    std::fs::write(remote.path.join("reject-always"), "").unwrap();
    let err = repo
        .record_completion(
            thread,
            &deckhand_git::Completion {
                result: "done".into(),
                backups: vec![],
            },
        )
        .unwrap_err();
    let Error::PushRejected {
        ref message,
        ref branch,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert!(message.contains("pre-receive hook declined"), "{message}");
    assert_eq!(*branch, deckhand_git::branch_name(thread));
    assert_eq!(receive_packs(&seen), 4);
    // The remote still has the approval only.
    assert_eq!(
        remote
            .branch(&deckhand_git::branch_name(thread))
            .unwrap()
            .id()
            .to_string(),
        approved.commit
    );
}
