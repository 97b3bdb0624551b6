//! Tables for placement: placement groups, host labels, and the placement rows of `instance show`.
//! Pure: value in, table or rows out.

use std::collections::BTreeMap;

use comfy_table::Table;
use kumo_types::{InstanceView, PlacementGroup};

use super::{detail, opt, table};

/// `rack=a, zone=1`, or `-`.
pub fn labels(l: &BTreeMap<String, String>) -> String {
    if l.is_empty() {
        return "-".into();
    }
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn members(g: &PlacementGroup) -> String {
    if g.members.is_empty() {
        "-".into()
    } else {
        g.members.join("\n")
    }
}

pub fn placement_groups_table(items: &[PlacementGroup]) -> Table {
    let mut t = table(&["NAME", "STRATEGY", "ENFORCEMENT", "MEMBERS", "CREATED"]);
    for g in items {
        t.add_row(vec![
            g.name.clone(),
            g.strategy.as_str().to_string(),
            g.enforcement.as_str().to_string(),
            g.members.len().to_string(),
            g.created_at.clone(),
        ]);
    }
    t
}

pub fn placement_group_detail(g: &PlacementGroup) -> Table {
    detail(vec![
        ("name", g.name.clone()),
        ("strategy", g.strategy.as_str().to_string()),
        ("enforcement", g.enforcement.as_str().to_string()),
        ("description", opt(&g.description)),
        ("members", members(g)),
        ("created", g.created_at.clone()),
    ])
}

/// The placement rows of `instance show`: what it asked for, its GPUs, and why it is where it is
/// (`on h2: spread policy: most free memory …`).
pub fn instance_rows(i: &InstanceView) -> Vec<(&'static str, String)> {
    let mut rows = vec![];
    if let Some(g) = &i.placement_group {
        rows.push(("placement group", g.clone()));
    }
    if !i.host_selector.is_empty() {
        rows.push(("host selector", labels(&i.host_selector)));
    }
    if !i.gpu_devices.is_empty() {
        rows.push(("gpus", i.gpu_devices.join(", ")));
    }
    if let Some(p) = &i.placement {
        rows.push(("placement", format!("on {}: {}", p.host_name, p.reason)));
        rows.push(("placed", p.at.clone()));
    }
    if let Some(m) = &i.migration {
        rows.push((
            "migrating",
            format!(
                "{} ({:?}, {:?}) from {} to {}",
                m.id, m.kind, m.phase, m.source_host, m.target_host
            )
            .to_lowercase(),
        ));
    }
    if let Some(r) = &i.last_migration {
        rows.push(("last migration", migration_summary(r)));
    }
    rows
}

/// `live mig-… from host-a to host-b: done in 1830 ms, downtime 42 ms` (or why it failed).
pub fn migration_summary(r: &kumo_types::MigrationResult) -> String {
    let kind = match r.kind {
        kumo_types::MigrationKind::Live => "live",
        kumo_types::MigrationKind::Cold => "cold",
    };
    let head = format!(
        "{kind} {} from {} to {}",
        r.id, r.source_host, r.target_host
    );
    if !r.succeeded {
        return format!(
            "{head}: failed: {}",
            r.error.as_deref().unwrap_or("no reason given")
        );
    }
    let mut s = format!("{head}: done at {}", r.finished_at);
    if let Some(t) = r.total_ms {
        s.push_str(&format!(", took {t} ms"));
    }
    if let Some(d) = r.downtime_ms {
        s.push_str(&format!(", downtime {d} ms"));
    }
    s
}
