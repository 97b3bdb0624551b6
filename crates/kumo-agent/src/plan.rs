//! What to do with one instance, decided as a pure function of its desired state, its last recorded
//! status and what the agent sees on the host. The worker executes the answer and is left no choices.

use std::collections::BTreeMap;

use kumo_types::{DesiredState, Instance, InstanceState, InstanceStatus, Nic, RestartPolicy};

pub use crate::runtime::process::ExitKind;

/// What the agent sees locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// A QEMU process for the instance is running (started or adopted by this agent).
    pub running: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do; optionally (re)record this status.
    None,
    /// Prepare disk and network, launch QEMU.
    Start,
    /// ACPI shutdown with a timeout, then hard stop (`force` skips the ACPI step).
    Stop { force: bool },
    /// Hard reset of the running guest; then record `reboot_seq`.
    Reboot { seq: u64 },
    /// Stop hard and remove everything the instance has on this host, then tell the control plane.
    Teardown,
    /// Record a status that differs from the stored one.
    Report(InstanceState),
}

/// Decide the next step for an instance.
pub fn decide(inst: &Instance, status: &InstanceStatus, obs: Observed) -> Action {
    if inst.deleting {
        return Action::Teardown;
    }
    match (inst.desired_state, obs.running) {
        (DesiredState::Running, true) => {
            if inst.reboot_seq > status.reboot_seq {
                Action::Reboot {
                    seq: inst.reboot_seq,
                }
            } else if status.state != InstanceState::Running {
                Action::Report(InstanceState::Running)
            } else {
                Action::None
            }
        }
        (DesiredState::Running, false) => match status.state {
            // Terminal until the user asks again (a start request resets the status to pending).
            InstanceState::Stopped | InstanceState::Crashed | InstanceState::Failed => Action::None,
            _ => Action::Start,
        },
        (DesiredState::Stopped, true) => Action::Stop {
            force: inst.force_stop,
        },
        (DesiredState::Stopped, false) => {
            if status.state != InstanceState::Stopped {
                Action::Report(InstanceState::Stopped)
            } else {
                Action::None
            }
        }
    }
}

/// NIC slots to hot-plug and to unplug on a running VM, given what is attached (slot → MAC).
/// A slot whose MAC changed is unplugged first and plugged again.
pub fn nic_changes(desired: &[Nic], attached: &BTreeMap<u8, String>) -> (Vec<Nic>, Vec<u8>) {
    let add = desired
        .iter()
        .filter(|n| attached.get(&n.slot) != Some(&n.mac))
        .cloned()
        .collect();
    let remove = attached
        .iter()
        .filter(|(slot, mac)| !desired.iter().any(|n| n.slot == **slot && &n.mac == *mac))
        .map(|(slot, _)| *slot)
        .collect();
    (add, remove)
}

