//! Authentication middleware and the request context (request id, log span).

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::ApiError;
use crate::access::{self, KeyRejection, Permission, Principal, Role};
use crate::agent::Agent;

/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Request id of the current request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Peer credentials of a Unix-socket connection.
#[derive(Debug, Clone, Copy)]
pub struct UdsPeer {
    /// Peer user id, when the kernel reports it.
    pub uid: Option<u32>,
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, tokio::net::UnixListener>,
    > for UdsPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        Self {
            uid: stream.io().peer_cred().ok().map(|c| c.uid()),
        }
    }
}

/// Gives every request an id (the caller's `X-Request-Id` when it is sane) and a log span.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path(), subject = tracing::field::Empty);
    let mut response = next.run(req).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// TCP: a valid, unexpired, unrevoked API key is required.
pub async fn require_api_key(
    State(agent): State<Arc<Agent>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(presented) = req
        .headers()
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return unauthorized("an X-API-Key header is required; create a key with `apg-biometric keys create-api-key`");
    };
    let store = agent.store.clone();
    let checked =
        tokio::task::spawn_blocking(move || access::authenticate(&store, &presented)).await;
    match checked {
        Ok(Ok(Ok(principal))) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(Ok(Err(rejection))) => {
            // The reason goes to the log only: callers learn nothing about which keys exist.
            tracing::warn!(reason = ?rejection, "API key refused.");
            let message = match rejection {
                KeyRejection::Expired | KeyRejection::Revoked | KeyRejection::Unknown => {
                    "the API key is not valid"
                }
            };
            unauthorized(message)
        }
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

fn unauthorized(message: &str) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response()
}

/// Unix socket: whoever can open the socket (mode 0660, group apg-biometric) is an operator
/// of this machine and acts as admin; the audit log names their uid.
pub async fn local_admin(mut req: Request, next: Next) -> Response {
    let uid = req
        .extensions()
        .get::<ConnectInfo<UdsPeer>>()
        .and_then(|ConnectInfo(p)| p.uid)
        .map_or_else(|| "unknown".to_string(), |u| u.to_string());
    req.extensions_mut().insert(Principal {
        name: format!("cli:uid={uid}"),
        role: Role::Admin,
    });
    next.run(req).await
}

/// Fails with 403 unless the caller's role grants `permission`.
pub fn require(principal: &Principal, permission: Permission) -> Result<(), ApiError> {
    if principal.role.allows(permission) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "role {} may not do this (needs {:?} permission)",
                principal.role, permission
            ),
        ))
    }
}
