//! Identity and tenancy (issue 6): callers, projects, users, roles, credentials.

pub mod caller;

pub use caller::{Caller, Role};
