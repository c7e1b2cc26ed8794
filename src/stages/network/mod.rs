//! Stage `network`: VPC, public subnets, internet gateway, public route table and the cluster
//! security group. Everything is found by tags first and created only when missing.

use crate::engine::runner_access;
use std::collections::{BTreeMap, BTreeSet};

mod discover;
mod ensure;

use async_trait::async_trait;
use aws_sdk_ec2::types::{IpPermission, IpRange, UserIdGroupPair};

use crate::aws::{Aws, aws_error};
use crate::config::Config;
use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::Result;
use crate::event::Action;
use crate::stages::shared::ids;
use crate::stages::shared::outputs::{NetworkOut, SubnetOut};
use discover::discover;

/// Stage id.
pub const ID: &str = ids::NETWORK;

/// What exists now, as found by tags.
#[derive(Debug, Clone, Default)]
pub(super) struct Existing {
    pub(super) vpc: Option<String>,
    pub(super) dns_hostnames: bool,
    pub(super) dns_support: bool,
    pub(super) subnets: BTreeMap<String, FoundSubnet>,
    pub(super) igw: Option<FoundGateway>,
    pub(super) route_table: Option<FoundRouteTable>,
    pub(super) sg: Option<FoundGroup>,
    /// Empty VPCs of this cluster besides the chosen one (left by a run killed mid-call).
    pub(super) orphan_vpcs: Vec<String>,
    /// Extra internet gateways of this cluster.
    pub(super) orphan_igws: Vec<FoundGateway>,
    /// Resources (VPC, subnets, security group) missing tags the Kubernetes AWS integrations
    /// look for, with the missing pairs.
    pub(super) untagged: Vec<Untagged>,
}

/// A subnet found by its `ecoboot.io/subnet` tag.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct FoundSubnet {
    pub(super) id: String,
    pub(super) az: String,
    pub(super) public_ip_on_launch: bool,
}

/// An internet gateway and the VPC it is attached to.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct FoundGateway {
    pub(super) id: String,
    pub(super) attached_vpc: Option<String>,
}

/// The public route table.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct FoundRouteTable {
    pub(super) id: String,
    /// 0.0.0.0/0 goes to the cluster's gateway.
    pub(super) default_route: bool,
    /// Subnet ids associated with it.
    pub(super) associated: BTreeSet<String>,
}

/// The cluster security group and its ingress rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct FoundGroup {
    pub(super) id: String,
    pub(super) rules: BTreeSet<Rule>,
}

/// A resource that lacks some of the tags it should carry.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Untagged {
    pub(super) id: String,
    pub(super) missing: Vec<(String, String)>,
}

/// One ingress rule, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rule {
    pub(super) protocol: String,
    pub(super) from: i32,
    pub(super) to: i32,
    /// A CIDR or `sg:<group id>`.
    pub(super) source: String,
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

pub(super) fn wanted_rules(config: &Config, sg: &str) -> BTreeSet<Rule> {
    let aws = &config.cluster.spec.aws;
    let mut out = BTreeSet::new();
    let tcp = |from, to, source: &str| Rule {
        protocol: "tcp".into(),
        from,
        to,
        source: source.into(),
    };
    // `self` is opened per command by engine::runner_access, not kept in the group.
    let fixed = (aws.allowed_ssh_cidrs.iter()).filter(|c| c.value != runner_access::SELF);
    out.extend(fixed.map(|c| tcp(22, 22, c)));
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

// Long by design: one block per resource kind, in the order apply creates them.
fn plan(config: &Config, f: &Existing) -> Vec<Action> {
    let aws = &config.cluster.spec.aws;
    let mut out = Vec::new();
    for g in &f.orphan_igws {
        out.push(Action::new(
            g.id.clone(),
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
            Some(sub) if !sub.public_ip_on_launch => {
                out.push(Action::new(sub.id.clone(), "turn on public IPs at launch"))
            }
            Some(_) => {}
        }
    }
    match &f.igw {
        None => out.push(Action::new(
            "internet-gateway",
            "create and attach to the VPC",
        )),
        Some(g) if g.attached_vpc.is_none() || g.attached_vpc != f.vpc => {
            out.push(Action::new(g.id.clone(), "attach to the VPC"))
        }
        Some(_) => {}
    }
    match &f.route_table {
        None => out.push(Action::new(
            "route-table",
            "create public route table 0.0.0.0/0 -> internet gateway, associate every subnet",
        )),
        Some(rt) => {
            if !rt.default_route {
                out.push(Action::new(
                    rt.id.clone(),
                    "add route 0.0.0.0/0 -> internet gateway",
                ));
            }
            let missing = aws
                .subnets
                .iter()
                .filter(|s| {
                    f.subnets
                        .get(s.name.as_str())
                        .is_none_or(|sub| !rt.associated.contains(&sub.id))
                })
                .count();
            if missing > 0 {
                out.push(Action::new(
                    rt.id.clone(),
                    format!("associate {missing} subnet(s)"),
                ));
            }
        }
    }
    match &f.sg {
        None => out.push(Action::new("security-group", "create cluster security group: SSH 22 and API 6443 from the allowed CIDRs, all traffic within the group")),
        Some(g) => {
            let wanted = wanted_rules(config, &g.id);
            let missing = wanted.difference(&g.rules).count();
            if missing > 0 {
                out.push(Action::new(g.id.clone(), format!("add {missing} ingress rule(s)")));
            }
            // The group is ecoboot's own (created and tagged by it): every rule the config no
            // longer lists is revoked, so narrowing a CIDR really closes the old opening.
            for r in g.rules.difference(&wanted) {
                out.push(Action::new(
                    g.id.clone(),
                    format!("revoke ingress {} {}-{} from {}", r.protocol, r.from, r.to, r.source),
                ));
            }
        }
    }
    for u in &f.untagged {
        let pairs: Vec<String> = u.missing.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push(Action::new(
            u.id.clone(),
            format!("add tags {}", pairs.join(", ")),
        ));
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
            f.subnets.get(s.name.as_str()).map(|sub| {
                (
                    s.name.value.clone(),
                    SubnetOut {
                        id: sub.id.clone(),
                        az: sub.az.clone(),
                    },
                )
            })
        })
        .collect::<Option<BTreeMap<_, _>>>()?;
    Some(NetworkOut {
        vpc_id: f.vpc.clone()?,
        subnets,
        igw_id: f.igw.as_ref()?.id.clone(),
        route_table_id: f.route_table.as_ref()?.id.clone(),
        security_group_id: f.sg.as_ref()?.id.clone(),
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
        ensure::kubernetes_tags(cx, aws, &f).await?;
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
mod tests;
