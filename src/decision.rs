//! Enroll, verify, identify and erase: the decisions the agent owns.
//!
//! Each decision captures (or takes an uploaded sample), runs the engine on a decision worker
//! under the modality's `processing_timeout`, and records its outcome in one transaction:
//! history, lockout state, audit entry and outbox events commit together or not at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apg_device::{CancelToken, CaptureError, Sample};
use apg_wire::{EventBody, IdentificationDecision, VerificationDecision};
use rusqlite::Transaction;
use serde::Serialize;
use uuid::Uuid;

use crate::agent::Agent;
use crate::engines::{EngineError, LivenessCheck, Processed, Purpose, Quality, SamplePolicy};
use crate::events::{self, wire_modality};
use crate::modality::Modality;
use crate::store::audit::{self, AuditEntry};
use crate::store::history::{self, HistoryRecord};
use crate::store::lockouts::{self, LockState};
use crate::store::subjects::{self, Subject};
use crate::store::templates::{self, TemplateRow};
use crate::store::{self, StoreError};
use crate::workers::WorkError;

/// Who asked for a decision, as written to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    /// The agent itself (automatic actions).
    pub fn agent() -> Self {
        Self("agent".into())
    }
}

/// Where the samples of a decision come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Capture from this device, or from the first usable device of the modality.
    Device(Option<String>),
    /// Samples uploaded with the request, used in order.
    Upload(Vec<Sample>),
}

/// Why a decision could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    /// No such subject.
    #[error("subject {0:?} not found; `apg-biometric subjects list` shows the enrolled subjects")]
    SubjectNotFound(String),
    /// The subject exists already.
    #[error("subject {0:?} already exists")]
    SubjectExists(String),
    /// The subject is locked after too many failures.
    #[error("subject {subject} is locked until {until} after {attempts} failed verifications (security.lockout_duration)")]
    Locked {
        /// Subject external id.
        subject: String,
        /// RFC 3339 end of the lock.
        until: String,
        /// Failed attempts counted.
        attempts: u32,
    },
    /// The subject has no template of the modality.
    #[error("subject {subject} has no {modality} templates; enroll {modality} first")]
    NotEnrolled {
        /// Subject external id.
        subject: String,
        /// Modality.
        modality: Modality,
    },
    /// The modality is off or has no engine.
    #[error(
        "{0} is not enabled on this agent; set biometric_engines.{0}.enabled: true and reload"
    )]
    ModalityDisabled(Modality),
    /// No device can capture the modality.
    #[error("no {modality} capture device is available; plug one in, check `apg-biometric devices`, or upload a sample")]
    NoDevice {
        /// Modality.
        modality: Modality,
    },
    /// The engine refused the sample.
    #[error(transparent)]
    Sample(#[from] EngineError),
    /// The device failed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The worker pool refused or timed out.
    #[error(transparent)]
    Work(#[from] WorkError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request field is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// Field name.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Enrollment ended without enough good captures.
    #[error("enrollment of {subject} failed: {reason}")]
    EnrollmentFailed {
        /// Subject external id.
        subject: String,
        /// Why.
        reason: String,
    },
}

/// Outcome of a verification that reached a decision.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyOutcome {
    /// `accepted` or `rejected`.
    pub decision: &'static str,
    /// Subject external id.
    pub subject: String,
    /// Subject internal id.
    pub subject_id: Uuid,
    /// Modality.
    pub modality: Modality,
    /// Best comparison score.
    pub score: f64,
    /// Threshold in effect.
    pub threshold: f64,
    /// Quality of the probe.
    pub quality: Quality,
    /// Liveness checks that ran.
    pub liveness: Vec<LivenessCheck>,
    /// Consecutive failures now counted.
    pub failed_attempts: u32,
    /// Set when this failure locked the subject.
    pub locked_until: Option<String>,
    /// Device used, if any.
    pub device_id: Option<String>,
    /// Time to decide.
    pub duration_ms: f64,
    /// Id of the history record.
    pub decision_id: Uuid,
}

