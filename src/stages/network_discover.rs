//! What the network stage finds by tags: the VPC (and empty orphans of interrupted runs),
//! subnets, gateway, route table and security group with its rules.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{SecurityGroup, VpcAttributeName};

use crate::aws::tags::SUBNET;
use crate::aws::{Aws, aws_error, ec2_filter, ec2_tag_value};
use crate::error::{Error, Result};

use super::network::{Existing, ID, Rule};

/// Finds the network by tags. `hint` is the VPC id the journal remembers. Several tagged VPCs
/// happen when a run dies while AWS still completes its CreateVpc: the one with subnets (else
/// the hinted one, else the smallest id) is kept, and the other, empty ones become orphans.
pub(super) async fn discover(aws: &Aws, hint: Option<&str>) -> Result<Existing> {
    let ec2 = &aws.ec2;
    let mut found = Existing::default();
    let vpcs = ec2
        .describe_vpcs()
        .filters(aws.tags.filter())
        .send()
        .await
        .map_err(|e| aws_error("DescribeVpcs", "vpc", e))?;
    let mut ids: Vec<String> = vpcs
        .vpcs()
        .iter()
        .filter_map(|v| v.vpc_id().map(str::to_string))
        .collect();
    ids.sort();
    if ids.len() > 1 {
        let subnets = ec2
            .describe_subnets()
            .filters(aws.tags.filter())
            .send()
            .await
            .map_err(|e| aws_error("DescribeSubnets", "subnets", e))?;
        let used: BTreeSet<&str> = subnets
            .subnets()
            .iter()
            .filter_map(|s| s.vpc_id())
            .collect();
        if used.len() > 1 {
            return Err(Error::StageFailed {
                stage: ID.into(),
                message: format!("found {} VPCs with subnets tagged for cluster `{}`: {}", used.len(), aws.tags.cluster, ids.join(", ")),
                help: "ecoboot never picks one at random: delete the extra VPCs (or run `ecoboot down --yes`) and rerun".into(),
            });
        }
        let keep = used
            .iter()
            .next()
            .map(|v| v.to_string())
            .or_else(|| {
                hint.filter(|h| ids.iter().any(|i| i == h))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| ids[0].clone());
        found.orphan_vpcs = ids.iter().filter(|i| **i != keep).cloned().collect();
        ids = vec![keep];
    }
    let igws = ec2
        .describe_internet_gateways()
        .filters(aws.tags.filter())
        .send()
        .await
        .map_err(|e| aws_error("DescribeInternetGateways", "igw", e))?;
    let mut all_igws: Vec<(String, Option<String>)> = igws
        .internet_gateways()
        .iter()
        .map(|g| {
            let attached = g
                .attachments()
                .iter()
                .find_map(|a| a.vpc_id().map(str::to_string));
            (
                g.internet_gateway_id().unwrap_or_default().to_string(),
                attached,
            )
        })
        .collect();
    // Prefer the gateway attached to the kept VPC.
    all_igws.sort_by_key(|(id, attached)| {
        (
            attached.as_deref() != ids.first().map(String::as_str),
            id.clone(),
        )
    });
    let mut all_igws = all_igws.into_iter();
    found.igw = all_igws.next();
    found.orphan_igws = all_igws.collect();
    let Some(vpc) = ids.first().cloned() else {
        return Ok(found);
    };
    for (attr, slot) in [
        (
            VpcAttributeName::EnableDnsHostnames,
            &mut found.dns_hostnames,
        ),
        (VpcAttributeName::EnableDnsSupport, &mut found.dns_support),
    ] {
        let out = ec2
            .describe_vpc_attribute()
            .vpc_id(&vpc)
            .attribute(attr.clone())
            .send()
            .await
            .map_err(|e| aws_error("DescribeVpcAttribute", &vpc, e))?;
        let value = match attr {
            VpcAttributeName::EnableDnsHostnames => out.enable_dns_hostnames(),
            _ => out.enable_dns_support(),
        };
        *slot = value.and_then(|v| v.value()).unwrap_or(false);
    }
    let in_vpc = ec2_filter("vpc-id", &vpc);
    let subnets = ec2
        .describe_subnets()
        .filters(aws.tags.filter())
        .filters(in_vpc.clone())
        .send()
        .await
        .map_err(|e| aws_error("DescribeSubnets", &vpc, e))?;
    for s in subnets.subnets() {
        if let Some(name) = ec2_tag_value(s.tags(), SUBNET) {
            let entry = (
                s.subnet_id().unwrap_or_default().to_string(),
                s.availability_zone().unwrap_or_default().to_string(),
                s.map_public_ip_on_launch().unwrap_or(false),
            );
            found.subnets.insert(name.to_string(), entry);
        }
    }
    let tables = ec2
        .describe_route_tables()
        .filters(aws.tags.filter())
        .filters(in_vpc.clone())
        .send()
        .await
        .map_err(|e| aws_error("DescribeRouteTables", &vpc, e))?;
    if let Some(rt) = tables.route_tables().first() {
        let igw = found.igw.as_ref().map(|(id, _)| id.as_str());
        let default_route = rt.routes().iter().any(|r| {
            r.destination_cidr_block() == Some("0.0.0.0/0")
                && r.gateway_id().is_some()
                && r.gateway_id() == igw
        });
        let associated = rt
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id().map(str::to_string))
            .collect();
        found.route_table = Some((
            rt.route_table_id().unwrap_or_default().to_string(),
            default_route,
            associated,
        ));
    }
    let groups = ec2
        .describe_security_groups()
        .filters(aws.tags.filter())
        .filters(in_vpc)
        .send()
        .await
        .map_err(|e| aws_error("DescribeSecurityGroups", &vpc, e))?;
    if let Some(sg) = groups.security_groups().first() {
        found.sg = Some((sg.group_id().unwrap_or_default().to_string(), rules_of(sg)));
    }
    found.vpc = Some(vpc);
    Ok(found)
}

fn rules_of(sg: &SecurityGroup) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for p in sg.ip_permissions() {
        let protocol = p.ip_protocol().unwrap_or("-1").to_string();
        let (from, to) = if protocol == "-1" {
            (0, 0)
        } else {
            (p.from_port().unwrap_or(0), p.to_port().unwrap_or(0))
        };
        let rule = |source: String| Rule {
            protocol: protocol.clone(),
            from,
            to,
            source,
        };
        out.extend(
            p.ip_ranges()
                .iter()
                .filter_map(|r| r.cidr_ip())
                .map(|c| rule(c.to_string())),
        );
        out.extend(
            p.user_id_group_pairs()
                .iter()
                .filter_map(|g| g.group_id())
                .map(|g| rule(format!("sg:{g}"))),
        );
    }
    out
}
