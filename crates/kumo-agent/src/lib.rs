//! kumo's host agent.
//!
//! It watches the control plane for the instances assigned to its host and makes reality match:
//! root disks in the dir pool ([`storage`]), bridges, taps, DHCP and NAT ([`network`]), QEMU processes
//! driven over QMP ([`runtime`]), the EC2-style metadata service ([`metadata`]). It reports what it sees
//! back through [`control::ControlPlane`]. Running VMs survive agent restarts: QEMU runs daemonized
//! with a pidfile and a QMP socket in the instance directory, and a restarted agent adopts it.

pub mod agent;
pub mod backend;
pub mod control;
pub mod fence;
pub mod imagecache;
pub mod inventory;
pub mod join;
pub mod metadata;
pub mod netstate;
pub mod network;
pub mod paths;
pub mod pci;
pub mod plan;
pub mod rbd;
pub mod relay;
pub mod runtime;
pub mod storage;
pub mod volstate;
pub mod volume;
pub mod worker;
