//! Templates and deletions distributed by the hub, applied to this agent's store.
//!
//! The sync task has already checked the site-key seal and every binding; what arrives here is
//! authentic. This module decides what it means for the local store:
//!
//! - a template is re-encrypted under this agent's data key and keeps its id, subject id and
//!   enrolment time, so the same person has the same ids at every agent of the site;
//! - an enrolment replaces the subject's older templates of that modality, as it did at the
//!   agent where it happened, and a template older than what is stored here is ignored;
//! - a deletion removes the templates enrolled at or before it, and the subject once none is
//!   left; a template enrolled later (a re-enrolment) stays;
//! - a subject whose external id is already used here by another subject is refused (two
//!   kiosks enrolled the same badge separately): an operator has to delete one of them.
//!
//! Imports do not queue events: the hub already has them from the agent where they happened.

use std::sync::Weak;

use apg_sync::{OpenedTemplate, SinkError, TemplateSink, VerifiedDeletion};
use uuid::Uuid;

use crate::agent::Agent;
use crate::decision::{audit_in, Actor, DecisionError};
use crate::distribution::open_envelope;
use crate::modality::Modality;
use crate::store;
use crate::store::subjects::{self, Subject};
use crate::store::templates::{self, TemplateRow};

/// [`TemplateSink`] over the agent. It holds the agent weakly: the agent owns the sync task.
pub struct AgentSink {
    agent: Weak<Agent>,
}

impl AgentSink {
    /// A sink applying to `agent`.
    pub fn new(agent: Weak<Agent>) -> Self {
        Self { agent }
    }

    fn agent(&self) -> Result<std::sync::Arc<Agent>, SinkError> {
        self.agent
            .upgrade()
            .ok_or_else(|| SinkError::Unavailable("the agent is stopping".into()))
    }
}

fn actor(origin_agent: &str) -> Actor {
    Actor(format!("sync:{origin_agent}"))
}

/// Store trouble is worth a redelivery; anything else is final.
fn sink_error(e: DecisionError) -> SinkError {
    match e {
        DecisionError::Store(e) => SinkError::Unavailable(e.to_string()),
        other => SinkError::Rejected(other.to_string()),
    }
}

enum Imported {
    Stored { replaced: usize },
    AlreadyThere,
    Superseded,
}

impl TemplateSink for AgentSink {
    fn import(&self, template: OpenedTemplate) -> Result<(), SinkError> {
        let agent = self.agent()?;
        let modality: Modality =
            template.modality.as_str().parse().map_err(|_| {
                SinkError::Rejected(format!("unknown modality {}", template.modality))
            })?;
        let unwrapped = open_envelope(&template.data).ok_or_else(|| {
            SinkError::Rejected(format!(
                "template {} of subject {}: the sealed envelope is malformed",
                template.template_id, template.subject_id
            ))
        })?;
        // Check the engine can read it before anything is stored.
        if let Some((engine, _)) = agent.engine(modality) {
            engine
                .new_gallery()
                .insert(
                    template.template_id,
                    template.subject_id,
                    unwrapped.template,
                )
                .map_err(|e| {
                    SinkError::Rejected(format!(
                        "template {} of subject {}: the {modality} engine cannot read it: {e}",
                        template.template_id, template.subject_id
                    ))
                })?;
        }
        let config = agent.config();
        let sealed = agent.vault.seal(
            template.template_id,
            template.subject_id,
            modality.as_str(),
            unwrapped.template,
            config.engine(modality).template_encryption,
        );
        let enrolled_at = store::timestamp(template.enrolled_at);
        let row = TemplateRow {
            id: template.template_id,
            subject_id: template.subject_id,
            modality: modality.as_str().into(),
            format: format!("{}/{}", template.format, template.format_version),
            // The sealed template does not carry the quality of its sample.
            quality: 0.0,
            key_version: sealed.key_version,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
            origin_agent: template.origin_agent.clone(),
            created_at: enrolled_at.clone(),
        };
        let outcome = agent
            .store
            .write(|tx| {
                if templates::exists(tx, row.id)? {
                    return Ok(Imported::AlreadyThere);
                }
                match subjects::by_id(tx, row.subject_id)? {
                    Some(_) => {}
                    None => {
                        if let Some(other) = subjects::by_external_id(tx, &unwrapped.external_id)? {
                            return Err(DecisionError::Invalid {
                                field: "subject".into(),
                                message: format!(
                                    "external id {:?} is already used here by subject {} (enrolled at {}); delete one of the two subjects, then enroll again",
                                    unwrapped.external_id, other.id, other.origin_agent
                                ),
                            });
                        }
                        subjects::insert(
                            tx,
                            &Subject {
                                id: row.subject_id,
                                external_id: unwrapped.external_id.clone(),
                                display_name: unwrapped.display_name.clone(),
                                origin_agent: template.origin_agent.clone(),
                                created_at: store::now(),
                            },
                        )?;
                    }
                }
                let same_modality: Vec<TemplateRow> = templates::by_subject(tx, row.subject_id)?
                    .into_iter()
                    .filter(|t| t.modality == row.modality)
                    .collect();
                if same_modality.iter().any(|t| t.created_at > enrolled_at) {
                    return Ok(Imported::Superseded);
                }
                let mut replaced = 0;
                for old in same_modality.iter().filter(|t| t.created_at < enrolled_at) {
                    replaced += usize::from(templates::delete(tx, old.id)?);
                }
                templates::insert(tx, &row)?;
                audit_in(
                    tx,
                    &agent,
                    &actor(&template.origin_agent),
                    "template.import",
                    Some(row.subject_id),
                    "imported",
                    serde_json::json!({ "template_id": row.id, "modality": modality.as_str(), "origin_agent": template.origin_agent, "replaced": replaced }),
                )?;
                Ok(Imported::Stored { replaced })
            })
            .map_err(sink_error)?;
        match outcome {
            Imported::Stored { replaced } => {
                reload_subject(&agent, row.subject_id, modality);
                agent.refresh_gauges();
                tracing::info!(template = %row.id, subject = %row.subject_id, modality = %modality, origin = %template.origin_agent, replaced, "Template imported from the site.");
            }
            Imported::AlreadyThere => {
                tracing::debug!(template = %row.id, "Distributed template already stored.");
            }
            Imported::Superseded => {
                tracing::info!(template = %row.id, subject = %row.subject_id, "Distributed template is older than the subject's stored enrolment; ignored.");
            }
        }
        Ok(())
    }

