//! Ranking of the eligible hosts: the lowest key wins, ties go to the lower host ID.

use kumo_types::{PlacementPolicy, PlacementStrategy};

use super::{Free, Request};

/// Lower is better; compared field by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// Placement group preference: members of a spread group already on the host, or minus the
    /// members of an affinity group.
    pub group: i64,
    /// The policy: minus the memory left after placing (spread), or that memory (pack).
    pub policy: i64,
}

/// Memory left on a host after placing `req` (`free` fits it).
pub fn left_after(free: &Free, req: &Request) -> u64 {
    free.memory_mib.saturating_sub(req.memory_mib)
}

pub fn policy_score(policy: PlacementPolicy, left: u64) -> i64 {
    let left = i64::try_from(left).unwrap_or(i64::MAX);
    match policy {
        PlacementPolicy::Spread => -left,
        PlacementPolicy::Pack => left,
    }
}

/// The rank of a host holding `here` members of the request's group, with `free` resources.
#[inline]
pub fn key(req: &Request, free: &Free, here: u32) -> Key {
    let group = match &req.group {
        Some(g) => {
            let m = i64::from(here);
            match g.strategy {
                PlacementStrategy::Spread => m,
                PlacementStrategy::Affinity => -m,
            }
        }
        None => 0,
    };
    Key {
        group,
        policy: policy_score(req.policy, left_after(free, req)),
    }
}
