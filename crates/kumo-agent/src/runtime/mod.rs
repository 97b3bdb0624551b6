//! The VM runtime: QEMU configuration as data ([`qemu`]), a small async QMP client ([`qmp`]) and the
//! process lifecycle — launch, adopt after an agent restart, stop, exit detection ([`process`]).
//!
//! Deciding is separate from doing: [`qemu::argv`] is a pure function of [`qemu::VmConfig`] and is
//! golden-tested; [`process`] executes it and watches the result.

pub mod migrate;
pub mod process;
pub mod qemu;
pub mod qmp;

pub use process::{ExitKind, RunningVm, VmExit, adopt, classify_exit, launch, launch_with};
pub use qemu::{Accel, Boot, DiskCache, DiskSpec, Machine, NicSpec, RunFiles, VmConfig};
pub use qmp::{Qmp, QmpError, QmpEvent, QmpState, ShutdownEvent, Status};
