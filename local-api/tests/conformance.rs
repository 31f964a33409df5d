//! The OpenAPI document against the router: for every documented operation, the requests a
//! property-based tester (or a careless client) sends get statuses, and error codes, that the
//! document lists for that operation; and the router has exactly the documented routes.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use common::*;
use serde_json::json;
use tokenim_api::{ApiConfig, Scope};

const BODY_LIMIT: usize = 1024;

/// Small limits so that probes hit them; paused time makes the fake's never-answering
/// `peers()` time out at once.
fn probe_app(node: &std::sync::Arc<FakeNode>) -> axum::Router {
    app_with(
        node,
        ApiConfig {
            body_limit: BODY_LIMIT,
            request_timeout: Duration::from_secs(2),
            ..ApiConfig::default()
        },
    )
}

/// The description of `status` for `op`, if the document lists it.
fn description(op: &DocOp, status: u16) -> Option<&str> {
    op.responses.get(&status.to_string())?["description"].as_str()
}

/// Every operation that reads a JSON body documents what `ApiJson` rejects with: 400
/// (`invalid_json`, `bad_request`), 413 and 415.
#[test]
fn every_body_route_documents_the_json_rejections() {
    let ops = documented_operations();
    let with_body: Vec<_> = ops.iter().filter(|op| op.has_body).collect();
    assert!(
        with_body.len() >= 4,
        "expected the POST routes with a body, found {:?}",
        with_body.iter().map(|op| op.name()).collect::<Vec<_>>()
    );
    for op in with_body {
        for (status, code) in [
            (400, "invalid_json"),
            (400, "bad_request"),
            (413, "payload_too_large"),
            (415, "unsupported_media_type"),
        ] {
            let text = description(op, status)
                .unwrap_or_else(|| panic!("{} does not document {status}", op.name()));
            assert!(
                text.contains(&format!("`{code}`")),
                "{}: {status} does not name `{code}`: {text:?}",
                op.name()
            );
        }
    }
}

/// Sends every operation the requests that provoke each error the router can give it, and
/// checks each answer (status and code) is documented for that operation.
#[tokio::test(start_paused = true)]
async fn every_answer_to_a_probe_is_documented() {
    let node = FakeNode::new();
    let app = probe_app(&node);
    let admin = node.token(&[Scope::Admin]);
    let valid_json = json!({"to": ALICE, "body": "hi"}).to_string();
    for op in documented_operations() {
        let name = op.name();
        let (method, path) = (op.method.as_str(), op.path.as_str());

        // A plain call with an admin token and no body: whatever the handler answers (for a
        // route with a body: no Content-Type, so 415).
        let reply = call(&app, empty(authed(method, path, &admin))).await;
        assert_documented(&op, &reply, "a plain admin call");
        if op.has_body {
            assert_eq!(error_code(&reply), "unsupported_media_type", "{name}");
        }

        // A body that is not JSON by its Content-Type, as the property tester sent.
        let request = authed(method, path, &admin)
            .header("content-type", "text/plain")
            .body(Body::from(valid_json.clone()))
            .unwrap();
        let reply = call(&app, request).await;
        assert_documented(&op, &reply, "a text/plain body");
        if op.has_body {
            assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{name}");
        }

        if op.has_body {
            for (raw, code) in [("{", "invalid_json"), ("[]", "bad_request")] {
                let request = authed(method, path, &admin)
                    .header("content-type", "application/json")
                    .body(Body::from(raw))
                    .unwrap();
                let reply = call(&app, request).await;
                assert_documented(&op, &reply, &format!("the JSON body {raw:?}"));
                assert_eq!(error_code(&reply), code, "{name} {raw:?}");
            }
            // Over the limit without a Content-Length: refused while the handler reads it.
            let big = format!("[\"{}\"]", "x".repeat(BODY_LIMIT));
            let chunks: Vec<Result<String, std::io::Error>> = big
                .as_bytes()
                .chunks(100)
                .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
                .collect();
            let request = authed(method, path, &admin)
                .header("content-type", "application/json")
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap();
            let reply = call(&app, request).await;
            assert_documented(&op, &reply, "a chunked body over the limit");
            assert_eq!(error_code(&reply), "payload_too_large", "{name}");
        }

        // A declared Content-Length over the limit: the body-limit layer refuses it on any
        // route but the streamed ones (files), before the handler.
        if !op.streamed {
            let big = "x".repeat(BODY_LIMIT + 1);
            let request = authed(method, path, &admin)
                .header("content-type", "application/json")
                .header("content-length", big.len())
                .body(Body::from(big))
                .unwrap();
            let reply = call(&app, request).await;
            assert_documented(&op, &reply, "a Content-Length over the limit");
            assert_eq!(error_code(&reply), "payload_too_large", "{name}");
        }

        // The Host/Origin guard, on every route.
        let reply = call(
            &app,
            empty(authed(method, path, &admin).header("origin", "https://evil.example")),
        )
        .await;
        assert_documented(&op, &reply, "a foreign Origin");
        assert_eq!(error_code(&reply), "forbidden_origin", "{name}");
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "evil.example")
            .header("authorization", format!("Bearer {admin}"))
            .body(Body::empty())
            .unwrap();
        let reply = call(&app, request).await;
        assert_documented(&op, &reply, "a foreign Host");
        assert_eq!(error_code(&reply), "forbidden_host", "{name}");

        // No token, and a wrong one.
        if op.auth != DocAuth::Public {
            let reply = call(&app, empty(req(method, path))).await;
            assert_documented(&op, &reply, "no token");
            let reply = call(&app, empty(authed(method, path, "tim_0_0"))).await;
            assert_documented(&op, &reply, "a malformed token");
            assert_eq!(error_code(&reply), "unauthorized", "{name}");
        }
    }
}

/// Each documented path answers its documented methods (not 405, not the fallback's 404) and
/// 405 to every other one; so a method served but not documented, or documented but not
/// served, fails.
#[tokio::test(start_paused = true)]
async fn the_router_serves_exactly_the_documented_methods() {
    let node = FakeNode::new();
    let app = probe_app(&node);
    let admin = node.token(&[Scope::Admin]);
    let mut by_path: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for op in documented_operations() {
        by_path
            .entry(op.template.clone())
            .or_insert_with(|| (op.path.clone(), BTreeSet::new()))
            .1
            .insert(op.method.clone());
    }
    for (template, (path, methods)) in &by_path {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            let reply = call(&app, empty(authed(method, path, &admin))).await;
            if methods.contains(method) {
                assert_ne!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "documented {method} {template} is not routed"
                );
                let message = reply.body["error"]["message"].as_str().unwrap_or_default();
                assert!(
                    !message.starts_with("no route for"),
                    "documented {method} {template} is not routed"
                );
            } else {
                assert_eq!(
                    error_code(&reply),
                    "method_not_allowed",
                    "{method} {template} is answered but not documented"
                );
            }
        }
    }
}

/// Every path in `routes::v1()` is in the document (the router cannot list its routes, so the
/// source is read), and the document has no path that is not routed.
#[test]
fn every_routed_path_is_documented() {
    let source = include_str!("../src/routes/mod.rs");
    let routed: Vec<String> = source
        .split(".route(")
        .skip(1)
        .map(|rest| {
            let rest = rest.trim_start().strip_prefix('"').unwrap();
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect();
    let routed_set: BTreeSet<String> = routed.iter().cloned().collect();
    assert_eq!(routed.len(), routed_set.len(), "a path routed twice");
    let documented: BTreeSet<String> = documented_operations()
        .into_iter()
        .map(|op| op.template)
        .collect();
    assert_eq!(routed_set, documented);
}
