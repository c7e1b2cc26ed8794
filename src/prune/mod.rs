//! Scale-in: nodes that left the config. An *orphan* is an instance tagged with the cluster
//! whose `ecoboot.io/node` is no longer configured, or a Node object without a configured node.
//! `plan` lists them, `up` reports them and changes nothing, `up --prune` (or `spec.prune`)
//! removes them one at a time: cordon, drain through the Eviction API, delete the Node,
//! `kubeadm reset -f` if the node answers, terminate the instance, forget its host key. Each
//! step is journaled per node ([`Record`]), so a crash anywhere resumes where it stopped.

mod run;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::api::{Api, ListParams};
use serde::{Deserialize, Serialize};

pub use run::prune;

use crate::aws::ec2_tag_value;
use crate::aws::tags::{NODE, ROLE};
use crate::engine::Ctx;
use crate::error::Result;
use crate::event::Action;
use crate::nodes::{INSTANCES, InstancesOut};

/// Event stage id, and the journal key of [`Record`].
pub const ID: &str = "prune";

/// Node label kubeadm sets on the control plane.
const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

/// How far the removal of one node has come (each step done once, in this order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Found, nothing done yet.
    #[default]
    Found,
    /// Cordoned and drained.
    Drained,
    /// Node object deleted.
    Deleted,
    /// `kubeadm reset -f` ran (or the node did not answer).
    Reset,
    /// Instance terminated.
    Terminated,
    /// Host key forgotten: gone for good.
    Done,
}

/// One node that left the config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    /// Node name (the instance's `ecoboot.io/node` tag, or the Node object's name).
    pub node: String,
    /// Its live instance, if any.
    pub instance_id: Option<String>,
    /// Whether a Node object of that name exists.
    pub node_object: bool,
    /// SSH address last used (`host:port` or an IP); empty: unknown.
    pub address: String,
    /// It is (or was) a control plane: pruned only with several left and `--yes`.
    pub control_plane: bool,
    /// It carries `role: infrastructure` (databases, queues, monitoring).
    pub infrastructure: bool,
    /// Progress of its removal.
    pub phase: Phase,
}

impl Orphan {
    /// What removing it does, for plans and reports.
    pub fn action(&self, pruning: bool) -> Action {
        let mut steps = Vec::new();
        if self.control_plane && self.phase < Phase::Drained {
            steps.push(
                "etcd member remove (never below quorum; several control planes and --yes only)",
            );
        }
        if self.node_object && self.phase < Phase::Drained {
            steps.push("drain");
        }
        if self.node_object && self.phase < Phase::Deleted {
            steps.push("delete Node");
        }
        if self.phase < Phase::Reset && !self.address.is_empty() {
            steps.push("kubeadm reset");
        }
        let terminate = match &self.instance_id {
            Some(id) if self.phase < Phase::Terminated => Some(format!("terminate {id}")),
            _ => None,
        };
        steps.extend(terminate.as_deref());
        steps.push("forget host key");
        let what = steps.join(", ");
        let kind = if self.infrastructure {
            "infrastructure node"
        } else {
            "node"
        };
        match pruning {
            true => Action::new(&self.node, format!("{what} ({kind} not in the config)")),
            false => Action::new(
                &self.node,
                format!("be removed by `up --prune` ({kind} not in the config: {what})"),
            ),
        }
    }
}

/// The journal entry: every node being (or last) pruned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Per node.
    pub nodes: BTreeMap<String, Orphan>,
}

/// Finds the orphans: tagged instances and Node objects not in the config, plus removals a
/// crash left unfinished (from the journal, which still knows their address and instance).
/// The Node objects are read only when the cluster has an admin.conf.
pub async fn find(cx: &Ctx) -> Result<Vec<Orphan>> {
    let configured = |n: &str| cx.config.nodes().any(|c| c.name.as_str() == n);
    let journal: Record = cx.state().output(ID).unwrap_or_default();
    let instances_out: Option<InstancesOut> = cx.state().output(INSTANCES);
    let mut found: BTreeMap<String, Orphan> = journal
        .nodes
        .into_iter()
        .filter(|(n, o)| o.phase < Phase::Done && !configured(n))
        .collect();
    let aws = cx.aws().await;
    for i in aws
        .instances(&["pending", "running", "stopping", "stopped"])
        .await?
    {
        let Some(node) = ec2_tag_value(i.tags(), NODE).filter(|n| !configured(n)) else {
            continue;
        };
        let o = found.entry(node.to_string()).or_insert_with(|| Orphan {
            node: node.to_string(),
            ..Default::default()
        });
        o.instance_id = i.instance_id().map(str::to_string);
        o.control_plane |= ec2_tag_value(i.tags(), ROLE) == Some("control-plane");
        if o.address.is_empty() {
            o.address = crate::nodes::ssh_address(&cx.config, node, instances_out.as_ref());
        }
    }
    if crate::nodes::admin_conf(&cx.state_dir()).exists() {
        let client = cx.kube(ID).await?;
        let nodes: Api<KubeNode> = Api::all(client);
        let list = nodes
            .list(&ListParams::default())
            .await
            .map_err(|e| crate::api::error("list", "nodes", e))?;
        for n in list.items {
            let name = n.metadata.name.clone().unwrap_or_default();
            if configured(&name) {
                continue;
            }
            let labels = n.metadata.labels.clone().unwrap_or_default();
            let o = found.entry(name.clone()).or_insert_with(|| Orphan {
                node: name,
                ..Default::default()
            });
            o.node_object = true;
            o.control_plane |= labels.contains_key(CONTROL_PLANE_LABEL);
            o.infrastructure |= labels.get("role").is_some_and(|r| r == "infrastructure");
        }
    }
    if found.values().any(|o| o.instance_id.is_some()) {
        mark_control_plane_by_address(cx, &mut found).await?;
    }
    Ok(found.into_values().collect())
}

/// The cluster's Elastic IP belongs to the control plane: an orphan that holds it (or is named
/// by its node tag) is a control plane even when its Node object is gone.
async fn mark_control_plane_by_address(
    cx: &Ctx,
    found: &mut BTreeMap<String, Orphan>,
) -> Result<()> {
    let aws = cx.aws().await;
    let out = aws
        .ec2
        .describe_addresses()
        .filters(aws.tags.filter())
        .send()
        .await
        .map_err(|e| crate::aws::aws_error("DescribeAddresses", "elastic IPs", e))?;
    for a in out.addresses() {
        let tagged = ec2_tag_value(a.tags(), NODE);
        for o in found.values_mut() {
            let holds = o.instance_id.is_some() && a.instance_id() == o.instance_id.as_deref();
            if holds || tagged == Some(o.node.as_str()) {
                o.control_plane = true;
            }
        }
    }
    Ok(())
}
