//! kumo's resource model: the types every layer (store, API, agent, CLI) agrees on.
//!
//! Invariants worth knowing:
//! - Every resource has a typed ID (`i-…`, `ami-…`, `key-…`, `host-…`, `net-…`, `ev-…`) that never changes,
//!   and a name unique per project (hosts: unique per cluster).
//! - Desired state (what the user asked for) and observed status (what an agent saw) live in separate
//!   records so that the API and the agents never race on one key.
//! - [`Error`] knows nothing of HTTP; `kumo-server` maps it to status codes in one place.

pub mod cluster;
pub mod error;
pub mod identity;
pub mod ids;
pub mod join;
pub mod migration;
pub mod net;
pub mod net_api;
pub mod placement;
pub mod quota;
pub mod resources;
pub mod storage;
pub mod validate;

pub use cluster::*;
pub use error::{Error, ErrorBody, Result};
pub use identity::*;
pub use join::*;
pub use migration::*;
pub use net::*;
pub use net_api::*;
pub use placement::*;
pub use quota::*;
pub use resources::*;
pub use storage::*;
