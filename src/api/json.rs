//! A JSON body extractor whose errors name the field at fault and keep the 413 of oversized
//! bodies.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "request body is larger than api.max_body_bytes (10 MiB by default)",
                )
            } else {
                ApiError::new(rejection.status(), "bad_body", rejection.body_text())
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses JSON, naming the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::field("(body)", format!("not valid JSON: {inner}"))
        } else if path == "." {
            // Missing fields are reported at the top level; serde names them in the message.
            let message = inner.to_string();
            let field = message.split('`').nth(1).unwrap_or("(body)").to_string();
            ApiError::field(field, message)
        } else {
            ApiError::field(path, inner.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        subject_id: String,
        modality: crate::modality::Modality,
    }

    #[test]
    fn a_wrong_value_names_its_field() {
        let err = parse::<Req>(br#"{"subject_id": "a", "modality": "retina"}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("modality"));
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = parse::<Req>(br#"{"modality": "face"}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("subject_id"));
    }

    #[test]
    fn broken_json_is_a_400() {
        let err = parse::<Req>(b"{\"subject_id\": ").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }
}
