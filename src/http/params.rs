//! Query parameters, parsed so that every refusal is the JSON error shape and names the
//! parameter at fault (`limit`, `days` …), not a plain-text "Query deserialize error".

use std::future::{ready, Ready};

use actix_web::{dev::Payload, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use super::ApiError;

/// The request's query string as `T`.
pub struct Params<T>(pub T);

impl<T> std::ops::Deref for Params<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Params<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse(req.query_string()).map(Params))
    }
}

pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner().to_string();
        let field = if path != "." {
            path
        } else {
            // A missing parameter is reported at the root; serde names it between backticks.
            reason
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
                .unwrap_or("query")
                .to_string()
        };
        ApiError::bad_request(field, reason)
    })
}

/// A whole-number parameter within `min..=max`, or 400 naming it.
pub fn in_range(name: &str, value: u64, min: u64, max: u64) -> Result<u64, ApiError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::bad_request(
            name,
            format!("must be {min} to {max}, not {value}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Q {
        limit: Option<u64>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Named {
        name: String,
    }

    #[test]
    fn a_bad_parameter_is_named() {
        let e = parse::<Q>("limit=abc").unwrap_err();
        match e {
            ApiError::BadRequest { field, .. } => assert_eq!(field, "limit"),
            other => panic!("{other:?}"),
        }
        assert!(parse::<Q>("limit=99999999999999999999999").is_err());
        assert!(parse::<Q>("limit=5&token=x").is_ok());
        assert!(in_range("limit", 9_223_372_036_854_775_808, 1, 5000).is_err());
        match parse::<Named>("").unwrap_err() {
            ApiError::BadRequest { field, .. } => assert_eq!(field, "name"),
            other => panic!("{other:?}"),
        }
    }
}
