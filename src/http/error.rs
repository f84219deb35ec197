//! The one place where errors become HTTP answers: every variant has one status code, and
//! server-side failures are logged here, once.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{field}: {reason}")]
    BadRequest { field: String, reason: String },
    /// Well-formed, but not what this resource takes (a correction of another kind).
    #[error("{field}: {reason}")]
    Unprocessable { field: String, reason: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{method} is not allowed here; allowed: {allow}")]
    MethodNotAllowed { method: String, allow: String },
    #[error("service unavailable: {reason}")]
    Unavailable {
        reason: String,
        retry_after_secs: Option<u64>,
    },
    #[error("too many {what}; retry in {retry_after_secs} s")]
    TooManyRequests { what: String, retry_after_secs: u64 },
    #[error("{0}")]
    Conflict(String),
    /// ClickHouse refused the analyst's query: not allowed for this user.
    #[error("ClickHouse refused the query: {message} (code {code})")]
    QueryForbidden { code: u32, message: String },
    /// A limit of the analysts' profile cut the query.
    #[error("the query was stopped by a limit: {message} (code {code})")]
    QueryLimit { code: u32, message: String },
    /// The query itself is wrong (syntax, unknown table …).
    #[error("ClickHouse could not run the query: {message} (code {code})")]
    QueryInvalid { code: u32, message: String },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub use crate::wire::ErrorBody;

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match e {
            AuthError::Missing | AuthError::Invalid | AuthError::Expired | AuthError::Revoked => {
                ApiError::Unauthorized(e.to_string())
            }
            AuthError::Forbidden(reason) => ApiError::Forbidden(reason),
        }
    }
}

impl From<crate::ingest::LogError> for ApiError {
    fn from(e: crate::ingest::LogError) -> Self {
        use crate::ingest::LogError;
        match e {
            LogError::Full { .. } => ApiError::Unavailable {
                reason: e.to_string(),
                retry_after_secs: Some(5),
            },
            LogError::Closed | LogError::Unavailable(_) => ApiError::Unavailable {
                reason: e.to_string(),
                retry_after_secs: Some(1),
            },
            LogError::Io(_) => ApiError::Unexpected(anyhow::Error::new(e)),
        }
    }
}

impl From<crate::batch::decision::JobError> for ApiError {
    fn from(e: crate::batch::decision::JobError) -> Self {
        match e {
            crate::batch::decision::JobError::Store(s) => s.into(),
            other => ApiError::Unexpected(anyhow::Error::new(other)),
        }
    }
}

impl From<crate::batch::ledger::error::ImportError> for ApiError {
    fn from(e: crate::batch::ledger::error::ImportError) -> Self {
        use crate::batch::ledger::error::ImportError;
        match e {
            ImportError::File { reason, .. } => ApiError::bad_request("file", reason),
            ImportError::Store(e) => e.into(),
            ImportError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}

impl From<crate::auth::RetryAfter> for ApiError {
    fn from(r: crate::auth::RetryAfter) -> Self {
        ApiError::TooManyRequests {
            what: r.what.to_string(),
            retry_after_secs: r.secs,
        }
    }
}

impl From<crate::auth::UserError> for ApiError {
    fn from(e: crate::auth::UserError) -> Self {
        use crate::auth::UserError;
        match e {
            UserError::Invalid { field, reason } => ApiError::bad_request(field, reason),
            UserError::Exists(_) => ApiError::Conflict(e.to_string()),
            UserError::NotFound(what) => ApiError::NotFound { what },
            UserError::Store(e) => e.into(),
            UserError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}

impl From<crate::sql::SqlError> for ApiError {
    fn from(e: crate::sql::SqlError) -> Self {
        use crate::sql::{RefusalClass, SqlError};
        match e {
            SqlError::Refused(r) => match r.class {
                RefusalClass::Forbidden => ApiError::QueryForbidden {
                    code: r.code,
                    message: r.message,
                },
                RefusalClass::Limit => ApiError::QueryLimit {
                    code: r.code,
                    message: r.message,
                },
                RefusalClass::Quota => ApiError::TooManyRequests {
                    what: format!("queries this hour ({})", r.message),
                    retry_after_secs: 60,
                },
                RefusalClass::Cancelled => {
                    ApiError::Conflict(format!("the query was cancelled: {}", r.message))
                }
                RefusalClass::Invalid => ApiError::QueryInvalid {
                    code: r.code,
                    message: r.message,
                },
            },
            SqlError::NotProvisioned(reason) => ApiError::Unavailable {
                reason,
                retry_after_secs: None,
            },
            SqlError::NotFound(what) => ApiError::NotFound { what },
            SqlError::Invalid { field, reason } => ApiError::bad_request(field, reason),
            SqlError::Store(e) => e.into(),
            SqlError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}

/// A store that is down or overloaded is worth retrying (503); any other store failure is ours.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.retry_hint() == crate::store::RetryHint::Retry {
            ApiError::Unavailable {
                reason: e.to_string(),
                retry_after_secs: Some(5),
            }
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

/// The body of a JSON request could not be used: the JSON error shape, never plain text.
pub fn json_body_error(
    e: actix_web::error::JsonPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError;
    let api = match e {
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType(
            "the body must be JSON (Content-Type: application/json, or none)".into(),
        ),
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => {
            ApiError::TooLarge(format!("the body exceeds the limit of {limit} bytes"))
        }
        JsonPayloadError::Deserialize(e) => {
            let text = e.to_string();
            // serde names a missing or unknown field between backticks.
            let field = text
                .split('`')
                .nth(1)
                .filter(|_| text.starts_with("missing field") || text.starts_with("unknown field"))
                .unwrap_or("$")
                .to_string();
            ApiError::bad_request(field, text)
        }
        other => ApiError::bad_request("$", other.to_string()),
    };
    api.into()
}

/// A path segment that does not parse (e.g. a number): JSON, naming the path.
pub fn path_error(
    e: actix_web::error::PathError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::bad_request("path", e.to_string()).into()
}

/// Query strings read with `web::Query` (handlers mostly use `Params`, which names the field).
pub fn query_error(
    e: actix_web::error::QueryPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::bad_request("query", e.to_string()).into()
}

impl ApiError {
    pub fn bad_request(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::QueryForbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::QueryLimit { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::QueryInvalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let field = match self {
            ApiError::BadRequest { field, .. } | ApiError::Unprocessable { field, .. } => {
                Some(field.clone())
            }
            ApiError::QueryForbidden { .. }
            | ApiError::QueryLimit { .. }
            | ApiError::QueryInvalid { .. } => Some("sql".to_string()),
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
            ApiError::BadRequest { reason, .. } | ApiError::Unprocessable { reason, .. } => {
                reason.clone()
            }
            _ => self.to_string(),
        };
        let mut res = HttpResponse::build(self.status_code());
        if let ApiError::Unavailable {
            retry_after_secs: Some(secs),
            ..
        }
        | ApiError::TooManyRequests {
            retry_after_secs: secs,
            ..
        } = self
        {
            res.insert_header(("Retry-After", secs.to_string()));
        }
        if let ApiError::Unauthorized(_) = self {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            res.insert_header(("Allow", allow.as_str()));
        }
        res.json(ErrorBody { error, field })
    }
}
