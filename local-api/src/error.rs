//! The one error shape of the API, its stable codes, and the error the service returns.
//!
//! Handlers return [`ApiError`]; its response carries the error as an extension with an empty
//! body, and the outermost middleware ([`crate::guard`]) renders the JSON body with the request id.
//! That keeps a single rendering path, including for errors raised by axum or tower-http layers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable, machine-readable error codes. Documented in `local-api/ERRORS.md`; a test keeps the
/// table and this enum in sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthorized,
    ForbiddenScope,
    ForbiddenHost,
    ForbiddenOrigin,
    BadRequest,
    InvalidJson,
    UnsupportedMediaType,
    InvalidAddress,
    InvalidCard,
    UnknownContact,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    MessageTooLarge,
    RateLimited,
    Timeout,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::Unauthorized,
        ErrorCode::ForbiddenScope,
        ErrorCode::ForbiddenHost,
        ErrorCode::ForbiddenOrigin,
        ErrorCode::BadRequest,
        ErrorCode::InvalidJson,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidAddress,
        ErrorCode::InvalidCard,
        ErrorCode::UnknownContact,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::MessageTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Timeout,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ForbiddenScope => "forbidden_scope",
            ErrorCode::ForbiddenHost => "forbidden_host",
            ErrorCode::ForbiddenOrigin => "forbidden_origin",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidAddress => "invalid_address",
            ErrorCode::InvalidCard => "invalid_card",
            ErrorCode::UnknownContact => "unknown_contact",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::ForbiddenScope | ErrorCode::ForbiddenHost | ErrorCode::ForbiddenOrigin => {
                StatusCode::FORBIDDEN
            }
            ErrorCode::BadRequest
            | ErrorCode::InvalidJson
            | ErrorCode::InvalidAddress
            | ErrorCode::InvalidCard => StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnknownContact | ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge | ErrorCode::MessageTooLarge => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Timeout | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Code for an error response that did not come from [`ApiError`] (axum's own 404/405,
    /// tower-http's 413 and timeout), so that it can be rewritten into the JSON shape.
    pub(crate) fn from_status(status: StatusCode) -> ErrorCode {
        match status {
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            // tower-http's TimeoutLayer is configured to answer 408 (see `router`).
            StatusCode::REQUEST_TIMEOUT => ErrorCode::Timeout,
            StatusCode::CONFLICT => ErrorCode::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
            s if s.is_client_error() => ErrorCode::BadRequest,
            _ => ErrorCode::Internal,
        }
    }

    /// Generic human message, used when nothing more specific is known.
    pub(crate) fn default_message(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "a valid bearer token is required",
            ErrorCode::ForbiddenScope => "the token lacks the scope this endpoint needs",
            ErrorCode::ForbiddenHost => "the Host header is not a loopback name or allowed host",
            ErrorCode::ForbiddenOrigin => "cross-origin requests are not allowed",
            ErrorCode::BadRequest => "bad request",
            ErrorCode::InvalidJson => "the request body is not valid JSON",
            ErrorCode::UnsupportedMediaType => "expected Content-Type: application/json",
            ErrorCode::InvalidAddress => "invalid address",
            ErrorCode::InvalidCard => "invalid contact card",
            ErrorCode::UnknownContact => "unknown contact",
            ErrorCode::NotFound => "not found",
            ErrorCode::MethodNotAllowed => "method not allowed for this route",
            ErrorCode::Conflict => "conflict with the current state",
            ErrorCode::PayloadTooLarge => "request body too large",
            ErrorCode::MessageTooLarge => "message too large",
            ErrorCode::RateLimited => "too many requests",
            ErrorCode::Timeout => "the request took too long",
            ErrorCode::Unavailable => "the node is temporarily unavailable",
            ErrorCode::Internal => "internal error",
        }
    }
}

/// The JSON body of every error response: `{"error":{"code","message","request_id"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// Human-readable; may change between versions. Match on `code`, not on this.
    pub message: String,
    /// Also in the `x-request-id` response header; quote it when reporting a problem.
    pub request_id: String,
}

/// What a [`crate::NodeService`] method fails with. The API maps each variant to one code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// Text that should be an address is not a valid one (bad checksum, wrong prefix...).
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// A contact card failed to parse, verify, or has expired.
    #[error("invalid contact card: {0}")]
    InvalidCard(String),
    /// `to` (or a path address) names no known contact.
    #[error("unknown contact: {0}")]
    UnknownContact(String),
    /// The addressed resource (message id, token id...) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A message body exceeds what the node will send.
    #[error("message too large: {size} bytes, at most {max}")]
    MessageTooLarge { size: usize, max: usize },
    /// Any other invalid input.
    #[error("{0}")]
    BadRequest(String),
    /// An upload over the node's file size limit (refused before it is stored).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request conflicts with current state (e.g. a contact name already in use).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A bound was hit (outbox full, per-app rate); retry later.
    #[error("rate limited")]
    RateLimited { retry_after_secs: Option<u64> },
    /// The node cannot serve this now (starting, shutting down, store unavailable).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure. The text is logged with the request id, never sent to
    /// the client.
    #[error("internal error: {0}")]
    Internal(String),
}

/// An error on its way to becoming an HTTP response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    /// Logged with the request id, never sent.
    pub(crate) internal: Option<String>,
    pub(crate) retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            internal: None,
            retry_after_secs: None,
        }
    }

    pub fn from_code(code: ErrorCode) -> Self {
        Self::new(code, code.default_message())
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let code = match &e {
            ServiceError::InvalidAddress(_) => ErrorCode::InvalidAddress,
            ServiceError::InvalidCard(_) => ErrorCode::InvalidCard,
            ServiceError::UnknownContact(_) => ErrorCode::UnknownContact,
            ServiceError::NotFound(_) => ErrorCode::NotFound,
            ServiceError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
            ServiceError::BadRequest(_) => ErrorCode::BadRequest,
            ServiceError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ServiceError::Conflict(_) => ErrorCode::Conflict,
            ServiceError::RateLimited { .. } => ErrorCode::RateLimited,
            ServiceError::Unavailable(_) => ErrorCode::Unavailable,
            ServiceError::Internal(_) => ErrorCode::Internal,
        };
        match e {
            ServiceError::Internal(detail) => ApiError {
                internal: Some(detail),
                ..ApiError::from_code(code)
            },
            ServiceError::RateLimited { retry_after_secs } => ApiError {
                retry_after_secs,
                ..ApiError::from_code(code)
            },
            other => ApiError::new(code, other.to_string()),
        }
    }
}

/// Marker carried in the response extensions until [`crate::guard`] renders the body.
#[derive(Debug, Clone)]
pub(crate) struct PendingError(pub(crate) ApiError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = self.code.status().into_response();
        if self.code == ErrorCode::Unauthorized {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp.extensions_mut().insert(PendingError(self));
        resp
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_match_as_str() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
        }
        assert_eq!(ErrorCode::ALL.len(), 19);
    }

    #[test]
    fn internal_detail_is_not_the_message() {
        let err = ApiError::from(ServiceError::Internal("disk path /x".into()));
        assert_eq!(err.code(), ErrorCode::Internal);
        assert!(!err.message().contains("/x"));
        assert_eq!(err.internal.as_deref(), Some("disk path /x"));
    }
}
