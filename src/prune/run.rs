//! `up --prune`: removes the orphans one at a time, each step journaled before the next, so a
//! crash resumes at the step in progress (every step is also safe to repeat).

use std::time::Duration;

use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::api::{Api, DeleteParams};

use super::{ID, Orphan, Phase, Record};
use crate::config::Role;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::nodes::{INSTANCES, InstancesOut, host_port, known_hosts};
use crate::ssh::Target;
use crate::upgrade::drain::{self, Op};

/// How long `kubeadm reset -f` may take on a node.
const RESET_TIMEOUT: Duration = Duration::from_secs(300);
/// How long to try reaching a node for its reset before going on without it.
const REACH_TIMEOUT: Duration = Duration::from_secs(60);

const OP: Op = Op {
    stage: ID,
    rerun: "ecoboot up --prune",
};

/// Removes every orphan. A control plane is removed only when the config still has several
/// (3 or 5 remain: the load balancer stays the endpoint) and `control_planes` (`--yes`) allows
/// it; its etcd member goes first, and never when the members left would lose their quorum.
pub async fn prune(
    cx: &Ctx,
    orphans: Vec<Orphan>,
    drain_timeout: Duration,
    control_planes: bool,
) -> Result<()> {
    if let Some(cp) = orphans.iter().find(|o| o.control_plane) {
        if !cx.config.is_ha() {
            return Err(Error::Usage(format!(
                "node `{}` is a control plane that is no longer in the config, and the config has one control plane: ecoboot never prunes the last control planes down to one (the cluster's endpoint is their load balancer); put it back in spec.nodes",
                cp.node
            )));
        }
        if !control_planes {
            return Err(Error::Usage(format!(
                "node `{}` is a control plane (an etcd member) that is no longer in the config: pass --yes to remove it (its etcd member first)",
                cp.node
            )));
        }
    }
    for orphan in orphans {
        if orphan.control_plane && orphan.phase < Phase::Drained {
            leave_etcd(cx, &orphan.node).await?;
        }
        remove(cx, orphan, drain_timeout).await?;
    }
    Ok(())
}

/// Removes `node`'s etcd member (asked of a configured control plane), unless the members left
/// would not have a healthy majority.
async fn leave_etcd(cx: &Ctx, node: &str) -> Result<()> {
    let (_, conn) = cx.control_plane(ID).await?;
    let members = crate::etcd::members(&conn).await?;
    let Some(member) = members.iter().find(|m| m.name == node) else {
        return Ok(());
    };
    let health = crate::etcd::health(&conn).await?;
    let healthy = |ip: &str| {
        health
            .iter()
            .any(|h| h.health && h.endpoint.contains(&format!("//{ip}:")))
    };
    let left = members.len() - 1;
    let healthy_left = (members.iter())
        .filter(|m| m.id != member.id && healthy(&m.peer_ip))
        .count();
    if healthy_left <= left / 2 {
        return Err(Error::StageFailed {
            stage: ID.into(),
            message: format!(
                "removing {node}'s etcd member would leave {healthy_left} healthy of {left}: etcd would lose its quorum; nothing was removed"
            ),
            help: "bring the unhealthy control planes back first (`ecoboot validate` names them), then rerun `ecoboot up --prune --yes`".into(),
        });
    }
    crate::etcd::remove(&conn, member).await?;
    let line = format!("etcd member {} removed ({left} left)", member.hex());
    cx.events.progress(ID, Some(node), line);
    Ok(())
}

fn journal(cx: &Ctx, orphan: &Orphan) -> Result<()> {
    cx.update_state(|s| {
        let mut record: Record = s.output(ID).unwrap_or_default();
        record.nodes.insert(orphan.node.clone(), orphan.clone());
        s.set_output(ID, &record);
    })
}

async fn step(cx: &Ctx, orphan: &mut Orphan, phase: Phase, message: String) -> Result<()> {
    orphan.phase = phase;
    journal(cx, orphan)?;
    cx.events.progress(ID, Some(&orphan.node), message);
    Ok(())
}

