//! EC2 storage actions: volumes and attachments ([`volume`], device names mapped by [`device`]) and
//! snapshots ([`snapshot`]), volume modifications ([`modify`]), onto kumo volumes and snapshots through the app layer `/v1` uses.
//! This file is the table.

pub mod device;
pub mod modify;
pub mod snapshot;
pub mod volume;

use kumo_ec2::{Ec2Error, Params};

use super::Ec2Ctx;

/// Handle `action` if it is a storage action (`None`: not this module's).
pub async fn handle(
    ctx: &Ec2Ctx,
    action: &str,
    params: &mut Params,
) -> Option<Result<String, Ec2Error>> {
    let p = &*params;
    Some(match action {
        "CreateVolume" => volume::create(ctx, p).await,
        "DescribeVolumes" => volume::describe(ctx, p).await,
        "DeleteVolume" => volume::delete(ctx, p).await,
        "AttachVolume" => volume::attach(ctx, p).await,
        "DetachVolume" => volume::detach(ctx, p).await,
        "ModifyVolume" => modify::modify(ctx, p).await,
        "DescribeVolumesModifications" => modify::describe(ctx, p).await,
        "CreateSnapshot" => snapshot::create(ctx, p).await,
        "DescribeSnapshots" => snapshot::describe(ctx, p).await,
        "DeleteSnapshot" => snapshot::delete(ctx, p).await,
        _ => return None,
    })
}
