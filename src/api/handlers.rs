//! Endpoint handlers: parse, check permission, call the agent core, answer JSON.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{require, RequestId};
use super::error::ApiError;
use super::json::ApiJson;
use super::samples::{self, SampleUpload};
use crate::access::{self, Permission, Principal, Role};
use crate::agent::Agent;
use crate::decision::{self, Actor};
use crate::engines::{Purpose, SamplePolicy};
use crate::health;
use crate::maintenance;
use crate::modality::Modality;
use crate::store::{self, api_keys, audit, subjects, templates};

type AppState = State<Arc<Agent>>;

fn actor(p: &Principal) -> Actor {
    Actor(p.name.clone())
}

/// Runs blocking store work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

pub async fn health(State(agent): AppState) -> Response {
    match tokio::task::spawn_blocking(move || health::report(&agent)).await {
        Ok(report) => {
            let status = if report.status == health::Status::Failing {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            (status, Json(report)).into_response()
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

pub async fn list_devices(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    require(&p, Permission::ReadDevices)?;
    Ok(Json(serde_json::json!({ "devices": agent.devices.list() })).into_response())
}

/// Captures once and reports quality, without recording a decision.
pub async fn test_device(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require(&p, Permission::Admin)?;
    let status = agent.devices.status(&id).ok_or_else(|| {
        ApiError::not_found(format!(
            "no device {id:?}; `apg-biometric devices` lists them"
        ))
    })?;
    let timeout = std::time::Duration::from_secs_f64(agent.config().devices.capture_timeout);
    let started = std::time::Instant::now();
    let sample = agent
        .devices
        .capture(&id, timeout, apg_device::CancelToken::new())
        .await
        .map_err(decision::DecisionError::from)?;
    let capture_ms = started.elapsed().as_secs_f64() * 1000.0;
    let modality = Modality::ALL
        .into_iter()
        .find(|m| m.device_kind() == status.info.kind && agent.engine(*m).is_some());
    let mut body = serde_json::json!({ "device": id, "captured": true, "capture_ms": capture_ms });
    if let Some(m) = modality {
        let (engine, _) = agent.engine(m).expect("checked above");
        let e = agent.config().engine(m).clone();
        // A test capture judges quality only: it must not teach the replay detector.
        let policy = SamplePolicy {
            quality_threshold: e.quality_threshold,
            liveness_detection: false,
            anti_spoofing: false,
            purpose: Purpose::Verify,
        };
        let limit = std::time::Duration::from_secs_f64(e.processing_timeout);
        let result = agent
            .workers
            .run(limit, move || engine.process(&sample, &policy))
            .await
            .map_err(decision::DecisionError::from)?;
        body["modality"] = m.as_str().into();
        match result {
            Ok(processed) => {
                body["quality"] = serde_json::to_value(&processed.quality).unwrap_or_default();
                body["accepted"] = true.into();
            }
            Err(err) => {
                body["accepted"] = false.into();
                body["reason"] = err.to_string().into();
            }
        }
    }
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresentRequest {
    file: String,
}

/// Simulated devices only: chooses the file the next capture replays.
pub async fn present_sample(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PresentRequest>,
) -> Result<Response, ApiError> {
    require(&p, Permission::Admin)?;
    let presenter = agent
        .devices
        .presenter(&id)
        .ok_or_else(|| ApiError::not_found(format!("{id:?} is not a simulated device")))?;
    presenter
        .present(&req.file)
        .map_err(|e| ApiError::field("file", e.to_string()))?;
    Ok(Json(serde_json::json!({ "device": id, "next": req.file })).into_response())
}

#[derive(Deserialize)]
pub struct Page {
    #[serde(default = "default_limit")]
    limit: u32,
    #[serde(default)]
    offset: u32,
}

fn default_limit() -> u32 {
    100
}

pub async fn list_subjects(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    require(&p, Permission::ReadSubjects)?;
    let limit = page.limit.clamp(1, 1000);
    blocking(move || {
        let list = agent.store.read(|c| subjects::list(c, limit, page.offset))?;
        let total = agent.store.read(subjects::count)?;
        Ok(Json(serde_json::json!({ "subjects": list, "total": total, "limit": limit, "offset": page.offset })).into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSubject {
    external_id: String,
    #[serde(default)]
    display_name: Option<String>,
}

pub async fn create_subject(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<CreateSubject>,
) -> Result<Response, ApiError> {
    require(&p, Permission::Admin)?;
    blocking(move || {
        let s = decision::create_subject(&agent, &actor(&p), &req.external_id, req.display_name)?;
        Ok((StatusCode::CREATED, Json(s)).into_response())
    })
    .await
}

pub async fn get_subject(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    Path(reference): Path<String>,
) -> Result<Response, ApiError> {
    require(&p, Permission::ReadSubjects)?;
    blocking(move || {
        let subject = agent
            .store
            .read(|c| subjects::by_external_id(c, &reference))?
            .or_else(|| uuid::Uuid::parse_str(&reference).ok().and_then(|id| agent.store.read(|c| subjects::by_id(c, id)).ok().flatten()))
            .ok_or_else(|| ApiError::from(decision::DecisionError::SubjectNotFound(reference.clone())))?;
        let rows = agent.store.read(|c| templates::by_subject(c, subject.id))?;
        let lock = agent.store.read(|c| store::lockouts::get(c, subject.id))?;
        let templates: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::json!({ "id": r.id, "modality": r.modality, "format": r.format, "quality": r.quality, "key_version": r.key_version, "created_at": r.created_at, "origin_agent": r.origin_agent }))
            .collect();
        Ok(Json(serde_json::json!({ "subject": subject, "templates": templates, "failed_attempts": lock.failed_attempts, "locked_until": lock.locked_until })).into_response())
    })
    .await
}

pub async fn delete_subject(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    Path(reference): Path<String>,
) -> Result<Response, ApiError> {
    require(&p, Permission::Admin)?;
    blocking(move || {
        let s = decision::delete_subject(&agent, &actor(&p), &reference)?;
        Ok(Json(serde_json::json!({ "deleted": s })).into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    #[serde(default)]
    modality: Option<Modality>,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    samples: Vec<SampleUpload>,
}

/// Enrolls; with `Accept: application/x-ndjson` the progress of each capture is streamed as
/// JSON lines before the final result line.
pub async fn enroll(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<Response, ApiError> {
    require(&p, Permission::Admin)?;
    let modality = modality_of(&agent, req.modality, req.device_id.as_deref());
    let source = samples::source(
        modality,
        req.device_id,
        req.samples.iter().collect(),
        "samples",
    )?;
    let streaming = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    if !streaming {
        let outcome =
            decision::enroll(&agent, &actor(&p), &reference, modality, source, None).await?;
        return Ok((StatusCode::CREATED, Json(outcome)).into_response());
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (lines_tx, lines_rx) =
        tokio::sync::mpsc::unbounded_channel::<Result<String, std::convert::Infallible>>();
    let forward = lines_tx.clone();
    // Progress lines go out before the final line: the forwarder ends when the enrollment drops
    // its progress sender, and the final line waits for it.
    let forwarder = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let _ = forward.send(Ok(format!(
                "{}\n",
                serde_json::to_string(&event).unwrap_or_default()
            )));
        }
    });
    tokio::spawn(async move {
        let result =
            decision::enroll(&agent, &actor(&p), &reference, modality, source, Some(tx)).await;
        let _ = forwarder.await;
        let line = match result {
            Ok(outcome) => serde_json::json!({ "event": "done", "result": outcome }),
            Err(e) => {
                let api = ApiError::from(e);
                serde_json::json!({ "event": "failed", "status": api.status.as_u16(), "error": { "code": api.code, "message": api.message } })
            }
        };
        let _ = lines_tx.send(Ok(format!("{line}\n")));
    });
    let body = Body::from_stream(tokio_stream_from(lines_rx));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(body)
        .map_err(ApiError::internal)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures_core::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    subject_id: String,
    #[serde(default)]
    modality: Option<Modality>,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    sample: Option<SampleUpload>,
}

pub async fn verify(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    require(&p, Permission::Verify)?;
    let modality = modality_of(&agent, req.modality, req.device_id.as_deref());
    let source = samples::source(
        modality,
        req.device_id,
        req.sample.iter().collect(),
        "sample",
    )?;
    let outcome = decision::verify(
        &agent,
        &actor(&p),
        &req.subject_id,
        modality,
        source,
        Some(request_id.0),
    )
    .await?;
    Ok(Json(outcome).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifyRequest {
    #[serde(default)]
    modality: Option<Modality>,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    sample: Option<SampleUpload>,
    #[serde(default = "default_candidates")]
    max_candidates: usize,
}

fn default_candidates() -> usize {
    5
}

/// The modality a request names; else the one its device captures (the first enabled engine
/// for the device's kind, so `--device door-camera` needs no `--modality face`); else
/// fingerprint. An unknown device falls through and its capture reports it by name.
fn modality_of(agent: &Agent, named: Option<Modality>, device: Option<&str>) -> Modality {
    if let Some(m) = named {
        return m;
    }
    device
        .and_then(|id| agent.devices.status(id))
        .and_then(|status| {
            Modality::ALL
                .into_iter()
                .find(|m| m.device_kind() == status.info.kind && agent.engine(*m).is_some())
        })
        .unwrap_or(Modality::Fingerprint)
}

pub async fn identify(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    ApiJson(req): ApiJson<IdentifyRequest>,
) -> Result<Response, ApiError> {
    require(&p, Permission::Verify)?;
    let modality = modality_of(&agent, req.modality, req.device_id.as_deref());
    let source = samples::source(
        modality,
        req.device_id,
        req.sample.iter().collect(),
        "sample",
    )?;
    let outcome = decision::identify(
        &agent,
        &actor(&p),
        modality,
        source,
        req.max_candidates,
        Some(request_id.0),
    )
    .await?;
    Ok(Json(outcome).into_response())
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default = "default_limit")]
    limit: u32,
}

pub async fn history(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    require(&p, Permission::ReadRecords)?;
    blocking(move || {
        let subject = match q.subject {
            Some(r) => Some(
                agent
                    .store
                    .read(|c| subjects::by_external_id(c, &r))?
                    .ok_or_else(|| ApiError::from(decision::DecisionError::SubjectNotFound(r)))?
                    .id,
            ),
            None => None,
        };
        let records = agent
            .store
            .read(|c| store::history::recent(c, subject, q.limit.clamp(1, 1000)))?;
        Ok(Json(serde_json::json!({ "history": records })).into_response())
    })
    .await
}

#[derive(Deserialize)]
pub struct AnalyticsQuery {
    #[serde(default)]
    since: Option<String>,
}

pub async fn analytics(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    Query(q): Query<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    require(&p, Permission::Analytics)?;
    let since = match q.since {
        Some(s) => store::timestamp(store::parse_time(&s).ok_or_else(|| {
            ApiError::field("since", "an RFC 3339 time, e.g. 2026-11-01T00:00:00Z")
        })?),
        None => store::timestamp(chrono::Utc::now() - chrono::Duration::days(1)),
    };
    blocking(move || Ok(Json(health::summary(&agent, &since)?).into_response())).await
}

pub async fn audit_list(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    require(&p, Permission::ReadRecords)?;
    blocking(move || {
        let entries = agent
            .store
            .read(|c| audit::recent(c, page.limit.clamp(1, 1000)))?;
        Ok(Json(serde_json::json!({ "entries": entries })).into_response())
    })
    .await
}

pub async fn audit_verify(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    require(&p, Permission::ReadRecords)?;
    blocking(move || {
        let report = agent.store.read(|c| audit::verify(c, agent.vault.audit_key()))?;
        if !report.intact() {
            tracing::error!(broken = ?report.broken, "Audit log chain is broken: entries were altered, removed or inserted.");
        }
        Ok(Json(serde_json::json!({ "intact": report.intact(), "entries": report.entries, "broken": report.broken })).into_response())
    })
    .await
}

pub async fn rotate_keys(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    require(&p, Permission::Admin)?;
    let report = maintenance::rotate_keys(&agent, &actor(&p))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(report).into_response())
}

pub async fn list_api_keys(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    require(&p, Permission::Admin)?;
    blocking(move || {
        Ok(
            Json(serde_json::json!({ "api_keys": agent.store.read(api_keys::list)? }))
                .into_response(),
        )
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    role: String,
    #[serde(default)]
    expires_in_days: Option<u32>,
}

pub async fn create_api_key(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<CreateKey>,
) -> Result<Response, ApiError> {
    require(&p, Permission::Admin)?;
    let role: Role = req
        .role
        .parse()
        .map_err(|e: String| ApiError::field("role", e))?;
    if req.name.is_empty() || req.name.len() > 64 || req.name.chars().any(char::is_control) {
        return Err(ApiError::field("name", "1 to 64 printable characters"));
    }
    blocking(move || {
        let new = access::create_key(&agent.store, &req.name, role, req.expires_in_days)?;
        agent.store.write(|tx| {
            decision::audit_in(
                tx,
                &agent,
                &actor(&p),
                "api_key.create",
                None,
                "created",
                serde_json::json!({ "name": req.name, "role": role.as_str(), "id": new.record.id }),
            )
        })?;
        Ok((StatusCode::CREATED, Json(new)).into_response())
    })
    .await
}

pub async fn revoke_api_key(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require(&p, Permission::Admin)?;
    blocking(move || {
        let revoked = agent.store.write(|tx| {
            let revoked = api_keys::revoke(tx, &id, &store::now())?;
            if revoked {
                decision::audit_in(
                    tx,
                    &agent,
                    &actor(&p),
                    "api_key.revoke",
                    None,
                    "revoked",
                    serde_json::json!({ "key": id }),
                )?;
            }
            Ok::<_, store::StoreError>(revoked)
        })?;
        if !revoked {
            return Err(ApiError::not_found(format!(
                "no active API key with id or name {id:?}"
            )));
        }
        Ok(Json(serde_json::json!({ "revoked": id })).into_response())
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    #[serde(default)]
    path: Option<std::path::PathBuf>,
}

pub async fn backup(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    require(&p, Permission::Admin)?;
    let req: BackupRequest = if body.iter().all(u8::is_ascii_whitespace) {
        BackupRequest::default()
    } else {
        super::json::parse(&body)?
    };
    blocking(move || {
        let report = maintenance::backup(&agent, &actor(&p), req.path).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "backup_failed",
                e.to_string(),
            )
        })?;
        Ok(Json(report).into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    path: std::path::PathBuf,
}

pub async fn restore(
    State(agent): AppState,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<RestoreRequest>,
) -> Result<Response, ApiError> {
    require(&p, Permission::Admin)?;
    blocking(move || {
        let report = maintenance::restore(&agent, &actor(&p), &req.path).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "restore_failed",
                e.to_string(),
            )
        })?;
        Ok(Json(report).into_response())
    })
    .await
}
