//! What an instance has beyond its record, kept as its attributes ([`super::super::attrs`]) and
//! honoured here, whatever front end acts:
//!
//! - **Termination protection** ([`TERMINATION_PROTECTION`] = `true`): [`super::delete`] refuses
//!   the instance (EC2's `disableApiTermination`).
//! - **Stop protection** ([`STOP_PROTECTION`] = `true`): the EC2 front end's stops refuse it
//!   (`disableApiStop`); the cluster's own stops (drain) do not look.
//! - **Shutdown behaviour** ([`SHUTDOWN_BEHAVIOR`] = `terminate`): when the guest powers itself
//!   off, the instance is deleted ([`after_status`], called by [`super::report_status`]) — EC2's
//!   `instanceInitiatedShutdownBehavior`. Termination protection does not stop it, as on EC2.
//! - **Tombstones**: every deleted instance leaves `/instance-tombstones/<id>` → [`Tombstone`]
//!   (its last record, tags and attributes) under a store lease of [`TOMBSTONE_SECS`], written
//!   in the transaction that removes it ([`tombstone_ops`]), so EC2's `DescribeInstances` shows it
//!   `terminated` for an hour, as AWS does. The live record's attributes and tags go in the same
//!   transaction.

use kumo_store::Op;
use kumo_types::{
    DesiredState, Error, Instance, InstanceState, InstanceStatus, Result, now_rfc3339,
};
use serde::{Deserialize, Serialize};

use super::super::attrs::{self, Attrs};
use super::super::scope::Scope;
use super::super::tags::{self, Tags};
use super::App;
use crate::storeutil::{encode, list_json, store_err};

/// Attribute: `true` when the instance may not be deleted.
pub const TERMINATION_PROTECTION: &str = "disableApiTermination";
/// Attribute: `true` when API stops are refused.
pub const STOP_PROTECTION: &str = "disableApiStop";
/// Attribute: `stop` (default) or `terminate`, what a guest-initiated power-off does.
pub const SHUTDOWN_BEHAVIOR: &str = "instanceInitiatedShutdownBehavior";
/// How long a deleted instance stays visible.
pub const TOMBSTONE_SECS: i64 = 3600;

const TOMBSTONES: &str = "/instance-tombstones/";

fn tombstone_key(id: &str) -> String {
    format!("{TOMBSTONES}{id}")
}

/// Whether attribute `name` is `true`.
pub fn flag(a: &Attrs, name: &str) -> bool {
    a.value(name) == Some("true")
}

/// `Conflict` when `inst` is protected from deletion (pure).
pub fn check_deletable(inst: &Instance, a: &Attrs) -> Result<()> {
    if flag(a, TERMINATION_PROTECTION) {
        return Err(Error::conflict(format!(
            "instance `{}` is protected from termination (its `{TERMINATION_PROTECTION}` \
             attribute): turn that off first",
            inst.name
        )));
    }
    Ok(())
}

/// `Conflict` when API stops of `inst` are refused (pure).
pub fn check_stoppable(inst: &Instance, a: &Attrs) -> Result<()> {
    if flag(a, STOP_PROTECTION) {
        return Err(Error::conflict(format!(
            "instance `{}` is protected from stopping (its `{STOP_PROTECTION}` attribute): turn \
             that off first",
            inst.name
        )));
    }
    Ok(())
}

/// Whether a status report means "the guest powered itself off and asked to be terminated" (pure).
pub fn terminates_on(inst: &Instance, st: &InstanceStatus, a: &Attrs) -> bool {
    st.state == InstanceState::Stopped
        && inst.desired_state == DesiredState::Running
        && !inst.deleting
        && inst.migration.is_none()
        && a.value(SHUTDOWN_BEHAVIOR) == Some("terminate")
}

/// After a status report of instance `id` was recorded: delete the instance if its guest powered
/// off and its shutdown behaviour says `terminate`.
pub async fn after_status(app: &App, id: &str, st: &InstanceStatus) -> Result<()> {
    if st.state != InstanceState::Stopped {
        return Ok(());
    }
    let Some((inst, _)) =
        crate::storeutil::get_json::<Instance>(app.kv(), &crate::storeutil::keys::instance(id))
            .await?
    else {
        return Ok(());
    };
    let a = attrs::get(app, id).await?;
    if terminates_on(&inst, st, &a) {
        super::super::event::record_in(
            app,
            Some(&inst.project),
            id,
            "instance.shutdown_terminate",
            "the guest powered off and the instance's shutdown behaviour is `terminate`",
        )
        .await?;
        super::delete_unprotected(app, &Scope::system(), id).await?;
    }
    Ok(())
}

