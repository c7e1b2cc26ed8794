//! The nodes as EC2 reports them now, for every address ecoboot connects to or writes down.
//! The journal's copy may come from S3 (anyone who can write the bucket), so a node's instance
//! and addresses are taken from DescribeInstances by the cluster's tags each run; the journal
//! contributes only what EC2 cannot know (pinned AMI, launch tokens, the last address of a node
//! that left the config).

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Instance, InstanceStateName};

use super::{Aws, ec2_tag_value, tags};
use crate::error::Result;
use crate::nodes::{InstancesOut, NodeOut};

/// An instance's state (`pending` when EC2 names none).
pub fn state_name(i: &Instance) -> InstanceStateName {
    i.state()
        .and_then(|s| s.name())
        .cloned()
        .unwrap_or(InstanceStateName::Pending)
}

fn rank(i: &Instance) -> (u8, i64) {
    let state = match state_name(i) {
        InstanceStateName::Running => 3,
        InstanceStateName::Pending => 2,
        InstanceStateName::Stopping | InstanceStateName::Stopped => 1,
        _ => 0,
    };
    (state, i.launch_time().map_or(0, |t| t.secs()))
}

/// The node record of one instance as EC2 describes it (no SSH address: that is the config's
/// or the journal's).
pub fn node_out(i: &Instance) -> NodeOut {
    NodeOut {
        instance_id: i.instance_id().unwrap_or_default().into(),
        az: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .into(),
        private_ip: i.private_ip_address().unwrap_or_default().into(),
        public_ip: i.public_ip_address().unwrap_or_default().into(),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        state: state_name(i).as_str().into(),
        ssh: String::new(),
    }
}

/// The cluster's live instances by node (the `ecoboot.io/node` tag; with several, the running
/// and newest one), merged over `journal` for what only the journal knows.
pub async fn nodes(aws: &Aws, journal: Option<&InstancesOut>) -> Result<InstancesOut> {
    let listed = aws
        .instances(&["pending", "running", "stopping", "stopped"])
        .await?;
    let mut best: BTreeMap<String, &Instance> = BTreeMap::new();
    for i in &listed {
        let Some(node) = ec2_tag_value(i.tags(), tags::NODE) else {
            continue;
        };
        let better = best.get(node).is_none_or(|b| rank(i) > rank(b));
        if better {
            best.insert(node.to_string(), i);
        }
    }
    let mut out = journal.cloned().unwrap_or_default();
    let previous = std::mem::take(&mut out.nodes);
    for (node, i) in best {
        let mut n = node_out(i);
        // The last address of a node that left the config (prune resets it there).
        n.ssh = previous
            .get(&node)
            .map(|p| p.ssh.clone())
            .unwrap_or_default();
        out.nodes.insert(node, n);
    }
    Ok(out)
}
