//! Apps that hold a token, or none, and try to get more than it allows from a real process:
//! a revoked token's event stream, unauthenticated sockets hoarding the event-stream slots, and
//! a `send`-only token after message bodies and contact names.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::harness::{NodeProc, WAIT, init, wait_event};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The node's default `max_event_streams`.
const EVENT_STREAM_SLOTS: usize = 64;

/// How an event-stream client authenticates.
#[derive(Clone, Copy, Debug)]
enum WsAuth<'a> {
    /// No token at all.
    None,
    /// `Authorization: Bearer` on the upgrade request.
    Header(&'a str),
    /// `{"type":"auth","token":...}` as the first frame.
    FirstFrame(&'a str),
}

/// Opens `/v1/events` and sends the auth frame if asked to; does not read anything.
async fn ws_open(api: SocketAddr, auth: WsAuth<'_>) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("ws://{api}/v1/events").into_client_request()?;
    if let WsAuth::Header(token) = auth {
        let value = format!("Bearer {token}")
            .parse()
            .expect("a token is a header value");
        request.headers_mut().insert("authorization", value);
    }
    let (mut ws, _) = connect_async(request).await?;
    if let WsAuth::FirstFrame(token) = auth {
        ws.send(Message::text(
            json!({"type": "auth", "token": token}).to_string(),
        ))
        .await?;
    }
    Ok(ws)
}

/// Next text frame as JSON (pings skipped); an error if the stream closes first.
async fn next_json(ws: &mut Ws) -> Result<Value> {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(text.as_str())?),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => bail!("expected a text frame, got {other:?}"),
            }
        }
    })
    .await
    .context("no frame from the node")?
}

/// Opens a stream that the node accepts: its first frame is `auth_ok`.
async fn ws_authed(api: SocketAddr, auth: WsAuth<'_>) -> Result<Ws> {
    let mut ws = ws_open(api, auth)
        .await
        .with_context(|| format!("opening /v1/events with {auth:?}"))?;
    let first = next_json(&mut ws).await?;
    if first != json!({"type": "auth_ok"}) {
        bail!("/v1/events with {auth:?} started with {first}");
    }
    Ok(ws)
}

/// What a stream said until the node closed it: its text frames and the close frame. Fails at
/// once on a text frame of type `forbidden` (an event it must not get).
async fn frames_until_close(
    ws: &mut Ws,
    forbidden: &str,
) -> Result<(Vec<Value>, Option<(u16, String)>)> {
    let mut texts: Vec<Value> = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(text.as_str())?;
                    if frame["type"] == forbidden {
                        bail!("got {frame} (after {texts:?})");
                    }
                    texts.push(frame);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ok(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
                }
                None => return Ok(None),
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("socket error before a close frame: {e}"),
            }
        }
    })
    .await
    .with_context(|| format!("the node did not close the stream; it sent {texts:?}"))?
    .map(|close| (texts, close))
}