/// Outcome of an identification.
#[derive(Debug, Clone, Serialize)]
pub struct IdentifyOutcome {
    /// `matched`, `no_match` or `locked`.
    pub decision: &'static str,
    /// Matched subject's external id.
    pub subject: Option<String>,
    /// Matched subject's internal id.
    pub subject_id: Option<Uuid>,
    /// Modality.
    pub modality: Modality,
    /// Best score.
    pub score: Option<f64>,
    /// Threshold in effect.
    pub threshold: f64,
    /// Candidates above the threshold, best first: (external id, score).
    pub candidates: Vec<(String, f64)>,
    /// Templates searched.
    pub gallery_size: usize,
    /// Quality of the probe.
    pub quality: Quality,
    /// Device used, if any.
    pub device_id: Option<String>,
    /// Time to decide.
    pub duration_ms: f64,
    /// Id of the history record.
    pub decision_id: Uuid,
}

/// Outcome of an enrollment.
#[derive(Debug, Clone, Serialize)]
pub struct EnrollOutcome {
    /// Subject external id.
    pub subject: String,
    /// Subject internal id.
    pub subject_id: Uuid,
    /// Modality.
    pub modality: Modality,
    /// Stored template ids.
    pub templates: Vec<Uuid>,
    /// Quality of each stored template's sample, 0..1.
    pub qualities: Vec<f64>,
    /// Captures taken, including rejected ones.
    pub attempts: u32,
    /// Templates of this modality replaced by the new ones.
    pub replaced: usize,
}

/// Progress of an enrollment, streamed to the CLI.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EnrollProgress {
    /// A capture is about to start; present the biometric.
    Capture {
        /// What to present (the request may have left it to the device).
        modality: Modality,
        /// Attempt number, from 1.
        attempt: u32,
        /// Captures accepted so far.
        accepted: u32,
        /// Captures needed.
        needed: u32,
    },
    /// A capture was accepted.
    Accepted {
        /// Attempt number.
        attempt: u32,
        /// Captures accepted so far.
        accepted: u32,
        /// Captures needed.
        needed: u32,
        /// Its quality, 0..1.
        quality: f64,
    },
    /// A capture was refused; the person should try again.
    Retry {
        /// Attempt number.
        attempt: u32,
        /// What to change.
        reason: String,
    },
}

/// Optional progress sink.
pub type Progress = Option<tokio::sync::mpsc::UnboundedSender<EnrollProgress>>;

fn send(progress: &Progress, event: EnrollProgress) {
    if let Some(tx) = progress {
        let _ = tx.send(event);
    }
}

/// Keeps `biometric_active_sessions` right on every exit path.
struct ActiveSession<'a>(&'a Agent);

impl<'a> ActiveSession<'a> {
    fn start(agent: &'a Agent) -> Self {
        agent.metrics.active_sessions.inc();
        Self(agent)
    }
}

impl Drop for ActiveSession<'_> {
    fn drop(&mut self) {
        self.0.metrics.active_sessions.dec();
    }
}

/// Source of the next sample of a decision.
struct Samples {
    source: Source,
    modality: Modality,
    cancel: CancelToken,
}

impl Samples {
    fn new(source: Source, modality: Modality) -> Self {
        let source = match source {
            Source::Upload(mut samples) => {
                samples.reverse(); // popped from the back, used in the order given
                Source::Upload(samples)
            }
            other => other,
        };
        Self {
            source,
            modality,
            cancel: CancelToken::new(),
        }
    }

    fn device_id(&self, agent: &Agent) -> Option<String> {
        match &self.source {
            Source::Device(Some(id)) => Some(id.clone()),
            Source::Device(None) => agent.devices.default_for(self.modality.device_kind()),
            Source::Upload(_) => None,
        }
    }

    /// The next sample, or `None` when uploaded samples are used up.
    async fn next(&mut self, agent: &Agent) -> Result<Option<Sample>, DecisionError> {
        match &mut self.source {
            Source::Upload(samples) => Ok(samples.pop()),
            Source::Device(_) => {
                let id = self.device_id(agent).ok_or(DecisionError::NoDevice {
                    modality: self.modality,
                })?;
                let timeout = Duration::from_secs_f64(agent.config().devices.capture_timeout);
                let result = agent
                    .devices
                    .capture(&id, timeout, self.cancel.clone())
                    .await;
                agent
                    .metrics
                    .captures
                    .with_label_values(&[&id, result.as_ref().map_or_else(|e| e.label(), |_| "ok")])
                    .inc();
                Ok(Some(result?))
            }
        }
    }
}

