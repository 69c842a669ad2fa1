//! HTTP client for the agent's Unix socket (used by the operator CLI).

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Why a call to the agent failed before it answered.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be opened.
    #[error("cannot reach the agent at {path}: {error}; is apg-biometric-agent running (systemctl status apg-biometric-agent) and are you in group apg-biometric?")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        error: std::io::Error,
    },
    /// HTTP failed.
    #[error("the agent at {path} closed the connection: {error}")]
    Http {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        error: String,
    },
}

/// An answer: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body (`null` when empty or not JSON).
    pub body: Value,
}

impl Answer {
    /// The error message of a non-success answer.
    pub fn error_message(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .map_or_else(|| format!("HTTP {}", self.status), str::to_string)
    }
}

/// A client bound to one socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client of the agent listening on `socket`.
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        ndjson: bool,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|error| ClientError::Connect {
                path: self.socket.clone(),
                error,
            })?;
        let http = |e: hyper::Error| ClientError::Http {
            path: self.socket.clone(),
            error: e.to_string(),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(conn);
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", crate::api::PREFIX))
            .header(HOST, "localhost")
            .header(CONTENT_TYPE, "application/json")
            .header(
                ACCEPT,
                if ndjson {
                    "application/x-ndjson"
                } else {
                    "application/json"
                },
            )
            .body(Full::new(bytes))
            .expect("a request from valid parts");
        sender.send_request(request).await.map_err(http)
    }

    /// Sends a request and reads the whole JSON answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        let response = self.send(method, path, body, false).await?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http {
                path: self.socket.clone(),
                error: e.to_string(),
            })?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// Sends a request whose answer is JSON lines, calling `line` for each as it arrives.
    pub async fn stream(
        &self,
        path: &str,
        body: &Value,
        mut line: impl FnMut(Value),
    ) -> Result<StatusCode, ClientError> {
        let response = self.send(Method::POST, path, Some(body), true).await?;
        let status = response.status();
        let mut body = response.into_body();
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Http {
                path: self.socket.clone(),
                error: e.to_string(),
            })?;
            if let Some(data) = frame.data_ref() {
                pending.extend_from_slice(data);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let text: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(value) = serde_json::from_slice(&text) {
                        line(value);
                    }
                }
            }
        }
        if let Ok(value) = serde_json::from_slice(&pending) {
            line(value);
        }
        Ok(status)
    }
}
