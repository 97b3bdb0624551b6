//! High availability: hosts that stop heartbeating are declared down, fenced, and their HA instances
//! restarted on other hosts — in that order, never the last before the fence.
//!
//! The decision is pure ([`plan`]): hosts (state, liveness, fencing, fence record) and instances in,
//! steps out. [`run`] executes them every [`TICK`], each with compare-and-swap, and records every step
//! in the event log.
//!
//! Invariants:
//! - A host is declared down only when its lease has expired (the agent missed heartbeats for a
//!   lease period).
//! - An instance of a down host runs elsewhere only after the host is fenced: powered off through its
//!   BMC (Redfish `ForceOff`), or — without a BMC — once `fence_wait` has passed since it was declared
//!   down. Agents fence themselves (kill their HA instances) when they have not reached the control
//!   plane for a lease period, which is shorter than the lease expiry plus `fence_wait`.
//! - Only instances whose disk every host reaches (boot volume in a shared pool) restart elsewhere;
//!   the others wait for their host (an event says why).

use std::time::Duration;

use chrono::{DateTime, Utc};
use kumo_types::{FenceState, Fencing, Host, HostFence, HostState, Instance, Result};

/// How often the HA reconciler looks.
pub const TICK: Duration = Duration::from_secs(1);

/// HA settings of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaConfig {
    /// Without a BMC: how long after a host is declared down it counts as fenced (its agent has
    /// stopped its HA instances by then).
    pub fence_wait: Duration,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            fence_wait: Duration::from_secs(10),
        }
    }
}

/// What the reconciler knows about one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostView {
    pub host: Host,
    /// Its lease is current.
    pub alive: bool,
    pub fence: Option<HostFence>,
}

/// One step towards the desired state.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The lease expired: mark the host down and start fencing.
    MarkDown { host: String },
    /// Power the host off through its BMC.
    PowerOff { host: String, fencing: Fencing },
    /// No BMC: the self-fencing deadline has passed.
    FencedByDeadline { host: String },
    /// The host heartbeats again: back to ready (its moved instances were taken off it).
    MarkUp { host: String },
    /// Restart an HA instance of a fenced host elsewhere (highest priority first).
    Restart { instance: String, from: String },
    /// An HA instance that cannot restart elsewhere, and why (reported once per fence).
    Stranded { instance: String, why: String },
}

