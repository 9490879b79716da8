//! Alertmanager's webhook with its documented payload (version 4): credentials, one
//! triage thread per alert group, later notifications of the group added to it.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine;
use common::{identity, Fixture};
use deckhand_api::config::{AlertmanagerConfig, BasicAuth};
use deckhand_api::model::{Scope, ThreadQuery};
use deckhand_api::{ApiConfig, Deckhand};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

fn payload(status: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}/{severity=\"critical\"}:{alertname=\"KubePodCrashLooping\", namespace=\"shop\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "deckhand",
        "groupLabels": {"alertname": "KubePodCrashLooping", "namespace": "shop"},
        "commonLabels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "severity": "critical"},
        "commonAnnotations": {"runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"},
        "externalURL": "http://alertmanager.monitoring:9093",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "checkout-7d9f8b-x2x1z", "container": "checkout", "severity": "critical"},
                "annotations": {"summary": "Pod is crash looping.", "description": "Pod shop/checkout-7d9f8b-x2x1z (checkout) is in waiting state (reason: \"CrashLoopBackOff\")."},
                "startsAt": "2026-11-23T01:02:03.456Z",
                "endsAt": if status == "resolved" { "2026-11-23T02:00:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=max_over_time%28kube_pod_container_status_waiting_reason%5B5m%5D%29+%3E%3D+1",
                "fingerprint": "a3f1c2d4e5b6a7c8"
            }
        ]
    })
}

async fn post(
    fixture: &Fixture,
    authorization: Option<String>,
    body: String,
) -> (StatusCode, Value) {
    let mut request =
        Request::post("/hooks/alertmanager").header(header::CONTENT_TYPE, "application/json");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = fixture
        .router
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn config() -> ApiConfig {
    ApiConfig {
        alertmanager: Some(AlertmanagerConfig {
            bearer_token: Some("am-secret".into()),
            basic_auth: Some(BasicAuth {
                username: "alertmanager".into(),
                password: "pa55".into(),
            }),
            subject: "alertmanager".into(),
            groups: vec!["sre".into()],
        }),
        ..ApiConfig::default()
    }
}

#[tokio::test]
async fn an_alert_group_opens_one_triage_thread_and_its_resolution_continues_it() {
    let fixture = Fixture::new(config());
    let (status, opened) = post(
        &fixture,
        Some("Bearer am-secret".into()),
        payload("firing").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    assert_eq!(opened["created"], true);
    let groups = fixture.service.alert_groups();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].alerts[0].labels["pod"], "checkout-7d9f8b-x2x1z");
    assert_eq!(
        groups[0].external_url,
        "http://alertmanager.monitoring:9093"
    );
    assert!(groups[0].alerts[0]
        .generator_url
        .starts_with("http://prometheus"));

    let threads = fixture
        .service
        .list_threads(&identity("x", Scope::Admin), ThreadQuery::default())
        .await
        .unwrap();
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].user, "alertmanager");
    assert_eq!(threads[0].namespace.as_deref(), Some("shop"));

    let basic = base64::engine::general_purpose::STANDARD.encode("alertmanager:pa55");
    let (status, continued) = post(
        &fixture,
        Some(format!("Basic {basic}")),
        payload("resolved").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{continued}");
    assert_eq!(
        continued,
        json!({"thread_id": opened["thread_id"], "created": false})
    );
    let detail = fixture
        .service
        .thread(&identity("x", Scope::Admin), threads[0].id)
        .await
        .unwrap();
    let last = &detail.messages.last().unwrap().text;
    assert!(
        last.starts_with("[RESOLVED:1] KubePodCrashLooping"),
        "{last}"
    );
    assert!(
        last.contains(
            "namespace=shop pod=checkout-7d9f8b-x2x1z container=checkout: Pod is crash looping."
        ),
        "{last}"
    );
}

#[tokio::test]
async fn the_hook_takes_only_its_own_credentials_and_documented_payloads() {
    let fixture = Fixture::new(config());
    let body = payload("firing").to_string();
    let basic = |credentials: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    };
    for authorization in [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Bearer {}", fixture.admin)),
        Some(basic("alertmanager:wrong")),
    ] {
        let (status, _) = post(&fixture, authorization.clone(), body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
    }
    let mut old = payload("firing");
    old["version"] = json!("3");
    let (status, _) = post(&fixture, Some("Bearer am-secret".into()), old.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(
        &fixture,
        Some("Bearer am-secret".into()),
        "{\"alerts\": 1}".into(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(fixture.service.alert_groups().is_empty());

    let unconfigured = Fixture::new(ApiConfig::default());
    let (status, _) = post(&unconfigured, None, body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
