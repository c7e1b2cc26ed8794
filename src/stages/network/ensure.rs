//! The network stage's apply, one `ensure_*`-style function per resource kind: each creates
//! (tagged) what the probe did not find, fixes what differs, and reports what it made.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{AttributeBooleanValue, IpPermission, ResourceType};

use super::{
    Existing, FoundGroup, FoundRouteTable, FoundSubnet, ID, Network, detach_igw, permission,
    wanted_rules,
};
use crate::aws::tags::SUBNET;
use crate::aws::{Aws, aws_error};
use crate::engine::Ctx;
use crate::error::Result;

fn yes() -> AttributeBooleanValue {
    AttributeBooleanValue::builder().value(true).build()
}

fn created(cx: &Ctx, what: &str, id: &str) {
    cx.events.progress(ID, Some(what), format!("created {id}"));
}

/// The VPC (created if missing) with DNS hostnames and support on; returns its id.
pub(super) async fn vpc(cx: &Ctx, aws: &Aws, f: &Existing) -> Result<String> {
    let ec2 = &aws.ec2;
    let vpc = match f.vpc.clone() {
        Some(id) => id,
        None => {
            aws.pace().await;
            let out = ec2
                .create_vpc()
                .cidr_block(&cx.config.cluster.spec.aws.vpc_cidr.value)
                .tag_specifications(aws.tags.spec(
                    ResourceType::Vpc,
                    &Network::name(&cx.config, "vpc"),
                    &[],
                ))
                .send()
                .await
                .map_err(|e| aws_error("CreateVpc", "vpc", e))?;
            let id = out
                .vpc()
                .and_then(|v| v.vpc_id())
                .unwrap_or_default()
                .to_string();
            created(cx, "vpc", &id);
            id
        }
    };
    if !f.dns_hostnames {
        aws.pace().await;
        ec2.modify_vpc_attribute()
            .vpc_id(&vpc)
            .enable_dns_hostnames(yes())
            .send()
            .await
            .map_err(|e| aws_error("ModifyVpcAttribute", &vpc, e))?;
    }
    if !f.dns_support {
        aws.pace().await;
        ec2.modify_vpc_attribute()
            .vpc_id(&vpc)
            .enable_dns_support(yes())
            .send()
            .await
            .map_err(|e| aws_error("ModifyVpcAttribute", &vpc, e))?;
    }
    Ok(vpc)
}

/// The internet gateway, attached to `vpc` (an existing one attached elsewhere is moved; a
/// new one starts unattached); returns its id.
pub(super) async fn internet_gateway(
    cx: &Ctx,
    aws: &Aws,
    f: &Existing,
    vpc: &str,
) -> Result<String> {
    let ec2 = &aws.ec2;
    let (igw, attached) = match f.igw.clone() {
        Some(g) => {
            if let Some(other) = g.attached_vpc.as_deref().filter(|a| *a != vpc) {
                detach_igw(aws, &g.id, other).await?;
            }
            (g.id, g.attached_vpc)
        }
        None => {
            aws.pace().await;
            let out = ec2
                .create_internet_gateway()
                .tag_specifications(aws.tags.spec(
                    ResourceType::InternetGateway,
                    &Network::name(&cx.config, "igw"),
                    &[],
                ))
                .send()
                .await
                .map_err(|e| aws_error("CreateInternetGateway", "igw", e))?;
            let id = out
                .internet_gateway()
                .and_then(|g| g.internet_gateway_id())
                .unwrap_or_default()
                .to_string();
            (id, None)
        }
    };
    if attached.as_deref() != Some(vpc) {
        aws.pace().await;
        ec2.attach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(vpc)
            .send()
            .await
            .map_err(|e| aws_error("AttachInternetGateway", &igw, e))?;
    }
    if f.igw.is_none() {
        cx.events.progress(
            ID,
            Some("internet-gateway"),
            format!("created and attached {igw}"),
        );
    }
    Ok(igw)
}

/// One public subnet per configured subnet, with public IPs on launch; `f.subnets` is
/// updated with what exists afterwards.
pub(super) async fn subnets(cx: &Ctx, aws: &Aws, f: &mut Existing, vpc: &str) -> Result<()> {
    let ec2 = &aws.ec2;
    for s in &cx.config.cluster.spec.aws.subnets {
        let id = match f.subnets.get(s.name.as_str()) {
            Some(sub) if sub.public_ip_on_launch => continue,
            Some(sub) => sub.id.clone(),
            None => {
                aws.pace().await;
                let what = format!("subnet/{}", s.name);
                let out = ec2
                    .create_subnet()
                    .vpc_id(vpc)
                    .cidr_block(&s.cidr.value)
                    .availability_zone(s.az.as_str())
                    .tag_specifications(aws.tags.spec(
                        ResourceType::Subnet,
                        &Network::name(&cx.config, &s.name),
                        &[(SUBNET, &s.name)],
                    ))
                    .send()
                    .await
                    .map_err(|e| aws_error("CreateSubnet", &what, e))?;
                let id = out
                    .subnet()
                    .and_then(|x| x.subnet_id())
                    .unwrap_or_default()
                    .to_string();
                created(cx, &what, &id);
                id
            }
        };
        aws.pace().await;
        ec2.modify_subnet_attribute()
            .subnet_id(&id)
            .map_public_ip_on_launch(yes())
            .send()
            .await
            .map_err(|e| aws_error("ModifySubnetAttribute", &id, e))?;
        let found = FoundSubnet {
            id,
            az: s.az.value.clone(),
            public_ip_on_launch: true,
        };
        f.subnets.insert(s.name.value.clone(), found);
    }
    Ok(())
}

