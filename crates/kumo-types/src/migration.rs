//! Moving a running or stopped instance to another host (issue 5).
//!
//! A migration lives in the instance record (`Instance.migration`) while it runs, so the store has one
//! truth and every step is a compare-and-swap of that record:
//! 1. `preparing`: the control plane chose the target (and reserved capacity there). The target's
//!    agent sees the instance in its assignments, prepares taps and disks and starts QEMU waiting for
//!    the incoming stream on its migration address, then reports `ready` with that address.
//! 2. `ready`: the source's agent sends the VM (QMP `migrate`), waits for it to complete and reports
//!    the downtime QEMU measured. The target also reports completion as soon as its VM runs, so a
//!    source that dies right after the switch-over cannot leave the instance claimed by a dead host.
//! 3. Completion moves `Instance.host` to the target in one transaction; the source's agent then
//!    removes its paused QEMU like any instance that left it. A failure clears the migration: the
//!    source keeps running (QEMU resumes it) and the target removes its waiting QEMU.
//!
//! Invariant: the guest runs on one host at a time. QEMU guarantees it for the switch-over (the
//! source stops before the target starts); kumo guarantees the rest by never starting the target
//! other than as an incoming migration.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Live: the guest keeps running (memory copied while it runs, a short pause at switch-over).
/// Cold: the instance is stopped, moved and started again.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationKind {
    Live,
    Cold,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// The target host is preparing to receive.
    Preparing,
    /// The target listens at `address`; the source sends.
    Ready,
}

/// A migration in progress (`Instance.migration`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Migration {
    /// `mig-…`: names this attempt in reports and events.
    pub id: String,
    pub kind: MigrationKind,
    pub source_host: String,
    pub target_host: String,
    pub phase: MigrationPhase,
    /// `ip:port` on a migration network. Live: where the target's QEMU waits for the stream. Cold:
    /// where the source serves the stopped instance's root disk (empty: nothing to copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Why: `requested` or `drain`.
    pub reason: String,
    pub started_at: String,
    /// Cold migrations: what the target presents to the source's disk server (random, per attempt).
    /// Only agents see it; the API blanks it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
}

/// How the last migration ended (`Instance.last_migration`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct MigrationResult {
    pub id: String,
    pub kind: MigrationKind,
    pub source_host: String,
    pub target_host: String,
    pub succeeded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The guest's pause at switch-over, as the source's QEMU measured it (live migrations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    /// From the start of the memory copy to the switch-over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transferred_bytes: Option<u64>,
    pub started_at: String,
    pub finished_at: String,
}

/// `POST /v1/instances/{id}/migrate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// Target host (ID or name); the scheduler chooses when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `live` (the default for a running instance) or `cold` (stop, move, start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<MigrationKind>,
}

/// What an agent reports about a migration (internal API).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MigrationReport {
    /// The target's QEMU waits for the stream at `address`.
    Ready {
        migration_id: String,
        address: String,
    },
    /// The guest runs on the target. From the source: with QEMU's figures; from the target: without.
    Completed {
        migration_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        downtime_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transferred_bytes: Option<u64>,
    },
    /// It cannot go on; the guest stays on the source.
    Failed { migration_id: String, error: String },
}

impl MigrationReport {
    pub fn migration_id(&self) -> &str {
        match self {
            Self::Ready { migration_id, .. }
            | Self::Completed { migration_id, .. }
            | Self::Failed { migration_id, .. } => migration_id,
        }
    }
}
