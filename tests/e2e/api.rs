//! The local API of a real process refuses bad input with clear JSON errors and keeps running.

use anyhow::Result;
use serde_json::{Value, json};

use crate::harness::{NodeProc, init};

async fn raw(
    node: &NodeProc,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    host: Option<&str>,
    body: Option<Vec<u8>>,
) -> Result<(u16, Value)> {
    let mut req = reqwest::Client::new().request(method, format!("http://{}{path}", node.api));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(h) = host {
        req = req.header("host", h);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

fn assert_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(
        v["error"]["request_id"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_the_node_keeps_running() -> Result<()> {
    use reqwest::Method;
    let root = tempfile::tempdir()?;
    let node = NodeProc::start(&init(root.path(), "dave")?, "/ip4/127.0.0.1/tcp/0").await?;
    let token = std::fs::read_to_string(node.dir.join("api.token"))?;
    let token = token.trim();

    let (s, v) = raw(&node, Method::GET, "/v1/health", None, None, None).await?;
    assert_eq!(s, 200, "{v}");

    let (s, v) = raw(&node, Method::GET, "/v1/identity", None, None, None).await?;
    assert_eq!(s, 401);
    assert_error(&v, "unauthorized");
    let (s, v) = raw(
        &node,
        Method::GET,
        "/v1/identity",
        Some("tim_nope_nope"),
        None,
        None,
    )
    .await?;
    assert_eq!(s, 401);
    assert_error(&v, "unauthorized");

    let (s, v) = raw(
        &node,
        Method::GET,
        "/v1/identity",
        Some(token),
        Some("evil.example:80"),
        None,
    )
    .await?;
    assert_eq!(s, 403);
    assert_error(&v, "forbidden_host");

    let send = |body: Vec<u8>| {
        raw(
            &node,
            Method::POST,
            "/v1/messages",
            Some(token),
            None,
            Some(body),
        )
    };
    let (s, v) = send(b"{not json".to_vec()).await?;
    assert_eq!(s, 400);
    assert_error(&v, "invalid_json");
    let (s, v) = send(
        json!({"to": "tim1notanaddress", "body": "x"})
            .to_string()
            .into_bytes(),
    )
    .await?;
    assert!((400..500).contains(&s), "{s} {v}");
    let (s, v) = send(
        json!({"to": "nobody-by-that-name", "body": "x"})
            .to_string()
            .into_bytes(),
    )
    .await?;
    assert!((400..500).contains(&s), "{s}");
    assert_error(&v, "unknown_contact");
    // Over the 256 KiB body limit. The node answers 413 without reading the body and closes,
    // so the client can lose the race into a broken pipe while still writing: try again then
    // (the node must answer 413 on some attempt, and keep running either way).
    let big = json!({"to": "x", "body": "a".repeat(300 * 1024)})
        .to_string()
        .into_bytes();
    let mut answer = send(big.clone()).await;
    for _ in 0..3 {
        if answer.is_ok() {
            break;
        }
        answer = send(big.clone()).await;
    }
    let (s, v) = answer?;
    assert_eq!(s, 413, "{v}");
    assert_error(&v, "payload_too_large");

    let (s, v) = raw(
        &node,
        Method::POST,
        "/v1/contacts",
        Some(token),
        None,
        Some(json!({"card": "tokenim:garbage"}).to_string().into_bytes()),
    )
    .await?;
    assert!((400..500).contains(&s));
    assert_error(&v, "invalid_card");

    // Still alive and serving.
    let (s, _) = raw(&node, Method::GET, "/v1/identity", Some(token), None, None).await?;
    assert_eq!(s, 200);
    node.stop().await?;
    Ok(())
}

#[tokio::test]
async fn scoped_tokens_are_enforced_and_revocable() -> Result<()> {
    use reqwest::Method;
    let root = tempfile::tempdir()?;
    let node = NodeProc::start(&init(root.path(), "erin")?, "/ip4/127.0.0.1/tcp/0").await?;
    let created = node
        .client
        .post("/tokens", json!({"name": "reader", "scopes": ["read"]}))
        .await?;
    let reader = created["token"]
        .as_str()
        .expect("secret shown once")
        .to_string();
    let id = created["id"].as_str().expect("id").to_string();

    let (s, _) = raw(
        &node,
        Method::GET,
        "/v1/messages",
        Some(&reader),
        None,
        None,
    )
    .await?;
    assert_eq!(s, 200);
    let body = json!({"to": "x", "body": "y"}).to_string().into_bytes();
    let (s, v) = raw(
        &node,
        Method::POST,
        "/v1/messages",
        Some(&reader),
        None,
        Some(body),
    )
    .await?;
    assert_eq!(s, 403);
    assert_error(&v, "forbidden_scope");

    let listed = node.client.get("/tokens").await?;
    assert!(listed.to_string().contains(&id));
    assert!(
        !listed.to_string().contains(&reader),
        "secrets are never listed"
    );

    node.client.delete(&format!("/tokens/{id}")).await?;
    let (s, v) = raw(
        &node,
        Method::GET,
        "/v1/messages",
        Some(&reader),
        None,
        None,
    )
    .await?;
    assert_eq!(s, 401);
    assert_error(&v, "unauthorized");
    node.stop().await?;
    Ok(())
}

/// The API carries tokens and message bodies: `run` refuses to serve it beyond this machine
/// unless the configuration says so in so many words.
#[tokio::test]
async fn the_api_is_not_served_beyond_loopback_by_accident() -> Result<()> {
    let root = tempfile::tempdir()?;
    let dir = init(root.path(), "alice")?;
    let out = crate::harness::tokenim(&dir)
        .args([
            "run",
            "--api",
            "0.0.0.0:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .output()?;
    assert!(
        !out.status.success(),
        "the API was served on all interfaces"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allow_remote"), "{err}");
    Ok(())
}
