//! Middleware: request ids and error rendering (outermost), and the Host/Origin guard.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::ApiConfig;
use crate::error::{ApiError, ErrorBody, ErrorCode, ErrorDetail, PendingError};
use crate::state::AppState;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Outermost layer: gives each request an id, renders every error response (ours, axum's and
/// tower-http's) as the one JSON shape carrying that id, and logs internal errors with it.
pub(crate) async fn request_context(req: Request, next: Next) -> Response {
    let request_id = new_request_id();
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut resp = next.run(req).await;
    if let Some(PendingError(err)) = resp.extensions_mut().remove::<PendingError>() {
        if let Some(detail) = &err.internal {
            tracing::error!(%request_id, %method, %path, error = %detail, "internal error");
        }
        resp = render_error(resp, err.code, err.message, &request_id);
    } else if resp.status().is_client_error() || resp.status().is_server_error() {
        let code = ErrorCode::from_status(resp.status());
        resp = render_error(resp, code, code.default_message().to_owned(), &request_id);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    tracing::debug!(
        %request_id, %method, %path, status = resp.status().as_u16(),
        elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    resp
}

fn render_error(resp: Response, code: ErrorCode, message: String, request_id: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message,
            request_id: request_id.to_owned(),
        },
    };
    let (mut parts, _old_body) = resp.into_parts();
    parts.status = code.status();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    Response::from_parts(parts, Body::from(json))
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 12];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// Refuses a non-loopback `Host` (DNS rebinding) and a non-loopback `Origin` (cross-site
/// browser requests, including WebSocket upgrades, which CORS does not cover). Applies to every
/// route, `/v1/health` included.
pub(crate) async fn host_and_origin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if let Err(e) = check_host(&req, &state.cfg) {
        return e.into_response();
    }
    if let Err(e) = check_origin(req.headers(), &state.cfg) {
        return e.into_response();
    }
    next.run(req).await
}

fn check_host(req: &Request, cfg: &ApiConfig) -> Result<(), ApiError> {
    let forbidden = |why: &str| ApiError::new(ErrorCode::ForbiddenHost, why.to_owned());
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host_header = match (hosts.next(), hosts.next()) {
        (Some(h), None) => Some(
            h.to_str()
                .map_err(|_| forbidden("unreadable Host header"))?,
        ),
        (None, _) => None,
        (Some(_), Some(_)) => return Err(forbidden("more than one Host header")),
    };
    let authority = req.uri().authority().map(|a| a.as_str());
    if host_header.is_none() && authority.is_none() {
        return Err(forbidden("missing Host header"));
    }
    for candidate in [host_header, authority].into_iter().flatten() {
        if !host_allowed(candidate, cfg) {
            return Err(forbidden(
                "the Host header is not a loopback name or an allowed host",
            ));
        }
    }
    Ok(())
}

fn check_origin(headers: &HeaderMap, cfg: &ApiConfig) -> Result<(), ApiError> {
    for value in headers.get_all(header::ORIGIN) {
        let allowed = value
            .to_str()
            .is_ok_and(|origin| origin_allowed(origin, cfg));
        if !allowed {
            return Err(ApiError::from_code(ErrorCode::ForbiddenOrigin));
        }
    }
    Ok(())
}

/// `host[:port]` is loopback or in the allow-list.
pub(crate) fn host_allowed(host_port: &str, cfg: &ApiConfig) -> bool {
    let Some(host) = strip_port(host_port) else {
        return false;
    };
    is_loopback_host(host)
        || cfg
            .allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
}

/// `scheme://host[:port]` with a loopback host, or exactly an allowed origin. `null` (file://,
/// sandboxed frames) is refused.
pub(crate) fn origin_allowed(origin: &str, cfg: &ApiConfig) -> bool {
    if cfg.allowed_origins.iter().any(|o| o == origin) {
        return true;
    }
    let Some((scheme, host_port)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https") && strip_port(host_port).is_some_and(is_loopback_host)
}

/// The host part of `host[:port]` / `[v6][:port]` (brackets removed); `None` if malformed.
fn strip_port(host_port: &str) -> Option<&str> {
    let (host, port) = if let Some(rest) = host_port.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (inner, port)
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    let port_ok = port.is_none_or(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    (port_ok && !host.is_empty()).then_some(host)
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_with_any_port_are_allowed() {
        let cfg = ApiConfig::default();
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.0.0.1:7700",
            "127.5.6.7:1",
            "[::1]",
            "[::1]:7700",
        ] {
            assert!(host_allowed(ok, &cfg), "refused {ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:80",
            "localhost.evil.example",
            "192.168.1.2:7700",
            "0.0.0.0",
            "::1",
            "[::1",
            "[::1]x",
            "[::2]:80",
            "localhost:port",
            "localhost:123456",
            "127.0.0.1:80:80",
        ] {
            assert!(!host_allowed(bad, &cfg), "accepted {bad:?}");
        }
    }

    #[test]
    fn allow_list_extends_hosts_and_origins() {
        let cfg = ApiConfig {
            allowed_hosts: vec!["node.lan".into()],
            allowed_origins: vec!["https://app.example".into()],
            ..ApiConfig::default()
        };
        assert!(host_allowed("NODE.lan:7700", &cfg));
        assert!(!host_allowed("other.lan", &cfg));
        assert!(origin_allowed("https://app.example", &cfg));
        assert!(!origin_allowed("https://app.example:444", &cfg));
    }

    #[test]
    fn origins() {
        let cfg = ApiConfig::default();
        for ok in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://[::1]:8443",
        ] {
            assert!(origin_allowed(ok, &cfg), "refused {ok}");
        }
        for bad in [
            "null",
            "http://evil.example",
            "http://localhost.evil.example",
            "file://",
            "chrome-extension://abc",
            "localhost:3000",
        ] {
            assert!(!origin_allowed(bad, &cfg), "accepted {bad}");
        }
    }
}
