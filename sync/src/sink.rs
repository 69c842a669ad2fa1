//! Where distributed templates go: the agent's store implements [`TemplateSink`].

use crate::seal::{OpenedTemplate, VerifiedDeletion};

/// Why the sink did not take a template or deletion.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The store refuses this message for good (unknown format, subject locked by policy...):
    /// it is acknowledged and dropped, with a log line.
    #[error("refused: {0}")]
    Rejected(String),
    /// The store cannot take it now (disk full, database busy): the message is not
    /// acknowledged, so the broker delivers it again after the sync task reconnects.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The agent's side of template distribution. Calls block (they run on tokio's blocking pool).
/// Both must be idempotent: the broker delivers at least once.
pub trait TemplateSink: Send + Sync + 'static {
    /// Stores a template enrolled at another agent of the site, already authenticated with the
    /// site key. The agent re-encrypts `template.data` under its own data key. Importing a
    /// template id that is already there does nothing.
    fn import(&self, template: OpenedTemplate) -> Result<(), SinkError>;

    /// Deletes the subject's templates enrolled at or before `deletion.deleted_at` (a template
    /// enrolled later, after a re-enrolment, stays). Deleting what is not there does nothing.
    fn delete_subject(&self, deletion: &VerifiedDeletion) -> Result<(), SinkError>;
}
