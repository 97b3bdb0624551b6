//! kumo's control plane.
//!
//! Path of a request: `api` (thin axum handlers, one error mapping in `error`) → `app` (validate,
//! decide with the pure `scheduler`/`ipam`, write desired state in one CAS transaction) → the store
//! (`kumo-store`). Agents learn their work through [`control::InProcess`] (single host) and report
//! status back through the same app layer.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod control;
pub mod error;
pub mod ha;
pub mod identity;
pub mod ipam;
pub mod leader;
pub mod peers;
pub mod scheduler;
pub mod storeutil;
pub mod tls;
