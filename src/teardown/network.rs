//! The EC2 network part of `down` as a table: each resource kind with how to find it (by the
//! cluster tag), release what holds it, and delete it, in an order AWS accepts. The control
//! plane's Elastic IP is part of the table.

use super::Failure;
use crate::aws::{Aws, aws_error, code_of};
use crate::error::Result;

/// The EC2 network resource kinds `down` deletes, in an order AWS accepts: each kind's
/// dependents are gone before it.
pub(super) const NETWORK_ORDER: [NetworkKind; 6] = [
    NetworkKind::Address,
    NetworkKind::SecurityGroup,
    NetworkKind::RouteTable,
    NetworkKind::InternetGateway,
    NetworkKind::Subnet,
    NetworkKind::Vpc,
];

/// One kind of tagged EC2 network resource: how to find it, release what holds it, delete it.
#[derive(Clone, Copy)]
pub(super) enum NetworkKind {
    /// The control plane's Elastic IP (released, its association first).
    Address,
    SecurityGroup,
    RouteTable,
    InternetGateway,
    Subnet,
    Vpc,
}

impl NetworkKind {
    /// The cluster's resources of this kind, each with what must be released first (route
    /// table associations, gateway attachments).
    // Long by design: one match arm per kind, each one Describe call and its dependents.
    pub(super) async fn find(self, aws: &Aws) -> Result<Vec<(String, Vec<String>)>> {
        let ec2 = &aws.ec2;
        let filter = aws.tags.filter();
        let ids = |v: Vec<Option<&str>>| {
            v.into_iter()
                .flatten()
                .map(|id| (id.to_string(), Vec::new()))
                .collect()
        };
        Ok(match self {
            NetworkKind::Address => {
                let out = ec2
                    .describe_addresses()
                    .filters(filter)
                    .send()
                    .await
                    .map_err(|e| aws_error("DescribeAddresses", "elastic IPs", e))?;
                out.addresses()
                    .iter()
                    .map(|a| {
                        let held = a.association_id().map(str::to_string).into_iter().collect();
                        (a.allocation_id().unwrap_or_default().to_string(), held)
                    })
                    .collect()
            }
            NetworkKind::SecurityGroup => {
                let out = ec2
                    .describe_security_groups()
                    .filters(filter)
                    .send()
                    .await
                    .map_err(|e| aws_error("DescribeSecurityGroups", "security groups", e))?;
                ids(out.security_groups().iter().map(|g| g.group_id()).collect())
            }
            NetworkKind::RouteTable => {
                let out = ec2
                    .describe_route_tables()
                    .filters(filter)
                    .send()
                    .await
                    .map_err(|e| aws_error("DescribeRouteTables", "route tables", e))?;
                out.route_tables()
                    .iter()
                    .map(|rt| {
                        let associations = rt
                            .associations()
                            .iter()
                            .filter(|a| a.main() != Some(true))
                            .filter_map(|a| a.route_table_association_id().map(str::to_string))
                            .collect();
                        (
                            rt.route_table_id().unwrap_or_default().to_string(),
                            associations,
                        )
                    })
                    .collect()
            }
            NetworkKind::InternetGateway => {
                let out = ec2
                    .describe_internet_gateways()
                    .filters(filter)
                    .send()
                    .await
                    .map_err(|e| aws_error("DescribeInternetGateways", "internet gateways", e))?;
                out.internet_gateways()
                    .iter()
                    .map(|g| {
                        let vpcs = g
                            .attachments()
                            .iter()
                            .filter_map(|a| a.vpc_id().map(str::to_string))
                            .collect();
                        (
                            g.internet_gateway_id().unwrap_or_default().to_string(),
                            vpcs,
                        )
                    })
                    .collect()
            }
            NetworkKind::Subnet => {
                let out = ec2
                    .describe_subnets()
                    .filters(filter)
                    .send()
                    .await
                    .map_err(|e| aws_error("DescribeSubnets", "subnets", e))?;
                ids(out.subnets().iter().map(|s| s.subnet_id()).collect())
            }
            NetworkKind::Vpc => {
                let out = ec2
                    .describe_vpcs()
                    .filters(filter)
                    .send()
                    .await
                    .map_err(|e| aws_error("DescribeVpcs", "vpcs", e))?;
                ids(out.vpcs().iter().map(|v| v.vpc_id()).collect())
            }
        })
    }

    /// Releases `dependent` (an association or an attached VPC) from resource `id`.
    pub(super) async fn release(self, aws: &Aws, id: &str, dependent: &str) -> Result<(), Failure> {
        let ec2 = &aws.ec2;
        match self {
            NetworkKind::Address => ec2
                .disassociate_address()
                .association_id(dependent)
                .send()
                .await
                .map(drop)
                .map_err(|e| (code_of(&e), aws_error("DisassociateAddress", dependent, e))),
            NetworkKind::RouteTable => ec2
                .disassociate_route_table()
                .association_id(dependent)
                .send()
                .await
                .map(drop)
                .map_err(|e| {
                    (
                        code_of(&e),
                        aws_error("DisassociateRouteTable", dependent, e),
                    )
                }),
            NetworkKind::InternetGateway => ec2
                .detach_internet_gateway()
                .internet_gateway_id(id)
                .vpc_id(dependent)
                .send()
                .await
                .map(drop)
                .map_err(|e| (code_of(&e), aws_error("DetachInternetGateway", id, e))),
            _ => Ok(()),
        }
    }

    /// Deletes resource `id`.
    pub(super) async fn delete(self, aws: &Aws, id: &str) -> Result<(), Failure> {
        let ec2 = &aws.ec2;
        match self {
            NetworkKind::Address => ec2
                .release_address()
                .allocation_id(id)
                .send()
                .await
                .map(drop)
                .map_err(|e| (code_of(&e), aws_error("ReleaseAddress", id, e))),
            NetworkKind::SecurityGroup => ec2
                .delete_security_group()
                .group_id(id)
                .send()
                .await
                .map(drop)
                .map_err(|e| (code_of(&e), aws_error("DeleteSecurityGroup", id, e))),
            NetworkKind::RouteTable => ec2
                .delete_route_table()
                .route_table_id(id)
                .send()
                .await
                .map(drop)
                .map_err(|e| (code_of(&e), aws_error("DeleteRouteTable", id, e))),
            NetworkKind::InternetGateway => ec2
                .delete_internet_gateway()
                .internet_gateway_id(id)
                .send()
                .await
                .map(drop)
                .map_err(|e| (code_of(&e), aws_error("DeleteInternetGateway", id, e))),
            NetworkKind::Subnet => ec2
                .delete_subnet()
                .subnet_id(id)
                .send()
                .await
                .map(drop)
                .map_err(|e| (code_of(&e), aws_error("DeleteSubnet", id, e))),
            NetworkKind::Vpc => ec2
                .delete_vpc()
                .vpc_id(id)
                .send()
                .await
                .map(drop)
                .map_err(|e| (code_of(&e), aws_error("DeleteVpc", id, e))),
        }
    }
}
