//! Stage `load-balancer`: with several control planes, a Network Load Balancer on TCP 6443 in
//! front of them (internet-facing with `apiAccess: direct`, internal with `tunnel`), carrying
//! the cluster security group, with a target group of the control-plane instances (TCP health
//! checks on 6443, client IP not preserved so a control plane can reach the API through it).
//! Found by tags, created tagged, targets kept equal to the configured control planes' current
//! instances (a replaced instance is registered, the dead one deregistered). Nothing to do with
//! one control plane.

use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::aws::nlb::{self, ApiLb};
use crate::config::{ApiAccess, Role};
use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::nodes::LoadBalancerOut;
use crate::stages::shared::ids;
use crate::stages::shared::outputs::NetworkOut;

/// Stage id.
pub const ID: &str = ids::LOAD_BALANCER;

/// The `load-balancer` stage.
pub struct LoadBalancer;

/// What is missing, from what exists.
pub struct LbPlan {
    found: Option<ApiLb>,
    /// The control planes' instance ids the target group must hold.
    wanted: BTreeSet<String>,
    actions: Vec<Action>,
}

impl StagePlan for LbPlan {
    fn actions(&self) -> Vec<Action> {
        self.actions.clone()
    }
}

/// The control planes' current instance ids (from EC2's answer for the cluster's tags).
async fn control_plane_instances(cx: &Ctx) -> Result<BTreeSet<String>> {
    let Some(out) = cx.node_records().await? else {
        return Err(Error::Prerequisite {
            stage: ID,
            what: "the control-plane instances".into(),
            needs: ids::INSTANCES,
        });
    };
    Ok((cx.config.control_planes())
        .filter_map(|n| out.nodes.get(n.name.as_str()))
        .map(|n| n.instance_id.clone())
        .filter(|id| !id.is_empty())
        .collect())
}

fn plan(found: Option<&ApiLb>, wanted: &BTreeSet<String>, internal: bool) -> Vec<Action> {
    let name = "load-balancer/api";
    let Some(lb) = found else {
        let scheme = if internal {
            "internal"
        } else {
            "internet-facing"
        };
        return vec![
            Action::new(
                name,
                format!("create a {scheme} Network Load Balancer, TCP 6443"),
            ),
            Action::new(
                "target-group/control-planes",
                "create, TCP health checks on 6443",
            ),
            Action::new(name, "listener TCP 6443 -> the control planes"),
            Action::new(
                "target-group/control-planes",
                format!("register {}", join(wanted.iter())),
            ),
        ];
    };
    let mut out = Vec::new();
    match &lb.target_group {
        None => out.push(Action::new(
            "target-group/control-planes",
            "create, TCP health checks on 6443",
        )),
        Some(tg) if tg.preserve_client_ip => out.push(Action::new(
            "target-group/control-planes",
            "turn client IP preservation off (a control plane must reach itself)",
        )),
        Some(_) => {}
    }
    if !lb.listener {
        out.push(Action::new(name, "listener TCP 6443 -> the control planes"));
    }
    let registered: BTreeSet<String> = (lb.target_group.iter())
        .flat_map(|tg| tg.targets.keys().cloned())
        .collect();
    let add: Vec<_> = wanted.difference(&registered).collect();
    let drop: Vec<_> = registered.difference(wanted).collect();
    if !add.is_empty() {
        let line = format!("register {}", join(add.into_iter()));
        out.push(Action::new("target-group/control-planes", line));
    }
    if !drop.is_empty() {
        let line = format!(
            "deregister {} (no longer a control plane's instance)",
            join(drop.into_iter())
        );
        out.push(Action::new("target-group/control-planes", line));
    }
    out
}

fn join<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    ids.map(String::as_str).collect::<Vec<_>>().join(", ")
}

