//! Stage `network`: VPC, public subnets, internet gateway, public route table and the cluster
//! security group. Everything is found by tags first and created only when missing.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_ec2::types::{IpPermission, IpRange, SecurityGroup, UserIdGroupPair, VpcAttributeName};
use serde::{Deserialize, Serialize};

use super::network_ensure as ensure;
use crate::aws::tags::SUBNET;
use crate::aws::{Aws, aws_error, ec2_filter, ec2_tag_value};
use crate::config::Config;
use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::{Error, Result};
use crate::event::Action;

/// Stage id.
pub const ID: &str = "network";

/// What the stage records in state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NetworkOut {
    /// VPC id.
    pub vpc_id: String,
    /// Subnet id and AZ by config subnet name.
    pub subnets: BTreeMap<String, SubnetOut>,
    /// Internet gateway id.
    pub igw_id: String,
    /// Public route table id.
    pub route_table_id: String,
    /// Cluster security group id.
    pub security_group_id: String,
}

/// One subnet in state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SubnetOut {
    /// Subnet id.
    pub id: String,
    /// Availability zone.
    pub az: String,
}

/// What exists now, as found by tags.
#[derive(Debug, Clone, Default)]
pub(super) struct Existing {
    pub(super) vpc: Option<String>,
    pub(super) dns_hostnames: bool,
    pub(super) dns_support: bool,
    pub(super) subnets: BTreeMap<String, (String, String, bool)>,
    pub(super) igw: Option<(String, Option<String>)>,
    pub(super) route_table: Option<(String, bool, BTreeSet<String>)>,
    pub(super) sg: Option<(String, BTreeSet<Rule>)>,
    /// Empty VPCs of this cluster besides the chosen one (left by a run killed mid-call).
    pub(super) orphan_vpcs: Vec<String>,
    /// Extra internet gateways of this cluster (id, attached VPC).
    pub(super) orphan_igws: Vec<(String, Option<String>)>,
}

/// One ingress rule, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rule {
    protocol: String,
    from: i32,
    to: i32,
    /// A CIDR or `sg:<group id>`.
    source: String,
}

/// The `network` stage.
#[derive(Default)]
pub struct Network;

/// What the network probe hands to apply: what exists, and the actions it implies.
pub struct NetworkPlan {
    actions: Vec<Action>,
    existing: Existing,
}

impl StagePlan for NetworkPlan {
    fn actions(&self) -> Vec<Action> {
        self.actions.clone()
    }
}

impl Network {
    pub(super) fn name(config: &Config, what: &str) -> String {
        format!("{}-{what}", config.name())
    }
}

