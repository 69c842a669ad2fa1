//! API errors: every failure becomes a status code and a JSON body naming what is wrong.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::decision::DecisionError;
use crate::engines::EngineError;
use crate::store::StoreError;
use crate::workers::WorkError;

/// An error answered to an API caller.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`invalid_field`, `locked`, ...).
    pub code: &'static str,
    /// Human explanation.
    pub message: String,
    /// The request field at fault, for 400s.
    pub field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// A 400 naming the bad field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("{field}: {}", message.into());
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_field",
            message,
            field: Some(field),
        }
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A 500 whose cause is logged, not shown.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "Request failed inside the agent.");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the agent failed to complete the request; see its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what } => Self::not_found(format!("{what} not found")),
            StoreError::Conflict { what } => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            ),
            other => Self::internal(other),
        }
    }
}

impl From<DecisionError> for ApiError {
    fn from(e: DecisionError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            DecisionError::SubjectNotFound(_) => {
                Self::new(S::NOT_FOUND, "subject_not_found", message)
            }
            DecisionError::SubjectExists(_) => Self::new(S::CONFLICT, "subject_exists", message),
            DecisionError::Locked { .. } => Self::new(S::LOCKED, "locked", message),
            DecisionError::NotEnrolled { .. } => Self::new(S::CONFLICT, "not_enrolled", message),
            DecisionError::ModalityDisabled(_) => {
                Self::new(S::CONFLICT, "modality_disabled", message)
            }
            DecisionError::NoDevice { .. } => {
                Self::new(S::SERVICE_UNAVAILABLE, "no_device", message)
            }
            DecisionError::Sample(ref inner) => match inner {
                EngineError::WrongSample { .. } => Self::field("sample", message),
                EngineError::InvalidTemplate { .. } | EngineError::Unavailable { .. } => {
                    Self::internal(message)
                }
                _ => Self::new(S::UNPROCESSABLE_ENTITY, inner.label(), message),
            },
            DecisionError::Capture(ref c) => {
                let status = match c {
                    apg_device::CaptureError::Timeout { .. } => S::GATEWAY_TIMEOUT,
                    apg_device::CaptureError::Retry { .. } => S::UNPROCESSABLE_ENTITY,
                    apg_device::CaptureError::Fault {
                        kind: apg_device::FaultKind::NotFound,
                        ..
                    } => S::NOT_FOUND,
                    apg_device::CaptureError::Fault {
                        kind: apg_device::FaultKind::Busy,
                        ..
                    } => S::CONFLICT,
                    _ => S::SERVICE_UNAVAILABLE,
                };
                Self::new(status, "capture_failed", message)
            }
            DecisionError::Work(ref w) => match w {
                WorkError::Timeout(_) | WorkError::QueueTimeout(_) => {
                    Self::new(S::GATEWAY_TIMEOUT, "timeout", message)
                }
                WorkError::Panicked(_) => Self::internal(message),
                _ => Self::new(S::SERVICE_UNAVAILABLE, "busy", message),
            },
            DecisionError::Store(inner) => inner.into(),
            DecisionError::Invalid { field, message } => Self::field(field, message),
            DecisionError::EnrollmentFailed { .. } => {
                Self::new(S::UNPROCESSABLE_ENTITY, "enrollment_failed", message)
            }
        }
    }
}