#[async_trait]
impl Stage for LoadBalancer {
    type Plan = LbPlan;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Load balancer in front of the control planes (several control planes only)"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<LbPlan>> {
        if !cx.config.is_ha() {
            return Ok(Found::done("one control plane: no load balancer"));
        }
        let wanted = control_plane_instances(cx).await?;
        let found = nlb::find(cx.aws().await).await?;
        let internal = cx.config.cluster.spec.kubernetes.api_access == ApiAccess::Tunnel;
        let actions = plan(found.as_ref(), &wanted, internal);
        match found {
            Some(lb) if actions.is_empty() => {
                let healthy = (lb.target_group.iter())
                    .flat_map(|t| t.targets.values())
                    .filter(|s| *s == "healthy")
                    .count();
                let summary = format!(
                    "{} ({}, {}): {} control plane(s) registered, {healthy} healthy",
                    lb.dns_name,
                    lb.scheme,
                    lb.state,
                    wanted.len()
                );
                let out = LoadBalancerOut {
                    arn: lb.arn,
                    dns_name: lb.dns_name,
                };
                Ok(Found::Done {
                    summary,
                    commit: Some(Box::new(move |cx: &Ctx| {
                        cx.update_state(|s| s.set_output(ID, &out))
                    })),
                })
            }
            found => Ok(Found::Todo(LbPlan {
                found,
                wanted,
                actions,
            })),
        }
    }

    async fn apply(&self, cx: &Ctx, plan: LbPlan) -> Result<()> {
        let aws = cx.aws().await;
        let Some(net) = cx.state().output::<NetworkOut>(ids::NETWORK) else {
            return Err(Error::Prerequisite {
                stage: ID,
                what: "the VPC, subnets and security group".into(),
                needs: ids::NETWORK,
            });
        };
        let internal = cx.config.cluster.spec.kubernetes.api_access == ApiAccess::Tunnel;
        let name = nlb::name(cx.config.name(), "api");
        let lb = match plan.found {
            Some(lb) => lb,
            None => {
                // One subnet per zone the nodes use (an NLB takes at most one per zone).
                let mut zones = BTreeSet::new();
                let subnets: Vec<String> = (cx.config.nodes())
                    .filter(|n| n.role == Some(Role::ControlPlane))
                    .map(|n| n.subnet.as_str())
                    .chain(net.subnets.keys().map(String::as_str))
                    .filter_map(|s| net.subnets.get(s))
                    .filter(|s| zones.insert(s.az.clone()))
                    .map(|s| s.id.clone())
                    .collect();
                let (arn, dns_name) = nlb::create_load_balancer(
                    aws,
                    &name,
                    subnets,
                    &net.security_group_id,
                    internal,
                )
                .await?;
                cx.events
                    .progress(ID, Some(&name), format!("created {dns_name}"));
                ApiLb {
                    arn,
                    dns_name,
                    ..ApiLb::default()
                }
            }
        };
        let tg = match &lb.target_group {
            Some(tg) => tg.clone(),
            None => {
                let tg_name = nlb::name(cx.config.name(), "cp");
                let arn = nlb::create_target_group(aws, &tg_name, &net.vpc_id).await?;
                cx.events.progress(ID, Some(&tg_name), "created");
                nlb::TargetGroup {
                    arn,
                    preserve_client_ip: true,
                    ..Default::default()
                }
            }
        };
        if tg.preserve_client_ip {
            nlb::keep_no_client_ip(aws, &tg.arn).await?;
        }
        if !lb.listener {
            nlb::create_listener(aws, &lb.arn, &tg.arn).await?;
            cx.events.progress(ID, Some(&name), "listener TCP 6443");
        }
        let registered: BTreeSet<String> = tg.targets.keys().cloned().collect();
        let add: Vec<String> = plan.wanted.difference(&registered).cloned().collect();
        let drop: Vec<String> = registered.difference(&plan.wanted).cloned().collect();
        if !add.is_empty() {
            nlb::register(aws, &tg.arn, &add).await?;
            cx.events
                .progress(ID, Some(&name), format!("registered {}", add.join(", ")));
        }
        if !drop.is_empty() {
            nlb::deregister(aws, &tg.arn, &drop).await?;
            cx.events
                .progress(ID, Some(&name), format!("deregistered {}", drop.join(", ")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::nlb::TargetGroup;

    fn ids(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_replaced_control_plane_is_registered_and_the_old_instance_dropped() {
        let lb = ApiLb {
            listener: true,
            target_group: Some(TargetGroup {
                arn: "tg".into(),
                targets: [("i-1", "healthy"), ("i-2", "unhealthy"), ("i-3", "healthy")]
                    .into_iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
                registering: Default::default(),
                preserve_client_ip: false,
            }),
            ..ApiLb::default()
        };
        let actions = plan(Some(&lb), &ids(&["i-1", "i-3", "i-4"]), true);
        let text: Vec<String> = actions.iter().map(|a| a.what.clone()).collect();
        assert_eq!(
            text,
            [
                "register i-4",
                "deregister i-2 (no longer a control plane's instance)"
            ]
        );
        assert!(plan(Some(&lb), &ids(&["i-1", "i-2", "i-3"]), true).is_empty());
        assert_eq!(plan(None, &ids(&["i-1"]), false).len(), 4);
    }
}
