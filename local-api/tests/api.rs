//! The HTTP layer against an in-memory node, through `tower::ServiceExt::oneshot`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use common::*;
use serde_json::json;
use tokenim_api::{ApiConfig, ApiDoc, Scope, scopes_grant};

#[tokio::test]
async fn health_needs_no_token() {
    let app = app(&FakeNode::new());
    let reply = call(&app, empty(req("GET", "/v1/health"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["status"], "ok");
    assert_eq!(reply.body["version"], env!("CARGO_PKG_VERSION"));
    assert!(reply.headers.contains_key("x-request-id"));
    assert_eq!(reply.body["reasons"], json!([]));
}

#[tokio::test]
async fn health_says_degraded_and_why() {
    let node = FakeNode::new();
    let app = app(&node);
    node.set_health_issues(&["disk_full"]);
    let reply = call(&app, empty(req("GET", "/v1/health"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["status"], "degraded");
    assert_eq!(reply.body["reasons"], json!(["disk_full"]));
    node.set_health_issues(&[]);
    let reply = call(&app, empty(req("GET", "/v1/health"))).await;
    assert_eq!(reply.body["status"], "ok");
}

/// The routes that need no token: a route only joins this list on purpose.
const PUBLIC: &[&str] = &["GET /v1/health"];

/// Every documented operation (`tests/conformance.rs` checks they are all the router's
/// routes) answers 401 without a token, except the public ones, which answer without one.
#[tokio::test(start_paused = true)]
async fn every_protected_route_needs_a_token() {
    let app = app_with(
        &FakeNode::new(),
        ApiConfig {
            request_timeout: Duration::from_secs(2),
            ..ApiConfig::default()
        },
    );
    let ops = documented_operations();
    let public: Vec<String> = ops
        .iter()
        .filter(|op| op.auth == DocAuth::Public)
        .map(|op| op.name())
        .collect();
    assert_eq!(public, PUBLIC, "routes documented as needing no token");
    let mut protected = Vec::new();
    for op in &ops {
        let reply = call(&app, empty(req(&op.method, &op.path))).await;
        if op.auth == DocAuth::Public {
            assert_eq!(reply.status, StatusCode::OK, "{}", op.name());
            continue;
        }
        assert_eq!(error_code(&reply), "unauthorized", "{}", op.name());
        assert_eq!(reply.headers.get("www-authenticate").unwrap(), "Bearer");
        protected.push(op.name());
    }
    // The routes this list once forgot.
    for name in [
        "GET /v1/relay/stats",
        "GET /v1/home-relays",
        "POST /v1/home-relays",
        "DELETE /v1/home-relays/{peer_id}",
    ] {
        assert!(protected.iter().any(|p| p == name), "{name} not checked");
    }
}

/// Every protected route, called with a token of each single scope: refused with
/// `forbidden_scope` exactly when that scope does not grant the one the document names.
#[tokio::test(start_paused = true)]
async fn every_route_enforces_its_documented_scope() {
    let node = FakeNode::new();
    let app = app_with(
        &node,
        ApiConfig {
            request_timeout: Duration::from_secs(2),
            ..ApiConfig::default()
        },
    );
    let tokens: Vec<(Scope, String)> = Scope::ALL.iter().map(|s| (*s, node.token(&[*s]))).collect();
    let mut refused = 0;
    for op in documented_operations() {
        let needed = match op.auth {
            DocAuth::Public => continue,
            DocAuth::AnyToken => None,
            DocAuth::Scope(scope) => Some(scope),
        };
        for (held, token) in &tokens {
            // No body: an allowed route with one answers 415, without side effects.
            let reply = call(&app, empty(authed(&op.method, &op.path, token))).await;
            let what = format!("{} with a {held} token", op.name());
            if needed.is_none_or(|n| scopes_grant(&[*held], n)) {
                assert!(
                    reply.status != StatusCode::UNAUTHORIZED
                        && reply.status != StatusCode::FORBIDDEN,
                    "{what}: refused with {} {}",
                    reply.status,
                    reply.text
                );
            } else {
                assert_eq!(error_code(&reply), "forbidden_scope", "{what}");
                refused += 1;
            }
            assert_documented(&op, &reply, &format!("a {held} token"));
        }
    }
    assert!(refused > 0);
}

#[tokio::test]
async fn wrong_malformed_and_revoked_tokens_are_refused() {
    let node = FakeNode::new();
    let app = app(&node);
    let good = node.token(&[Scope::Admin]);
    let other = node.token(&[Scope::Read]);
    assert_eq!(
        call(&app, empty(authed("GET", "/v1/identity", &good)))
            .await
            .status,
        StatusCode::OK
    );

    let (id, secret) = good.trim_start_matches("tim_").split_once('_').unwrap();
    let other_secret = other.rsplit_once('_').unwrap().1;
    let wrong_secret = format!("tim_{id}_{other_secret}");
    let unknown_id = format!("tim_ffffffffffffffff_{secret}");
    for header in [
        format!("Bearer {wrong_secret}"),
        format!("Bearer {unknown_id}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer tim_xx".to_owned(),
        format!("Basic {good}"),
        good.clone(),
        format!("Bearer {good}x"),
    ] {
        let reply = call(
            &app,
            empty(req("GET", "/v1/identity").header("authorization", header.clone())),
        )
        .await;
        assert_eq!(error_code(&reply), "unauthorized", "{header}");
        assert!(!reply.text.contains(secret), "secret echoed back");
    }

    // Two Authorization headers are ambiguous.
    let reply = call(
        &app,
        empty(
            authed("GET", "/v1/identity", &good).header("authorization", format!("Bearer {other}")),
        ),
    )
    .await;
    assert_eq!(error_code(&reply), "unauthorized");

    // Revoke `other` with `good`; `other` stops working, `good` still works.
    let other_id = other.split('_').nth(1).unwrap();
    let reply = call(
        &app,
        empty(authed("DELETE", &format!("/v1/tokens/{other_id}"), &good)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = call(&app, empty(authed("GET", "/v1/identity", &other))).await;
    assert_eq!(error_code(&reply), "unauthorized");
    let reply = call(
        &app,
        empty(authed("DELETE", &format!("/v1/tokens/{other_id}"), &good)),
    )
    .await;
    assert_eq!(error_code(&reply), "not_found");
}

#[tokio::test]
async fn scopes_are_enforced() {
    let node = FakeNode::new();
    let app = app(&node);
    let read = node.token(&[Scope::Read]);
    let send = node.token(&[Scope::Send]);
    let metrics = node.token(&[Scope::Metrics]);
    let admin = node.token(&[Scope::Admin]);
    let message = json!({"to": ALICE, "body": "hi"});
    let token_req = json!({"name": "app", "scopes": ["read"]});

    // read can read but not send, nor manage tokens.
    assert_eq!(
        call(&app, empty(authed("GET", "/v1/messages", &read)))
            .await
            .status,
        StatusCode::OK
    );
    let reply = call(
        &app,
        json_body(authed("POST", "/v1/messages", &read), &message),
    )
    .await;
    assert_eq!(error_code(&reply), "forbidden_scope");
    let reply = call(
        &app,
        json_body(
            authed("POST", "/v1/contacts", &read),
            &json!({"card": card(ALICE, "A")}),
        ),
    )
    .await;
    assert_eq!(error_code(&reply), "forbidden_scope");

    // send can send but not read history, nor create tokens.
    let reply = call(
        &app,
        json_body(authed("POST", "/v1/messages", &send), &message),
    )
    .await;
    assert_eq!(
        error_code(&reply),
        "unknown_contact",
        "scope passed, then the service answered"
    );
    let reply = call(&app, empty(authed("GET", "/v1/identity", &send))).await;
    assert_eq!(error_code(&reply), "forbidden_scope");
    let reply = call(
        &app,
        json_body(authed("POST", "/v1/tokens", &send), &token_req),
    )
    .await;
    assert_eq!(error_code(&reply), "forbidden_scope");
    let reply = call(&app, empty(authed("GET", "/v1/tokens", &read))).await;
    assert_eq!(error_code(&reply), "forbidden_scope");

    // metrics: only metrics. read and admin also get metrics.
    for token in [&metrics, &read, &admin] {
        for path in ["/v1/metrics", "/metrics"] {
            let reply = call(&app, empty(authed("GET", path, token))).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert!(reply.text.contains("tokenim_up 1"));
            assert!(
                reply.headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/openmetrics-text")
            );
        }
    }
    let reply = call(&app, empty(authed("GET", "/v1/metrics", &send))).await;
    assert_eq!(error_code(&reply), "forbidden_scope");
    let reply = call(&app, empty(authed("GET", "/v1/contacts", &metrics))).await;
    assert_eq!(error_code(&reply), "forbidden_scope");

    // admin can do everything.
    assert_eq!(
        call(&app, empty(authed("GET", "/v1/identity", &admin)))
            .await
            .status,
        StatusCode::OK
    );
    let reply = call(
        &app,
        json_body(authed("POST", "/v1/tokens", &admin), &token_req),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
}

#[tokio::test]
async fn foreign_host_is_refused_everywhere() {
    let node = FakeNode::new();
    let app = app(&node);
    let admin = node.token(&[Scope::Admin]);
    for host in [
        "evil.example",
        "evil.example:7777",
        "192.168.1.10:7777",
        "localhost.evil.example",
    ] {
        for (method, path) in [
            ("GET", "/v1/health"),
            ("GET", "/v1/identity"),
            ("GET", "/nope"),
        ] {
            let request = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", host)
                .header("authorization", format!("Bearer {admin}"))
                .body(Body::empty())
                .unwrap();
            let reply = call(&app, request).await;
            assert_eq!(error_code(&reply), "forbidden_host", "{host} {path}");
        }
    }
    // No Host at all.
    let request = axum::http::Request::builder()
        .uri("/v1/health")
        .body(Body::empty())
        .unwrap();
    assert_eq!(error_code(&call(&app, request).await), "forbidden_host");
    // Loopback spellings pass.
    for host in ["localhost", "LocalHost:1", "127.0.0.1", "[::1]:7777"] {
        let request = axum::http::Request::builder()
            .uri("/v1/health")
            .header("host", host)
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&app, request).await.status, StatusCode::OK, "{host}");
    }
    // The allow-list extends them.
    let app = app_with(
        &node,
        ApiConfig {
            allowed_hosts: vec!["node.lan".into()],
            ..ApiConfig::default()
        },
    );
    let request = axum::http::Request::builder()
        .uri("/v1/health")
        .header("host", "node.lan:7777")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, request).await.status, StatusCode::OK);
}

/// No response carries a CORS header: without `Access-Control-Allow-Origin` a browser lets no
/// page of another origin (another loopback port included) read an answer, and without
/// `Access-Control-Allow-*` on a preflight it sends no request that needs one (any with an
/// `Authorization` header or a JSON body). A CORS layer added to the router would fail this.
fn assert_no_cors(reply: &Reply, what: &str) {
    for name in reply.headers.keys() {
        assert!(
            !name.as_str().starts_with("access-control-"),
            "{what}: CORS header {name}"
        );
    }
}

fn message_count(reply: &Reply) -> usize {
    reply.body["messages"].as_array().unwrap().len()
}

#[tokio::test]
async fn cross_origin_requests_are_refused() {
    let node = FakeNode::new();
    node.add_contact_for_test();
    let app = app(&node);
    let admin = node.token(&[Scope::Admin]);
    let send = |builder: axum::http::request::Builder| {
        json_body(builder, &json!({"to": ALICE, "body": "hi"}))
    };

    // Without an Origin (a local app), from the API's own origin, and from another loopback
    // origin, the guard lets reads and sends through: the refusals below are its doing.
    for origin in [
        None,
        Some("http://127.0.0.1:7777"),
        Some("http://localhost:3000"),
    ] {
        let with_origin = |builder: axum::http::request::Builder| match origin {
            Some(o) => builder.header("origin", o),
            None => builder,
        };
        let what = format!("origin {origin:?}");
        let reply = call(
            &app,
            empty(with_origin(authed("GET", "/v1/identity", &admin))),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{what}");
        assert_no_cors(&reply, &what);
        let reply = call(
            &app,
            send(with_origin(authed("POST", "/v1/messages", &admin))),
        )
        .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{what}");
        assert_no_cors(&reply, &what);
    }
    let list = || empty(authed("GET", "/v1/messages", &admin));
    let sent = message_count(&call(&app, list()).await);
    assert_eq!(sent, 3);

    // Another site, on every route, even with a valid token: refused before auth and the
    // handler.
    let foreign = [
        "https://evil.example",
        "null",
        "http://localhost.evil.example",
        "http://127.0.0.1.evil.example:7777",
    ];
    for op in documented_operations() {
        for origin in foreign {
            let what = format!("{} from {origin}", op.name());
            let reply = call(
                &app,
                empty(authed(&op.method, &op.path, &admin).header("origin", origin)),
            )
            .await;
            assert_eq!(error_code(&reply), "forbidden_origin", "{what}");
            assert_no_cors(&reply, &what);
        }
    }
    // What a cross-site page can send without a preflight (a form's text/plain POST, no
    // token) and what it could with one: refused by the guard, not by auth or the JSON
    // extractor, and nothing is queued.
    let body = json!({"to": ALICE, "body": "csrf"}).to_string();
    for (builder, content_type) in [
        (req("POST", "/v1/messages"), "text/plain"),
        (authed("POST", "/v1/messages", &admin), "text/plain"),
        (authed("POST", "/v1/messages", &admin), "application/json"),
    ] {
        let request = builder
            .header("origin", "https://evil.example")
            .header("content-type", content_type)
            .body(Body::from(body.clone()))
            .unwrap();
        let reply = call(&app, request).await;
        assert_eq!(error_code(&reply), "forbidden_origin", "{content_type}");
        assert_no_cors(&reply, content_type);
    }
    assert_eq!(message_count(&call(&app, list()).await), sent);

    // Preflights, on every path: another site's is refused by the guard; a loopback page's
    // passes the guard but no route answers OPTIONS, so it is not approved either.
    let paths: std::collections::BTreeSet<String> = documented_operations()
        .into_iter()
        .map(|op| op.path)
        .collect();
    for path in &paths {
        for (origin, code) in [
            ("https://evil.example", "forbidden_origin"),
            ("http://localhost:3000", "method_not_allowed"),
        ] {
            let what = format!("preflight of {path} from {origin}");
            let reply = call(
                &app,
                empty(
                    req("OPTIONS", path)
                        .header("origin", origin)
                        .header("access-control-request-method", "POST")
                        .header(
                            "access-control-request-headers",
                            "authorization, content-type",
                        ),
                ),
            )
            .await;
            assert_eq!(error_code(&reply), code, "{what}");
            assert_no_cors(&reply, &what);
        }
    }
}

#[tokio::test]
async fn oversized_bodies_get_413_json() {
    let node = FakeNode::new();
    let app = app_with(
        &node,
        ApiConfig {
            body_limit: 1024,
            ..ApiConfig::default()
        },
    );
    let send = node.token(&[Scope::Send]);
    let big = json!({"to": ALICE, "body": "x".repeat(2000)}).to_string();

    // With a Content-Length: refused before the handler.
    let request = authed("POST", "/v1/messages", &send)
        .header("content-type", "application/json")
        .header("content-length", big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    assert_eq!(error_code(&call(&app, request).await), "payload_too_large");

    // Chunked (no Content-Length): refused while reading.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(100)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let request = authed("POST", "/v1/messages", &send)
        .header("content-type", "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    assert_eq!(error_code(&call(&app, request).await), "payload_too_large");

    // Under the HTTP limit but over the node's message limit.
    node.add_contact_for_test();
    let app = common::app(&node);
    let body = json!({"to": ALICE, "body": "x".repeat(MAX_BODY + 1)});
    let reply = call(
        &app,
        json_body(authed("POST", "/v1/messages", &send), &body),
    )
    .await;
    assert_eq!(error_code(&reply), "message_too_large");
}

#[tokio::test]
async fn bad_json_gets_400_json() {
    let node = FakeNode::new();
    let app = app(&node);
    let send = node.token(&[Scope::Send]);
    let admin = node.token(&[Scope::Admin]);
    for raw in ["{", "", "not json", "{\"to\": \"a\", \"body\": }"] {
        let request = authed("POST", "/v1/messages", &send)
            .header("content-type", "application/json")
            .body(Body::from(raw))
            .unwrap();
        assert_eq!(
            error_code(&call(&app, request).await),
            "invalid_json",
            "{raw:?}"
        );
    }
    for body in [
        json!({"to": ALICE}),
        json!({"to": 5, "body": "x"}),
        json!([1]),
        json!({"to": ALICE, "body": "x", "extra": 1}),
    ] {
        let reply = call(
            &app,
            json_body(authed("POST", "/v1/messages", &send), &body),
        )
        .await;
        assert_eq!(error_code(&reply), "bad_request", "{body}");
    }
    for body in [
        json!({"to": "", "body": "x"}),
        json!({"to": ALICE, "body": ""}),
    ] {
        let reply = call(
            &app,
            json_body(authed("POST", "/v1/messages", &send), &body),
        )
        .await;
        assert_eq!(error_code(&reply), "bad_request", "{body}");
    }
    for body in [
        json!({"name": "x", "scopes": ["root"]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "", "scopes": ["read"]}),
        json!({"name": "x".repeat(65), "scopes": ["read"]}),
    ] {
        let reply = call(&app, json_body(authed("POST", "/v1/tokens", &admin), &body)).await;
        assert_eq!(error_code(&reply), "bad_request", "{body}");
    }
    // Wrong content type.
    let request = authed("POST", "/v1/messages", &send)
        .header("content-type", "text/plain")
        .body(Body::from(json!({"to": ALICE, "body": "x"}).to_string()))
        .unwrap();
    assert_eq!(
        error_code(&call(&app, request).await),
        "unsupported_media_type"
    );
}

#[tokio::test]
async fn service_errors_map_to_codes() {
    let node = FakeNode::new();
    let app = app(&node);
    let admin = node.token(&[Scope::Admin]);
    let send = |body: serde_json::Value| json_body(authed("POST", "/v1/messages", &admin), &body);

    assert_eq!(
        error_code(&call(&app, send(json!({"to": "nobody", "body": "x"}))).await),
        "unknown_contact"
    );
    assert_eq!(
        error_code(&call(&app, send(json!({"to": "tim1!", "body": "x"}))).await),
        "invalid_address"
    );
    assert_eq!(
        error_code(&call(&app, send(json!({"to": BOB, "body": "x"}))).await),
        "unknown_contact"
    );
    let reply = call(
        &app,
        json_body(
            authed("POST", "/v1/contacts", &admin),
            &json!({"card": "garbage"}),
        ),
    )
    .await;
    assert_eq!(error_code(&reply), "invalid_card");
    let reply = call(
        &app,
        empty(authed("GET", "/v1/contacts/tim1nobody00", &admin)),
    )
    .await;
    assert_eq!(error_code(&reply), "unknown_contact");
    let reply = call(&app, empty(authed("DELETE", "/v1/contacts/xyz", &admin))).await;
    assert_eq!(error_code(&reply), "invalid_address");
    let reply = call(&app, empty(authed("GET", "/v1/messages/nope", &admin))).await;
    assert_eq!(error_code(&reply), "not_found");

    node.add_contact_for_test();
    let reply = call(&app, send(json!({"to": ALICE, "body": "flood"}))).await;
    assert_eq!(error_code(&reply), "rate_limited");
    assert_eq!(reply.headers["retry-after"], "7");

    // Internal errors are generic for the client.
    let reply = call(&app, send(json!({"to": ALICE, "body": "crash"}))).await;
    assert_eq!(error_code(&reply), "internal");
    assert!(
        !reply.text.contains("secret"),
        "internal detail leaked: {}",
        reply.text
    );

    // Name conflict.
    let reply = call(
        &app,
        json_body(
            authed("POST", "/v1/contacts", &admin),
            &json!({"card": card(BOB, "Bob"), "name": "alice"}),
        ),
    )
    .await;
    assert_eq!(error_code(&reply), "conflict");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json() {
    let node = FakeNode::new();
    let app = app(&node);
    let admin = node.token(&[Scope::Admin]);
    for path in ["/", "/v2/health", "/v1/nope", "/v1/messages/a/b/c"] {
        let reply = call(&app, empty(authed("GET", path, &admin))).await;
        assert_eq!(error_code(&reply), "not_found", "{path}");
    }
    let reply = call(&app, empty(authed("PUT", "/v1/contacts", &admin))).await;
    assert_eq!(error_code(&reply), "method_not_allowed");
    // A plain GET on the event stream is not an upgrade.
    let reply = call(&app, empty(authed("GET", "/v1/events", &admin))).await;
    assert_eq!(error_code(&reply), "bad_request");
}

#[tokio::test]
async fn request_ids_are_unique() {
    let app = app(&FakeNode::new());
    let mut ids = std::collections::HashSet::new();
    for _ in 0..20 {
        let reply = call(&app, empty(req("GET", "/v1/identity"))).await;
        error_code(&reply);
        assert!(
            ids.insert(
                reply.body["error"]["request_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            )
        );
    }
}

#[tokio::test(start_paused = true)]
async fn slow_service_times_out_as_json() {
    let node = FakeNode::new();
    let app = app_with(
        &node,
        ApiConfig {
            request_timeout: Duration::from_secs(2),
            ..ApiConfig::default()
        },
    );
    let read = node.token(&[Scope::Read]);
    // The fake's peers() never answers.
    let reply = call(&app, empty(authed("GET", "/v1/peers", &read))).await;
    assert_eq!(error_code(&reply), "timeout");
}

#[tokio::test]
async fn contacts_messages_and_tokens_flow() {
    let node = FakeNode::new();
    let app = app(&node);
    let admin = node.token(&[Scope::Admin]);

    let reply = call(
        &app,
        json_body(
            authed("POST", "/v1/contacts", &admin),
            &json!({"card": card(ALICE, "Alice A."), "name": " alice "}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.body["address"], ALICE);
    assert_eq!(reply.body["name"], "alice");
    assert_eq!(reply.body["display_name"], "Alice A.");
    assert_eq!(reply.headers["location"], format!("/v1/contacts/{ALICE}"));

    let reply = call(&app, empty(authed("GET", "/v1/contacts", &admin))).await;
    assert_eq!(reply.body["contacts"].as_array().unwrap().len(), 1);
    let reply = call(
        &app,
        empty(authed("GET", &format!("/v1/contacts/{ALICE}"), &admin)),
    )
    .await;
    assert_eq!(reply.body["name"], "alice");

    // Send by name, then by address.
    let reply = call(
        &app,
        json_body(
            authed("POST", "/v1/messages", &admin),
            &json!({"to": "alice", "body": "one"}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(reply.body["state"], "queued");
    assert_eq!(reply.body["to"], ALICE);
    let first_id = reply.body["id"].as_str().unwrap().to_owned();
    let reply = call(
        &app,
        json_body(
            authed("POST", "/v1/messages", &admin),
            &json!({"to": ALICE, "body": "two"}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let incoming = node.add_incoming(ALICE, "three");

    // Paging, newest first.
    let reply = call(
        &app,
        empty(authed(
            "GET",
            &format!("/v1/messages?peer={ALICE}&limit=2"),
            &admin,
        )),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let bodies: Vec<_> = reply.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, ["three", "two"]);
    let cursor = reply.body["next_cursor"].as_str().unwrap().to_owned();
    let reply = call(
        &app,
        empty(authed(
            "GET",
            &format!("/v1/messages?limit=2&cursor={cursor}"),
            &admin,
        )),
    )
    .await;
    assert_eq!(reply.body["messages"][0]["body"], "one");
    assert!(reply.body["next_cursor"].is_null());
    for bad in ["limit=0", "limit=201", "limit=abc", "limit=-1", "bogus=1"] {
        let reply = call(
            &app,
            empty(authed("GET", &format!("/v1/messages?{bad}"), &admin)),
        )
        .await;
        assert_eq!(error_code(&reply), "bad_request", "{bad}");
    }
    let reply = call(
        &app,
        empty(authed("GET", "/v1/messages?cursor=zzz", &admin)),
    )
    .await;
    assert_eq!(error_code(&reply), "bad_request");

    let reply = call(
        &app,
        empty(authed("GET", &format!("/v1/messages/{first_id}"), &admin)),
    )
    .await;
    assert_eq!(reply.body["body"], "one");
    assert_eq!(reply.body["direction"], "outgoing");

    let reply = call(
        &app,
        empty(authed(
            "POST",
            &format!("/v1/messages/{}/read", incoming.id),
            &admin,
        )),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["state"], "read");
    let reply = call(
        &app,
        empty(authed(
            "POST",
            &format!("/v1/messages/{first_id}/read"),
            &admin,
        )),
    )
    .await;
    assert_eq!(error_code(&reply), "bad_request");

    let reply = call(&app, empty(authed("GET", "/v1/identity", &admin))).await;
    assert_eq!(reply.body["address"], ME);
    assert!(reply.body["listen_addrs"].is_array());
    let reply = call(&app, empty(authed("GET", "/v1/conversations", &admin))).await;
    assert!(reply.body["conversations"].is_array());

    let reply = call(
        &app,
        empty(authed("DELETE", &format!("/v1/contacts/{ALICE}"), &admin)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = call(
        &app,
        empty(authed("DELETE", &format!("/v1/contacts/{ALICE}"), &admin)),
    )
    .await;
    assert_eq!(error_code(&reply), "unknown_contact");

    // Tokens: created secret works, is never listed.
    let reply = call(
        &app,
        json_body(
            authed("POST", "/v1/tokens", &admin),
            &json!({"name": "bot", "scopes": ["send", "read", "send"]}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.body["scopes"], json!(["read", "send"]));
    let token = reply.body["token"].as_str().unwrap().to_owned();
    let secret = token.rsplit_once('_').unwrap().1.to_owned();
    let reply = call(&app, empty(authed("GET", "/v1/identity", &token))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = call(&app, empty(authed("GET", "/v1/tokens", &admin))).await;
    assert_eq!(reply.body["tokens"].as_array().unwrap().len(), 2);
    assert!(!reply.text.contains(&secret));
    assert!(!reply.text.contains("secret_hash"));
    assert!(!reply.text.contains(&tokenim_api::hash_secret(&secret)));
}

#[tokio::test]
async fn openapi_is_served_to_token_holders() {
    let node = FakeNode::new();
    let app = app(&node);
    let metrics = node.token(&[Scope::Metrics]);
    let reply = call(&app, empty(authed("GET", "/v1/openapi.json", &metrics))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text, ApiDoc::openapi_json().unwrap());
}

/// A `send` token gets no message body and no contact name out of any documented route, called
/// with the ids and address of stored messages and contacts: not by reading, listing or
/// marking read, and not by re-importing the card of a contact stored under a name. It gets
/// back only what it sent itself.
#[tokio::test(start_paused = true)]
async fn send_token_gets_no_body_and_no_contact_name_from_any_route() {
    const NAME: &str = "secret-contact-name";
    const INCOMING: &str = "secret incoming body";
    const OUTGOING: &str = "secret outgoing body";
    let node = FakeNode::new();
    let app = app_with(
        &node,
        ApiConfig {
            request_timeout: Duration::from_secs(2),
            ..ApiConfig::default()
        },
    );
    let admin = node.token(&[Scope::Admin]);
    let send = node.token(&[Scope::Send]);
    // Alice as a contact stored under NAME (again, after a route the send token may call
    // removed her).
    let seed = || async {
        let reply = call(
            &app,
            json_body(
                authed("POST", "/v1/contacts", &admin),
                &json!({"card": card(ALICE, "Alice"), "name": NAME}),
            ),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    };
    seed().await;
    let incoming = node.add_incoming(ALICE, INCOMING);
    let reply = call(
        &app,
        json_body(
            authed("POST", "/v1/messages", &admin),
            &json!({"to": NAME, "body": OUTGOING}),
        ),
    )
    .await;
    let outgoing = reply.body["id"].as_str().unwrap().to_owned();

    let mut checked = 0;
    for op in documented_operations() {
        let body = match (op.name().as_str(), op.has_body) {
            (_, false) => None,
            ("POST /v1/messages", true) => Some(json!({"to": ALICE, "body": "mine"})),
            ("POST /v1/contacts", true) => Some(json!({"card": card(ALICE, "Alice")})),
            ("POST /v1/tokens", true) => Some(json!({"name": "more", "scopes": ["read"]})),
            ("POST /v1/home-relays", true) => Some(json!({"addr": "/ip4/127.0.0.1/p2p/x"})),
            ("POST /v1/requests/{address}/accept", true) => Some(json!({"name": "x"})),
            ("POST /v1/groups", true) => Some(json!({"name": "g", "members": [ALICE]})),
            ("POST /v1/groups/{id}/messages", true) => Some(json!({"body": "to the group"})),
            ("POST /v1/groups/{id}/members", true) => Some(json!({"member": ALICE})),
            ("PUT /v1/groups/{id}/members/{address}/role", true) => Some(json!({"role": "admin"})),
            ("PATCH /v1/groups/{id}", true) => Some(json!({"name": "renamed"})),
            ("POST /v1/groups/{id}/invites", true) => Some(json!({"max_uses": 2})),
            ("POST /v1/groups/join", true) => Some(json!({"invite": "tokenim-group:x"})),
            ("POST /v1/devices/link", true) => Some(json!({"ttl_secs": 60})),
            ("POST /v1/devices/join", true) => Some(json!({"uri": "tokenim-link:x"})),
            ("POST /v1/files", true) => Some(json!({"not": "a file"})),
            (other, true) => panic!("{other}: give this test a body for it"),
        };
        for id in [incoming.id.as_str(), outgoing.as_str()] {
            let path = op
                .template
                .replace("{address}", ALICE)
                .replace("{id}", id)
                .replace("{peer_id}", "x");
            seed().await;
            let request = authed(&op.method, &path, &send);
            let reply = match &body {
                Some(body) => call(&app, json_body(request, body)).await,
                None => call(&app, empty(request)).await,
            };
            for secret in [NAME, INCOMING, OUTGOING] {
                assert!(
                    !reply.text.contains(secret),
                    "{} {path} showed {secret:?} to a send token: {}",
                    op.method,
                    reply.text
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 20);
    // The send token's re-import keeps the name; the reads the send token was refused work.
    let reply = call(
        &app,
        json_body(
            authed("POST", "/v1/contacts", &send),
            &json!({"card": card(ALICE, "Alice")}),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert!(reply.body["name"].is_null(), "{}", reply.text);
    let reply = call(
        &app,
        empty(authed("GET", &format!("/v1/contacts/{ALICE}"), &admin)),
    )
    .await;
    assert_eq!(reply.body["name"], NAME);
    let reply = call(
        &app,
        empty(authed(
            "POST",
            &format!("/v1/messages/{}/read", incoming.id),
            &admin,
        )),
    )
    .await;
    assert_eq!(reply.body["body"], INCOMING);
}
