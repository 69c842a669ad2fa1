//! The local HTTP/JSON API, served on TCP (kiosks, API keys) and on a Unix socket (the
//! operator CLI, access by file permissions).

mod auth;
mod error;
mod handlers;
mod json;
mod samples;

use std::path::Path;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::agent::Agent;

pub use auth::UdsPeer;
pub use error::ApiError;

/// Path prefix of every endpoint.
pub const PREFIX: &str = "/api/v1/biometric";

fn routes() -> Router<Arc<Agent>> {
    use handlers::*;
    Router::new()
        .route("/devices", get(list_devices))
        .route("/devices/{id}/test", post(test_device))
        .route("/devices/{id}/present", post(present_sample))
        .route("/subjects", get(list_subjects).post(create_subject))
        .route(
            "/subjects/{subject}",
            get(get_subject).delete(delete_subject),
        )
        .route("/subjects/{subject}/enroll", post(enroll))
        .route("/verify", post(verify))
        .route("/identify", post(identify))
        .route("/history", get(history))
        .route("/analytics/summary", get(analytics))
        .route("/audit", get(audit_list))
        .route("/audit/verify", post(audit_verify))
        .route("/keys/rotate", post(rotate_keys))
        .route("/api-keys", get(list_api_keys).post(create_api_key))
        .route("/api-keys/{id}", delete(revoke_api_key))
        .route("/backup", post(backup))
        .route("/restore", post(restore))
}

/// The router for the TCP listener: every endpoint but health needs an API key.
pub fn tcp_router(agent: Arc<Agent>) -> Router {
    let limit = agent.config().api.max_body_bytes;
    let protected = routes().layer(middleware::from_fn_with_state(
        agent.clone(),
        auth::require_api_key,
    ));
    Router::new()
        .nest(PREFIX, protected.route("/health", get(handlers::health)))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(auth::request_context))
        .with_state(agent)
}

/// The router for the Unix socket: callers who can open the socket act as admin.
pub fn socket_router(agent: Arc<Agent>) -> Router {
    let limit = agent.config().api.max_body_bytes;
    let local = routes().layer(middleware::from_fn(auth::local_admin));
    Router::new()
        .nest(PREFIX, local.route("/health", get(handlers::health)))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(auth::request_context))
        .with_state(agent)
}

/// Binds the operator socket with mode 0660 (group `apg-biometric`), replacing a stale one.
pub fn bind_socket(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        // A socket left by a crashed agent: if nothing answers on it, it is stale.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another agent is already listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}
