//! One module per resource family. Each `run*` function performs one command and returns the exit code
//! (errors bubble up as [`crate::CliError`] and are printed by [`crate::run`]).

pub mod audit;
pub mod cluster;
pub mod floating_ip;
pub mod identity;
pub mod image;
pub mod instance;
pub mod misc;
pub mod network;
pub mod placement_group;
pub mod pool;
pub mod quota;
pub mod router;
pub mod security_group;
pub mod snapshot;
pub mod volume;
pub mod volume_type;