/// Status and body text of one API request.
async fn http(
    node: &NodeProc,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Result<(u16, String)> {
    let mut req = reqwest::Client::new()
        .request(method, format!("http://{}{path}", node.api))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

fn error_code(text: &str) -> String {
    serde_json::from_str::<Value>(text).unwrap_or_default()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A new token on `node` with these scopes: (token text, token id).
async fn token(node: &NodeProc, name: &str, scopes: &[&str]) -> Result<(String, String)> {
    let created = node
        .client
        .post("/tokens", json!({"name": name, "scopes": scopes}))
        .await?;
    Ok((
        created["token"].as_str().context("token text")?.to_owned(),
        created["id"].as_str().context("token id")?.to_owned(),
    ))
}

/// Alice knows Bob under `bob_name`, Bob knows Alice.
async fn contacts(root: &std::path::Path, bob_name: &str) -> Result<(NodeProc, NodeProc)> {
    let alice = NodeProc::start(&init(root, "alice")?, "/ip4/127.0.0.1/tcp/0").await?;
    let bob = NodeProc::start(&init(root, "bob")?, "/ip4/127.0.0.1/tcp/0").await?;
    alice.add_contact(&bob, bob_name).await?;
    bob.add_contact(&alice, "alice").await?;
    Ok((alice, bob))
}

/// Revoking a token closes every event stream it opened (header or first-frame auth) at once,
/// with an `unauthorized` error frame and a policy close naming the revocation; an event the
/// node produces afterwards reaches the admin's stream but none of the revoked ones.
#[tokio::test]
async fn revoking_a_token_closes_its_open_event_streams() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (alice, bob) = contacts(root.path(), "bob").await?;
    let (reader, reader_id) = token(&alice, "watcher", &["read"]).await?;
    let (other, _) = token(&alice, "other watcher", &["read"]).await?;
    let mut by_header = ws_authed(alice.api, WsAuth::Header(&reader)).await?;
    let mut by_frame = ws_authed(alice.api, WsAuth::FirstFrame(&reader)).await?;
    let mut other_stream = ws_authed(alice.api, WsAuth::Header(&other)).await?;
    let mut admin_events = alice.client.events().await?;

    alice.client.delete(&format!("/tokens/{reader_id}")).await?;

    // The node now produces an event: Bob's message arrives.
    bob.send(&alice.address, "after the revocation").await?;
    let got = wait_event(&mut admin_events, "message", |_| true).await?;
    assert_eq!(got["message"]["body"], "after the revocation");
    loop {
        let seen = next_json(&mut other_stream).await?;
        if seen["type"] == "message" {
            assert_eq!(seen["message"]["body"], "after the revocation");
            break; // a stream of another token is untouched
        }
    }

    for (what, ws) in [("header", &mut by_header), ("first frame", &mut by_frame)] {
        let (texts, close) = frames_until_close(ws, "message")
            .await
            .with_context(|| format!("the revoked stream authenticated by {what}"))?;
        // Events from before the revocation (a peer connecting) may come first.
        let last = texts.last().context("no error frame")?;
        assert_eq!(last["type"], "error", "{what}: {texts:?}");
        assert_eq!(last["code"], "unauthorized", "{what}: {texts:?}");
        let (code, reason) = close.context("a close frame")?;
        assert_eq!(code, u16::from(CloseCode::Policy), "{what}");
        assert_eq!(reason, "token revoked", "{what}");
    }
    // And the revoked token cannot open a new one.
    match ws_open(alice.api, WsAuth::Header(&reader)).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        other => bail!("a revoked token opened a stream: {:?}", other.map(|_| ())),
    }
    alice.stop().await?;
    bob.stop().await?;
    Ok(())
}

/// Sockets that never authenticate take none of the 64 event-stream slots: with more than 64
/// of them held open (and as many upgrade attempts with a bad token, each refused with 401),
/// all 64 slots still go to authenticated clients, by header and by first frame, and the 65th
/// authenticated one is refused with 503.
#[tokio::test]
async fn unauthenticated_sockets_cannot_hold_the_event_stream_slots() -> Result<()> {
    let root = tempfile::tempdir()?;
    let node = NodeProc::start(&init(root.path(), "carol")?, "/ip4/127.0.0.1/tcp/0").await?;
    let (reader, _) = token(&node, "ui", &["read"]).await?;

    let mut hoarders = Vec::new();
    for i in 0..EVENT_STREAM_SLOTS + 8 {
        match ws_open(node.api, WsAuth::None).await {
            Ok(ws) => hoarders.push(ws),
            // Refusing them is fine too, as long as they take no slot.
            Err(tungstenite::Error::Http(resp)) => {
                eprintln!("unauthenticated socket {i} refused: {}", resp.status());
            }
            Err(e) => bail!("unauthenticated socket {i}: {e}"),
        }
    }
    let bad = format!("tim_{}_{}", "0".repeat(16), "0".repeat(64));
    for _ in 0..EVENT_STREAM_SLOTS + 8 {
        match ws_open(node.api, WsAuth::Header(&bad)).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
            other => bail!("a bad token was upgraded: {:?}", other.map(|_| ())),
        }
    }

    let mut streams = Vec::new();
    for i in 0..EVENT_STREAM_SLOTS - 1 {
        streams.push(
            ws_authed(node.api, WsAuth::Header(&reader))
                .await
                .with_context(|| format!("authenticated stream {i}"))?,
        );
    }
    streams.push(ws_authed(node.api, WsAuth::FirstFrame(&reader)).await?);
    match ws_open(node.api, WsAuth::Header(&reader)).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 503),
        other => bail!(
            "the bound of {EVENT_STREAM_SLOTS} streams is gone: {:?}",
            other.map(|_| ())
        ),
    }
    drop(hoarders);
    drop(streams);
    node.stop().await?;
    Ok(())
}