impl Drop for Samples {
    fn drop(&mut self) {
        // A request that is dropped (client gone, shutdown) stops its capture.
        self.cancel.cancel();
    }
}

fn resolve_subject(agent: &Agent, reference: &str) -> Result<Subject, DecisionError> {
    let by_external = agent
        .store
        .read(|c| subjects::by_external_id(c, reference))?;
    let found = match by_external {
        Some(s) => Some(s),
        None => match Uuid::parse_str(reference) {
            Ok(id) => agent.store.read(|c| subjects::by_id(c, id))?,
            Err(_) => None,
        },
    };
    found.ok_or_else(|| DecisionError::SubjectNotFound(reference.to_string()))
}

fn policy(agent: &Agent, modality: Modality, purpose: Purpose) -> (SamplePolicy, Duration) {
    let config = agent.config();
    let e = config.engine(modality);
    let policy = SamplePolicy {
        quality_threshold: e.quality_threshold,
        liveness_detection: e.liveness_detection,
        anti_spoofing: e.anti_spoofing,
        purpose,
    };
    (policy, Duration::from_secs_f64(e.processing_timeout))
}

fn threshold(agent: &Agent, modality: Modality, default: f64) -> f64 {
    agent
        .config()
        .engine(modality)
        .match_threshold
        .unwrap_or(default)
}

/// Appends an audit entry and queues its audit event, inside `tx`.
pub fn audit_in(
    tx: &Transaction<'_>,
    agent: &Agent,
    actor: &Actor,
    action: &str,
    subject: Option<Uuid>,
    outcome: &str,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    let entry = AuditEntry {
        id: store::new_id(),
        created_at: store::now(),
        actor: actor.0.clone(),
        action: action.to_string(),
        subject_id: subject,
        detail: serde_json::json!({ "outcome": outcome, "detail": detail }),
    };
    let appended = audit::append(tx, agent.vault.audit_key(), &entry)?;
    events::queue(
        tx,
        &agent.origin(),
        EventBody::Audit(apg_wire::Audit {
            sequence: appended.seq as u64,
            action: entry.action.clone(),
            actor: Some(entry.actor.clone()),
            subject_id: subject,
            outcome: outcome.to_string(),
            detail: Some(entry.detail.to_string()),
            previous_hash: appended.prev_mac,
            entry_hash: appended.mac,
        }),
    )?;
    Ok(())
}

/// Creates a subject.
pub fn create_subject(
    agent: &Agent,
    actor: &Actor,
    external_id: &str,
    display_name: Option<String>,
) -> Result<Subject, DecisionError> {
    let valid = !external_id.is_empty()
        && external_id.len() <= 128
        && external_id.chars().all(|c| !c.is_control() && c != '/');
    if !valid {
        return Err(DecisionError::Invalid {
            field: "external_id".into(),
            message: "1 to 128 printable characters without '/'".into(),
        });
    }
    let subject = Subject {
        id: store::new_id(),
        external_id: external_id.to_string(),
        display_name,
        origin_agent: agent.config().agent.id.clone(),
        created_at: store::now(),
    };
    agent.store.write(|tx| {
        subjects::insert(tx, &subject).map_err(|e| match e {
            StoreError::Conflict { .. } => DecisionError::SubjectExists(external_id.to_string()),
            other => other.into(),
        })?;
        audit_in(
            tx,
            agent,
            actor,
            "subject.create",
            Some(subject.id),
            "created",
            serde_json::json!({ "external_id": external_id }),
        )?;
        Ok::<_, DecisionError>(())
    })?;
    tracing::info!(subject = %subject.id, actor = %actor.0, "Subject created.");
    Ok(subject)
}

