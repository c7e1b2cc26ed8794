//! Stage `join-control-plane` (several control planes only): every control plane besides the
//! one holding the cluster joins with `kubeadm join --control-plane`, one at a time (etcd
//! grows by one member at a time). Before anything joins, etcd members no configured control
//! plane answers for (a replaced instance's old member, a node gone from the config) are
//! removed, so the member count never grows past the control planes and the quorum never
//! counts a dead member. The certificates are uploaded again for each apply with a fresh key
//! that exists only in memory and on the nodes (kubeadm deletes the upload after two hours;
//! ecoboot deletes it as soon as the joins are done), and the Secrets encryption key is copied
//! from the control plane holding the cluster, so every API server reads the same Secrets.

use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::config::Role;
use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::{Error, Result};
use crate::etcd::{self, Member};
use crate::event::Action;
use crate::ssh::{Conn, Target, redact};
use crate::stages::shared::control_plane::{encryption_config, facts, inspect, require_endpoint};
use crate::stages::shared::{ids, join_token};

mod steps;
use steps::{certificate_key, delete_uploaded_certs, join_one, upload_certs};

/// Stage id.
pub const ID: &str = ids::JOIN_CONTROL_PLANE;
const JOIN_CONFIG: &str = "/etc/kubernetes/ecoboot/kubeadm-join.yaml";
const UPLOAD_CONFIG: &str = "/etc/kubernetes/ecoboot/kubeadm-upload-certs.yaml";
/// joined (it holds the cluster), half (leftovers of a join) or new.
fn state_check() -> String {
    format!(
        "if {}; then echo joined; elif [ -e /etc/kubernetes/pki/ca.crt ] || [ -e /etc/kubernetes/kubelet.conf ]; then echo half; else echo new; fi",
        crate::kubeadm::HOLDS_CLUSTER
    )
}

/// The `join-control-plane` stage.
pub struct JoinControlPlane;

/// Where one other control plane stands.
#[derive(Debug, Clone, PartialEq)]
pub enum CpState {
    /// Could not be reached at probe time.
    Unreachable(String),
    /// Never joined.
    New,
    /// Files of an earlier, unfinished join: reset, then join.
    Half,
}

/// The joins and member removals left to do.
pub struct CpPlan {
    join: Vec<(String, CpState)>,
    stale: Vec<Member>,
}

impl StagePlan for CpPlan {
    fn actions(&self) -> Vec<Action> {
        let stale = self.stale.iter().map(|m| {
            let what = format!(
                "etcd member {} ({}) answers for no control plane: member remove",
                m.hex(),
                m.peer_ip
            );
            Action::new(if m.name.is_empty() { "etcd" } else { &m.name }, what)
        });
        let joins = self.join.iter().map(|(node, state)| match state {
            CpState::Unreachable(tail) => Action::new(node, format!("unreachable: {tail}")),
            CpState::New => Action::new(node, "kubeadm join --control-plane (a new etcd member)"),
            CpState::Half => Action::new(
                node,
                "an unfinished join: kubeadm reset -f, then join --control-plane",
            ),
        });
        stale.chain(joins).collect()
    }
}

/// Members that no joined control plane answers for: not a configured control plane, or a
/// control plane that is about to (re)join, or one whose address is not its node's now.
fn stale(
    members: &[Member],
    joined: &BTreeSet<(String, String)>,
    joining: &BTreeSet<String>,
) -> Vec<Member> {
    (members.iter())
        .filter(|m| {
            joining.contains(&m.name)
                || !joined
                    .iter()
                    .any(|(name, ip)| *name == m.name && *ip == m.peer_ip)
        })
        .cloned()
        .collect()
}

/// What the stage sees: the control plane holding the cluster, the others' states, etcd.
async fn look(cx: &Ctx) -> Result<(Target, std::sync::Arc<Conn>, CpPlan)> {
    let (master, conn) = cx.control_plane(ID).await?;
    let (others, unreachable) = cx
        .connect_nodes(ID, |t| {
            t.role == Role::ControlPlane && t.node != master.node
        })
        .await?;
    let mut join: Vec<(String, CpState)> = (unreachable.into_iter())
        .map(|f| (f.node, CpState::Unreachable(f.tail)))
        .collect();
    let mut joined = BTreeSet::from([(master.node.clone(), facts(cx, &master).private_ip)]);
    let states = crate::ssh::run::each_node(others, "check join state", &state_check()).await;
    for (target, out) in states {
        match out?.stdout.trim() {
            "joined" => {
                joined.insert((target.node.clone(), facts(cx, &target).private_ip));
            }
            "half" => join.push((target.node, CpState::Half)),
            _ => join.push((target.node, CpState::New)),
        }
    }
    let members = match inspect(&conn).await?.initialised() {
        true => etcd::members(&conn).await?,
        false => Vec::new(),
    };
    // A control plane that could not be reached keeps its member: it may be only unreachable.
    let reachable_joining: BTreeSet<String> = (join.iter())
        .filter(|(_, s)| !matches!(s, CpState::Unreachable(_)))
        .map(|(n, _)| n.clone())
        .collect();
    let unreachable: BTreeSet<&str> = (join.iter())
        .filter(|(_, s)| matches!(s, CpState::Unreachable(_)))
        .map(|(n, _)| n.as_str())
        .collect();
    let stale = stale(&members, &joined, &reachable_joining)
        .into_iter()
        .filter(|m| !unreachable.contains(m.name.as_str()))
        .collect();
    join.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((master, conn, CpPlan { join, stale }))
}

