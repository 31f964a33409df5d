//! `/v1/events` over a real loopback socket with a WebSocket client.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokenim_api::types::Event;
use tokenim_api::{ApiConfig, Scope};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn start(node: &Arc<FakeNode>, cfg: ApiConfig) -> SocketAddr {
    start_router(node, cfg).await.0
}

/// Serves the API on a loopback socket; the router returned shares its state (for `oneshot`
/// calls that must reach the same event streams).
async fn start_router(node: &Arc<FakeNode>, cfg: ApiConfig) -> (SocketAddr, axum::Router) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app_with(node, cfg);
    tokio::spawn(tokenim_api::serve(
        listener,
        router.clone(),
        futures::future::pending(),
    ));
    (addr, router)
}

/// Opens a stream and checks it starts with `auth_ok`: by header with `Some(token)`, else
/// with a first frame carrying `first_frame`.
async fn open_authed(addr: SocketAddr, header: Option<&str>, first_frame: Option<&str>) -> Ws {
    let (mut ws, _) = connect_async(ws_request(addr, header)).await.unwrap();
    if let Some(token) = first_frame {
        ws.send(Message::text(
            json!({"type": "auth", "token": token}).to_string(),
        ))
        .await
        .unwrap();
    }
    assert_eq!(next_json(&mut ws).await, json!({"type": "auth_ok"}));
    ws
}

fn token_id(token: &str) -> &str {
    token.split('_').nth(1).unwrap()
}

fn ws_request(addr: SocketAddr, token: Option<&str>) -> tungstenite::handshake::client::Request {
    let mut request = format!("ws://{addr}/v1/events")
        .into_client_request()
        .unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// A broken server must fail a test, not hang it.
const STUCK: Duration = Duration::from_secs(30);

/// Next text frame as JSON, skipping pings.
async fn next_json(ws: &mut Ws) -> Value {
    tokio::time::timeout(STUCK, next_json_inner(ws))
        .await
        .expect("no frame from the server")
}

async fn next_json_inner(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await.expect("stream open").expect("frame") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The close frame's code, after any remaining text frames (returned too).
async fn expect_close(ws: &mut Ws) -> (Vec<Value>, u16) {
    let (texts, code, _) = expect_close_reason(ws).await;
    (texts, code)
}

/// [`expect_close`] with the close frame's reason.
async fn expect_close_reason(ws: &mut Ws) -> (Vec<Value>, u16, String) {
    tokio::time::timeout(STUCK, expect_close_inner(ws))
        .await
        .expect("the server did not close")
}

async fn expect_close_inner(ws: &mut Ws) -> (Vec<Value>, u16, String) {
    let mut texts = Vec::new();
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                texts.push(serde_json::from_str(text.as_str()).unwrap())
            }
            Some(Ok(Message::Close(Some(frame)))) => {
                return (texts, u16::from(frame.code), frame.reason.to_string());
            }
            Some(Ok(Message::Close(None))) | None => return (texts, 1005, String::new()),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket error before close: {e}"),
        }
    }
}

fn sample_event(n: u32) -> Event {
    Event::Message {
        message: message_sample(&format!("ev{n}")),
    }
}

#[tokio::test]
async fn header_auth_then_events() {
    let node = FakeNode::new();
    let token = node.token(&[Scope::Read]);
    let addr = start(&node, ApiConfig::default()).await;
    let (mut ws, resp) = connect_async(ws_request(addr, Some(&token))).await.unwrap();
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(next_json(&mut ws).await, json!({"type": "auth_ok"}));

    node.publish(sample_event(1));
    node.publish(Event::MessageState {
        id: "ev1".into(),
        state: tokenim_api::types::MessageState::Stored,
        stored_by: 2,
        reached: None,
        delivered_to: None,
        read_by: None,
        at: 9,
    });
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "message");
    assert_eq!(first["message"]["id"], "ev1");
    assert_eq!(
        serde_json::from_value::<Event>(first).unwrap(),
        sample_event(1)
    );
    let second = next_json(&mut ws).await;
    assert_eq!(
        second,
        json!({"type": "message_state", "id": "ev1", "state": "stored", "stored_by": 2, "at": 9})
    );
}

#[tokio::test]
async fn first_frame_auth_then_events() {
    let node = FakeNode::new();
    let token = node.token(&[Scope::Admin]);
    let addr = start(&node, ApiConfig::default()).await;
    let (mut ws, _) = connect_async(ws_request(addr, None)).await.unwrap();
    ws.send(Message::text(
        json!({"type": "auth", "token": token}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type": "auth_ok"}));
    node.publish(Event::PeerConnected {
        peer_id: "p1".into(),
    });
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "peer_connected", "peer_id": "p1"})
    );
}