/// Deletes a subject and erases its templates everywhere in this agent.
pub fn delete_subject(
    agent: &Agent,
    actor: &Actor,
    reference: &str,
) -> Result<Subject, DecisionError> {
    let subject = resolve_subject(agent, reference)?;
    agent.store.write(|tx| {
        let erased = templates::by_subject(tx, subject.id)?.len();
        subjects::delete(tx, subject.id)?;
        audit_in(
            tx,
            agent,
            actor,
            "subject.delete",
            Some(subject.id),
            "deleted",
            serde_json::json!({ "templates_erased": erased }),
        )?;
        crate::distribution::queue_deletion(tx, agent, subject.id)?;
        Ok::<_, DecisionError>(())
    })?;
    agent.forget_subject(subject.id);
    agent.refresh_gauges();
    tracing::info!(subject = %subject.id, actor = %actor.0, "Subject deleted and templates erased.");
    Ok(subject)
}

/// Enrolls a modality for a subject: several accepted captures, each consistent with the
/// others, replace the subject's templates of that modality.
pub async fn enroll(
    agent: &Arc<Agent>,
    actor: &Actor,
    reference: &str,
    modality: Modality,
    source: Source,
    progress: Progress,
) -> Result<EnrollOutcome, DecisionError> {
    let _session = ActiveSession::start(agent);
    let result = enroll_inner(agent, actor, reference, modality, source, progress).await;
    let status = match &result {
        Ok(_) => "enrolled",
        Err(e) => error_status(e),
    };
    agent
        .metrics
        .enrollments
        .with_label_values(&[modality.as_str(), status])
        .inc();
    result
}

async fn enroll_inner(
    agent: &Arc<Agent>,
    actor: &Actor,
    reference: &str,
    modality: Modality,
    source: Source,
    progress: Progress,
) -> Result<EnrollOutcome, DecisionError> {
    let subject = resolve_subject(agent, reference)?;
    let (engine, _) = agent
        .engine(modality)
        .ok_or(DecisionError::ModalityDisabled(modality))?;
    let needed = agent.config().engine(modality).enroll_captures;
    let max_attempts = needed * 3;
    let (policy, limit) = policy(agent, modality, Purpose::Enroll);
    let match_threshold = threshold(agent, modality, engine.default_threshold());
    let mut samples = Samples::new(source, modality);
    let device_id = samples.device_id(agent);
    let mut accepted: Vec<Processed> = Vec::new();
    let mut attempt = 0;
    while (accepted.len() as u32) < needed {
        if attempt >= max_attempts {
            return Err(DecisionError::EnrollmentFailed {
                subject: subject.external_id,
                reason: format!(
                    "only {} of {needed} captures were good enough after {attempt} attempts",
                    accepted.len()
                ),
            });
        }
        attempt += 1;
        send(
            &progress,
            EnrollProgress::Capture {
                modality,
                attempt,
                accepted: accepted.len() as u32,
                needed,
            },
        );
        let Some(sample) = samples.next(agent).await? else {
            return Err(DecisionError::EnrollmentFailed {
                subject: subject.external_id,
                reason: format!(
                    "{} of the uploaded samples were usable, {needed} are needed",
                    accepted.len()
                ),
            });
        };
        let engine_for_job = engine.clone();
        let policy = policy.clone();
        let references: Vec<Vec<u8>> = accepted.iter().map(|p| p.template.to_vec()).collect();
        let job = move || -> Result<(Processed, bool), EngineError> {
            let processed = engine_for_job.process(&sample, &policy)?;
            // Each new capture must match an earlier one, so that two different fingers
            // (or faces) never end up in one enrollment.
            if references.is_empty() {
                return Ok((processed, true));
            }
            let mut gallery = engine_for_job.new_gallery();
            let me = Uuid::nil();
            for t in &references {
                gallery.insert(Uuid::now_v7(), me, t)?;
            }
            let score = gallery.verify(me, &processed.template)?.unwrap_or(0.0);
            Ok((processed, score >= match_threshold))
        };
        match agent.workers.run(limit, job).await? {
            Ok((processed, true)) => {
                let quality = processed.quality.score;
                accepted.push(processed);
                send(&progress, EnrollProgress::Accepted { attempt, accepted: accepted.len() as u32, needed, quality });
            }
            Ok((_, false)) => send(
                &progress,
                EnrollProgress::Retry { attempt, reason: "this capture does not match the earlier ones; present the same finger or face again".into() },
            ),
            Err(e @ EngineError::NotLive { .. }) => {
                agent.store.write(|tx| {
                    audit_in(tx, agent, actor, "enroll", Some(subject.id), "presentation_rejected", serde_json::json!({ "modality": modality.as_str(), "reason": e.to_string() }))
                })?;
                return Err(e.into());
            }
            Err(e) if e.is_retry() || matches!(e, EngineError::InvalidSample { .. }) => {
                send(&progress, EnrollProgress::Retry { attempt, reason: e.to_string() })
            }
            Err(e) => return Err(e.into()),
        }
    }
    store_enrollment(
        agent,
        actor,
        &subject,
        modality,
        engine.template_format(),
        accepted,
        attempt,
        device_id,
    )
}

