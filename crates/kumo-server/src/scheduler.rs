//! Placement as a pure function: hosts and what is already placed on them in, a host or a precise
//! reason out. No I/O; the app layer reads the inputs and writes the decision with compare-and-swap.

use kumo_types::{HostAllocation, HostState};

/// Overcommit ratios applied to a host's physical resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overcommit {
    pub cpu: f64,
    pub memory: f64,
    pub disk: f64,
}

impl Default for Overcommit {
    fn default() -> Self {
        // vCPUs are time-shared; memory is not (1:1); root disks are thin qcow2 overlays.
        Overcommit {
            cpu: 4.0,
            memory: 1.0,
            disk: 2.0,
        }
    }
}

/// What the scheduler needs to know about one host.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub name: String,
    pub state: HostState,
    /// Liveness: the host's agent holds a current lease.
    pub alive: bool,
    pub cpus: u32,
    /// Memory usable by guests (physical minus the host reserve).
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub allocated: HostAllocation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

/// Why nothing fits: `resource` names what ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaceable {
    pub resource: &'static str,
    pub message: String,
}

fn free(c: &Candidate, oc: &Overcommit) -> (u64, u64, u64) {
    let cpu = (f64::from(c.cpus) * oc.cpu) as u64;
    let mem = (c.memory_mib as f64 * oc.memory) as u64;
    let disk = (c.disk_gib as f64 * oc.disk) as u64;
    (
        cpu.saturating_sub(c.allocated.vcpus),
        mem.saturating_sub(c.allocated.memory_mib),
        disk.saturating_sub(c.allocated.disk_gib),
    )
}

/// Pick the ready, live host with the most free memory that fits `req` (spread policy).
pub fn place(hosts: &[Candidate], req: &Request, oc: &Overcommit) -> Result<String, Unplaceable> {
    let usable: Vec<&Candidate> = hosts
        .iter()
        .filter(|h| h.state == HostState::Ready && h.alive)
        .collect();
    if usable.is_empty() {
        return Err(Unplaceable {
            resource: "hosts",
            message: format!(
                "no host is ready ({} known; hosts must be `ready` with a live agent)",
                hosts.len()
            ),
        });
    }
    let mut best: Option<(&Candidate, u64)> = None;
    let (mut max_cpu, mut max_mem, mut max_disk) = (0u64, 0u64, 0u64);
    for h in &usable {
        let (cpu, mem, disk) = free(h, oc);
        max_cpu = max_cpu.max(cpu);
        max_mem = max_mem.max(mem);
        max_disk = max_disk.max(disk);
        let fits = cpu >= u64::from(req.vcpus) && mem >= req.memory_mib && disk >= req.disk_gib;
        if fits && best.is_none_or(|(_, m)| mem > m) {
            best = Some((h, mem));
        }
    }
    if let Some((h, _)) = best {
        return Ok(h.id.clone());
    }
    // Name the first resource that no single host can satisfy; else the combination.
    let n = usable.len();
    if max_mem < req.memory_mib {
        return Err(Unplaceable {
            resource: "memory",
            message: format!(
                "requested {} MiB; the most free on any of {n} ready host(s) is {max_mem} MiB",
                req.memory_mib
            ),
        });
    }
    if max_cpu < u64::from(req.vcpus) {
        return Err(Unplaceable {
            resource: "vcpus",
            message: format!(
                "requested {} vCPUs; the most free on any of {n} ready host(s) is {max_cpu} (cpu overcommit {}:1)",
                req.vcpus, oc.cpu
            ),
        });
    }
    if max_disk < req.disk_gib {
        return Err(Unplaceable {
            resource: "disk",
            message: format!(
                "requested {} GiB of root disk; the most free on any of {n} ready host(s) is {max_disk} GiB",
                req.disk_gib
            ),
        });
    }
    Err(Unplaceable {
        resource: "vcpus+memory+disk",
        message: "no single ready host has enough vCPUs, memory and disk at once".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, cpus: u32, mem: u64, alloc_mem: u64) -> Candidate {
        Candidate {
            id: id.into(),
            name: id.into(),
            state: HostState::Ready,
            alive: true,
            cpus,
            memory_mib: mem,
            disk_gib: 100,
            allocated: HostAllocation {
                memory_mib: alloc_mem,
                ..Default::default()
            },
        }
    }
    const OC: Overcommit = Overcommit {
        cpu: 4.0,
        memory: 1.0,
        disk: 2.0,
    };

    #[test]
    fn picks_host_with_most_free_memory() {
        let hosts = vec![host("a", 2, 4096, 3000), host("b", 2, 4096, 1000)];
        let r = Request {
            vcpus: 1,
            memory_mib: 512,
            disk_gib: 1,
        };
        assert_eq!(place(&hosts, &r, &OC).unwrap(), "b");
    }

    #[test]
    fn names_memory_when_it_runs_out() {
        let hosts = vec![host("a", 2, 4096, 0)];
        let r = Request {
            vcpus: 1,
            memory_mib: 8192,
            disk_gib: 1,
        };
        let e = place(&hosts, &r, &OC).unwrap_err();
        assert_eq!(e.resource, "memory");
        assert!(e.message.contains("8192"), "{}", e.message);
    }

    #[test]
    fn names_vcpus_and_disk() {
        let hosts = vec![host("a", 2, 4096, 0)];
        let e = place(
            &hosts,
            &Request {
                vcpus: 9,
                memory_mib: 1,
                disk_gib: 1,
            },
            &OC,
        )
        .unwrap_err();
        assert_eq!(e.resource, "vcpus");
        let e = place(
            &hosts,
            &Request {
                vcpus: 1,
                memory_mib: 1,
                disk_gib: 201,
            },
            &OC,
        )
        .unwrap_err();
        assert_eq!(e.resource, "disk");
    }

    #[test]
    fn skips_hosts_that_are_not_ready_or_dead() {
        let mut a = host("a", 2, 4096, 0);
        a.state = HostState::Maintenance;
        let mut b = host("b", 2, 4096, 0);
        b.alive = false;
        let e = place(
            &[a, b],
            &Request {
                vcpus: 1,
                memory_mib: 1,
                disk_gib: 1,
            },
            &OC,
        )
        .unwrap_err();
        assert_eq!(e.resource, "hosts");
    }
}
