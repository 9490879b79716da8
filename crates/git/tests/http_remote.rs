//! The token on the wire: against a local HTTP server that asks for credentials the way
//! GitHub's smart HTTP endpoint does (401 + `WWW-Authenticate: Basic`), deckhand answers
//! once with the forge's user name and the token, and gives up when it is refused
//! instead of asking forever.
#![allow(clippy::unwrap_used)]

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
