//! Quotas per project: limits (how much a project may hold) and usage (how much it holds).
//!
//! Invariants (kept by the server's `app::quota`):
//! - Usage counts every record of the project, including those being deleted: a resource stops
//!   counting in the transaction that finally removes its record.
//! - A create that consumes quota writes the incremented usage in its own transaction, compared on
//!   the usage record's revision, so concurrent creates can never overshoot a limit.
//! - A limit of `None` is unlimited. A project without limits of its own gets the built-in
//!   defaults ([`QuotaLimits::generous`]), except `default`, which is unlimited unless set.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a quota limits.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum QuotaResource {
    /// Instances (running or not).
    Instances,
    /// vCPUs of all instances.
    Vcpus,
    /// Memory of all instances, MiB.
    MemoryMib,
    /// Size of all volumes (boot volumes included), GiB.
    VolumeGib,
    Snapshots,
    FloatingIps,
    Networks,
    SecurityGroups,
}

impl QuotaResource {
    pub const ALL: [QuotaResource; 8] = [
        QuotaResource::Instances,
        QuotaResource::Vcpus,
        QuotaResource::MemoryMib,
        QuotaResource::VolumeGib,
        QuotaResource::Snapshots,
        QuotaResource::FloatingIps,
        QuotaResource::Networks,
        QuotaResource::SecurityGroups,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuotaResource::Instances => "instances",
            QuotaResource::Vcpus => "vcpus",
            QuotaResource::MemoryMib => "memory_mib",
            QuotaResource::VolumeGib => "volume_gib",
            QuotaResource::Snapshots => "snapshots",
            QuotaResource::FloatingIps => "floating_ips",
            QuotaResource::Networks => "networks",
            QuotaResource::SecurityGroups => "security_groups",
        }
    }
}

impl std::fmt::Display for QuotaResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A project's limits; `null` (absent) is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaLimits {
    #[serde(default)]
    pub instances: Option<u64>,
    #[serde(default)]
    pub vcpus: Option<u64>,
    #[serde(default)]
    pub memory_mib: Option<u64>,
    #[serde(default)]
    pub volume_gib: Option<u64>,
    #[serde(default)]
    pub snapshots: Option<u64>,
    #[serde(default)]
    pub floating_ips: Option<u64>,
    #[serde(default)]
    pub networks: Option<u64>,
    #[serde(default)]
    pub security_groups: Option<u64>,
}

impl QuotaLimits {
    /// No limit on anything (the `default` project unless set).
    pub fn unlimited() -> QuotaLimits {
        QuotaLimits::default()
    }

    /// The built-in defaults of a project without limits of its own: enough for a team's work, small
    /// enough that one project cannot take a whole 1–10 host cloud by accident.
    pub fn generous() -> QuotaLimits {
        QuotaLimits {
            instances: Some(50),
            vcpus: Some(200),
            memory_mib: Some(400 * 1024),
            volume_gib: Some(10 * 1024),
            snapshots: Some(200),
            floating_ips: Some(20),
            networks: Some(20),
            security_groups: Some(100),
        }
    }

    pub fn get(&self, r: QuotaResource) -> Option<u64> {
        *self.field(r)
    }

    pub fn set(&mut self, r: QuotaResource, v: Option<u64>) {
        *self.field_mut(r) = v;
    }

    fn field(&self, r: QuotaResource) -> &Option<u64> {
        match r {
            QuotaResource::Instances => &self.instances,
            QuotaResource::Vcpus => &self.vcpus,
            QuotaResource::MemoryMib => &self.memory_mib,
            QuotaResource::VolumeGib => &self.volume_gib,
            QuotaResource::Snapshots => &self.snapshots,
            QuotaResource::FloatingIps => &self.floating_ips,
            QuotaResource::Networks => &self.networks,
            QuotaResource::SecurityGroups => &self.security_groups,
        }
    }

    fn field_mut(&mut self, r: QuotaResource) -> &mut Option<u64> {
        match r {
            QuotaResource::Instances => &mut self.instances,
            QuotaResource::Vcpus => &mut self.vcpus,
            QuotaResource::MemoryMib => &mut self.memory_mib,
            QuotaResource::VolumeGib => &mut self.volume_gib,
            QuotaResource::Snapshots => &mut self.snapshots,
            QuotaResource::FloatingIps => &mut self.floating_ips,
            QuotaResource::Networks => &mut self.networks,
            QuotaResource::SecurityGroups => &mut self.security_groups,
        }
    }
}

/// What a project holds now, counted as [`QuotaLimits`] limits it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaUsage {
    #[serde(default)]
    pub instances: u64,
    #[serde(default)]
    pub vcpus: u64,
    #[serde(default)]
    pub memory_mib: u64,
    #[serde(default)]
    pub volume_gib: u64,
    #[serde(default)]
    pub snapshots: u64,
    #[serde(default)]
    pub floating_ips: u64,
    #[serde(default)]
    pub networks: u64,
    #[serde(default)]
    pub security_groups: u64,
}

