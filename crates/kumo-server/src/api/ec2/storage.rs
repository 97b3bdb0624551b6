//! EC2 storage actions (volumes, attachments, snapshots).
//!
//! Placeholder: the ec2-net engineer fills this file in (and replaces it). Until then it answers
//! `None` for every action, so the dispatcher reports `InvalidAction`.

use kumo_ec2::{Ec2Error, Params};

use super::Ec2Ctx;

/// Handle `action` if it is a storage action (`None`: not this module's).
pub async fn handle(
    _ctx: &Ec2Ctx,
    _action: &str,
    _params: &mut Params,
) -> Option<Result<String, Ec2Error>> {
    None
}
