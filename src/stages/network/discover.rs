//! What the network stage finds by tags: the VPC (and empty orphans of interrupted runs),
//! subnets, gateway, route table and security group with its rules, and which of them lack
//! the Kubernetes integration tags. One function per resource kind.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{ResourceType, SecurityGroup, Tag, VpcAttributeName};

use crate::aws::tags::SUBNET;
use crate::aws::{Aws, aws_error, ec2_filter, ec2_tag_value};
use crate::error::{Error, Result};

use super::{Existing, FoundGateway, FoundGroup, FoundRouteTable, FoundSubnet, ID, Rule, Untagged};

/// Finds the network by tags. `hint` is the VPC id the journal remembers. Several tagged VPCs
/// happen when a run dies while AWS still completes its CreateVpc: the one with subnets (else
/// the hinted one, else the smallest id) is kept, and the other, empty ones become orphans.
pub(super) async fn discover(aws: &Aws, hint: Option<&str>) -> Result<Existing> {
    let mut found = Existing::default();
    let vpcs = aws
        .ec2
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
    let kept = match ids.len() {
        0 | 1 => ids.first().cloned(),
        _ => Some(choose_vpc(aws, &ids, hint).await?),
    };
    found.orphan_vpcs = ids
        .iter()
        .filter(|i| Some(*i) != kept.as_ref())
        .cloned()
        .collect();
    gateways(aws, &mut found, kept.as_deref()).await?;
    let Some(vpc) = kept else {
        return Ok(found);
    };
    if let Some(v) = vpcs
        .vpcs()
        .iter()
        .find(|v| v.vpc_id() == Some(vpc.as_str()))
    {
        untagged(aws, &mut found, &vpc, &ResourceType::Vpc, v.tags());
    }
    dns_attributes(aws, &mut found, &vpc).await?;
    subnets(aws, &mut found, &vpc).await?;
    route_table(aws, &mut found, &vpc).await?;
    security_group(aws, &mut found, &vpc).await?;
    found.vpc = Some(vpc);
    Ok(found)
}

/// Records `id` as untagged when it lacks Kubernetes integration tags its kind carries.
fn untagged(aws: &Aws, found: &mut Existing, id: &str, kind: &ResourceType, tags: &[Tag]) {
    let missing = aws.tags.kubernetes_missing(kind, tags);
    if !missing.is_empty() {
        found.untagged.push(Untagged {
            id: id.to_string(),
            missing,
        });
    }
}

/// Of several tagged VPCs, the one to keep (never one at random: subnets in two is an error).
async fn choose_vpc(aws: &Aws, ids: &[String], hint: Option<&str>) -> Result<String> {
    let subnets = aws
        .ec2
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
    Ok(used
        .iter()
        .next()
        .map(|v| v.to_string())
        .or_else(|| {
            hint.filter(|h| ids.iter().any(|i| i == h))
                .map(str::to_string)
        })
        .unwrap_or_else(|| ids[0].clone()))
}

/// The cluster's internet gateway (preferring the one attached to `vpc`) and the extra ones.
async fn gateways(aws: &Aws, found: &mut Existing, vpc: Option<&str>) -> Result<()> {
    let igws = aws
        .ec2
        .describe_internet_gateways()
        .filters(aws.tags.filter())
        .send()
        .await
        .map_err(|e| aws_error("DescribeInternetGateways", "igw", e))?;
    let mut all: Vec<FoundGateway> = igws
        .internet_gateways()
        .iter()
        .map(|g| FoundGateway {
            id: g.internet_gateway_id().unwrap_or_default().to_string(),
            attached_vpc: g
                .attachments()
                .iter()
                .find_map(|a| a.vpc_id().map(str::to_string)),
        })
        .collect();
    all.sort_by_key(|g| (g.attached_vpc.as_deref() != vpc, g.id.clone()));
    let mut all = all.into_iter();
    found.igw = all.next();
    found.orphan_igws = all.collect();
    Ok(())
}