/// Decide the steps (pure). `shared(instance)` says whether every host reaches its disk.
pub fn plan(
    hosts: &[HostView],
    instances: &[Instance],
    now: DateTime<Utc>,
    cfg: &HaConfig,
    shared: &dyn Fn(&Instance) -> bool,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for h in hosts {
        let id = h.host.id.clone();
        match (h.alive, h.host.state, &h.fence) {
            (true, HostState::Down, _) => steps.push(Step::MarkUp { host: id }),
            (false, HostState::Ready | HostState::Draining, _) => {
                steps.push(Step::MarkDown { host: id })
            }
            (false, HostState::Down, Some(f)) if f.state == FenceState::Pending => {
                match &h.host.fencing {
                    Some(fencing) => steps.push(Step::PowerOff {
                        host: id,
                        fencing: fencing.clone(),
                    }),
                    None => {
                        let down_at = DateTime::parse_from_rfc3339(&f.down_at)
                            .map(|t| t.with_timezone(&Utc))
                            .unwrap_or(now);
                        let wait = chrono::Duration::from_std(cfg.fence_wait)
                            .unwrap_or(chrono::Duration::seconds(10));
                        if now >= down_at + wait {
                            steps.push(Step::FencedByDeadline { host: id });
                        }
                    }
                }
            }
            (false, HostState::Down, Some(f)) if f.state == FenceState::Fenced => {
                let mut mine: Vec<&Instance> = instances
                    .iter()
                    .filter(|i| i.host.as_deref() == Some(id.as_str()) && i.ha && !i.deleting)
                    .collect();
                mine.sort_by(|a, b| b.ha_priority.cmp(&a.ha_priority).then(a.id.cmp(&b.id)));
                for i in mine {
                    if shared(i) {
                        steps.push(Step::Restart {
                            instance: i.id.clone(),
                            from: id.clone(),
                        });
                    } else {
                        steps.push(Step::Stranded {
                            instance: i.id.clone(),
                            why:
                                "its disk is local to the failed host (boot it from a volume in a \
                                  shared-dir or rbd pool to make it restartable)"
                                    .into(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    steps
}

/// Whether every host reaches an instance's disks (pure): it boots from a volume in a shared pool
/// and all its volumes are in shared pools.
pub fn movable(i: &Instance, volumes: &[kumo_types::Volume], pools: &[kumo_types::Pool]) -> bool {
    let shared =
        |v: &kumo_types::Volume| pools.iter().any(|p| p.name == v.pool && p.driver.shared());
    i.boot_volume_id
        .as_ref()
        .is_some_and(|b| volumes.iter().any(|v| &v.id == b && shared(v)))
        && volumes
            .iter()
            .filter(|v| v.attachment.as_ref().is_some_and(|a| a.instance_id == i.id))
            .all(shared)
}

/// The Redfish call that powers a system off.
pub fn redfish_reset_url(f: &Fencing) -> String {
    format!(
        "{}/Actions/ComputerSystem.Reset",
        f.redfish_url.trim_end_matches('/')
    )
}

/// Power a host off through its BMC.
pub async fn power_off(f: &Fencing) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| kumo_types::Error::internal_with("http client", e))?;
    let mut req = client
        .post(redfish_reset_url(f))
        .json(&serde_json::json!({ "ResetType": "ForceOff" }));
    if let Some(u) = &f.username {
        req = req.basic_auth(u, f.password.as_deref());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| kumo_types::Error::unavailable(format!("BMC unreachable: {e}")))?;
    if !resp.status().is_success() {
        return Err(kumo_types::Error::unavailable(format!(
            "BMC answered {} to ForceOff",
            resp.status()
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn host(id: &str, state: HostState, fencing: bool) -> Host {
        let mut h: Host = serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "state": state, "accel": "tcg", "registered_at": "t",
            "last_heartbeat": "t",
            "inventory": {"hostname": id, "cpus": 2, "memory_mib": 1024,
                "disk_free_bytes": 1, "disk_total_bytes": 1, "qemu_version": "7.2",
                "kernel": "6.1", "kvm_usable": false, "kvm_probe": ""}
        }))
        .unwrap();
        if fencing {
            h.fencing = Some(Fencing {
                redfish_url: "http://bmc/redfish/v1/Systems/1".into(),
                username: None,
                password: None,
            });
        }
        h
    }

    fn inst(id: &str, host: &str, ha: bool, prio: u32) -> Instance {
        let mut i: Instance = serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "project": "default", "image_id": "ami-1",
            "instance_type": "nano", "vcpus": 1, "memory_mib": 256, "root_disk_gib": 1,
            "desired_state": "running", "host": host, "nics": [], "created_at": "t"
        }))
        .unwrap();
        i.ha = ha;
        i.ha_priority = prio;
        i
    }

    fn fence(state: FenceState, down_at: &str) -> Option<HostFence> {
        Some(HostFence {
            state,
            down_at: down_at.into(),
            message: None,
        })
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn down_then_fenced_then_restarted_in_priority_order() {
        let cfg = HaConfig::default();
        let shared = |i: &Instance| i.id != "i-local";
        let insts = [
            inst("i-low", "h1", true, 1),
            inst("i-high", "h1", true, 9),
            inst("i-local", "h1", true, 5),
            inst("i-noha", "h1", false, 0),
            inst("i-other", "h2", true, 9),
        ];
        let now = at("2026-11-25T10:00:30Z");
        // Lease gone on a ready host: down first, nothing restarts.
        let v = HostView {
            host: host("h1", HostState::Ready, false),
            alive: false,
            fence: None,
        };
        assert_eq!(
            plan(&[v], &insts, now, &cfg, &shared),
            vec![Step::MarkDown { host: "h1".into() }]
        );
        // Down, no BMC, deadline not reached: nothing.
        let v = HostView {
            host: host("h1", HostState::Down, false),
            alive: false,
            fence: fence(FenceState::Pending, "2026-11-25T10:00:25Z"),
        };
        assert!(plan(std::slice::from_ref(&v), &insts, now, &cfg, &shared).is_empty());
        // Deadline passed: fenced by deadline.
        let later = at("2026-11-25T10:00:36Z");
        assert_eq!(
            plan(&[v], &insts, later, &cfg, &shared),
            vec![Step::FencedByDeadline { host: "h1".into() }]
        );
        // Fenced: HA instances restart by priority; a local one is stranded; non-HA ones stay.
        let v = HostView {
            host: host("h1", HostState::Down, false),
            alive: false,
            fence: fence(FenceState::Fenced, "2026-11-25T10:00:25Z"),
        };
        let steps = plan(&[v], &insts, later, &cfg, &shared);
        let order: Vec<String> = steps
            .iter()
            .map(|s| match s {
                Step::Restart { instance, .. } => format!("restart {instance}"),
                Step::Stranded { instance, .. } => format!("stranded {instance}"),
                s => format!("{s:?}"),
            })
            .collect();
        assert_eq!(
            order,
            ["restart i-high", "stranded i-local", "restart i-low"]
        );
    }

    #[test]
    fn a_bmc_powers_off_at_once_and_a_returning_host_comes_back() {
        let cfg = HaConfig::default();
        let now = at("2026-11-25T10:00:26Z");
        let v = HostView {
            host: host("h1", HostState::Down, true),
            alive: false,
            fence: fence(FenceState::Pending, "2026-11-25T10:00:25Z"),
        };
        assert!(matches!(
            plan(&[v], &[], now, &cfg, &|_| true)[..],
            [Step::PowerOff { .. }]
        ));
        let v = HostView {
            host: host("h1", HostState::Down, true),
            alive: true,
            fence: fence(FenceState::Fenced, "2026-11-25T10:00:25Z"),
        };
        assert_eq!(
            plan(&[v], &[], now, &cfg, &|_| true),
            vec![Step::MarkUp { host: "h1".into() }]
        );
        // Maintenance hosts are not declared down by HA.
        let v = HostView {
            host: host("h1", HostState::Maintenance, false),
            alive: false,
            fence: None,
        };
        assert!(plan(&[v], &[], now, &cfg, &|_| true).is_empty());
        assert_eq!(
            redfish_reset_url(&Fencing {
                redfish_url: "https://bmc/redfish/v1/Systems/1/".into(),
                username: None,
                password: None
            }),
            "https://bmc/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"
        );
    }
}
