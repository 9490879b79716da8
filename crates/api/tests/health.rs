//! The health routes, driven through the router without a socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deckhand_api::{app, AppState, HealthCheck};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tower::ServiceExt;

struct Fixed {
    name: &'static str,
    result: Result<&'static str, &'static str>,
}

impl HealthCheck for Fixed {
    fn name(&self) -> &str {
        self.name
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>> {
        let result = self.result.map(str::to_owned).map_err(str::to_owned);
        Box::pin(async move { result })
    }
}

fn state(checks: Vec<Arc<dyn HealthCheck>>) -> AppState {
    AppState {
        version: "test",
        checks: checks.into(),
    }
}

async fn get(state: AppState, path: &str) -> (StatusCode, serde_json::Value) {
    let response = app(state)
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&body).expect("JSON body"))
}

#[tokio::test]
async fn healthz_answers_even_when_a_component_is_down() {
    let down: Arc<dyn HealthCheck> = Arc::new(Fixed {
        name: "store",
        result: Err("disk full"),
    });
    let (status, body) = get(state(vec![down]), "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_reports_every_component_and_fails_when_one_is_down() {
    let up: Arc<dyn HealthCheck> = Arc::new(Fixed {
        name: "store",
        result: Ok("sqlite"),
    });
    let down: Arc<dyn HealthCheck> = Arc::new(Fixed {
        name: "cluster",
        result: Err("connection refused"),
    });
    let (status, body) = get(state(vec![up.clone(), down]), "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["components"][1]["name"], "cluster");
    assert_eq!(body["components"][1]["detail"], "connection refused");

    let (status, body) = get(state(vec![up]), "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["components"][0]["ok"], true);
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let response = app(state(vec![]))
        .oneshot(Request::get("/nope").body(Body::empty()).expect("request"))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
