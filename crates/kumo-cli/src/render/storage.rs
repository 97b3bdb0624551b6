//! Tables for the storage resources: volumes. Pure: value in, table out.

use comfy_table::Table;
use kumo_types::VolumeView;

use super::{detail, opt, table, wire, yes_no};

/// The instance a volume is attached to, or `-`.
fn attached_to(v: &VolumeView) -> String {
    v.volume
        .attachment
        .as_ref()
        .map_or_else(|| "-".into(), |a| a.instance_id.clone())
}

/// `10 GiB (actual: 10737418240 bytes)`; the actual size is what the volume's host reports (it lags
/// behind a resize, and is unknown until the host has made the volume).
fn size(v: &VolumeView) -> String {
    let gib = v.volume.size_gib;
    if v.size_bytes == 0 {
        format!("{gib} GiB (actual: not reported yet)")
    } else {
        format!("{gib} GiB (actual: {} bytes)", v.size_bytes)
    }
}

pub fn volumes_table(items: &[VolumeView]) -> Table {
    let mut t = table(&["NAME", "ID", "SIZE (GiB)", "STATE", "ATTACHED TO", "HOST"]);
    for v in items {
        t.add_row(vec![
            v.volume.name.clone(),
            v.volume.id.clone(),
            v.volume.size_gib.to_string(),
            wire(&v.state),
            attached_to(v),
            v.volume.host.clone(),
        ]);
    }
    t
}

pub fn volume_detail(v: &VolumeView) -> Table {
    let vol = &v.volume;
    let attached = match &vol.attachment {
        Some(a) => format!(
            "{} (slot {}, delete on termination: {})",
            a.instance_id,
            a.slot,
            yes_no(a.delete_on_termination)
        ),
        None => "-".into(),
    };
    detail(vec![
        ("name", vol.name.clone()),
        ("id", vol.id.clone()),
        ("project", vol.project.clone()),
        ("state", wire(&v.state)),
        ("status message", opt(&v.status_message)),
        ("size", size(v)),
        ("pool", vol.pool.clone()),
        ("image", opt(&vol.image_id)),
        ("snapshot", opt(&vol.snapshot_id)),
        ("host", vol.host.clone()),
        ("attached to", attached),
        ("plugged into", opt(&v.plugged_into)),
        ("created", vol.created_at.clone()),
    ])
}

pub fn snapshots_table(items: &[kumo_types::SnapshotView]) -> Table {
    let mut t = table(&["NAME", "ID", "VOLUME", "SIZE (GiB)", "STATE", "CREATED"]);
    for s in items {
        t.add_row(vec![
            s.snapshot.name.clone(),
            s.snapshot.id.clone(),
            s.snapshot.volume_id.clone(),
            s.snapshot.size_gib.to_string(),
            wire(&s.state),
            s.snapshot.created_at.clone(),
        ]);
    }
    t
}

pub fn snapshot_detail(s: &kumo_types::SnapshotView) -> Table {
    detail(vec![
        ("name", s.snapshot.name.clone()),
        ("id", s.snapshot.id.clone()),
        ("project", s.snapshot.project.clone()),
        ("volume", s.snapshot.volume_id.clone()),
        ("size", format!("{} GiB", s.snapshot.size_gib)),
        ("state", wire(&s.state)),
        ("status message", opt(&s.status_message)),
        ("created", s.snapshot.created_at.clone()),
    ])
}

fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / f64::from(1u32 << 30))
}

pub fn pools_table(items: &[kumo_types::PoolView]) -> Table {
    let mut t = table(&[
        "NAME",
        "DRIVER",
        "VOLUMES",
        "ALLOCATED (GiB)",
        "CAPACITY (GiB)",
        "FREE (GiB)",
        "WHERE",
    ]);
    for p in items {
        t.add_row(vec![
            p.pool.name.clone(),
            p.pool.driver.as_str().to_string(),
            p.volumes.to_string(),
            p.allocated_gib.to_string(),
            gib(p.capacity_bytes),
            gib(p.free_bytes),
            pool_location(&p.pool),
        ]);
    }
    t
}

/// Where a pool keeps its volumes, in one line.
fn pool_location(p: &kumo_types::Pool) -> String {
    match p.driver {
        kumo_types::PoolDriver::Dir | kumo_types::PoolDriver::SharedDir => {
            p.path.clone().unwrap_or_else(|| "<data-dir>/pool".into())
        }
        kumo_types::PoolDriver::LvmThin => format!(
            "{}/{}",
            p.volume_group.as_deref().unwrap_or("?"),
            p.thin_pool.as_deref().unwrap_or("?")
        ),
        kumo_types::PoolDriver::Rbd => format!(
            "{} ({}, client.{})",
            p.rbd_pool.as_deref().unwrap_or("?"),
            p.ceph_conf.as_deref().unwrap_or("?"),
            p.ceph_user.as_deref().unwrap_or("admin")
        ),
    }
}

pub fn pool_detail(p: &kumo_types::PoolView) -> Table {
    let mut rows = vec![
        ("name", p.pool.name.clone()),
        ("driver", p.pool.driver.as_str().to_string()),
        ("location", pool_location(&p.pool)),
        ("shared", yes_no(p.pool.driver.shared())),
        ("built in", yes_no(p.pool.builtin)),
        ("volumes", p.volumes.to_string()),
        ("allocated", format!("{} GiB", p.allocated_gib)),
        ("capacity", format!("{} GiB", gib(p.capacity_bytes))),
        ("free", format!("{} GiB", gib(p.free_bytes))),
    ];
    for h in &p.hosts {
        let seen = match &h.error {
            Some(e) => format!("unusable: {e}"),
            None => format!(
                "{} of {} GiB free",
                gib(h.free_bytes),
                gib(h.capacity_bytes)
            ),
        };
        rows.push((
            "host",
            format!(
                "{}: {} volume(s), {} GiB allocated, {seen}",
                h.host, h.volumes, h.allocated_gib,
            ),
        ));
    }
    detail(rows)
}

pub fn volume_types_table(items: &[kumo_types::VolumeType]) -> Table {
    let mut t = table(&["NAME", "POOL", "TIER", "BUILT IN", "DESCRIPTION"]);
    for v in items {
        t.add_row(vec![
            v.name.clone(),
            v.pool.clone(),
            opt(&v.tier),
            yes_no(v.builtin),
            opt(&v.description),
        ]);
    }
    t
}

pub fn volume_type_detail(v: &kumo_types::VolumeType) -> Table {
    detail(vec![
        ("name", v.name.clone()),
        ("pool", v.pool.clone()),
        ("tier", opt(&v.tier)),
        ("built in", yes_no(v.builtin)),
        ("description", opt(&v.description)),
    ])
}
