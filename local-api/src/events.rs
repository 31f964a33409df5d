//! `GET /v1/events`: a WebSocket carrying [`Event`]s as JSON text frames.
//!
//! Browsers cannot set headers on a WebSocket, so a client without an `Authorization` header
//! must send `{"type":"auth","token":"..."}` as its first frame within `ws_auth_timeout`.
//! Tokens are never accepted in the URL. Every stream starts with `{"type":"auth_ok"}`; events
//! after it are delivered. A client that falls behind the node's bounded broadcast gets
//! `{"type":"lagged","missed":N}`; one that does not take a frame within `ws_send_timeout` is
//! disconnected. Nothing is buffered per client beyond the broadcast's own bound.
//!
//! A stream takes one of the `max_event_streams` slots only once its token is checked: a bad
//! header token gets 401 before the upgrade, and a connection waiting for its auth frame waits
//! in a queue of its own (`max_pending_event_streams`, the longest waiting evicted when it is
//! full). Each stream watches its token from before the check: revoking the token through the
//! API closes the stream at once.

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{authenticate, bearer_token};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::streams::{PendingAuth, TokenWatch};
use crate::token::{Scope, parse_token};
use crate::types::{ClientFrame, ControlFrame};

/// Largest frame a client may send (only the auth frame is expected).
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;
/// How long to wait for the client's close reply after we close.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// The close reason of a stream whose token was revoked.
const REVOKED_REASON: &str = "token revoked";

/// Event stream (WebSocket).
///
/// Authenticate with `Authorization: Bearer` on the upgrade request, or with a first text frame `{"type":"auth","token":"..."}` within 10 s. Needs `read`.
/// Server frames: `auth_ok` first, then `Event`s and `lagged`; `error` before a close.
/// A stream takes a slot only once authenticated; revoking its token closes it at once (`error` `unauthorized`, then close 1008 "token revoked").
#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    security(("bearer" = ["read"]), ()),
    responses(
        (status = 101, description = "Switching to WebSocket; frames are `ControlFrame` and `Event` JSON"),
        (status = 400, description = "`bad_request`: not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "`unauthorized`: bad header token, or no token and no upgrade", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`, `forbidden_origin`, `forbidden_host`", body = ErrorBody),
        (status = 503, description = "`unavailable`: a valid header token, but every event-stream slot is taken", body = ErrorBody),
    )
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let watch = match bearer_token(&headers)? {
        Some(token) => Some(authenticate_stream(&state, token).await?),
        None => None,
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade
            .max_message_size(MAX_CLIENT_MESSAGE)
            .max_frame_size(MAX_CLIENT_MESSAGE),
        Err(_) if watch.is_none() => {
            return Err(ApiError::unauthorized(
                "missing Authorization: Bearer token",
            ));
        }
        Err(rejection) => {
            return Err(ApiError::bad_request(format!(
                "expected a WebSocket upgrade: {}",
                rejection.body_text()
            )));
        }
    };
    Ok(match watch {
        Some(watch) => {
            let slot = state
                .event_streams
                .try_slot()
                .ok_or_else(too_many_streams)?;
            upgrade.on_upgrade(move |socket| stream(socket, state, watch, slot))
        }
        None => {
            let pending = state.event_streams.wait_for_auth();
            upgrade.on_upgrade(move |socket| first_frame_then_stream(socket, state, pending))
        }
    })
}

fn too_many_streams() -> ApiError {
    ApiError::new(ErrorCode::Unavailable, "too many event streams open")
}

/// Checks a stream's token (valid, `read`), watching it from before the check on: a
/// revocation either fails the check or trips the watch.
async fn authenticate_stream(state: &AppState, token: &str) -> ApiResult<TokenWatch> {
    let parsed = parse_token(token).ok_or_else(|| ApiError::unauthorized("malformed token"))?;
    let watch = state.event_streams.watch_token(parsed.id);
    authenticate(state, token).await?.require(Scope::Read)?;
    Ok(watch)
}

enum FirstFrame {
    Authed(TokenWatch),
    Rejected(ApiError),
    Gone,
}