#[allow(clippy::too_many_arguments)]
fn store_enrollment(
    agent: &Arc<Agent>,
    actor: &Actor,
    subject: &Subject,
    modality: Modality,
    format: &str,
    accepted: Vec<Processed>,
    attempts: u32,
    device_id: Option<String>,
) -> Result<EnrollOutcome, DecisionError> {
    let config = agent.config();
    let encrypt = config.engine(modality).template_encryption;
    let origin = config.agent.id.clone();
    let now = store::now();
    let rows: Vec<(TemplateRow, &Processed)> = accepted
        .iter()
        .map(|p| {
            let id = store::new_id();
            let sealed = agent
                .vault
                .seal(id, subject.id, modality.as_str(), &p.template, encrypt);
            let row = TemplateRow {
                id,
                subject_id: subject.id,
                modality: modality.as_str().into(),
                format: format.into(),
                quality: p.quality.score,
                key_version: sealed.key_version,
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext,
                origin_agent: origin.clone(),
                created_at: now.clone(),
            };
            (row, p)
        })
        .collect();
    let replaced = agent.store.write(|tx| {
        let replaced = templates::delete_for_subject(tx, subject.id, modality.as_str())?;
        for (row, processed) in &rows {
            templates::insert(tx, row)?;
            crate::distribution::queue_enrollment(tx, agent, row, &processed.template, attempts, device_id.as_deref())?;
        }
        audit_in(
            tx,
            agent,
            actor,
            "enroll",
            Some(subject.id),
            "enrolled",
            serde_json::json!({ "modality": modality.as_str(), "templates": rows.len(), "replaced": replaced, "attempts": attempts, "device": device_id }),
        )?;
        Ok::<_, DecisionError>(replaced)
    })?;
    // The store is the truth; the gallery follows it once the transaction is committed.
    if let Some((_, gallery)) = agent.engine(modality) {
        let mut g = gallery.write().unwrap_or_else(|p| p.into_inner());
        g.remove_subject(subject.id);
        for (row, processed) in &rows {
            g.insert(row.id, subject.id, &processed.template)?;
        }
    }
    agent.refresh_gauges();
    tracing::info!(subject = %subject.id, modality = %modality, templates = rows.len(), attempts, "Subject enrolled.");
    Ok(EnrollOutcome {
        subject: subject.external_id.clone(),
        subject_id: subject.id,
        modality,
        templates: rows.iter().map(|(r, _)| r.id).collect(),
        qualities: rows.iter().map(|(r, _)| r.quality).collect(),
        attempts,
        replaced,
    })
}

/// Label for metrics of a failed decision.
pub fn error_status(e: &DecisionError) -> &'static str {
    match e {
        DecisionError::Locked { .. } => "locked",
        DecisionError::Sample(e) => e.label(),
        DecisionError::Capture(_) => "capture_error",
        DecisionError::Work(WorkError::Timeout(_)) => "timeout",
        DecisionError::Work(_) => "busy",
        DecisionError::SubjectNotFound(_) | DecisionError::NotEnrolled { .. } => "unknown_subject",
        _ => "error",
    }
}

