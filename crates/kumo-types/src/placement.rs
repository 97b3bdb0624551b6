//! Placement (issue 5): placement groups, the cluster's placement policy, host labels, and the
//! explanation the scheduler records for every instance it places.
//!
//! Store layout:
//! - `/placement-groups/<name>` → [`PlacementGroup`] (its `members` are updated with compare-and-swap
//!   in the transaction that places or deletes a member, so concurrent placements cannot break a hard
//!   group and a group with members cannot be deleted)
//! - `/instance-placement/<instance-id>` → [`InstancePlacement`] (what the instance asked for and why it
//!   is where it is; written with the instance, removed with it). Kept apart from [`crate::Instance`] so
//!   that agents, which only run instances, never see scheduling inputs.
//!
//! Invariants:
//! - A member of a `hard` `spread` group never shares a host with another member; the members of a
//!   `hard` `affinity` group share one host.
//! - Label keys and values follow [`validate_label`]; a host selector matches a host that has every
//!   key with exactly that value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Error;

/// How a placement group places its members relative to each other.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlacementStrategy {
    /// Members on distinct hosts (anti-affinity): losing one host loses one member.
    #[serde(alias = "anti-affinity", alias = "anti_affinity")]
    Spread,
    /// Members on the same host (low latency between them).
    Affinity,
}

impl PlacementStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementStrategy::Spread => "spread",
            PlacementStrategy::Affinity => "affinity",
        }
    }
}

/// Whether a placement group's strategy is a rule or a preference.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum PlacementEnforcement {
    /// A rule: a member that cannot be placed accordingly is refused (503, naming the group).
    #[default]
    Hard,
    /// A preference: the scheduler follows it when it can and places the member anyway when not.
    Soft,
}

impl PlacementEnforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementEnforcement::Hard => "hard",
            PlacementEnforcement::Soft => "soft",
        }
    }
}

/// Which eligible host the scheduler prefers (server flag `--placement-policy`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum PlacementPolicy {
    /// The host with the most free memory: load spread evenly, room to grow everywhere.
    #[default]
    Spread,
    /// The host with the least free memory that still fits: fill hosts one by one, keep others empty.
    Pack,
}

impl PlacementPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementPolicy::Spread => "spread",
            PlacementPolicy::Pack => "pack",
        }
    }
}

/// A placement group: instances run with `placement_group` are placed together or apart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PlacementGroup {
    pub name: String,
    pub strategy: PlacementStrategy,
    pub enforcement: PlacementEnforcement,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// IDs of the instances in the group, in the order they were placed. A group with members
    /// cannot be deleted.
    #[serde(default)]
    pub members: Vec<String>,
    pub created_at: String,
}

/// Body of `POST /v1/placement-groups`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlacementGroupRequest {
    pub name: String,
    /// `spread` (members on distinct hosts; `anti-affinity` is accepted too) or `affinity`.
    pub strategy: PlacementStrategy,
    /// `hard` (default: a rule) or `soft` (a preference).
    #[serde(default)]
    pub enforcement: Option<PlacementEnforcement>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Why an instance is on its host: the scheduler's decision, recorded when it was placed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PlacementDecision {
    /// Host ID.
    pub host: String,
    pub host_name: String,
    /// The policy that ranked the eligible hosts.
    pub policy: PlacementPolicy,
    /// The explanation, e.g. `spread policy: most free memory (3.2 GiB left after placing); 2 other
    /// hosts eligible; hard spread group `web`: no other member on this host`.
    pub reason: String,
    /// Hosts the scheduler looked at.
    pub considered: u32,
    /// Hosts that could have taken the instance (the chosen one included).
    pub eligible: u32,
    /// When it was decided (RFC 3339).
    pub at: String,
}

/// Stored at `/instance-placement/<id>`: what an instance asked of the scheduler, and its answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct InstancePlacement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_selector: BTreeMap<String, String>,
    pub decision: PlacementDecision,
}