#[tokio::test]
async fn bad_first_frames_are_refused() {
    let node = FakeNode::new();
    let read = node.token(&[Scope::Read]);
    let send_only = node.token(&[Scope::Send]);
    let addr = start(&node, ApiConfig::default()).await;
    let unknown = format!("tim_ffffffffffffffff_{}", read.rsplit_once('_').unwrap().1);
    let cases = [
        (
            json!({"type": "auth", "token": unknown}).to_string(),
            "unauthorized",
        ),
        (
            json!({"type": "auth", "token": "tim_nope"}).to_string(),
            "unauthorized",
        ),
        (
            json!({"type": "auth", "token": send_only}).to_string(),
            "forbidden_scope",
        ),
        (json!({"type": "hello"}).to_string(), "unauthorized"),
        ("not json".to_owned(), "unauthorized"),
    ];
    for (frame, code) in cases {
        let (mut ws, _) = connect_async(ws_request(addr, None)).await.unwrap();
        ws.send(Message::text(frame.clone())).await.unwrap();
        let (texts, close) = expect_close(&mut ws).await;
        assert_eq!(texts.len(), 1, "{frame}: {texts:?}");
        assert_eq!(texts[0]["type"], "error");
        assert_eq!(texts[0]["code"], code, "{frame}");
        assert_eq!(close, 1008, "{frame}");
    }
    assert_eq!(node.subscribers(), 0, "a refused client never subscribed");
}

#[tokio::test]
async fn header_with_bad_token_fails_the_handshake() {
    let node = FakeNode::new();
    let send_only = node.token(&[Scope::Send]);
    let addr = start(&node, ApiConfig::default()).await;
    for (token, status) in [("tim_bad", 401), (send_only.as_str(), 403)] {
        match connect_async(ws_request(addr, Some(token))).await {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), status);
                let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
                assert!(body["error"]["request_id"].is_string());
            }
            other => panic!("expected an HTTP error, got {:?}", other.map(|_| ())),
        }
    }
}

#[tokio::test]
async fn foreign_origin_fails_the_handshake() {
    let node = FakeNode::new();
    let token = node.token(&[Scope::Read]);
    let addr = start(&node, ApiConfig::default()).await;
    let mut request = ws_request(addr, Some(&token));
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match connect_async(request).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn silent_client_is_closed_after_auth_timeout() {
    let node = FakeNode::new();
    let cfg = ApiConfig {
        ws_auth_timeout: Duration::from_millis(200),
        ..ApiConfig::default()
    };
    let addr = start(&node, cfg).await;
    let (mut ws, _) = connect_async(ws_request(addr, None)).await.unwrap();
    let (texts, close) = expect_close(&mut ws).await;
    assert_eq!(texts[0]["code"], "unauthorized");
    assert_eq!(close, 1008);
}

#[tokio::test]
async fn lagging_client_is_told_how_much_it_missed() {
    let node = FakeNode::new();
    let token = node.token(&[Scope::Read]);
    // Subscribing pushes 10 events into a 4-slot broadcast before the stream reads any.
    node.preload_on_subscribe(10);
    let addr = start(&node, ApiConfig::default()).await;
    let (mut ws, _) = connect_async(ws_request(addr, Some(&token))).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "auth_ok");
    let missed = 10 - EVENT_CAPACITY as u64;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "lagged", "missed": missed})
    );
    for i in missed..10 {
        let event = next_json(&mut ws).await;
        assert_eq!(event["peer_id"], format!("preload-{i}"));
    }
}