fn millis(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// Verifies a claimed identity (1:1).
pub async fn verify(
    agent: &Arc<Agent>,
    actor: &Actor,
    reference: &str,
    modality: Modality,
    source: Source,
    request_id: Option<String>,
) -> Result<VerifyOutcome, DecisionError> {
    let _session = ActiveSession::start(agent);
    let start = Instant::now();
    let result = verify_inner(agent, actor, reference, modality, source, request_id, start).await;
    let status = match &result {
        Ok(o) => o.decision,
        Err(e) => error_status(e),
    };
    agent
        .metrics
        .verification_requests
        .with_label_values(&[modality.as_str(), status])
        .inc();
    agent
        .metrics
        .verification_duration
        .with_label_values(&[modality.as_str()])
        .observe(start.elapsed().as_secs_f64());
    result
}

#[allow(clippy::too_many_arguments)]
async fn verify_inner(
    agent: &Arc<Agent>,
    actor: &Actor,
    reference: &str,
    modality: Modality,
    source: Source,
    request_id: Option<String>,
    start: Instant,
) -> Result<VerifyOutcome, DecisionError> {
    let subject = resolve_subject(agent, reference)?;
    tracing::Span::current().record("subject", tracing::field::display(subject.id));
    let (engine, gallery) = agent
        .engine(modality)
        .ok_or(DecisionError::ModalityDisabled(modality))?;
    let config = agent.config();
    let threshold = threshold(agent, modality, engine.default_threshold());
    let mut record = HistoryRecord {
        id: store::new_id(),
        created_at: store::now(),
        operation: "verify".into(),
        subject_id: Some(subject.id),
        modality: modality.as_str().into(),
        decision: String::new(),
        score: None,
        threshold: Some(threshold),
        device_id: None,
        request_id,
        duration_ms: 0.0,
        reason: None,
    };

    // A locked subject is refused before any capture.
    let lock = agent.store.read(|c| lockouts::get(c, subject.id))?;
    if let Some(until) = lock
        .locked_until
        .as_deref()
        .filter(|u| store::parse_time(u).is_some_and(|t| t > chrono::Utc::now()))
    {
        record.decision = "locked".into();
        record.reason = Some(format!("locked until {until}"));
        record.duration_ms = millis(start);
        write_verification(
            agent,
            actor,
            &record,
            None,
            VerificationDecision::LockedOut,
            None,
        )?;
        return Err(DecisionError::Locked {
            subject: subject.external_id,
            until: until.to_string(),
            attempts: lock.failed_attempts,
        });
    }

    let mut samples = Samples::new(source, modality);
    record.device_id = samples.device_id(agent);
    let sample = match samples.next(agent).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(DecisionError::Invalid {
                field: "sample".into(),
                message: "no sample given".into(),
            })
        }
        Err(e) => {
            record.decision = "failed".into();
            record.reason = Some(e.to_string());
            record.duration_ms = millis(start);
            write_verification(
                agent,
                actor,
                &record,
                None,
                VerificationDecision::Failed,
                None,
            )?;
            return Err(e);
        }
    };
    let (policy, limit) = policy(agent, modality, Purpose::Verify);
    let subject_id = subject.id;
    let job = move || -> Result<(Processed, Option<f64>), EngineError> {
        let processed = engine.process(&sample, &policy)?;
        let score = gallery
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .verify(subject_id, &processed.template)?;
        Ok((processed, score))
    };
    let outcome = agent.workers.run(limit, job).await;
    let (processed, score) = match outcome {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            // A spoof counts as a failed attempt; a poor sample does not (the person retries).
            let counts = matches!(e, EngineError::NotLive { .. });
            record.decision = if counts { "rejected" } else { "failed" }.into();
            record.reason = Some(e.to_string());
            record.duration_ms = millis(start);
            let lock = counts.then(|| next_lock_state(agent, &lock, false));
            let wire = if counts {
                VerificationDecision::Rejected
            } else {
                VerificationDecision::Failed
            };
            write_verification(agent, actor, &record, None, wire, lock.as_ref())?;
            return Err(e.into());
        }
        Err(e) => {
            record.decision = "failed".into();
            record.reason = Some(e.to_string());
            record.duration_ms = millis(start);
            write_verification(
                agent,
                actor,
                &record,
                None,
                VerificationDecision::Failed,
                None,
            )?;
            return Err(e.into());
        }
    };
    let Some(score) = score else {
        return Err(DecisionError::NotEnrolled {
            subject: subject.external_id,
            modality,
        });
    };
    let accepted = score >= threshold;
    record.decision = if accepted { "accepted" } else { "rejected" }.into();
    record.score = Some(score);
    record.duration_ms = millis(start);
    let new_lock = next_lock_state(agent, &lock, accepted);
    let wire = if accepted {
        VerificationDecision::Accepted
    } else {
        VerificationDecision::Rejected
    };
    write_verification(
        agent,
        actor,
        &record,
        Some(&processed),
        wire,
        Some(&new_lock),
    )?;
    if new_lock.locked_until.is_some() {
        tracing::warn!(subject = %subject.id, attempts = new_lock.failed_attempts, until = ?new_lock.locked_until, max = config.security.max_failed_attempts, "Subject locked after repeated failed verifications.");
    }
    Ok(VerifyOutcome {
        decision: if accepted { "accepted" } else { "rejected" },
        subject: subject.external_id,
        subject_id: subject.id,
        modality,
        score,
        threshold,
        quality: processed.quality.clone(),
        liveness: processed.liveness.clone(),
        failed_attempts: new_lock.failed_attempts,
        locked_until: new_lock.locked_until,
        device_id: record.device_id,
        duration_ms: record.duration_ms,
        decision_id: record.id,
    })
}

