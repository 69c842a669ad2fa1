//! What the sync task reports to the agent's health check and metrics.

use crate::failure::SyncFailure;

/// A snapshot of the sync task, published on a `watch` channel after every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStatus {
    /// Connected to the broker now.
    pub connected: bool,
    /// The last failure, until the next successful connection.
    pub last_failure: Option<SyncFailure>,
    /// Events waiting in the outbox at the last check.
    pub outbox_depth: u64,
    /// The configured limit.
    pub outbox_limit: u64,
    /// The outbox is above its limit: health is `degraded`.
    pub outbox_over_limit: bool,
    /// Events published (including republications after a reconnect).
    pub published: u64,
    /// Events confirmed by the hub's receipt and removed from the outbox.
    pub acknowledged: u64,
    /// Superseded health snapshots discarded by the over-limit policy.
    pub discarded: u64,
    /// Successful connections since start.
    pub connections: u64,
    /// Templates and deletions applied through the sink.
    pub templates_applied: u64,
    /// Templates and deletions refused (authentication, site, sink refusal).
    pub templates_refused: u64,
}
