//! Live migration through QMP: the target waits for the stream (`-incoming defer` then
//! `migrate-incoming`), the source sends it (`migrate`) and is polled with `query-migrate` until
//! QEMU says `completed` or `failed`. QEMU itself pauses the source at switch-over and resumes it if
//! the migration fails; the target runs the guest once the state arrived.

use serde_json::{Value, json};

use super::process::RunningVm;
use super::qmp::QmpError;

/// Bandwidth cap for the memory copy. QEMU's default (32 MiB/s until 8.x) is tuned for shared
/// uplinks; a migration network is there for this.
pub const MAX_BANDWIDTH_BYTES: u64 = 1 << 30;
/// The longest pause QEMU may plan for the switch-over.
pub const DOWNTIME_LIMIT_MS: u64 = 300;

/// Where a migration is, from `query-migrate`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrateInfo {
    /// QEMU's word: `none`, `setup`, `active`, `device`, `completed`, `failed`, `cancelled`, …
    pub status: String,
    pub downtime_ms: Option<u64>,
    pub total_ms: Option<u64>,
    pub transferred_bytes: Option<u64>,
    pub error: Option<String>,
}

impl MigrateInfo {
    pub fn completed(&self) -> bool {
        self.status == "completed"
    }
    /// Over without success: the source runs on.
    pub fn failed(&self) -> bool {
        matches!(self.status.as_str(), "failed" | "cancelled")
    }
    /// Nothing was started (or a finished one was forgotten by a QEMU restart).
    pub fn idle(&self) -> bool {
        self.status == "none" || self.status.is_empty()
    }
}

/// Parse a `query-migrate` reply (pure; `{}` before any migration).
pub fn parse_info(v: &Value) -> MigrateInfo {
    MigrateInfo {
        status: v["status"].as_str().unwrap_or("none").to_string(),
        downtime_ms: v["downtime"].as_u64(),
        total_ms: v["total-time"].as_u64(),
        transferred_bytes: v["ram"]["transferred"].as_u64(),
        error: v["error-desc"].as_str().map(str::to_string),
    }
}

/// The QMP URI of a TCP migration endpoint (`ip:port`; IPv6 addresses in brackets).
pub fn tcp_uri(address: &str) -> String {
    format!("tcp:{address}")
}

/// Target side: receive on `address` (the VM was launched with `incoming: true`).
pub async fn listen(vm: &RunningVm, address: &str) -> Result<(), QmpError> {
    vm.qmp()
        .execute("migrate-incoming", Some(json!({"uri": tcp_uri(address)})))
        .await
        .map(drop)
}

/// Source side: start sending to `address`. Returns at once; poll [`query`].
pub async fn send(vm: &RunningVm, address: &str) -> Result<(), QmpError> {
    vm.qmp()
        .execute(
            "migrate-set-parameters",
            Some(json!({
                "max-bandwidth": MAX_BANDWIDTH_BYTES,
                "downtime-limit": DOWNTIME_LIMIT_MS,
            })),
        )
        .await?;
    vm.qmp()
        .execute("migrate", Some(json!({"uri": tcp_uri(address)})))
        .await
        .map(drop)
}

pub async fn query(vm: &RunningVm) -> Result<MigrateInfo, QmpError> {
    vm.qmp()
        .execute("query-migrate", None)
        .await
        .map(|v| parse_info(&v))
}

/// Give up on a migration in flight (the source resumes).
pub async fn cancel(vm: &RunningVm) -> Result<(), QmpError> {
    vm.qmp().execute("migrate_cancel", None).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_completed_migration() {
        let v = json!({
            "status": "completed", "setup-time": 3, "downtime": 42, "total-time": 1830,
            "ram": {"transferred": 123456789, "total": 268435456, "remaining": 0}
        });
        let i = parse_info(&v);
        assert!(i.completed() && !i.failed() && !i.idle());
        assert_eq!(i.downtime_ms, Some(42));
        assert_eq!(i.total_ms, Some(1830));
        assert_eq!(i.transferred_bytes, Some(123456789));
    }

    #[test]
    fn parses_failure_and_idle() {
        let f = parse_info(&json!({"status": "failed", "error-desc": "Connection refused"}));
        assert!(f.failed());
        assert_eq!(f.error.as_deref(), Some("Connection refused"));
        assert!(parse_info(&json!({})).idle());
        assert!(parse_info(&json!({"status": "cancelled"})).failed());
        let active = parse_info(&json!({"status": "active", "ram": {"transferred": 5}}));
        assert!(!active.completed() && !active.failed() && !active.idle());
    }

    #[test]
    fn tcp_uris() {
        assert_eq!(tcp_uri("198.19.0.2:49152"), "tcp:198.19.0.2:49152");
        assert_eq!(tcp_uri("[fd00::2]:49152"), "tcp:[fd00::2]:49152");
    }
}