#[async_trait]
impl Stage for JoinControlPlane {
    type Plan = CpPlan;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Join the other control planes (several control planes only)"
    }

    /// In a pipelined `up`: right after init-master, which waited for every control plane's
    /// preparation; the workers may still be preparing.
    fn after(&self) -> Option<&'static [&'static str]> {
        Some(&[
            ids::NETWORK,
            ids::IAM,
            ids::INSTANCES,
            ids::LOAD_BALANCER,
            ids::INIT_MASTER,
        ])
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<CpPlan>> {
        if !cx.config.is_ha() {
            return Ok(Found::done("one control plane: nothing to join"));
        }
        let (master, _, plan) = match look(cx).await {
            Ok(found) => found,
            Err(Error::StageFailed { message, .. }) => {
                let join = vec![(
                    cx.config.control_plane().name.value.clone(),
                    CpState::Unreachable(message),
                )];
                return Ok(Found::Todo(CpPlan {
                    join,
                    stale: Vec::new(),
                }));
            }
            Err(e) => return Err(e),
        };
        if plan.join.is_empty() && plan.stale.is_empty() {
            let n = cx.config.control_planes().count();
            return Ok(Found::done(format!(
                "{n} control planes joined ({} holds the cluster), {n} etcd members",
                master.node
            )));
        }
        Ok(Found::Todo(plan))
    }

    async fn apply(&self, cx: &Ctx, plan: CpPlan) -> Result<()> {
        require_endpoint(cx, ID)?;
        // What the probe could not reach is looked at again (as init-master does).
        let plan = match plan
            .join
            .iter()
            .any(|(_, s)| matches!(s, CpState::Unreachable(_)))
        {
            true => look(cx).await?.2,
            false => plan,
        };
        let (master, conn) = cx.control_plane(ID).await?;
        if !inspect(&conn).await?.initialised() {
            return Err(Error::Prerequisite {
                stage: ID,
                what: "an initialised control plane".into(),
                needs: ids::INIT_MASTER,
            });
        }
        for member in &plan.stale {
            etcd::remove(&conn, member).await?;
            let line = format!("removed etcd member {} ({})", member.hex(), member.peer_ip);
            let subject = if member.name.is_empty() {
                "etcd"
            } else {
                &member.name
            };
            cx.events.progress(ID, Some(subject), line);
        }
        if plan.join.is_empty() {
            return Ok(());
        }
        let (mut joiners, unreachable) = cx
            .connect_nodes(ID, |t| plan.join.iter().any(|(n, _)| *n == t.node))
            .await?;
        if let Some(f) = unreachable.into_iter().next() {
            return Err(Error::StageFailed {
                stage: ID.into(),
                message: format!("control plane {} is unreachable: {}", f.node, f.tail),
                help: "start the node (or let `ecoboot up` replace its instance) and rerun".into(),
            });
        }
        joiners.sort_by(|a, b| a.0.node.cmp(&b.0.node));
        let key = certificate_key()?;
        redact::register(&key);
        upload_certs(cx, &master, &conn, &key).await?;
        let encryption = encryption_config(&conn).await?;
        let token = join_token::create(&conn, ID).await?;
        let mut result = Ok(());
        for (target, joiner) in &joiners {
            result = join_one(cx, target, joiner, &token, &key, encryption.as_deref()).await;
            if result.is_err() {
                break;
            }
        }
        join_token::delete(cx, &conn, &token, ID).await;
        delete_uploaded_certs(cx).await;
        result
    }
}

pub(super) fn failed(node: &str, message: String) -> Error {
    Error::StageFailed {
        stage: ID.into(),
        message: format!("{node}: {message}"),
        help: "the control planes that joined stay; fix the cause and rerun `ecoboot stage join-control-plane`: only the missing ones join, with a new token and key".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, name: &str, ip: &str) -> Member {
        Member {
            id,
            name: name.into(),
            peer_ip: ip.into(),
        }
    }

    #[test]
    fn a_replaced_control_planes_old_member_and_strangers_are_stale() {
        let members = [
            m(1, "cp-1", "10.0.1.10"),
            m(2, "cp-2", "10.0.2.10"),
            m(3, "cp-3", "10.0.3.10"),
            m(4, "old", "10.0.1.99"),
        ];
        let joined: BTreeSet<(String, String)> = [("cp-2", "10.0.2.10"), ("cp-3", "10.0.3.10")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let joining = BTreeSet::from(["cp-1".to_string()]);
        let ids: Vec<u64> = stale(&members, &joined, &joining)
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, [1, 4]);
        let joined_all: BTreeSet<(String, String)> = members[..3]
            .iter()
            .map(|m| (m.name.clone(), m.peer_ip.clone()))
            .collect();
        assert!(stale(&members[..3], &joined_all, &BTreeSet::new()).is_empty());
    }
}
