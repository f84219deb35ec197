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
    #[error("service unavailable: {0}")]
    Unavailable(String),
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
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
            ApiError::Unavailable(reason) => {
                tracing::warn!(%reason, "request refused: unavailable");
                self.to_string()
            }
            ApiError::BadRequest { reason, .. } => reason.clone(),
            _ => self.to_string(),
        };
        HttpResponse::build(self.status_code()).json(ErrorBody { error, field })
    }
}