/// Finds the network by tags. `hint` is the VPC id the journal remembers. Several tagged VPCs
/// happen when a run dies while AWS still completes its CreateVpc: the one with subnets (else
/// the hinted one, else the smallest id) is kept, and the other, empty ones become orphans.
async fn discover(aws: &Aws, hint: Option<&str>) -> Result<Existing> {
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

pub(super) fn wanted_rules(config: &Config, sg: &str) -> BTreeSet<Rule> {
    let aws = &config.cluster.spec.aws;
    let mut out = BTreeSet::new();
    let tcp = |from, to, source: &str| Rule {
        protocol: "tcp".into(),
        from,
        to,
        source: source.into(),
    };
    out.extend(aws.allowed_ssh_cidrs.iter().map(|c| tcp(22, 22, c)));
    // 6443 only when ecoboot talks to the API directly; the tunnel needs no open port.
    if config.cluster.spec.kubernetes.api_access == crate::config::ApiAccess::Direct {
        out.extend(aws.allowed_api_cidrs.iter().map(|c| tcp(6443, 6443, c)));
    }
    out.extend(aws.node_port_cidrs.iter().map(|c| tcp(30000, 32767, c)));
    out.insert(Rule {
        protocol: "-1".into(),
        from: 0,
        to: 0,
        source: format!("sg:{sg}"),
    });
    out
}

fn plan(config: &Config, f: &Existing) -> Vec<Action> {
    let aws = &config.cluster.spec.aws;
    let mut out = Vec::new();
    for (id, _) in &f.orphan_igws {
        out.push(Action::new(
            id.clone(),
            "delete: an extra internet gateway left by an interrupted run",
        ));
    }
    for id in &f.orphan_vpcs {
        out.push(Action::new(
            id.clone(),
            "delete: an empty VPC left by an interrupted run",
        ));
    }
    match &f.vpc {
        None => out.push(Action::new(
            "vpc",
            format!(
                "create VPC {} with DNS hostnames and support",
                aws.vpc_cidr.value
            ),
        )),
        Some(id) if !(f.dns_hostnames && f.dns_support) => {
            out.push(Action::new(id.clone(), "enable DNS hostnames and support"))
        }
        Some(_) => {}
    }
    for s in &aws.subnets {
        match f.subnets.get(s.name.as_str()) {
            None => out.push(Action::new(
                format!("subnet/{}", s.name),
                format!("create public subnet {} in {}", s.cidr.value, s.az),
            )),
            Some((id, _, false)) => {
                out.push(Action::new(id.clone(), "turn on public IPs at launch"))
            }
            Some(_) => {}
        }
    }
    match &f.igw {
        None => out.push(Action::new(
            "internet-gateway",
            "create and attach to the VPC",
        )),
        Some((id, attached)) if attached.is_none() || attached != &f.vpc => {
            out.push(Action::new(id.clone(), "attach to the VPC"))
        }
        Some(_) => {}
    }
    match &f.route_table {
        None => out.push(Action::new(
            "route-table",
            "create public route table 0.0.0.0/0 -> internet gateway, associate every subnet",
        )),
        Some((id, default_route, associated)) => {
            if !default_route {
                out.push(Action::new(
                    id.clone(),
                    "add route 0.0.0.0/0 -> internet gateway",
                ));
            }
            let missing = aws
                .subnets
                .iter()
                .filter(|s| {
                    f.subnets
                        .get(s.name.as_str())
                        .is_none_or(|(sid, _, _)| !associated.contains(sid))
                })
                .count();
            if missing > 0 {
                out.push(Action::new(
                    id.clone(),
                    format!("associate {missing} subnet(s)"),
                ));
            }
        }
    }
    match &f.sg {
        None => out.push(Action::new("security-group", "create cluster security group: SSH 22 and API 6443 from the allowed CIDRs, all traffic within the group")),
        Some((id, have)) => {
            let wanted = wanted_rules(config, id);
            let missing = wanted.difference(have).count();
            if missing > 0 {
                out.push(Action::new(id.clone(), format!("add {missing} ingress rule(s)")));
            }
            // The group is ecoboot's own (created and tagged by it): every rule the config no
            // longer lists is revoked, so narrowing a CIDR really closes the old opening.
            for r in have.difference(&wanted) {
                out.push(Action::new(
                    id.clone(),
                    format!("revoke ingress {} {}-{} from {}", r.protocol, r.from, r.to, r.source),
                ));
            }
        }
    }
    out
}

fn output(config: &Config, f: &Existing) -> Option<NetworkOut> {
    let subnets = config
        .cluster
        .spec
        .aws
        .subnets
        .iter()
        .map(|s| {
            f.subnets.get(s.name.as_str()).map(|(id, az, _)| {
                (
                    s.name.value.clone(),
                    SubnetOut {
                        id: id.clone(),
                        az: az.clone(),
                    },
                )
            })
        })
        .collect::<Option<BTreeMap<_, _>>>()?;
    Some(NetworkOut {
        vpc_id: f.vpc.clone()?,
        subnets,
        igw_id: f.igw.as_ref()?.0.clone(),
        route_table_id: f.route_table.as_ref()?.0.clone(),
        security_group_id: f.sg.as_ref()?.0.clone(),
    })
}

pub(super) async fn detach_igw(aws: &Aws, igw: &str, vpc: &str) -> Result<()> {
    aws.pace().await;
    aws.ec2
        .detach_internet_gateway()
        .internet_gateway_id(igw)
        .vpc_id(vpc)
        .send()
        .await
        .map(drop)
        .map_err(|e| aws_error("DetachInternetGateway", igw, e))
}

#[async_trait]
impl Stage for Network {
    type Plan = NetworkPlan;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Create VPC, subnets, gateway, routes and security group"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<NetworkPlan>> {
        let hint = cx.state().output::<NetworkOut>(ID).map(|o| o.vpc_id);
        let existing = discover(cx.aws().await, hint.as_deref()).await?;
        let actions = plan(&cx.config, &existing);
        if let (true, Some(out)) = (actions.is_empty(), output(&cx.config, &existing)) {
            let summary = format!(
                "VPC {} with {} subnets, gateway, route table, security group {}",
                out.vpc_id,
                out.subnets.len(),
                out.security_group_id
            );
            return Ok(Found::Done {
                summary,
                commit: Some(Box::new(move |cx: &Ctx| {
                    cx.update_state(|s| s.set_output(ID, &out))
                })),
            });
        }
        Ok(Found::Todo(NetworkPlan { actions, existing }))
    }

    async fn apply(&self, cx: &Ctx, plan: NetworkPlan) -> Result<()> {
        let aws = cx.aws().await;
        let mut f = plan.existing;
        let vpc = ensure::vpc(cx, aws, &f).await?;
        let igw = ensure::internet_gateway(cx, aws, &f, &vpc).await?;
        ensure::subnets(cx, aws, &mut f, &vpc).await?;
        ensure::route_table(cx, aws, &f, &vpc, &igw).await?;
        ensure::security_group(cx, aws, &f, &vpc).await?;
        ensure::delete_orphans(cx, aws, &f).await
    }
}