/// The public route table: a default route to `igw` and every subnet associated.
pub(super) async fn route_table(
    cx: &Ctx,
    aws: &Aws,
    f: &Existing,
    vpc: &str,
    igw: &str,
) -> Result<()> {
    let ec2 = &aws.ec2;
    let found = match f.route_table.clone() {
        Some(found) => found,
        None => {
            aws.pace().await;
            let out = ec2
                .create_route_table()
                .vpc_id(vpc)
                .tag_specifications(aws.tags.spec(
                    ResourceType::RouteTable,
                    &Network::name(&cx.config, "public-rt"),
                    &[],
                ))
                .send()
                .await
                .map_err(|e| aws_error("CreateRouteTable", "route-table", e))?;
            let id = out
                .route_table()
                .and_then(|r| r.route_table_id())
                .unwrap_or_default()
                .to_string();
            created(cx, "route-table", &id);
            FoundRouteTable {
                id,
                ..FoundRouteTable::default()
            }
        }
    };
    let rt = found.id;
    if !found.default_route {
        aws.pace().await;
        ec2.create_route()
            .route_table_id(&rt)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(igw)
            .send()
            .await
            .map_err(|e| aws_error("CreateRoute", &rt, e))?;
    }
    for subnet in f.subnets.values().map(|s| &s.id) {
        if !found.associated.contains(subnet) {
            aws.pace().await;
            ec2.associate_route_table()
                .route_table_id(&rt)
                .subnet_id(subnet)
                .send()
                .await
                .map_err(|e| aws_error("AssociateRouteTable", subnet, e))?;
        }
    }
    Ok(())
}

/// The cluster security group with exactly the configured ingress rules: missing ones are
/// authorised, ones the config no longer lists are revoked (the group is ecoboot's own).
pub(super) async fn security_group(cx: &Ctx, aws: &Aws, f: &Existing, vpc: &str) -> Result<()> {
    let ec2 = &aws.ec2;
    let config = &cx.config;
    let FoundGroup {
        id: sg,
        rules: have,
    } = match f.sg.clone() {
        Some(found) => found,
        None => {
            aws.pace().await;
            let name = Network::name(config, "cluster");
            let out = ec2
                .create_security_group()
                .group_name(&name)
                .description(format!(
                    "ecoboot cluster {}: SSH, API, all traffic between nodes",
                    config.name()
                ))
                .vpc_id(vpc)
                .tag_specifications(aws.tags.spec(ResourceType::SecurityGroup, &name, &[]))
                .send()
                .await
                .map_err(|e| aws_error("CreateSecurityGroup", &name, e))?;
            let id = out.group_id().unwrap_or_default().to_string();
            created(cx, "security-group", &id);
            FoundGroup {
                id,
                rules: BTreeSet::new(),
            }
        }
    };
    let wanted = wanted_rules(config, &sg);
    let extra: Vec<IpPermission> = have.difference(&wanted).map(permission).collect();
    if !extra.is_empty() {
        aws.pace().await;
        ec2.revoke_security_group_ingress()
            .group_id(&sg)
            .set_ip_permissions(Some(extra.clone()))
            .send()
            .await
            .map_err(|e| aws_error("RevokeSecurityGroupIngress", &sg, e))?;
        cx.events.progress(
            ID,
            Some(&sg),
            format!("revoked {} rule(s) the config no longer lists", extra.len()),
        );
    }
    let missing: Vec<IpPermission> = wanted.difference(&have).map(permission).collect();
    if !missing.is_empty() {
        aws.pace().await;
        ec2.authorize_security_group_ingress()
            .group_id(&sg)
            .set_ip_permissions(Some(missing))
            .send()
            .await
            .map_err(|e| aws_error("AuthorizeSecurityGroupIngress", &sg, e))?;
    }
    Ok(())
}

/// Adds the Kubernetes integration tags that existing resources lack: one CreateTags per set
/// of missing tags, covering every resource that lacks exactly that set.
pub(super) async fn kubernetes_tags(cx: &Ctx, aws: &Aws, f: &Existing) -> Result<()> {
    let mut by_set: std::collections::BTreeMap<&[(String, String)], Vec<&str>> = Default::default();
    for u in &f.untagged {
        by_set.entry(&u.missing).or_default().push(&u.id);
    }
    for (missing, ids) in by_set {
        aws.add_tags(&ids, missing).await?;
        for id in ids {
            cx.events.progress(ID, Some(id), "tagged for Kubernetes");
        }
    }
    Ok(())
}

/// Deletes the extra gateways and empty VPCs an interrupted run left behind.
pub(super) async fn delete_orphans(cx: &Ctx, aws: &Aws, f: &Existing) -> Result<()> {
    let ec2 = &aws.ec2;
    for g in &f.orphan_igws {
        let id = &g.id;
        if let Some(other) = &g.attached_vpc {
            detach_igw(aws, id, other).await?;
        }
        aws.pace().await;
        ec2.delete_internet_gateway()
            .internet_gateway_id(id)
            .send()
            .await
            .map_err(|e| aws_error("DeleteInternetGateway", id, e))?;
        cx.events
            .progress(ID, Some(id), "deleted (left by an interrupted run)");
    }
    for id in &f.orphan_vpcs {
        aws.pace().await;
        ec2.delete_vpc()
            .vpc_id(id)
            .send()
            .await
            .map_err(|e| aws_error("DeleteVpc", id, e))?;
        cx.events.progress(
            ID,
            Some(id),
            "deleted (empty VPC left by an interrupted run)",
        );
    }
    Ok(())
}