/// A `send`-only token gets no message body and no contact name out of any route: reading,
/// listing and marking read are refused (and marking read sends no receipt), the event stream
/// is refused, and re-importing a known contact's card does not reveal the name it is stored
/// under. What the app sends itself comes back, and nothing else.
#[tokio::test]
async fn send_only_token_gets_no_body_and_no_contact_name() -> Result<()> {
    use reqwest::Method;
    const NAME: &str = "secret-name-for-bob";
    const INCOMING: &str = "incoming secret body";
    const OUTGOING: &str = "outgoing secret body";
    let root = tempfile::tempdir()?;
    let (alice, bob) = contacts(root.path(), NAME).await?;
    let (sender, _) = token(&alice, "bot", &["send"]).await?;
    let mut admin_events = alice.client.events().await?;

    bob.send(&alice.address, INCOMING).await?;
    let got = wait_event(&mut admin_events, "message", |_| true).await?;
    let incoming_id = got["message"]["id"].as_str().context("id")?.to_owned();
    let outgoing_id = alice.send(NAME, OUTGOING).await?["id"]
        .as_str()
        .context("id")?
        .to_owned();

    let mut answers = Vec::new();
    for (method, path) in [
        (Method::GET, "/v1/messages".to_owned()),
        (Method::GET, format!("/v1/messages?peer={}", bob.address)),
        (Method::GET, format!("/v1/messages/{incoming_id}")),
        (Method::GET, format!("/v1/messages/{outgoing_id}")),
        (Method::POST, format!("/v1/messages/{incoming_id}/read")),
        (Method::POST, format!("/v1/messages/{outgoing_id}/read")),
        (Method::GET, "/v1/conversations".to_owned()),
        (Method::GET, "/v1/contacts".to_owned()),
        (Method::GET, format!("/v1/contacts/{}", bob.address)),
        (Method::GET, "/v1/identity".to_owned()),
        (Method::GET, "/v1/events".to_owned()),
    ] {
        let (status, text) = http(&alice, method.clone(), &path, &sender, None).await?;
        assert_eq!(status, 403, "{method} {path} with a send token: {text}");
        assert_eq!(error_code(&text), "forbidden_scope", "{method} {path}");
        answers.push((format!("{method} {path}"), text));
    }
    let m = alice
        .client
        .get(&format!("/messages/{incoming_id}"))
        .await?;
    assert_eq!(
        m["state"], "received",
        "a refused mark-read changed nothing"
    );

    // The event stream, by header and by first frame.
    match ws_open(alice.api, WsAuth::Header(&sender)).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
        other => bail!("a send token opened /v1/events: {:?}", other.map(|_| ())),
    }
    let mut ws = ws_open(alice.api, WsAuth::FirstFrame(&sender)).await?;
    let (texts, _) = frames_until_close(&mut ws, "auth_ok").await?;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0]["code"], "forbidden_scope");
    answers.push(("first-frame /v1/events".into(), texts[0].to_string()));

    // What a send token may do: import a card it holds (here, Bob's, already a contact under
    // NAME) and send. The answers carry what the app gave, not what the user stored.
    let (status, text) = http(
        &alice,
        Method::POST,
        "/v1/contacts",
        &sender,
        Some(json!({"card": bob.card().await?})),
    )
    .await?;
    assert_eq!(status, 201, "{text}");
    let contact: Value = serde_json::from_str(&text)?;
    assert_eq!(contact["address"], bob.address.as_str());
    assert!(contact["name"].is_null(), "{text}");
    answers.push(("POST /v1/contacts".into(), text));
    let kept = alice
        .client
        .get(&format!("/contacts/{}", bob.address))
        .await?;
    assert_eq!(kept["name"], NAME, "the stored name is kept");

    let (status, text) = http(
        &alice,
        Method::POST,
        "/v1/messages",
        &sender,
        Some(json!({"to": bob.address, "body": "from the bot"})),
    )
    .await?;
    assert_eq!(status, 202, "{text}");
    let sent: Value = serde_json::from_str(&text)?;
    assert_eq!(sent["body"], "from the bot");
    answers.push(("POST /v1/messages".into(), text));

    for (what, text) in &answers {
        for secret in [NAME, INCOMING, OUTGOING] {
            assert!(
                !text.contains(secret),
                "{what} showed {secret:?} to a send token: {text}"
            );
        }
    }
    // Sanity: the secrets are there for a reader.
    let page = alice.client.get("/messages").await?.to_string();
    assert!(page.contains(INCOMING) && page.contains(OUTGOING));
    alice.stop().await?;
    bob.stop().await?;
    Ok(())
}
