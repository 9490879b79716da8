//! The WebSocket stream on a real socket: events in order, resuming after a reconnect
//! with no gap and no duplicate, the token as a subprotocol, and a client that does not
//! read being closed (1013, naming where to resume) while another keeps streaming.
#![allow(clippy::unwrap_used)]

mod common;

use common::{identity, Fixture};
use deckhand_api::config::WebSocketConfig;
use deckhand_api::model::{NewThread, Scope};
use deckhand_api::{ApiConfig, Deckhand, ThreadEvent, ThreadEventKind};
use futures_util::StreamExt;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// No wait in these tests is a timing assertion: each only bounds a hang.
const PATIENCE: Duration = Duration::from_secs(30);

async fn serve(fixture: &Fixture) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = fixture.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

async fn connect(address: SocketAddr, path: &str, token: &str) -> Result<Client, WsError> {
    let mut request = format!("ws://{address}{path}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(client, _)| client)
}

async fn next_event(client: &mut Client) -> ThreadEvent {
    loop {
        let message = tokio::time::timeout(PATIENCE, client.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

async fn new_thread(fixture: &Fixture) -> deckhand_runtime::ThreadId {
    fixture
        .service
        .create_thread(
            &identity("olga", Scope::Operator),
            NewThread {
                text: "scale web to 3".into(),
                namespace: None,
            },
        )
        .await
        .unwrap()
        .thread
        .id
}

#[tokio::test]
async fn a_reconnecting_client_resumes_after_its_last_event_without_gap_or_duplicate() {
    let fixture = Fixture::new(ApiConfig::default());
    let address = serve(&fixture).await;
    let thread = new_thread(&fixture).await;
    let path = format!("/ws/threads/{thread}");

    // The stored events first (the request, the plan), then live ones.
    let mut client = connect(address, &path, &fixture.viewer).await.unwrap();
    let first = next_event(&mut client).await;
    assert_eq!((first.id, first.kind), (1, ThreadEventKind::Message));
    let second = next_event(&mut client).await;
    assert_eq!((second.id, second.kind), (2, ThreadEventKind::PlanProposed));
    assert_eq!(
        second.data["hash"].as_str().unwrap().len(),
        "sha256:".len() + 64
    );
    fixture
        .service
        .emit(
            thread,
            ThreadEventKind::Token,
            json!({"agent": "jamie", "text": "Scal"}),
        )
        .unwrap();
    let third = next_event(&mut client).await;
    assert_eq!((third.id, third.data["text"].as_str()), (3, Some("Scal")));
    drop(client);

    // While away, the thread goes on.
    for text in ["ing", " web"] {
        fixture
            .service
            .emit(
                thread,
                ThreadEventKind::Token,
                json!({"agent": "jamie", "text": text}),
            )
            .unwrap();
    }
    let mut client = connect(address, &format!("{path}?after=3"), &fixture.viewer)
        .await
        .unwrap();
    let missed: Vec<u64> = vec![
        next_event(&mut client).await.id,
        next_event(&mut client).await.id,
    ];
    assert_eq!(missed, [4, 5]);
    fixture
        .service
        .emit(thread, ThreadEventKind::Result, json!({"text": "done"}))
        .unwrap();
    let live = next_event(&mut client).await;
    assert_eq!((live.id, live.kind), (6, ThreadEventKind::Result));

    // Last-Event-ID works like ?after=.
    let mut request = format!("ws://{address}{path}")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", fixture.viewer).parse().unwrap(),
    );
    request
        .headers_mut()
        .insert("last-event-id", "5".parse().unwrap());
    let (mut client, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(next_event(&mut client).await.id, 6);
}

#[tokio::test]
async fn shutting_down_closes_sessions_with_1001_naming_where_to_resume() {
    let fixture = Fixture::new(ApiConfig::default());
    let address = serve(&fixture).await;
    let thread = new_thread(&fixture).await;
    let mut client = connect(address, &format!("/ws/threads/{thread}"), &fixture.viewer)
        .await
        .unwrap();
    assert_eq!(next_event(&mut client).await.id, 1);
    assert_eq!(next_event(&mut client).await.id, 2);
    fixture.shutdown.cancel();
    match tokio::time::timeout(PATIENCE, client.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::Away);
            assert_eq!(
                frame.reason.as_str(),
                "server shutting down: reconnect with ?after=2"
            );
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn browsers_send_the_token_as_a_subprotocol_and_strangers_are_refused() {
    let fixture = Fixture::new(ApiConfig::default());
    let address = serve(&fixture).await;
    let thread = new_thread(&fixture).await;
    let path = format!("/ws/threads/{thread}");

    let mut request = format!("ws://{address}{path}")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("deckhand, bearer.{}", fixture.viewer)
            .parse()
            .unwrap(),
    );
    let (mut client, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "deckhand");
    assert_eq!(next_event(&mut client).await.id, 1);

    match connect(address, &path, "dh_wrong").await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }
    match connect(
        address,
        &format!("/ws/threads/{}", uuid::Uuid::new_v4()),
        &fixture.viewer,
    )
    .await
    {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected a 404, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_with_1013_and_the_others_keep_streaming() {
    let fixture = Fixture::new(ApiConfig {
        websocket: WebSocketConfig {
            buffer: 8,
            ping_interval_secs: 3600,
            send_timeout_secs: 1,
        },
        ..ApiConfig::default()
    });
    let address = serve(&fixture).await;
    let thread = new_thread(&fixture).await;
    let path = format!("/ws/threads/{thread}");

    // The slow client's socket takes little, so the server's writes block soon.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let stream = socket.connect(address).await.unwrap();
    let mut request = format!("ws://{address}{path}")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", fixture.viewer).parse().unwrap(),
    );
    let (mut slow, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();

    let mut fast = connect(address, &path, &fixture.operator).await.unwrap();
    for expected in 1..=2 {
        assert_eq!(next_event(&mut fast).await.id, expected);
    }
    // 300 events of 64 KiB (~19 MiB) while the slow client reads nothing; each is
    // emitted once the fast client has it, so the fast client is never behind.
    let chunk = "x".repeat(64 * 1024);
    let total = 2 + 300;
    for _ in 0..300 {
        let id = fixture
            .service
            .emit(
                thread,
                ThreadEventKind::Token,
                json!({"agent": "jamie", "text": chunk}),
            )
            .unwrap();
        assert_eq!(next_event(&mut fast).await.id, id);
    }

    // Once the server has given up on the slow client, it reads what reached it, then
    // the close frame.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !metrics_text(&fixture)
        .await
        .contains("deckhand_websocket_slow_client_closes_total 1")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow client was never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut last_seen = 0;
    let close = loop {
        match tokio::time::timeout(PATIENCE, slow.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => {
                let event: ThreadEvent = serde_json::from_str(&text).unwrap();
                assert_eq!(
                    event.id,
                    last_seen + 1,
                    "events arrive in order without gaps"
                );
                last_seen = event.id;
            }
            Some(Ok(Message::Close(frame))) => break frame.unwrap(),
            Some(Ok(_)) => {}
            other => panic!("expected events then a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.code, CloseCode::Again);
    assert_eq!(
        close.reason.as_str(),
        format!("slow client: reconnect with ?after={last_seen}")
    );
    assert!(
        last_seen < total,
        "the slow client was closed before it had everything"
    );

    // Reconnecting where the close frame says loses nothing.
    let mut again = connect(
        address,
        &format!("{path}?after={last_seen}"),
        &fixture.viewer,
    )
    .await
    .unwrap();
    for expected in last_seen + 1..=total {
        assert_eq!(next_event(&mut again).await.id, expected);
    }
    assert!(metrics_text(&fixture)
        .await
        .contains("deckhand_websocket_slow_client_closes_total 1"));
}

async fn metrics_text(fixture: &Fixture) -> String {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let response = fixture
        .router
        .clone()
        .oneshot(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}