#[tokio::test]
async fn event_streams_are_bounded() {
    let node = FakeNode::new();
    let token = node.token(&[Scope::Read]);
    let cfg = ApiConfig {
        max_event_streams: 1,
        ..ApiConfig::default()
    };
    let addr = start(&node, cfg).await;
    let (mut first, _) = connect_async(ws_request(addr, Some(&token))).await.unwrap();
    assert_eq!(next_json(&mut first).await["type"], "auth_ok");
    match connect_async(ws_request(addr, Some(&token))).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    // Closing the first frees the slot.
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    // The server frees the slot when its task ends, just after the close handshake: retry
    // until it does (bounded generously; a leaked slot fails here).
    let (mut again, _) = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match connect_async(ws_request(addr, Some(&token))).await {
                Ok(ok) => break ok,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await
    .expect("event-stream slot never freed");
    assert_eq!(next_json(&mut again).await["type"], "auth_ok");
}

/// Revoking a token through the API closes every stream it authenticated, by header or by
/// first frame, at once and before any later event: an `unauthorized` error frame, then close
/// 1008 "token revoked". Streams of other tokens carry on.
#[tokio::test]
async fn revoking_a_token_closes_its_streams() {
    let node = FakeNode::new();
    let admin = node.token(&[Scope::Admin]);
    let doomed = node.token(&[Scope::Read]);
    let other = node.token(&[Scope::Read]);
    let (addr, app) = start_router(&node, ApiConfig::default()).await;
    let mut by_header = open_authed(addr, Some(&doomed), None).await;
    let mut by_frame = open_authed(addr, None, Some(&doomed)).await;
    let mut untouched = open_authed(addr, Some(&other), None).await;
    assert_eq!(node.subscribers(), 3);

    let reply = call(
        &app,
        empty(authed(
            "DELETE",
            &format!("/v1/tokens/{}", token_id(&doomed)),
            &admin,
        )),
    )
    .await;
    assert_eq!(reply.status, axum::http::StatusCode::NO_CONTENT);
    node.publish(sample_event(1));

    assert_eq!(next_json(&mut untouched).await["message"]["id"], "ev1");
    for (what, ws) in [("header", &mut by_header), ("first frame", &mut by_frame)] {
        let first = next_json(ws).await;
        assert_eq!(
            first["type"], "error",
            "{what}: got {first} after revocation"
        );
        assert_eq!(first["code"], "unauthorized", "{what}");
        let (texts, code, reason) = expect_close_reason(ws).await;
        assert!(texts.is_empty(), "{what}: {texts:?}");
        assert_eq!(code, 1008, "{what}");
        assert_eq!(reason, "token revoked", "{what}");
    }
    // Their subscriptions are gone too.
    let deadline = tokio::time::Instant::now() + STUCK;
    while node.subscribers() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "subscriptions kept");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sockets without a token take no stream slot, and upgrade attempts with a bad token get 401
/// without one: with far more of both than slots, authenticated clients still get every slot.
#[tokio::test]
async fn unauthenticated_sockets_take_no_stream_slot() {
    let node = FakeNode::new();
    let token = node.token(&[Scope::Read]);
    let cfg = ApiConfig {
        max_event_streams: 2,
        ..ApiConfig::default()
    };
    let addr = start(&node, cfg).await;
    let mut waiting = Vec::new();
    for _ in 0..10 {
        match connect_async(ws_request(addr, None)).await {
            Ok((ws, _)) => waiting.push(ws),
            Err(tungstenite::Error::Http(resp)) => {
                assert_ne!(resp.status().as_u16(), 101);
            }
            Err(e) => panic!("{e}"),
        }
    }
    for _ in 0..10 {
        match connect_async(ws_request(addr, Some("tim_bad"))).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
            other => panic!("expected 401, got {:?}", other.map(|_| ())),
        }
    }
    let _first = open_authed(addr, Some(&token), None).await;
    let _second = open_authed(addr, None, Some(&token)).await;
    match connect_async(ws_request(addr, Some(&token))).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    drop(waiting);
}

/// Connections waiting for their auth frame are bounded apart from the streams: one more than
/// `max_pending_event_streams` closes the one waiting longest (`unavailable`, close 1013); the
/// others can still authenticate.
#[tokio::test]
async fn waiting_for_the_auth_frame_is_bounded_oldest_first() {
    let node = FakeNode::new();
    let token = node.token(&[Scope::Read]);
    let cfg = ApiConfig {
        max_pending_event_streams: 2,
        ..ApiConfig::default()
    };
    let addr = start(&node, cfg).await;
    let mut oldest = connect_async(ws_request(addr, None)).await.unwrap().0;
    let mut second = connect_async(ws_request(addr, None)).await.unwrap().0;
    let mut third = connect_async(ws_request(addr, None)).await.unwrap().0;
    let (texts, code) = expect_close(&mut oldest).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0]["code"], "unavailable");
    assert_eq!(code, 1013);
    for ws in [&mut second, &mut third] {
        ws.send(Message::text(
            json!({"type": "auth", "token": token}).to_string(),
        ))
        .await
        .unwrap();
        assert_eq!(next_json(ws).await, json!({"type": "auth_ok"}));
    }
}

/// A first-frame client that authenticates while every slot is taken gets `unavailable` and
/// close 1013, without subscribing.
#[tokio::test]
async fn first_frame_client_gets_unavailable_when_every_slot_is_taken() {
    let node = FakeNode::new();
    let token = node.token(&[Scope::Read]);
    let cfg = ApiConfig {
        max_event_streams: 1,
        ..ApiConfig::default()
    };
    let addr = start(&node, cfg).await;
    let _holder = open_authed(addr, Some(&token), None).await;
    let (mut ws, _) = connect_async(ws_request(addr, None)).await.unwrap();
    ws.send(Message::text(
        json!({"type": "auth", "token": token}).to_string(),
    ))
    .await
    .unwrap();
    let (texts, code) = expect_close(&mut ws).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0]["code"], "unavailable");
    assert_eq!(code, 1013);
    assert_eq!(node.subscribers(), 1);
}