/// Counter and lock after an attempt.
fn next_lock_state(agent: &Agent, current: &LockState, success: bool) -> LockState {
    if success {
        return LockState::default();
    }
    let security = &agent.config().security;
    let failed = current.failed_attempts + 1;
    let locked_until = (failed >= security.max_failed_attempts).then(|| {
        store::timestamp(
            chrono::Utc::now() + chrono::Duration::seconds(security.lockout_duration as i64),
        )
    });
    LockState {
        failed_attempts: failed,
        locked_until,
    }
}

fn write_verification(
    agent: &Agent,
    actor: &Actor,
    record: &HistoryRecord,
    processed: Option<&Processed>,
    wire: VerificationDecision,
    lock: Option<&LockState>,
) -> Result<(), DecisionError> {
    let subject = record.subject_id.expect("verifications name their subject");
    let modality: Modality = record.modality.parse().expect("modality names round trip");
    agent.store.write(|tx| {
        history::insert(tx, record)?;
        match lock {
            Some(l) if *l == LockState::default() => lockouts::clear(tx, subject)?,
            Some(l) => lockouts::set(tx, subject, l, &store::now())?,
            None => {}
        }
        events::queue(
            tx,
            &agent.origin(),
            EventBody::Verification(apg_wire::Verification {
                subject_id: subject,
                modality: wire_modality(modality),
                decision: wire,
                score: record.score,
                threshold: record.threshold,
                quality: processed.map(|p| p.quality.score),
                liveness: processed.and_then(|p| p.liveness.iter().filter_map(|c| c.score).reduce(f64::min)),
                device_id: record.device_id.clone().unwrap_or_else(|| "upload".into()),
                duration_ms: record.duration_ms as u32,
                request_id: record.request_id.clone(),
                reason: record.reason.clone(),
            }),
        )?;
        audit_in(
            tx,
            agent,
            actor,
            "verify",
            Some(subject),
            &record.decision,
            serde_json::json!({ "decision_id": record.id, "modality": record.modality, "score": record.score, "reason": record.reason }),
        )?;
        Ok::<_, DecisionError>(())
    })
}

/// Identifies the person presenting (1:N over the modality's gallery).
pub async fn identify(
    agent: &Arc<Agent>,
    actor: &Actor,
    modality: Modality,
    source: Source,
    max_candidates: usize,
    request_id: Option<String>,
) -> Result<IdentifyOutcome, DecisionError> {
    let _session = ActiveSession::start(agent);
    let start = Instant::now();
    let result = identify_inner(
        agent,
        actor,
        modality,
        source,
        max_candidates,
        request_id,
        start,
    )
    .await;
    let status = match &result {
        Ok(o) => o.decision,
        Err(e) => error_status(e),
    };
    agent
        .metrics
        .identification_requests
        .with_label_values(&[modality.as_str(), status])
        .inc();
    result
}

