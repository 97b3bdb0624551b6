//! Tables for cluster membership: servers, join tokens. Pure: value in, table out.

use comfy_table::Table;
use kumo_types::{ClusterStatus, JoinToken, JoinTokenCreated};

use super::{detail, opt, table, wire};

/// Who answered and who leads, then the live servers.
pub fn cluster_status(s: &ClusterStatus) -> Vec<Table> {
    let head = detail(vec![
        ("answered by", s.server.clone()),
        ("leader", opt(&s.leader)),
    ]);
    let mut t = table(&["SERVER", "URL", "STARTED", "ROLE"]);
    for sv in &s.servers {
        let role = if s.leader.as_deref() == Some(sv.id.as_str()) {
            "leader"
        } else {
            "follower"
        };
        t.add_row(vec![
            sv.id.clone(),
            opt(&sv.url),
            sv.started_at.clone(),
            role.to_string(),
        ]);
    }
    vec![head, t]
}

pub fn join_tokens_table(items: &[JoinToken]) -> Table {
    let mut t = table(&["ID", "STATE", "EXPIRES", "USED BY", "DESCRIPTION"]);
    for j in items {
        t.add_row(vec![
            j.id.clone(),
            wire(&j.state),
            j.expires_at.clone(),
            opt(&j.used_by),
            opt(&j.description),
        ]);
    }
    t
}

pub fn join_token_detail(j: &JoinToken) -> Table {
    detail(vec![
        ("id", j.id.clone()),
        ("state", wire(&j.state)),
        ("created", j.created_at.clone()),
        ("expires", j.expires_at.clone()),
        ("used by", opt(&j.used_by)),
        ("used at", opt(&j.used_at)),
        ("description", opt(&j.description)),
    ])
}

/// The one time a token's secret is shown.
pub fn join_token_created(c: &JoinTokenCreated) -> Table {
    detail(vec![
        ("id", c.join_token.id.clone()),
        ("token", c.token.clone()),
        ("ca fingerprint", c.ca_fingerprint.clone()),
        ("expires", c.join_token.expires_at.clone()),
    ])
}
