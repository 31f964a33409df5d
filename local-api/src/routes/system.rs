//! Health, metrics and the OpenAPI document.

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::auth::{AnyScope, Authed, MetricsScope};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::types::HealthView;
use axum::extract::State;

/// Content type of the metrics text (what prometheus-client encodes).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Liveness and health. No token needed; the Host and Origin checks still apply. Answers 200
/// whenever the API is up: `status` is `degraded` (with `reasons`, e.g. `disk_full`) when the
/// node cannot do all of its work.
#[utoipa::path(
    get, path = "/v1/health", tag = "system",
    security(()),
    responses(
        (status = 200, description = "The API is up; `status` says whether the node is `ok` or `degraded`", body = HealthView),
        (status = 403, description = "`forbidden_host` / `forbidden_origin`", body = ErrorBody),
    )
)]
pub(crate) async fn health(State(state): State<AppState>) -> Json<HealthView> {
    let reasons = state.service.health_issues();
    Json(HealthView {
        status: if reasons.is_empty() { "ok" } else { "degraded" }.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        reasons,
    })
}

/// This document.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "system",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The OpenAPI document", content_type = "application/json"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    )
)]
pub(crate) async fn openapi(_auth: Authed<AnyScope>) -> ApiResult<Response> {
    let json = crate::openapi::ApiDoc::openapi_json().map_err(|e| ApiError {
        internal: Some(e.to_string()),
        ..ApiError::from_code(ErrorCode::Internal)
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// Prometheus/OpenMetrics text. Needs the `metrics` scope (also granted by `read` and `admin`).
#[utoipa::path(
    get, path = "/v1/metrics", tag = "system",
    security(("bearer" = ["metrics"])),
    responses(
        (status = 200, description = "OpenMetrics text", body = String,
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
    )
)]
pub(crate) async fn metrics(
    _auth: Authed<MetricsScope>,
    State(state): State<AppState>,
) -> ApiResult<Response> {
    let text = state.service.metrics_text().await?;
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    Ok(resp)
}

/// Same as `/v1/metrics`, at the path Prometheus scrapes by default.
#[utoipa::path(
    get, path = "/metrics", tag = "system",
    security(("bearer" = ["metrics"])),
    responses(
        (status = 200, description = "OpenMetrics text", body = String,
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
    )
)]
pub(crate) async fn metrics_alias(
    auth: Authed<MetricsScope>,
    state: State<AppState>,
) -> ApiResult<Response> {
    metrics(auth, state).await
}
