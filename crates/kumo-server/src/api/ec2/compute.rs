//! The compute actions: instances, instance types, images, key pairs, tags, regions, zones and
//! account attributes. Each action lives in its own module; this is the table.

use kumo_ec2::{Ec2Error, Params};

use super::Ec2Ctx;

/// Handle `action` if it is a compute action (`None`: not this module's).
pub async fn handle(
    _ctx: &Ec2Ctx,
    _action: &str,
    _params: &mut Params,
) -> Option<Result<String, Ec2Error>> {
    None
}
