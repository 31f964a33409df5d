//! The local HTTP API of a TokenIM node: axum router, token auth, OpenAPI document, event
//! stream.
//!
//! This crate does not depend on the node: it defines [`NodeService`], which the node
//! implements, and [`router`] turns an `Arc<dyn NodeService>` into an axum `Router`.
//!
//! Layers, outermost first: request id + error rendering, Host/Origin guard, timeout, body
//! limit, then routes (each handler authenticates with the [`Authed`] extractor).

#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

mod auth;
mod config;
mod error;
mod events;
mod extract;
mod guard;
mod openapi;
mod routes;
mod service;
mod state;
mod streams;
mod token;
pub mod types;

pub use auth::{
    AdminScope, AnyScope, Authed, MetricsScope, Principal, ReadScope, RequiredScope, SendScope,
};
/// The byte type of uploads and downloads.
pub use axum::body::Bytes;
pub use config::ApiConfig;
pub use error::{ApiError, ApiResult, ErrorBody, ErrorCode, ErrorDetail, ServiceError};
pub use extract::{ApiJson, ApiQuery};
pub use guard::REQUEST_ID_HEADER;
pub use openapi::ApiDoc;
pub use routes::system::METRICS_CONTENT_TYPE;
pub use service::{ByteStream, FileDownload, NodeService, ServiceResult};
pub use state::AppState;
pub use token::{
    ParsedToken, Scope, TOKEN_PREFIX, TokenRecord, TokenText, generate_token, generate_token_with,
    hash_secret, parse_token, scopes_grant,
};

/// The whole API as a ready-to-serve router.
pub fn router(service: Arc<dyn NodeService>, cfg: ApiConfig) -> Router {
    let state = AppState::new(service, cfg);
    // `Router::layer` wraps what is already there: the last layer added runs first.
    routes::v1()
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(state.cfg.body_limit))
        // 408 is rewritten to the `timeout` code (503) by `request_context`.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.cfg.request_timeout,
        ))
        .merge(routes::streamed().layer(DefaultBodyLimit::disable()))
        .fallback(routes::not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::host_and_origin,
        ))
        .layer(middleware::from_fn(guard::request_context))
        .with_state(state)
}

/// Serve `router` on a TCP or Unix listener until `shutdown` completes.
pub async fn serve<L>(
    listener: L,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