pub(super) fn permission(rule: &Rule) -> IpPermission {
    let mut p = IpPermission::builder().ip_protocol(&rule.protocol);
    if rule.protocol != "-1" {
        p = p.from_port(rule.from).to_port(rule.to);
    }
    match rule.source.strip_prefix("sg:") {
        Some(group) => p.user_id_group_pairs(UserIdGroupPair::builder().group_id(group).build()),
        None => p.ip_ranges(IpRange::builder().cidr_ip(&rule.source).build()),
    }
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_account_plans_everything_and_complete_network_plans_nothing() {
        let config = crate::config::tests_support::config();
        let empty = Existing::default();
        let actions = plan(&config, &empty);
        assert_eq!(actions.len(), 1 + 3 + 1 + 1 + 1, "{actions:?}");
        let sg = "sg-1".to_string();
        let subnets = config
            .cluster
            .spec
            .aws
            .subnets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    s.name.value.clone(),
                    (format!("subnet-{i}"), s.az.value.clone(), true),
                )
            })
            .collect::<BTreeMap<_, _>>();
        let associated = subnets.values().map(|(id, _, _)| id.clone()).collect();
        let full = Existing {
            vpc: Some("vpc-1".into()),
            dns_hostnames: true,
            dns_support: true,
            subnets,
            igw: Some(("igw-1".into(), Some("vpc-1".into()))),
            route_table: Some(("rtb-1".into(), true, associated)),
            sg: Some((sg.clone(), wanted_rules(&config, &sg))),
            ..Existing::default()
        };
        assert!(plan(&config, &full).is_empty());
        let orphaned = Existing {
            orphan_vpcs: vec!["vpc-2".into()],
            ..full.clone()
        };
        assert_eq!(
            plan(&config, &orphaned)[0].what,
            "delete: an empty VPC left by an interrupted run"
        );
        assert_eq!(output(&config, &full).unwrap().subnets.len(), 3);
        let mut one_rule_short = full.clone();
        let mut rules = wanted_rules(&config, &sg);
        let first = rules.iter().next().unwrap().clone();
        rules.remove(&first);
        one_rule_short.sg = Some((sg, rules));
        assert_eq!(
            plan(&config, &one_rule_short)[0].what,
            "add 1 ingress rule(s)"
        );
        let mut one_rule_extra = full.clone();
        let mut rules = wanted_rules(&config, "sg-1");
        rules.insert(Rule {
            protocol: "tcp".into(),
            from: 22,
            to: 22,
            source: "0.0.0.0/0".into(),
        });
        one_rule_extra.sg = Some(("sg-1".into(), rules));
        assert_eq!(
            plan(&config, &one_rule_extra)[0].what,
            "revoke ingress tcp 22-22 from 0.0.0.0/0"
        );
    }
}
