//! The JSON API driven through the router (no socket): every route's authentication and
//! scope, the thread flow from request to rating, tokens, limits, CORS, OpenAPI, metrics.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::{identity, Fixture};
use deckhand_api::config::RateLimitConfig;
use deckhand_api::model::{NewThread, Scope};
use deckhand_api::{ApiConfig, Deckhand};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn call(
    fixture: &Fixture,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = fixture.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// Every protected route, with a body that is valid for it and the scope it needs.
fn routes(thread: &str, plan: &str, hash: &str) -> Vec<(Method, String, Option<Value>, Scope)> {
    let token = uuid::Uuid::new_v4();
    vec![
        (Method::GET, "/api/whoami".into(), None, Scope::Viewer),
        (Method::GET, "/api/threads".into(), None, Scope::Viewer),
        (
            Method::POST,
            "/api/threads".into(),
            Some(json!({"text": "scale web to 3", "namespace": "shop"})),
            Scope::Operator,
        ),
        (
            Method::GET,
            format!("/api/threads/{thread}"),
            None,
            Scope::Viewer,
        ),
        (
            Method::POST,
            format!("/api/threads/{thread}/messages"),
            Some(json!({"text": "only web please"})),
            Scope::Operator,
        ),
        (
            Method::GET,
            format!("/api/threads/{thread}/plans/{plan}/preview"),
            None,
            Scope::Viewer,
        ),
        (
            Method::POST,
            format!("/api/threads/{thread}/plans/{plan}/approve"),
            Some(json!({"hash": hash})),
            Scope::Operator,
        ),
        (
            Method::POST,
            format!("/api/threads/{thread}/plans/{plan}/reject"),
            Some(json!({"hash": hash})),
            Scope::Operator,
        ),
        (
            Method::POST,
            format!("/api/threads/{thread}/plans/{plan}/run"),
            None,
            Scope::Operator,
        ),
        (
            Method::POST,
            format!("/api/threads/{thread}/plans/{plan}/cancel"),
            None,
            Scope::Operator,
        ),
        (
            Method::POST,
            format!("/api/threads/{thread}/restore"),
            None,
            Scope::Operator,
        ),
        (
            Method::POST,
            format!("/api/threads/{thread}/rating"),
            Some(json!({"rating": 80})),
            Scope::Operator,
        ),
        (
            Method::GET,
            "/api/knowledge?q=web".into(),
            None,
            Scope::Viewer,
        ),
        (Method::GET, "/api/tools".into(), None, Scope::Viewer),
        (Method::GET, "/api/policies".into(), None, Scope::Viewer),
        (Method::GET, "/api/namespaces".into(), None, Scope::Viewer),
        (Method::GET, "/api/tokens".into(), None, Scope::Admin),
        (
            Method::POST,
            "/api/tokens".into(),
            Some(json!({"name": "ci", "subject": "ci-bot", "scope": "viewer"})),
            Scope::Admin,
        ),
        (
            Method::DELETE,
            format!("/api/tokens/{token}"),
            None,
            Scope::Admin,
        ),
        (Method::GET, "/openapi.json".into(), None, Scope::Viewer),
        (
            Method::GET,
            format!("/ws/threads/{thread}"),
            None,
            Scope::Viewer,
        ),
    ]
}

async fn olgas_thread(fixture: &Fixture) -> (String, String, String) {
    let detail = fixture
        .service
        .create_thread(
            &identity("olga", Scope::Operator),
            NewThread {
                text: "scale web to 3".into(),
                namespace: Some("shop".into()),
            },
        )
        .await
        .unwrap();
    let plan = &detail.plans[0];
    (
        detail.thread.id.to_string(),
        plan.id.to_string(),
        plan.hash.clone(),
    )
}

#[tokio::test]
async fn every_route_answers_401_without_or_with_a_bad_token_and_403_below_its_scope() {
    let fixture = Fixture::new(ApiConfig::default());
    let (thread, plan, hash) = olgas_thread(&fixture).await;
    for (method, path, body, scope) in routes(&thread, &plan, &hash) {
        let answer = call(&fixture, method.clone(), &path, None, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        assert_eq!(answer.body["error"], "unauthenticated", "{method} {path}");
        assert!(answer.headers.contains_key(header::WWW_AUTHENTICATE));

        let answer = call(
            &fixture,
            method.clone(),
            &path,
            Some("dh_not-a-real-token"),
            body.clone(),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with a bad token"
        );

        let below: Vec<&str> = match scope {
            Scope::Viewer => vec![],
            Scope::Operator => vec![&fixture.viewer],
            Scope::Admin => vec![&fixture.viewer, &fixture.operator],
        };
        for token in below {
            let answer = call(&fixture, method.clone(), &path, Some(token), body.clone()).await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{method} {path} below {scope:?}"
            );
            assert_eq!(answer.body["error"], "forbidden");
        }
    }
}

#[tokio::test]
async fn health_stays_open_and_metrics_open_unless_configured() {
    let fixture = Fixture::new(ApiConfig::default());
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            call(&fixture, Method::GET, path, None, None).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    let closed = Fixture::new(ApiConfig {
        metrics_public: false,
        ..ApiConfig::default()
    });
    assert_eq!(
        call(&closed, Method::GET, "/metrics", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&closed, Method::GET, "/metrics", Some(&closed.viewer), None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_thread_goes_from_request_to_plan_approval_run_restore_and_rating() {
    let fixture = Fixture::new(ApiConfig::default());
    let olga = fixture.operator.clone();
    let created = call(
        &fixture,
        Method::POST,
        "/api/threads",
        Some(&olga),
        Some(json!({"text": "scale web to 3", "namespace": "shop"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let thread = created.body["thread"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["thread"]["user"], "olga");
    assert_eq!(created.body["thread"]["namespace"], "shop");
    let plan = created.body["plans"][0]["id"].as_str().unwrap().to_owned();
    let hash = created.body["plans"][0]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(hash.starts_with("sha256:"));
    assert_eq!(created.body["plans"][0]["steps"][1]["mutating"], true);

    // Viewers read it; the list has it.
    let shown = call(
        &fixture,
        Method::GET,
        &format!("/api/threads/{thread}"),
        Some(&fixture.viewer),
        None,
    )
    .await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["messages"][0]["text"], "scale web to 3");
    let listed = call(
        &fixture,
        Method::GET,
        "/api/threads?status=open&limit=5",
        Some(&fixture.viewer),
        None,
    )
    .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);

    // Another operator may not act on Olga's thread; an admin may.
    let approve_path = format!("/api/threads/{thread}/plans/{plan}/approve");
    let foreign = call(
        &fixture,
        Method::POST,
        &approve_path,
        Some(&fixture.other_operator),
        Some(json!({"hash": hash})),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    assert!(foreign.body["message"]
        .as_str()
        .unwrap()
        .contains("belongs to olga"));

    // Running before approval, or approving another hash, is a conflict.
    let run_path = format!("/api/threads/{thread}/plans/{plan}/run");
    assert_eq!(
        call(&fixture, Method::POST, &run_path, Some(&olga), None)
            .await
            .status,
        StatusCode::CONFLICT
    );
    let wrong = call(
        &fixture,
        Method::POST,
        &approve_path,
        Some(&olga),
        Some(json!({"hash": "sha256:0000"})),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::CONFLICT);
    assert_eq!(wrong.body["error"], "conflict");

    let approved = call(
        &fixture,
        Method::POST,
        &approve_path,
        Some(&olga),
        Some(json!({"hash": hash})),
    )
    .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["status"], "approved");
    assert_eq!(approved.body["approved_by"], "olga");

    let ran = call(&fixture, Method::POST, &run_path, Some(&olga), None).await;
    assert_eq!(ran.status, StatusCode::ACCEPTED);
    assert_eq!(ran.body["status"], "succeeded");
    assert_eq!(ran.body["steps"][1]["state"], "succeeded");

    let restored = call(
        &fixture,
        Method::POST,
        &format!("/api/threads/{thread}/restore"),
        Some(&fixture.admin),
        None,
    )
    .await;
    assert_eq!(restored.status, StatusCode::OK);
    assert_eq!(restored.body["restored"], json!(["Deployment shop/web"]));

    let rating_path = format!("/api/threads/{thread}/rating");
    let too_high = call(
        &fixture,
        Method::POST,
        &rating_path,
        Some(&olga),
        Some(json!({"rating": 101})),
    )
    .await;
    assert_eq!(too_high.status, StatusCode::BAD_REQUEST);
    let rated = call(
        &fixture,
        Method::POST,
        &rating_path,
        Some(&olga),
        Some(json!({"rating": 100, "comment": "spot on"})),
    )
    .await;
    assert_eq!(rated.status, StatusCode::OK);
    assert_eq!(rated.body["status"], "closed");
    // A closed thread takes no more messages.
    let late = call(
        &fixture,
        Method::POST,
        &format!("/api/threads/{thread}/messages"),
        Some(&olga),
        Some(json!({"text": "one more"})),
    )
    .await;
    assert_eq!(late.status, StatusCode::CONFLICT);

    let found = call(
        &fixture,
        Method::GET,
        "/api/knowledge?q=scale",
        Some(&fixture.viewer),
        None,
    )
    .await;
    assert_eq!(found.body[0]["thread_id"], thread.as_str());
    assert_eq!(found.body[0]["rating"], 100);

    let metrics = call(&fixture, Method::GET, "/metrics", None, None).await;
    let text = metrics.body.as_str().unwrap().to_owned();
    assert!(
        text.contains("deckhand_approvals_total{decision=\"approved\",target=\"plan\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("deckhand_restores_total{outcome=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "route=\"/api/threads/{id}/plans/{plan}/approve\",method=\"POST\",status=\"409\""
        ),
        "{text}"
    );
}

#[tokio::test]
async fn bad_input_is_answered_with_json_errors() {
    let fixture = Fixture::new(ApiConfig::default());
    let olga = fixture.operator.clone();
    let cases = [
        (
            Method::GET,
            "/api/threads/not-a-uuid".to_owned(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/api/threads/{}", uuid::Uuid::new_v4()),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/api/threads".to_owned(),
            Some(json!({"text": "   "})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/threads".to_owned(),
            Some(json!({"txt": "typo"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/threads?status=archived".to_owned(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/knowledge".to_owned(),
            None,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, body, status) in cases {
        let answer = call(&fixture, method.clone(), &path, Some(&olga), body).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
        assert!(
            answer.body["error"].is_string(),
            "{method} {path}: {}",
            answer.body
        );
        assert!(answer.body["message"].is_string());
    }
}

#[tokio::test]
async fn bodies_above_the_limit_are_refused() {
    let fixture = Fixture::new(ApiConfig {
        max_body_bytes: 1024,
        ..ApiConfig::default()
    });
    let big = json!({"text": "x".repeat(2048)});
    let answer = call(
        &fixture,
        Method::POST,
        "/api/threads",
        Some(&fixture.operator),
        Some(big),
    )
    .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.body["error"], "payload_too_large");
}

#[tokio::test]
async fn admins_make_and_revoke_tokens_which_are_stored_hashed() {
    let fixture = Fixture::new(ApiConfig::default());
    let made = call(&fixture, Method::POST, "/api/tokens", Some(&fixture.admin), Some(json!({"name": "ci", "subject": "ci-bot", "scope": "operator", "expires_in_secs": 3600}))).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let token = made.body["token"].as_str().unwrap().to_owned();
    let id = made.body["record"]["id"].as_str().unwrap().to_owned();
    assert_eq!(made.body["record"]["created_by"], "ada");

    // The store has its hash, never the token.
    let stored = serde_json::to_string(
        &deckhand_api::TokenStore::list(fixture.tokens.as_ref())
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(!stored.contains(&token));
    assert!(deckhand_api::TokenStore::lookup(
        fixture.tokens.as_ref(),
        &deckhand_api::auth::hash_token(&token)
    )
    .await
    .unwrap()
    .is_some());

    let me = call(&fixture, Method::GET, "/api/whoami", Some(&token), None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["identity"]["subject"], "ci-bot");
    assert_eq!(me.body["identity"]["scope"], "operator");

    let revoked = call(
        &fixture,
        Method::DELETE,
        &format!("/api/tokens/{id}"),
        Some(&fixture.admin),
        None,
    )
    .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = call(&fixture, Method::GET, "/api/whoami", Some(&token), None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert!(after.body["message"].as_str().unwrap().contains("revoked"));
    let missing = call(
        &fixture,
        Method::DELETE,
        &format!("/api/tokens/{}", uuid::Uuid::new_v4()),
        Some(&fixture.admin),
        None,
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn each_token_has_its_own_rate_limit_and_429_says_when_to_retry() {
    let fixture = Fixture::new(ApiConfig {
        rate_limit: RateLimitConfig {
            per_second: 0.5,
            burst: 3,
        },
        ..ApiConfig::default()
    });
    for _ in 0..3 {
        assert_eq!(
            call(
                &fixture,
                Method::GET,
                "/api/tools",
                Some(&fixture.viewer),
                None
            )
            .await
            .status,
            StatusCode::OK
        );
    }
    let limited = call(
        &fixture,
        Method::GET,
        "/api/tools",
        Some(&fixture.viewer),
        None,
    )
    .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers[header::RETRY_AFTER], "2");
    assert_eq!(limited.body["retry_after_secs"], 2);
    // Another caller is not affected.
    assert_eq!(
        call(
            &fixture,
            Method::GET,
            "/api/tools",
            Some(&fixture.operator),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn cors_is_closed_by_default_and_open_to_listed_origins_only() {
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/threads")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap()
    };
    let closed = Fixture::new(ApiConfig::default());
    let answer = closed
        .router
        .clone()
        .oneshot(preflight("https://evil.example"))
        .await
        .unwrap();
    assert!(!answer
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

    let open = Fixture::new(ApiConfig {
        cors_allowed_origins: vec!["https://deckhand.example".into()],
        ..ApiConfig::default()
    });
    let answer = open
        .router
        .clone()
        .oneshot(preflight("https://deckhand.example"))
        .await
        .unwrap();
    assert_eq!(
        answer.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://deckhand.example"
    );
    let answer = open
        .router
        .clone()
        .oneshot(preflight("https://evil.example"))
        .await
        .unwrap();
    assert!(!answer
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[tokio::test]
async fn the_openapi_document_lists_every_api_route_and_the_bearer_scheme() {
    let fixture = Fixture::new(ApiConfig::default());
    let document = call(
        &fixture,
        Method::GET,
        "/openapi.json",
        Some(&fixture.viewer),
        None,
    )
    .await;
    assert_eq!(document.status, StatusCode::OK);
    assert!(document.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document.body["paths"].as_object().unwrap();
    for (method, path, _, _) in routes("{id}", "{plan}", "") {
        let path = path.split('?').next().unwrap().to_owned();
        if !path.starts_with("/api/") {
            continue;
        }
        let path = if path.starts_with("/api/tokens/") {
            "/api/tokens/{id}".to_owned()
        } else {
            path
        };
        let operation = &paths[&path][method.as_str().to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {path} missing from OpenAPI"
        );
        assert_eq!(
            operation["security"][0]["bearer"],
            json!([]),
            "{method} {path}"
        );
    }
    assert_eq!(
        document.body["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(document.body["components"]["schemas"]["ThreadEvent"].is_object());
    assert!(document.body["paths"]["/hooks/alertmanager"]["post"].is_object());
    assert!(document.body["components"]["schemas"]["AlertGroup"].is_object());
}

#[test]
fn the_config_rejects_unknown_keys_and_reads_every_table() {
    let config: ApiConfig = toml::from_str(
        r#"
        max_body_bytes = 65536
        metrics_public = false
        cors_allowed_origins = ["https://deckhand.example"]
        [rate_limit]
        per_second = 2.5
        burst = 10
        [websocket]
        buffer = 64
        [oidc]
        jwks_url = "https://idp.example/jwks"
        issuer = "https://idp.example"
        audience = "deckhand"
        admin_groups = ["sre-leads"]
        [slack]
        signing_secret = "s"
        bot_token = "xoxb-1"
        [slack.users.U123]
        subject = "alice@example.com"
        groups = ["devs"]
        [alertmanager]
        bearer_token = "t"
        "#,
    )
    .unwrap();
    assert_eq!(config.rate_limit.burst, 10);
    assert_eq!(config.oidc.unwrap().subject_claim, "sub");
    let slack = config.slack.unwrap();
    assert_eq!(slack.api_base_url, "https://slack.com/api");
    assert_eq!(slack.users["U123"].scope, Scope::Operator);
    assert!(!format!("{slack:?}").contains("xoxb-1"));
    assert!(toml::from_str::<ApiConfig>("max_body_byte = 1").is_err());
    assert!(toml::from_str::<ApiConfig>("[rate_limit]\nper_sec = 1").is_err());
}

#[tokio::test]
async fn extra_routes_and_the_command_center_share_the_layers() {
    use axum::routing::get;
    use deckhand_api::{Api, AppState};
    use std::sync::Arc;
    let service = common::MemoryDeckhand::new();
    let tokens = Arc::new(common::MemoryTokens::default());
    let health = AppState {
        version: "test",
        checks: Arc::new([]),
    };
    let router = Api::new(service, tokens, health)
        .merge(axum::Router::new().route(
            "/embedder/page",
            get(|| async { "<!doctype html><title>embedded</title>" }),
        ))
        .build()
        .unwrap();
    for path in ["/", "/embedder/page"] {
        let page = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{path}");
    }
    let metrics = router
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        metrics
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for route in ["/", "/embedder/page"] {
        let line = format!(
            "deckhand_http_requests_total{{route=\"{route}\",method=\"GET\",status=\"200\"}} 1"
        );
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
}
