//! Files: upload (streamed), list, status, download (streamed, with `Range`), fetch an offered
//! file, delete. Uploads bypass the API's body limit (the node's file size limit applies) and
//! its request timeout.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

use crate::auth::{Authed, ReadScope, SendScope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::types::{FileList, FileView, UploadParams};

/// Upload a file (the raw bytes as the body; its `Content-Type` is the file's type) to attach
/// to messages. Sealed as it streams in; nothing is kept of a refused upload.
#[utoipa::path(
    post, path = "/v1/files", tag = "files",
    params(UploadParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    security(("bearer" = ["send"])),
    responses(
        (status = 201, description = "Stored; attach it by id", body = FileView),
        (status = 400, description = "`bad_request` (name, type, interrupted upload)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over the node's file size limit", body = ErrorBody),
        (status = 503, description = "`unavailable`: disk full", body = ErrorBody),
    )
)]
pub(crate) async fn upload(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<FileView>)> {
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let stream = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .boxed_stream();
    let file = state
        .service
        .upload_file(params.name, mime, length, stream)
        .await?;
    Ok((StatusCode::CREATED, Json(file)))
}

trait Boxed: futures::Stream + Sized + Send + 'static {
    fn boxed_stream(self) -> futures::stream::BoxStream<'static, Self::Item> {
        Box::pin(self)
    }
}
impl<S: futures::Stream + Send + 'static> Boxed for S {}

#[utoipa::path(
    get, path = "/v1/files", tag = "files",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "Every file, uploaded or offered", body = FileList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
) -> ApiResult<Json<FileList>> {
    Ok(Json(state.service.list_files().await?))
}

/// A file's state: progress, where it comes from, why it failed.
#[utoipa::path(
    get, path = "/v1/files/{id}/status", tag = "files",
    security(("bearer" = ["read"])),
    params(("id" = String, Path, description = "File id (32 hex digits)")),
    responses(
        (status = 200, description = "The file", body = FileView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub(crate) async fn status(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<FileView>> {
    Ok(Json(state.service.get_file(id).await?))
}

/// Fetch an offered file (one over the automatic limit), or resume one that failed.
#[utoipa::path(
    post, path = "/v1/files/{id}/download", tag = "files",
    security(("bearer" = ["read"])),
    params(("id" = String, Path, description = "File id (32 hex digits)")),
    responses(
        (status = 202, description = "Fetching (follow `file_progress` events)", body = FileView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub(crate) async fn download(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<FileView>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(state.service.download_file(id).await?),
    ))
}

#[utoipa::path(
    delete, path = "/v1/files/{id}", tag = "files",
    security(("bearer" = ["send"])),
    params(("id" = String, Path, description = "File id (32 hex digits)")),
    responses(
        (status = 204, description = "Deleted here (a download stops)"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.service.delete_file(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A file's bytes (an upload, or a download once complete and verified); `Range: bytes=a-b`
/// for a part.
#[utoipa::path(
    get, path = "/v1/files/{id}", tag = "files",
    security(("bearer" = ["read"])),
    params(("id" = String, Path, description = "File id (32 hex digits)")),
    responses(
        (status = 200, description = "The whole file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "`bad_request`: a range outside the file, or not `bytes=a-b`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: not complete yet", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(v) => Some(parse_range(v.to_str().unwrap_or(""))?),
    };
    let file = state.service.read_file(id, range).await?;
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response = (status, Body::from_stream(file.body)).into_response();
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, k, v: String| {
        if let Ok(v) = v.parse() {
            h.insert(k, v);
        }
    };
    set(h, header::CONTENT_TYPE, file.mime);
    set(
        h,
        header::CONTENT_LENGTH,
        (file.end - file.start).to_string(),
    );
    set(h, header::ACCEPT_RANGES, "bytes".into());
    if range.is_some() {
        set(
            h,
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", file.start, file.end - 1, file.size),
        );
    }
    Ok(response)
}

/// `bytes=a-b` or `bytes=a-` (one range).
fn parse_range(v: &str) -> ApiResult<(u64, Option<u64>)> {
    let bad = || {
        ApiError::bad_request(format!(
            "unsupported Range {v:?}: use bytes=a-b or bytes=a-"
        ))
    };
    let spec = v.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let start = a.trim().parse().map_err(|_| bad())?;
    let end = match b.trim() {
        "" => None,
        b => Some(b.parse().map_err(|_| bad())?),
    };
    Ok((start, end))
}
