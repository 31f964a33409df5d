//! Bearer-token authentication as an axum extractor, with the scope as a type parameter.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, header, request::Parts};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::token::{Scope, parse_token, scopes_grant};

/// Who is calling: the token that authenticated the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub token_name: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// Whether this token's scopes grant `needed`.
    pub fn grants(&self, needed: Scope) -> bool {
        scopes_grant(&self.scopes, needed)
    }

    pub fn require(&self, needed: Scope) -> Result<(), ApiError> {
        if self.grants(needed) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::ForbiddenScope,
                format!("this endpoint needs the {needed} scope"),
            ))
        }
    }
}

/// The scope an [`Authed`] extractor demands.
pub trait RequiredScope: Send + Sync + 'static {
    /// `None`: any valid token.
    const SCOPE: Option<Scope>;
}

macro_rules! scope_marker {
    ($(#[$doc:meta] $name:ident => $scope:expr;)*) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl RequiredScope for $name {
            const SCOPE: Option<Scope> = $scope;
        }
    )*};
}

scope_marker! {
    /// Any valid token.
    AnyScope => None;
    /// `read` (or `admin`).
    ReadScope => Some(Scope::Read);
    /// `send` (or `admin`).
    SendScope => Some(Scope::Send);
    /// `metrics`, `read` or `admin`.
    MetricsScope => Some(Scope::Metrics);
    /// `admin`.
    AdminScope => Some(Scope::Admin);
}

/// Extracting this authenticates the request (401 `unauthorized`) and checks the scope
/// (403 `forbidden_scope`), both in the API's JSON error shape.
#[derive(Debug, Clone)]
pub struct Authed<S: RequiredScope> {
    pub principal: Principal,
    _scope: PhantomData<S>,
}

impl<S: RequiredScope> FromRequestParts<AppState> for Authed<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers)?
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
        let principal = authenticate(state, token).await?;
        if let Some(needed) = S::SCOPE {
            principal.require(needed)?;
        }
        Ok(Authed {
            principal,
            _scope: PhantomData,
        })
    }
}

/// The bearer token of the request, `None` without an `Authorization` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let malformed = || ApiError::unauthorized("malformed Authorization header");
    if values.next().is_some() {
        return Err(malformed());
    }
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed());
    }
    Ok(Some(token.trim()))
}

/// Check a token's text against the stored record: lookup by public id, then a constant-time
/// comparison of secret hashes. Unknown id and wrong secret give the same answer.
pub(crate) async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let parsed = parse_token(token).ok_or_else(|| ApiError::unauthorized("malformed token"))?;
    let record = state.service.token_lookup(parsed.id.to_owned()).await?;
    match record {
        Some(record) if record.verify_secret(parsed.secret) => Ok(Principal {
            token_id: record.id,
            token_name: record.name,
            scopes: record.scopes,
        }),
        _ => Err(ApiError::unauthorized("invalid or revoked token")),
    }
}