/// After QEMU exited on its own: restart it, or record which state?
pub fn after_exit(policy: RestartPolicy, kind: ExitKind) -> Result<(), InstanceState> {
    match (kind, policy) {
        (ExitKind::Requested, _) => Err(InstanceState::Stopped),
        (ExitKind::Crash, RestartPolicy::OnFailure | RestartPolicy::Always) => Ok(()),
        (ExitKind::Crash, RestartPolicy::Never) => Err(InstanceState::Crashed),
        (ExitKind::GuestShutdown, RestartPolicy::Always) => Ok(()),
        (ExitKind::GuestShutdown, _) => Err(InstanceState::Stopped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kumo_types::Nic;

    fn inst() -> Instance {
        Instance {
            id: "i-1".into(),
            name: "a".into(),
            project: "default".into(),
            image_id: "ami-1".into(),
            instance_type: "nano".into(),
            vcpus: 1,
            memory_mib: 256,
            root_disk_gib: 1,
            boot_volume_id: None,
            gpu_devices: vec![],
            ha: false,
            ha_priority: 0,
            key_name: None,
            user_data: None,
            desired_state: DesiredState::Running,
            restart_policy: RestartPolicy::OnFailure,
            host: Some("host-1".into()),
            nics: vec![Nic {
                port_id: "eni-1".into(),
                subnet_id: "subnet-1".into(),
                network_id: "net-1".into(),
                mac: "52:54:00:00:00:01".into(),
                ipv4: "198.18.0.10".into(),
                slot: 0,
                keep_port: false,
            }],
            reboot_seq: 0,
            deleting: false,
            force_stop: false,
            migration: None,
            last_migration: None,
            created_at: String::new(),
        }
    }
    fn st(state: InstanceState) -> InstanceStatus {
        InstanceStatus {
            state,
            ..Default::default()
        }
    }
    const UP: Observed = Observed { running: true };
    const DOWN: Observed = Observed { running: false };

    #[test]
    fn starts_pending_and_adopts_running() {
        assert_eq!(
            decide(&inst(), &st(InstanceState::Pending), DOWN),
            Action::Start
        );
        assert_eq!(
            decide(&inst(), &st(InstanceState::Starting), DOWN),
            Action::Start
        );
        assert_eq!(
            decide(&inst(), &st(InstanceState::Pending), UP),
            Action::Report(InstanceState::Running)
        );
        assert_eq!(
            decide(&inst(), &st(InstanceState::Running), UP),
            Action::None
        );
    }

    #[test]
    fn terminal_states_wait_for_a_start_request() {
        for s in [
            InstanceState::Stopped,
            InstanceState::Crashed,
            InstanceState::Failed,
        ] {
            assert_eq!(decide(&inst(), &st(s), DOWN), Action::None, "{s:?}");
        }
    }

    #[test]
    fn running_instance_that_vanished_is_restarted() {
        // Status says running but no QEMU: it died while nobody watched — start it again.
        assert_eq!(
            decide(&inst(), &st(InstanceState::Running), DOWN),
            Action::Start
        );
    }

    #[test]
    fn stop_reboot_delete() {
        let mut i = inst();
        i.reboot_seq = 2;
        let mut s = st(InstanceState::Running);
        s.reboot_seq = 1;
        assert_eq!(decide(&i, &s, UP), Action::Reboot { seq: 2 });
        i.desired_state = DesiredState::Stopped;
        assert_eq!(decide(&i, &s, UP), Action::Stop { force: false });
        i.force_stop = true;
        assert_eq!(decide(&i, &s, UP), Action::Stop { force: true });
        assert_eq!(decide(&i, &s, DOWN), Action::Report(InstanceState::Stopped));
        assert_eq!(decide(&i, &st(InstanceState::Stopped), DOWN), Action::None);
        i.deleting = true;
        assert_eq!(decide(&i, &s, UP), Action::Teardown);
        assert_eq!(decide(&i, &s, DOWN), Action::Teardown);
    }

    #[test]
    fn nic_changes_plug_and_unplug_by_slot() {
        let nic = |slot: u8, mac: &str| Nic {
            port_id: format!("eni-{slot}"),
            network_id: "net-1".into(),
            subnet_id: "subnet-1".into(),
            mac: mac.into(),
            ipv4: "198.18.0.10".into(),
            slot,
            keep_port: false,
        };
        let attached: BTreeMap<u8, String> = [(0, "m0".to_string()), (1, "m1".to_string())].into();
        let (add, rm) = nic_changes(&[nic(0, "m0"), nic(1, "m1")], &attached);
        assert!(add.is_empty() && rm.is_empty());
        let (add, rm) = nic_changes(&[nic(0, "m0"), nic(2, "m2")], &attached);
        assert_eq!(add.iter().map(|n| n.slot).collect::<Vec<_>>(), vec![2]);
        assert_eq!(rm, vec![1]);
        let (add, rm) = nic_changes(&[nic(0, "mX")], &attached);
        assert_eq!((add.len(), rm), (1, vec![0, 1]));
    }

    #[test]
    fn exit_handling_follows_restart_policy() {
        use ExitKind::*;
        use RestartPolicy::*;
        assert_eq!(after_exit(OnFailure, Crash), Ok(()));
        assert_eq!(after_exit(Never, Crash), Err(InstanceState::Crashed));
        assert_eq!(
            after_exit(OnFailure, GuestShutdown),
            Err(InstanceState::Stopped)
        );
        assert_eq!(after_exit(Always, GuestShutdown), Ok(()));
        assert_eq!(after_exit(Always, Requested), Err(InstanceState::Stopped));
    }
}