    fn delete_subject(&self, deletion: &VerifiedDeletion) -> Result<(), SinkError> {
        let agent = self.agent()?;
        let deleted_at = store::timestamp(deletion.deleted_at);
        let outcome = agent
            .store
            .write(|tx| {
                let Some(subject) = subjects::by_id(tx, deletion.subject_id)? else {
                    return Ok(None);
                };
                let rows = templates::by_subject(tx, subject.id)?;
                let mut erased = 0;
                for t in rows.iter().filter(|t| t.created_at <= deleted_at) {
                    erased += usize::from(templates::delete(tx, t.id)?);
                }
                let kept = rows.len() - erased;
                if kept == 0 {
                    subjects::delete(tx, subject.id)?;
                }
                audit_in(
                    tx,
                    &agent,
                    &actor(&deletion.origin_agent),
                    "subject.delete",
                    Some(subject.id),
                    if kept == 0 { "deleted" } else { "templates_erased" },
                    serde_json::json!({ "templates_erased": erased, "templates_kept": kept, "origin_agent": deletion.origin_agent, "deleted_at": deleted_at }),
                )?;
                Ok::<_, DecisionError>(Some((erased, kept)))
            })
            .map_err(sink_error)?;
        if let Some((erased, kept)) = outcome {
            agent.forget_subject(deletion.subject_id);
            if kept > 0 {
                for modality in agent.loaded_modalities() {
                    reload_subject(&agent, deletion.subject_id, modality);
                }
            }
            agent.refresh_gauges();
            tracing::info!(subject = %deletion.subject_id, origin = %deletion.origin_agent, erased, kept, "Subject deletion applied from the site.");
        }
        Ok(())
    }
}

/// Puts a subject's stored templates of `modality` back into the gallery (after some of them
/// were replaced or erased).
fn reload_subject(agent: &Agent, subject_id: Uuid, modality: Modality) {
    let Some((_, gallery)) = agent.engine(modality) else {
        return;
    };
    let rows = match agent.store.read(|c| templates::by_subject(c, subject_id)) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(subject = %subject_id, error = %e, "Cannot reload the subject's templates into the gallery.");
            return;
        }
    };
    let mut g = gallery.write().unwrap_or_else(|p| p.into_inner());
    g.remove_subject(subject_id);
    for row in rows.iter().filter(|r| r.modality == modality.as_str()) {
        let result = agent
            .vault
            .open_row(row)
            .map_err(|e| e.to_string())
            .and_then(|plain| {
                g.insert(row.id, subject_id, &plain)
                    .map_err(|e| e.to_string())
            });
        if let Err(error) = result {
            tracing::error!(template = %row.id, subject = %subject_id, error = %error, "Stored template cannot be used; it is left out of the gallery.");
        }
    }
}
