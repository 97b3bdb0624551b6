//! The filters: does a host qualify at all? Each check is O(1) in the size of the cluster.

use kumo_types::{HostState, PlacementEnforcement, PlacementStrategy};

use super::{Candidate, Ctx, Group, Overcommit, Request};

/// The filters, in the order they are applied. A host is charged to the first that rejects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Filter {
    /// Not the host the request must go to.
    RequiredHost,
    /// Not `ready`, or its agent is not alive.
    State,
    /// Lacks a label of the host selector.
    Labels,
    /// A hard placement group rules it out.
    Group,
    /// Too few free GPUs of the requested model.
    Gpus,
    Memory,
    Vcpus,
    Disk,
}

impl Filter {
    pub const ALL: [Filter; 8] = [
        Filter::RequiredHost,
        Filter::State,
        Filter::Labels,
        Filter::Group,
        Filter::Gpus,
        Filter::Memory,
        Filter::Vcpus,
        Filter::Disk,
    ];

    /// What ran out, as `Error::InsufficientCapacity.resource` names it.
    pub fn resource(self) -> &'static str {
        match self {
            Filter::RequiredHost => "host",
            Filter::State => "hosts",
            Filter::Labels => "host_selector",
            Filter::Group => "placement_group",
            Filter::Gpus => "gpus",
            Filter::Memory => "memory",
            Filter::Vcpus => "vcpus",
            Filter::Disk => "disk",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What is free on a host: capacity × overcommit − allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Free {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

#[inline]
pub fn free(c: &Candidate, oc: &Overcommit) -> Free {
    let cpu = (f64::from(c.cpus) * oc.cpu) as u64;
    let mem = (c.memory_mib as f64 * oc.memory) as u64;
    let disk = (c.disk_gib as f64 * oc.disk) as u64;
    Free {
        vcpus: cpu.saturating_sub(c.allocated.vcpus),
        memory_mib: mem.saturating_sub(c.allocated.memory_mib),
        disk_gib: disk.saturating_sub(c.allocated.disk_gib),
    }
}

/// Whether group `g` lets a host holding `here` of its members take another one.
pub fn group_allows(g: &Group, here: u32) -> bool {
    if g.enforcement == PlacementEnforcement::Soft {
        return true;
    }
    match g.strategy {
        PlacementStrategy::Spread => here == 0,
        PlacementStrategy::Affinity => g.members.is_empty() || here > 0,
    }
}

/// GPUs of `model` on `h` that can be passed through and no instance has.
pub fn free_gpus<'a>(h: &'a Candidate, model: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    h.gpus
        .iter()
        .filter(move |g| {
            g.iommu && g.model == model && !h.allocated.gpu_devices.contains(&g.address)
        })
        .map(|g| g.address.as_str())
}

/// The first filter `h` fails, or what is free on it and how many members of the request's group
/// it holds.
#[inline]
pub fn check(ctx: &Ctx<'_>, h: &Candidate) -> Result<(Free, u32), Filter> {
    let req = ctx.req;
    if let Some(r) = &req.required_host
        && r.host != h.id
    {
        return Err(Filter::RequiredHost);
    }
    if h.state != HostState::Ready || !h.alive {
        return Err(Filter::State);
    }
    if !req
        .host_selector
        .iter()
        .all(|(k, v)| h.labels.get(k) == Some(v))
    {
        return Err(Filter::Labels);
    }
    let here = ctx.members_on(&h.id);
    if let Some(g) = &req.group
        && !group_allows(g, here)
    {
        return Err(Filter::Group);
    }
    if let Some(want) = &req.gpus
        && free_gpus(h, &want.model).count() < want.count as usize
    {
        return Err(Filter::Gpus);
    }
    let f = free(h, ctx.oc);
    if f.memory_mib < req.memory_mib {
        return Err(Filter::Memory);
    }
    if f.vcpus < u64::from(req.vcpus) {
        return Err(Filter::Vcpus);
    }
    if f.disk_gib < req.disk_gib {
        return Err(Filter::Disk);
    }
    Ok((f, here))
}

/// The GPUs to give the request on `h` (which passed [`check`]): the free ones of the model with
/// the lowest addresses.
pub fn pick_gpus(h: &Candidate, req: &Request) -> Vec<String> {
    let Some(want) = &req.gpus else {
        return vec![];
    };
    let mut free: Vec<&str> = free_gpus(h, &want.model).collect();
    free.sort_unstable();
    free.into_iter()
        .take(want.count as usize)
        .map(str::to_string)
        .collect()
}