impl QuotaUsage {
    pub fn get(&self, r: QuotaResource) -> u64 {
        *self.field(r)
    }

    pub fn set(&mut self, r: QuotaResource, v: u64) {
        *self.field_mut(r) = v;
    }

    fn field(&self, r: QuotaResource) -> &u64 {
        match r {
            QuotaResource::Instances => &self.instances,
            QuotaResource::Vcpus => &self.vcpus,
            QuotaResource::MemoryMib => &self.memory_mib,
            QuotaResource::VolumeGib => &self.volume_gib,
            QuotaResource::Snapshots => &self.snapshots,
            QuotaResource::FloatingIps => &self.floating_ips,
            QuotaResource::Networks => &self.networks,
            QuotaResource::SecurityGroups => &self.security_groups,
        }
    }

    fn field_mut(&mut self, r: QuotaResource) -> &mut u64 {
        match r {
            QuotaResource::Instances => &mut self.instances,
            QuotaResource::Vcpus => &mut self.vcpus,
            QuotaResource::MemoryMib => &mut self.memory_mib,
            QuotaResource::VolumeGib => &mut self.volume_gib,
            QuotaResource::Snapshots => &mut self.snapshots,
            QuotaResource::FloatingIps => &mut self.floating_ips,
            QuotaResource::Networks => &mut self.networks,
            QuotaResource::SecurityGroups => &mut self.security_groups,
        }
    }
}

/// `GET /v1/quotas` and `PUT /v1/projects/{project}/quotas`: a project's limits and usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProjectQuotas {
    pub project: String,
    pub limits: QuotaLimits,
    pub usage: QuotaUsage,
    /// `true` when the project has no limits of its own and the defaults apply.
    #[serde(default)]
    pub defaults: bool,
}

/// Body of `PUT /v1/projects/{project}/quotas`: the limits to change. A number is the new limit, `-1`
/// makes it unlimited, an absent field keeps the current limit (the defaults, for a project that had
/// none of its own). A limit below current usage is allowed: nothing is removed, new creates are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateQuotasRequest {
    #[serde(default)]
    pub instances: Option<i64>,
    #[serde(default)]
    pub vcpus: Option<i64>,
    #[serde(default)]
    pub memory_mib: Option<i64>,
    #[serde(default)]
    pub volume_gib: Option<i64>,
    #[serde(default)]
    pub snapshots: Option<i64>,
    #[serde(default)]
    pub floating_ips: Option<i64>,
    #[serde(default)]
    pub networks: Option<i64>,
    #[serde(default)]
    pub security_groups: Option<i64>,
}

impl UpdateQuotasRequest {
    pub fn get(&self, r: QuotaResource) -> Option<i64> {
        match r {
            QuotaResource::Instances => self.instances,
            QuotaResource::Vcpus => self.vcpus,
            QuotaResource::MemoryMib => self.memory_mib,
            QuotaResource::VolumeGib => self.volume_gib,
            QuotaResource::Snapshots => self.snapshots,
            QuotaResource::FloatingIps => self.floating_ips,
            QuotaResource::Networks => self.networks,
            QuotaResource::SecurityGroups => self.security_groups,
        }
    }

    pub fn set(&mut self, r: QuotaResource, v: Option<i64>) {
        let f = match r {
            QuotaResource::Instances => &mut self.instances,
            QuotaResource::Vcpus => &mut self.vcpus,
            QuotaResource::MemoryMib => &mut self.memory_mib,
            QuotaResource::VolumeGib => &mut self.volume_gib,
            QuotaResource::Snapshots => &mut self.snapshots,
            QuotaResource::FloatingIps => &mut self.floating_ips,
            QuotaResource::Networks => &mut self.networks,
            QuotaResource::SecurityGroups => &mut self.security_groups,
        };
        *f = v;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accessors_cover_every_resource() {
        let mut l = QuotaLimits::unlimited();
        let mut u = QuotaUsage::default();
        let mut r = UpdateQuotasRequest::default();
        for (i, q) in QuotaResource::ALL.into_iter().enumerate() {
            l.set(q, Some(i as u64 + 1));
            u.set(q, i as u64 + 10);
            r.set(q, Some(i as i64 - 1));
        }
        for (i, q) in QuotaResource::ALL.into_iter().enumerate() {
            assert_eq!(l.get(q), Some(i as u64 + 1), "{q}");
            assert_eq!(u.get(q), i as u64 + 10, "{q}");
            assert_eq!(r.get(q), Some(i as i64 - 1), "{q}");
        }
        // The JSON names are the resource names.
        let v = serde_json::to_value(&u).unwrap();
        for q in QuotaResource::ALL {
            assert!(v.get(q.as_str()).is_some(), "{q}");
            assert_eq!(
                serde_json::to_value(q).unwrap(),
                serde_json::json!(q.as_str())
            );
        }
    }
}