/// What stays of a deleted instance for [`TOMBSTONE_SECS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tombstone {
    pub instance: Instance,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub attrs: Attrs,
    pub deleted_at: String,
}

/// The ops that leave `inst`'s tombstone and remove its attributes and tags, for the transaction
/// that removes the instance.
pub async fn tombstone_ops(app: &App, inst: &Instance) -> Result<Vec<Op>> {
    let t = Tombstone {
        instance: inst.clone(),
        tags: tags::get(app, &Scope::within(&inst.project), &inst.id).await?,
        attrs: attrs::get(app, &inst.id).await?,
        deleted_at: now_rfc3339(),
    };
    let lease = app
        .kv()
        .lease_grant(TOMBSTONE_SECS)
        .await
        .map_err(store_err)?;
    let mut ops = vec![Op::Put {
        key: tombstone_key(&inst.id),
        value: encode(&t)?,
        lease,
    }];
    ops.extend(attrs::cleanup_ops(app, &inst.id).await?);
    Ok(ops)
}

/// The tombstones `scope` lists (deleted within the last [`TOMBSTONE_SECS`]).
pub async fn tombstones(app: &App, scope: &Scope) -> Result<Vec<Tombstone>> {
    Ok(list_json::<Tombstone>(app.kv(), TOMBSTONES)
        .await?
        .into_iter()
        .filter(|t| scope.lists(&t.instance.project))
        .collect())
}

/// The tombstone of instance `id`, if `scope` sees it.
pub async fn tombstone(app: &App, scope: &Scope, id: &str) -> Result<Option<Tombstone>> {
    Ok(
        crate::storeutil::get_json::<Tombstone>(app.kv(), &tombstone_key(id))
            .await?
            .map(|(t, _)| t)
            .filter(|t| scope.sees(&t.instance.project)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst() -> Instance {
        serde_json::from_value(serde_json::json!({
            "id": "i-00000000000000001", "name": "web", "project": "p1",
            "image_id": "ami-00000000000000001", "instance_type": "micro", "vcpus": 1,
            "memory_mib": 512, "root_disk_gib": 2, "desired_state": "running",
            "host": "host-1", "nics": [], "created_at": "t"
        }))
        .expect("instance")
    }

    fn with(k: &str, v: &str) -> Attrs {
        let mut a = Attrs::default();
        a.set(k, v);
        a
    }

    #[test]
    fn protections_refuse_with_a_message_naming_the_attribute() {
        let i = inst();
        assert!(check_deletable(&i, &Attrs::default()).is_ok());
        let e = check_deletable(&i, &with(TERMINATION_PROTECTION, "true")).expect_err("no");
        assert!(e.to_string().contains(TERMINATION_PROTECTION), "{e}");
        assert!(check_deletable(&i, &with(TERMINATION_PROTECTION, "false")).is_ok());
        assert!(check_stoppable(&i, &with(STOP_PROTECTION, "true")).is_err());
        assert!(check_stoppable(&i, &with(TERMINATION_PROTECTION, "true")).is_ok());
    }

    #[test]
    fn only_a_guest_power_off_with_terminate_terminates() {
        let i = inst();
        let term = with(SHUTDOWN_BEHAVIOR, "terminate");
        let stopped = InstanceStatus {
            state: InstanceState::Stopped,
            ..Default::default()
        };
        assert!(terminates_on(&i, &stopped, &term));
        assert!(!terminates_on(&i, &stopped, &Attrs::default()));
        assert!(!terminates_on(
            &i,
            &stopped,
            &with(SHUTDOWN_BEHAVIOR, "stop")
        ));
        let running = InstanceStatus {
            state: InstanceState::Running,
            ..Default::default()
        };
        assert!(!terminates_on(&i, &running, &term));
        // Asked to stop: an API stop, not a guest power-off.
        let mut asked = inst();
        asked.desired_state = DesiredState::Stopped;
        assert!(!terminates_on(&asked, &stopped, &term));
        let mut deleting = inst();
        deleting.deleting = true;
        assert!(!terminates_on(&deleting, &stopped, &term));
    }
}