#[allow(clippy::too_many_arguments)]
async fn identify_inner(
    agent: &Arc<Agent>,
    actor: &Actor,
    modality: Modality,
    source: Source,
    max_candidates: usize,
    request_id: Option<String>,
    start: Instant,
) -> Result<IdentifyOutcome, DecisionError> {
    let (engine, gallery) = agent
        .engine(modality)
        .ok_or(DecisionError::ModalityDisabled(modality))?;
    let threshold = threshold(agent, modality, engine.default_threshold());
    let mut samples = Samples::new(source, modality);
    let device_id = samples.device_id(agent);
    let sample = samples
        .next(agent)
        .await?
        .ok_or_else(|| DecisionError::Invalid {
            field: "sample".into(),
            message: "no sample given".into(),
        })?;
    let (policy, limit) = policy(agent, modality, Purpose::Verify);
    let max = max_candidates.clamp(1, 100);
    // The processed probe, the candidates (subject, score) and the gallery size searched.
    type Searched = (Processed, Vec<(Uuid, f64)>, usize);
    let job = move || -> Result<Searched, EngineError> {
        let processed = engine.process(&sample, &policy)?;
        let g = gallery.read().unwrap_or_else(|p| p.into_inner());
        let hits = g.identify(&processed.template, max)?;
        Ok((processed, hits, g.len()))
    };
    let (processed, hits, gallery_size) = agent.workers.run(limit, job).await??;
    let above: Vec<(Uuid, f64)> = hits.into_iter().filter(|(_, s)| *s >= threshold).collect();
    let mut candidates = Vec::new();
    for (id, score) in &above {
        if let Some(s) = agent.store.read(|c| subjects::by_id(c, *id))? {
            candidates.push((s, *score));
        }
    }
    let best = candidates.first().cloned();
    let locked = match &best {
        Some((s, _)) => {
            let l = agent.store.read(|c| lockouts::get(c, s.id))?;
            l.locked_until
                .as_deref()
                .and_then(store::parse_time)
                .is_some_and(|t| t > chrono::Utc::now())
        }
        None => false,
    };
    let decision = match (&best, locked) {
        (Some(_), true) => "locked",
        (Some(_), false) => "matched",
        (None, _) => "no_match",
    };
    let record = HistoryRecord {
        id: store::new_id(),
        created_at: store::now(),
        operation: "identify".into(),
        subject_id: best.as_ref().map(|(s, _)| s.id),
        modality: modality.as_str().into(),
        decision: decision.into(),
        score: best.as_ref().map(|(_, sc)| *sc),
        threshold: Some(threshold),
        device_id: device_id.clone(),
        request_id: request_id.clone(),
        duration_ms: millis(start),
        reason: locked.then(|| "the matched subject is locked".to_string()),
    };
    let wire = match decision {
        "matched" => IdentificationDecision::Matched,
        "no_match" => IdentificationDecision::NoMatch,
        _ => IdentificationDecision::Failed,
    };
    agent.store.write(|tx| {
        history::insert(tx, &record)?;
        events::queue(
            tx,
            &agent.origin(),
            EventBody::Identification(apg_wire::Identification {
                modality: wire_modality(modality),
                decision: wire,
                subject_id: record.subject_id,
                score: record.score,
                threshold: record.threshold,
                gallery_size: gallery_size as u32,
                device_id: device_id.clone().unwrap_or_else(|| "upload".into()),
                duration_ms: record.duration_ms as u32,
                request_id: request_id.clone(),
                reason: record.reason.clone(),
            }),
        )?;
        audit_in(tx, agent, actor, "identify", record.subject_id, decision, serde_json::json!({ "decision_id": record.id, "modality": modality.as_str(), "score": record.score }))?;
        Ok::<_, DecisionError>(())
    })?;
    Ok(IdentifyOutcome {
        decision,
        subject: best.as_ref().map(|(s, _)| s.external_id.clone()),
        subject_id: best.as_ref().map(|(s, _)| s.id),
        modality,
        score: best.as_ref().map(|(_, sc)| *sc),
        threshold,
        candidates: candidates
            .iter()
            .map(|(s, sc)| (s.external_id.clone(), *sc))
            .collect(),
        gallery_size,
        quality: processed.quality,
        device_id,
        duration_ms: record.duration_ms,
        decision_id: record.id,
    })
}