// Long by design: the removal's steps in their order, each journaled.
async fn remove(cx: &Ctx, mut orphan: Orphan, drain_timeout: Duration) -> Result<()> {
    journal(cx, &orphan)?;
    let name = orphan.node.clone();
    if orphan.phase < Phase::Drained {
        let message = match orphan.node_object {
            true => {
                let client = cx.kube(ID).await?;
                drain::cordon(&client, &name, Some(ID)).await?;
                let say = |m: String| cx.events.progress(ID, Some(&name), m);
                let evicted = drain::drain(&client, &name, drain_timeout, OP, &say).await?;
                format!("cordoned and drained ({evicted} pod(s) evicted)")
            }
            false => "no Node object: nothing to drain".into(),
        };
        step(cx, &mut orphan, Phase::Drained, message).await?;
    }
    if orphan.phase < Phase::Deleted {
        if orphan.node_object {
            let nodes: Api<KubeNode> = Api::all(cx.kube(ID).await?);
            match nodes.delete(&name, &DeleteParams::default()).await {
                Ok(_) => cx.count("api.deleted", 1),
                Err(kube::Error::Api(r)) if r.code == 404 => {}
                Err(e) => return Err(crate::api::error("delete", &format!("node {name}"), e)),
            }
        }
        step(cx, &mut orphan, Phase::Deleted, "Node deleted".into()).await?;
    }
    if orphan.phase < Phase::Reset {
        let message = reset(cx, &orphan).await?;
        step(cx, &mut orphan, Phase::Reset, message).await?;
    }
    if orphan.phase < Phase::Terminated {
        let message = match &orphan.instance_id {
            Some(id) => terminate(cx, id, &orphan.node).await?,
            None => "no instance".into(),
        };
        step(cx, &mut orphan, Phase::Terminated, message).await?;
    }
    forget(cx, &orphan)?;
    step(cx, &mut orphan, Phase::Done, "removed".into()).await
}

/// `kubeadm reset -f` when the node answers; an unreachable node is reported, not waited for.
async fn reset(cx: &Ctx, orphan: &Orphan) -> Result<String> {
    if orphan.address.is_empty() {
        return Ok("address unknown: kubeadm reset skipped".into());
    }
    let (host, port) = host_port(&orphan.address, cx.config.cluster.spec.ssh.port);
    let target = Target {
        node: orphan.node.clone(),
        role: Role::Worker,
        host,
        port,
        instance_id: orphan.instance_id.clone(),
    };
    let connected = tokio::time::timeout(REACH_TIMEOUT, cx.connect(&[target])).await;
    let conn = match connected {
        Ok(mut v) => match v.pop().map(|(_, r)| r) {
            Some(Ok(conn)) => conn,
            Some(Err(e)) => {
                let first = e.lines().next().unwrap_or_default().to_string();
                return Ok(format!("unreachable ({first}): kubeadm reset skipped"));
            }
            None => return Ok("unreachable: kubeadm reset skipped".into()),
        },
        Err(_) => return Ok("unreachable: kubeadm reset skipped".into()),
    };
    let out = conn
        .run("kubeadm reset", "kubeadm reset -f", RESET_TIMEOUT, true)
        .await?;
    if !out.ok() {
        return Err(Error::StageFailed {
            stage: ID.into(),
            message: format!("{}: `kubeadm reset -f` failed: {}", orphan.node, out.tail(5)),
            help: "see the node log in <state-dir>/<cluster>/logs/nodes/; rerun `ecoboot up --prune` to continue".into(),
        });
    }
    Ok("kubeadm reset -f".into())
}

/// Terminates `id` only when EC2 says it is `node` of this cluster (the id may come from a
/// journal someone else wrote).
async fn terminate(cx: &Ctx, id: &str, node: &str) -> Result<String> {
    let aws = cx.aws().await;
    match aws.ownership(id, node).await? {
        crate::aws::Ownership::Ours => {}
        crate::aws::Ownership::Gone => return Ok(format!("{id} already gone")),
        crate::aws::Ownership::Foreign(why) => {
            return Err(Error::StageFailed {
                stage: ID.into(),
                message: format!("{node}: refused to terminate {id}: {why}"),
                help: "ecoboot destroys only instances tagged with this cluster and the node's name; the journal named an instance that is not ours (was the state bucket written by someone else?). Nothing was terminated".into(),
            });
        }
    }
    aws.pace().await;
    match aws.ec2.terminate_instances().instance_ids(id).send().await {
        Ok(_) => Ok(format!("terminated {id}")),
        Err(e) if crate::aws::code_of(&e).as_deref() == Some("InvalidInstanceID.NotFound") => {
            Ok(format!("{id} already gone"))
        }
        Err(e) => Err(crate::aws::aws_error("TerminateInstances", id, e)),
    }
}

/// Forgets the node's host key, and starts a new launch generation so that a node of the same
/// name added back later is a fresh instance (its old ClientToken is spent).
fn forget(cx: &Ctx, orphan: &Orphan) -> Result<()> {
    if !orphan.address.is_empty() {
        let (host, port) = host_port(&orphan.address, cx.config.cluster.spec.ssh.port);
        crate::ssh::hostkeys::forget(&known_hosts(&cx.state_dir()), &host, port)?;
    }
    cx.update_state(|s| {
        let mut out: InstancesOut = s.output(INSTANCES).unwrap_or_default();
        if orphan.instance_id.is_some() {
            *out.generations.entry(orphan.node.clone()).or_default() += 1;
        }
        out.tokens.remove(&orphan.node);
        out.nodes.remove(&orphan.node);
        s.set_output(INSTANCES, &out);
    })
}