/// DNS hostnames and DNS support of `vpc`.
async fn dns_attributes(aws: &Aws, found: &mut Existing, vpc: &str) -> Result<()> {
    for attr in [
        VpcAttributeName::EnableDnsHostnames,
        VpcAttributeName::EnableDnsSupport,
    ] {
        let out = aws
            .ec2
            .describe_vpc_attribute()
            .vpc_id(vpc)
            .attribute(attr.clone())
            .send()
            .await
            .map_err(|e| aws_error("DescribeVpcAttribute", vpc, e))?;
        match attr {
            VpcAttributeName::EnableDnsHostnames => {
                found.dns_hostnames =
                    out.enable_dns_hostnames().and_then(|v| v.value()) == Some(true)
            }
            _ => found.dns_support = out.enable_dns_support().and_then(|v| v.value()) == Some(true),
        }
    }
    Ok(())
}

/// The tagged subnets of `vpc`, by config subnet name.
async fn subnets(aws: &Aws, found: &mut Existing, vpc: &str) -> Result<()> {
    let subnets = aws
        .ec2
        .describe_subnets()
        .filters(aws.tags.filter())
        .filters(ec2_filter("vpc-id", vpc))
        .send()
        .await
        .map_err(|e| aws_error("DescribeSubnets", vpc, e))?;
    for s in subnets.subnets() {
        let Some(name) = ec2_tag_value(s.tags(), SUBNET) else {
            continue;
        };
        let id = s.subnet_id().unwrap_or_default().to_string();
        untagged(aws, found, &id, &ResourceType::Subnet, s.tags());
        let sub = FoundSubnet {
            id,
            az: s.availability_zone().unwrap_or_default().to_string(),
            public_ip_on_launch: s.map_public_ip_on_launch().unwrap_or(false),
        };
        found.subnets.insert(name.to_string(), sub);
    }
    Ok(())
}

/// The public route table of `vpc`: its default route to the gateway and its associations.
async fn route_table(aws: &Aws, found: &mut Existing, vpc: &str) -> Result<()> {
    let tables = aws
        .ec2
        .describe_route_tables()
        .filters(aws.tags.filter())
        .filters(ec2_filter("vpc-id", vpc))
        .send()
        .await
        .map_err(|e| aws_error("DescribeRouteTables", vpc, e))?;
    let Some(rt) = tables.route_tables().first() else {
        return Ok(());
    };
    let igw = found.igw.as_ref().map(|g| g.id.as_str());
    found.route_table = Some(FoundRouteTable {
        id: rt.route_table_id().unwrap_or_default().to_string(),
        default_route: rt.routes().iter().any(|r| {
            r.destination_cidr_block() == Some("0.0.0.0/0")
                && r.gateway_id().is_some()
                && r.gateway_id() == igw
        }),
        associated: rt
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id().map(str::to_string))
            .collect(),
    });
    Ok(())
}

/// The cluster security group of `vpc` with its ingress rules.
async fn security_group(aws: &Aws, found: &mut Existing, vpc: &str) -> Result<()> {
    let groups = aws
        .ec2
        .describe_security_groups()
        .filters(aws.tags.filter())
        .filters(ec2_filter("vpc-id", vpc))
        .send()
        .await
        .map_err(|e| aws_error("DescribeSecurityGroups", vpc, e))?;
    if let Some(sg) = groups.security_groups().first() {
        let id = sg.group_id().unwrap_or_default().to_string();
        untagged(aws, found, &id, &ResourceType::SecurityGroup, sg.tags());
        found.sg = Some(FoundGroup {
            id,
            rules: rules_of(sg),
        });
    }
    Ok(())
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
                // Rules for the machine running ecoboot come and go with each command.
                .filter(|r| {
                    let d = r.description().unwrap_or_default();
                    !d.starts_with(crate::engine::runner_access::MARK)
                })
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
