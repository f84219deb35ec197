//! The one place where errors become HTTP answers: every variant has one status code, and
//! server-side failures are logged here, once.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{field}: {reason}")]
    BadRequest { field: String, reason: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("service unavailable: {reason}")]
    Unavailable { reason: String, retry_after_secs: Option<u64> },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Human-readable reason.
    pub error: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match e {
            AuthError::Missing | AuthError::Invalid => ApiError::Unauthorized(e.to_string()),
            AuthError::Forbidden(reason) => ApiError::Forbidden(reason),
        }
    }
}

/// A store that is down or overloaded is worth retrying (503); any other store failure is ours.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_retryable() {
            ApiError::Unavailable { reason: e.to_string(), retry_after_secs: Some(5) }
        } else {
            ApiError::Unexpected(anyhow::Error::new(e))
        }
    }
}

impl From<clickhouse::error::Error> for ApiError {
    fn from(e: clickhouse::error::Error) -> Self {
        crate::store::StoreError::from(e).into()
    }
}

impl ApiError {
    pub fn bad_request(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::BadRequest { field: field.into(), reason: reason.into() }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let field = match self {
            ApiError::BadRequest { field, .. } => Some(field.clone()),
            _ => None,
        };
        let error = match self {
            ApiError::Unexpected(e) => {
                tracing::error!(error = ?e, "request failed");
                "internal error".to_string()
            }
            ApiError::Unavailable { reason, .. } => {
                tracing::warn!(%reason, "request refused: unavailable");
                self.to_string()
            }
            ApiError::BadRequest { reason, .. } => reason.clone(),
            _ => self.to_string(),
        };
        let mut res = HttpResponse::build(self.status_code());
        if let ApiError::Unavailable { retry_after_secs: Some(secs), .. } = self {
            res.insert_header(("Retry-After", secs.to_string()));
        }
        if let ApiError::Unauthorized(_) = self {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(ErrorBody { error, field })
    }
}