/// A connection without an `Authorization` header: its auth frame, then a slot, then events.
async fn first_frame_then_stream(mut socket: WebSocket, state: AppState, mut pending: PendingAuth) {
    let waiting = async {
        tokio::select! {
            biased;
            () = pending.evicted() => FirstFrame::Rejected(ApiError::new(
                ErrorCode::Unavailable,
                "too many connections waiting for their auth frame",
            )),
            outcome = first_frame_auth(&mut socket, &state) => outcome,
        }
    };
    let outcome = tokio::time::timeout(state.cfg.ws_auth_timeout, waiting)
        .await
        .unwrap_or_else(|_| {
            FirstFrame::Rejected(ApiError::unauthorized(
                "no auth frame within the time limit",
            ))
        });
    drop(pending);
    match outcome {
        FirstFrame::Authed(watch) => match state.event_streams.try_slot() {
            Some(slot) => stream(socket, state, watch, slot).await,
            None => close_with_error(socket, &too_many_streams()).await,
        },
        FirstFrame::Rejected(err) => close_with_error(socket, &err).await,
        FirstFrame::Gone => {}
    }
}

/// An authenticated stream, holding its slot until it ends.
async fn stream(
    mut socket: WebSocket,
    state: AppState,
    mut watch: TokenWatch,
    _slot: OwnedSemaphorePermit,
) {
    let revoked = || ApiError::unauthorized("the token of this stream was revoked");
    if watch.is_revoked() {
        return close_with_reason(socket, &revoked(), REVOKED_REASON).await;
    }
    // Subscribe before auth_ok, so that whatever happens after the client sees it is delivered.
    let mut events = state.service.subscribe_events();
    if send_json(&mut socket, &ControlFrame::AuthOk, &state)
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            // A revoked stream gets no event that is already waiting.
            biased;
            () = watch.revoked() => {
                drop(events);
                return close_with_reason(socket, &revoked(), REVOKED_REASON).await;
            }
            incoming = socket.recv() => match incoming {
                // Pings are answered by the WebSocket layer; other frames are ignored.
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            event = events.recv() => {
                let sent = match event {
                    Ok(event) => send_json(&mut socket, &event, &state).await,
                    Err(RecvError::Lagged(missed)) => {
                        send_json(&mut socket, &ControlFrame::Lagged { missed }, &state).await
                    }
                    Err(RecvError::Closed) => {
                        return close(socket, close_code::AWAY, "node shutting down").await;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    }
}

async fn first_frame_auth(socket: &mut WebSocket, state: &AppState) -> FirstFrame {
    let bad_frame = || {
        FirstFrame::Rejected(ApiError::unauthorized(
            r#"the first frame must be {"type":"auth","token":"..."}"#,
        ))
    };
    loop {
        match socket.recv().await {
            Some(Ok(Message::Text(text))) => {
                let Ok(ClientFrame::Auth { token }) = serde_json::from_str(text.as_str()) else {
                    return bad_frame();
                };
                return match authenticate_stream(state, &token).await {
                    Ok(watch) => FirstFrame::Authed(watch),
                    Err(e) => FirstFrame::Rejected(e),
                };
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Binary(_))) => return bad_frame(),
            Some(Ok(Message::Close(_)) | Err(_)) | None => return FirstFrame::Gone,
        }
    }
}

#[derive(Debug)]
struct SendFailed;

/// Send one JSON text frame, giving up on a client that does not take it in time.
async fn send_json<T: Serialize>(
    socket: &mut WebSocket,
    value: &T,
    state: &AppState,
) -> Result<(), SendFailed> {
    let text = serde_json::to_string(value).map_err(|e| {
        tracing::error!(error = %e, "event does not serialize");
        SendFailed
    })?;
    match tokio::time::timeout(state.cfg.ws_send_timeout, socket.send(Message::text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SendFailed),
        Err(_) => {
            tracing::debug!("event stream client too slow, disconnecting");
            Err(SendFailed)
        }
    }
}

async fn close_with_error(socket: WebSocket, err: &ApiError) {
    close_with_reason(socket, err, err.code().as_str()).await;
}

/// Send `err` as an `error` frame, then close with a code that fits it and `reason`.
async fn close_with_reason(mut socket: WebSocket, err: &ApiError, reason: &str) {
    let frame = ControlFrame::Error {
        code: err.code(),
        message: err.message().to_owned(),
    };
    let Ok(text) = serde_json::to_string(&frame) else {
        return;
    };
    let send = socket.send(Message::text(text));
    if !matches!(tokio::time::timeout(CLOSE_GRACE, send).await, Ok(Ok(()))) {
        return;
    }
    let code = match err.code() {
        ErrorCode::Unavailable | ErrorCode::RateLimited => close_code::AGAIN,
        ErrorCode::Internal => close_code::ERROR,
        _ => close_code::POLICY,
    };
    close(socket, code, reason).await;
}

/// Send a close frame and give the client a moment to answer it.
async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if socket.send(Message::Close(Some(frame))).await.is_ok() {
            while let Some(Ok(_)) = socket.recv().await {}
        }
    })
    .await;
}
