//! EC2 network actions: VPCs ([`vpc`]), subnets ([`subnet`]), security groups ([`security`], rules
//! mapped by [`rules`]), Elastic IPs ([`address`]), network interfaces ([`eni`]), route tables and
//! network ACLs ([`route`]). Each maps onto the kumo resource of the same meaning through the app
//! layer `/v1` uses (networks, subnets, security groups, floating IPs, ports, routers); what EC2
//! has and kumo does not (group names, VPC DNS switches, …) lives in the resources' attributes
//! ([`crate::app::attrs`]). This file is the table.

pub mod address;
pub mod eni;
pub mod route;
pub mod rules;
pub mod security;
pub mod subnet;
pub mod util;
pub mod vpc;

use kumo_ec2::{Ec2Error, Params};
use kumo_types::Direction;

use super::Ec2Ctx;

/// Handle `action` if it is a network action (`None`: not this module's).
pub async fn handle(
    ctx: &Ec2Ctx,
    action: &str,
    params: &mut Params,
) -> Option<Result<String, Ec2Error>> {
    let p = &*params;
    Some(match action {
        "CreateVpc" => vpc::create(ctx, p).await,
        "DescribeVpcs" => vpc::describe(ctx, p).await,
        "DeleteVpc" => vpc::delete(ctx, p).await,
        "ModifyVpcAttribute" => vpc::modify_attribute(ctx, p).await,
        "DescribeVpcAttribute" => vpc::describe_attribute(ctx, p).await,
        "CreateSubnet" => subnet::create(ctx, p).await,
        "DescribeSubnets" => subnet::describe(ctx, p).await,
        "DeleteSubnet" => subnet::delete(ctx, p).await,
        "ModifySubnetAttribute" => subnet::modify_attribute(ctx, p).await,
        "CreateSecurityGroup" => security::create(ctx, p).await,
        "DescribeSecurityGroups" => security::describe(ctx, p).await,
        "DeleteSecurityGroup" => security::delete(ctx, p).await,
        "AuthorizeSecurityGroupIngress" => security::authorize(ctx, p, Direction::Ingress).await,
        "AuthorizeSecurityGroupEgress" => security::authorize(ctx, p, Direction::Egress).await,
        "RevokeSecurityGroupIngress" => security::revoke(ctx, p, Direction::Ingress).await,
        "RevokeSecurityGroupEgress" => security::revoke(ctx, p, Direction::Egress).await,
        "AllocateAddress" => address::allocate(ctx, p).await,
        "AssociateAddress" => address::associate(ctx, p).await,
        "DisassociateAddress" => address::disassociate(ctx, p).await,
        "ReleaseAddress" => address::release(ctx, p).await,
        "DescribeAddresses" => address::describe(ctx, p).await,
        "DescribeAddressesAttribute" => address::describe_attribute(ctx, p).await,
        "DescribeNetworkInterfaces" => eni::describe(ctx, p).await,
        "DescribeRouteTables" => route::describe_route_tables(ctx, p).await,
        "DescribeNetworkAcls" => route::describe_network_acls(ctx, p).await,
        _ => return None,
    })
}
