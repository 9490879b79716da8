//! OIDC: JWTs signed with a real ES256 key, checked against the JWKS served by a local
//! HTTP server, through the router.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use common::Fixture;
use deckhand_api::config::OidcConfig;
use deckhand_api::model::Scope;
use deckhand_api::ApiConfig;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tower::ServiceExt;

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "deckhand";

struct Provider {
    key: EncodingKey,
    other_key: EncodingKey,
    fetches: Arc<AtomicUsize>,
    jwks_url: String,
}

fn es256_key() -> (EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    assert_eq!(point.len(), 65, "an uncompressed P-256 point");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]), "kid": "k1", "alg": "ES256", "use": "sig"});
    (
        EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
        jwk,
    )
}

async fn provider() -> Provider {
    let (key, jwk) = es256_key();
    let (other_key, _) = es256_key();
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let app = Router::new().route(
        "/jwks",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let jwks = json!({"keys": [jwk.clone()]});
            async move { Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Provider {
        key,
        other_key,
        fetches,
        jwks_url,
    }
}

fn config(provider: &Provider) -> ApiConfig {
    ApiConfig {
        oidc: Some(OidcConfig {
            jwks_url: provider.jwks_url.clone(),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            subject_claim: "email".into(),
            groups_claim: "groups".into(),
            admin_groups: vec!["sre-leads".into()],
            operator_groups: vec!["devs".into()],
            viewer_groups: vec![],
            default_scope: None,
            jwks_cache_secs: 300,
        }),
        ..ApiConfig::default()
    }
}

fn jwt(key: &EncodingKey, kid: &str, claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn claims(groups: &[&str]) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "00u1", "email": "alice@example.com", "groups": groups, "iat": now, "exp": now + 600})
}

async fn whoami(fixture: &Fixture, token: &str) -> (StatusCode, Value) {
    let request = Request::get("/api/whoami")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = fixture.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn a_valid_jwt_maps_its_claims_and_groups_to_an_identity_and_scope() {
    let provider = provider().await;
    let fixture = Fixture::new(config(&provider));
    let (status, body) = whoami(
        &fixture,
        &jwt(&provider.key, "k1", claims(&["devs", "sre-leads"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["identity"]["subject"], "alice@example.com");
    assert_eq!(body["identity"]["groups"], json!(["devs", "sre-leads"]));
    assert_eq!(body["identity"]["scope"], "admin");
    assert_eq!(
        body["identity"]["source"],
        json!({"type": "oidc", "issuer": ISSUER})
    );

    let (status, body) = whoami(&fixture, &jwt(&provider.key, "k1", claims(&["devs"]))).await;
    assert_eq!(
        (status, body["identity"]["scope"].as_str()),
        (StatusCode::OK, Some(Scope::Operator.as_str()))
    );

    // Keys are fetched once and cached; API tokens still work next to OIDC.
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 1);
    assert_eq!(whoami(&fixture, &fixture.viewer).await.0, StatusCode::OK);
}

#[tokio::test]
async fn wrong_issuer_audience_expiry_signature_or_algorithm_is_401_and_no_group_is_403() {
    let provider = provider().await;
    let fixture = Fixture::new(config(&provider));
    let mut wrong_issuer = claims(&["devs"]);
    wrong_issuer["iss"] = json!("https://evil.test");
    let mut wrong_audience = claims(&["devs"]);
    wrong_audience["aud"] = json!("another-app");
    let mut expired = claims(&["devs"]);
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    let mut no_subject = claims(&["devs"]);
    no_subject.as_object_mut().unwrap().remove("email");
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&["devs"]),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    let refused = [
        ("wrong issuer", jwt(&provider.key, "k1", wrong_issuer)),
        ("wrong audience", jwt(&provider.key, "k1", wrong_audience)),
        ("expired", jwt(&provider.key, "k1", expired)),
        ("no subject claim", jwt(&provider.key, "k1", no_subject)),
        (
            "another key",
            jwt(&provider.other_key, "k1", claims(&["devs"])),
        ),
        ("unknown kid", jwt(&provider.key, "k9", claims(&["devs"]))),
        ("HS256", hs256),
    ];
    for (what, token) in refused {
        let (status, body) = whoami(&fixture, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"], "unauthenticated", "{what}");
    }
    let (status, body) = whoami(&fixture, &jwt(&provider.key, "k1", claims(&["marketing"]))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}