/// Body of `PATCH /v1/hosts/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateHostRequest {
    /// Label changes, merged into the host's labels: a string sets the label, `null` removes it
    /// (`{"rack": "a", "old": null}`).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, Option<String>>>,
}

/// Most labels on one host.
pub const MAX_LABELS: usize = 32;

fn label_chars_ok(s: &str, extra: &[u8]) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c) || extra.contains(c))
}

/// A label key (1–63 characters of letters, digits, `-`, `_`, `.` and `/`, starting and ending with
/// a letter or digit: `rack`, `topology.kumo.io/zone`) and value (0–63 characters of letters,
/// digits, `-`, `_` and `.`, starting and ending with a letter or digit when not empty). Errors
/// name `field.<key>`.
pub fn validate_label(field: &str, key: &str, value: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > 63 || !label_chars_ok(key, b"/") {
        return Err(Error::invalid(
            field,
            format!(
                "{key:?} is not a valid label key: use 1-63 characters of letters, digits, '-', '_', \
                 '.' and '/', starting and ending with a letter or digit"
            ),
        ));
    }
    if value.len() > 63 || (!value.is_empty() && !label_chars_ok(value, b"")) {
        return Err(Error::invalid(
            format!("{field}.{key}"),
            format!(
                "{value:?} is not a valid label value: use at most 63 characters of letters, \
                 digits, '-', '_' and '.', starting and ending with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// A GPU request of an instance type: `model` is a lowercase `vendor:device` pair (`10de:2236`),
/// `count` 1–16. Errors name `field.model` / `field.count`.
pub fn validate_gpu_request(field: &str, g: &crate::GpuRequest) -> Result<(), Error> {
    let hex4 = |s: &str| {
        s.len() == 4
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = g
        .model
        .split_once(':')
        .is_some_and(|(v, d)| hex4(v) && hex4(d));
    if !ok {
        return Err(Error::invalid(
            format!("{field}.model"),
            format!(
                "{:?} is not a GPU model: give the PCI `vendor:device` ID in lowercase hex, e.g. \
                 `10de:2236` (see the host's `pci_devices`)",
                g.model
            ),
        ));
    }
    if !(1..=16).contains(&g.count) {
        return Err(Error::invalid(
            format!("{field}.count"),
            format!("{}: must be 1 to 16", g.count),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for (k, v) in [
            ("rack", "a"),
            ("topology.kumo.io/zone", "z-1"),
            ("gpu", ""),
            ("A_b", "X.y"),
        ] {
            assert!(validate_label("labels", k, v).is_ok(), "{k}={v}");
        }
        for k in ["", "-a", "a-", "a b", "a=b", &"k".repeat(64), "/a"] {
            let e = validate_label("labels", k, "v").unwrap_err();
            assert_eq!(e.field(), Some("labels"), "{k}");
        }
        for v in ["-a", "a/b", "a b", &"v".repeat(64)] {
            let e = validate_label("labels", "rack", v).unwrap_err();
            assert_eq!(e.field(), Some("labels.rack"), "{v}");
        }
    }

    #[test]
    fn gpu_requests() {
        let g = |m: &str, c| crate::GpuRequest {
            model: m.into(),
            count: c,
        };
        assert!(validate_gpu_request("gpus", &g("10de:2236", 2)).is_ok());
        for m in ["10DE:2236", "10de", "10de:22361", "nvidia:a100", ""] {
            let e = validate_gpu_request("gpus", &g(m, 1)).unwrap_err();
            assert_eq!(e.field(), Some("gpus.model"), "{m}");
        }
        for c in [0, 17] {
            let e = validate_gpu_request("gpus", &g("10de:2236", c)).unwrap_err();
            assert_eq!(e.field(), Some("gpus.count"));
        }
    }

    #[test]
    fn strategy_accepts_anti_affinity() {
        let s: PlacementStrategy = serde_json::from_str("\"anti-affinity\"").unwrap();
        assert_eq!(s, PlacementStrategy::Spread);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"spread\"");
    }
}
