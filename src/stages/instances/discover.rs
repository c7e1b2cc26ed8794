//! What the `instances` probe finds (key pair, AMI, instances by node) and the actions it
//! implies, drift included.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Instance, InstanceStateName};
use serde::Deserialize;

use super::settings::{
    current_association, hop_limit, metadata_drift, profile_arn_is, wears_profile,
};
use crate::aws::tags::{NODE, ROLE};
use crate::aws::{Aws, ec2_tag_value};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::event::Action;
use crate::stages::shared::ids;
use crate::stages::shared::outputs::{IamOut, NetworkOut};

use super::{ID, InstancesOut};
use crate::stages::shared::key_pair::{self, KeyState};

#[derive(Clone)]
pub(super) struct Existing {
    pub(super) key: KeyState,
    pub(super) ami: Option<String>,
    pub(super) nodes: BTreeMap<String, Vec<Instance>>,
    /// Instance id → the instance profile ARN of its current association, for the instances
    /// whose DescribeInstances view disagrees with the config (an association being replaced
    /// shows there only once it completes).
    pub(super) associated: BTreeMap<String, String>,
}

pub(super) fn needs<T: for<'de> Deserialize<'de>>(
    cx: &Ctx,
    stage: &'static str,
    what: &str,
) -> Result<T> {
    cx.state().output(stage).ok_or_else(|| Error::Prerequisite {
        stage: ID,
        what: what.into(),
        needs: stage,
    })
}

// Long by design: one DescribeX per thing the plan compares, read once, in one place.
pub(super) async fn discover(cx: &Ctx, aws: &Aws) -> Result<Existing> {
    let config = &cx.config;
    let key = key_pair::state(aws, config).await?;
    let mut nodes: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
    for i in aws
        .instances(&["pending", "running", "stopping", "stopped"])
        .await?
    {
        if let Some(node) = ec2_tag_value(i.tags(), NODE) {
            nodes.entry(node.to_string()).or_default().push(i.clone());
        }
    }
    let pinned = cx
        .state()
        .output::<InstancesOut>(ID)
        .map(|o| o.ami_id)
        .filter(|a| !a.is_empty());
    let ami = pinned.or_else(|| {
        nodes
            .values()
            .flatten()
            .find_map(|i| i.image_id().map(str::to_string))
    });
    let mut associated = BTreeMap::new();
    let iam: Option<IamOut> = cx.state().output(ids::IAM);
    if let Some(iam) = iam {
        for node in config.nodes() {
            let Some([one]) = nodes.get(node.name.as_str()).map(Vec::as_slice) else {
                continue;
            };
            let id = one.instance_id().unwrap_or_default();
            if !profile_arn_is(
                one.iam_instance_profile().and_then(|p| p.arn()),
                iam.profile_for(node),
            ) && let Some((_, arn)) = current_association(aws, id).await?
            {
                associated.insert(id.to_string(), arn);
            }
        }
    }
    Ok(Existing {
        key,
        ami,
        nodes,
        associated,
    })
}

pub(super) use crate::aws::live::{node_out, state_name};

/// Actions left, plus drift notes (reported, never acted on).
/// The Kubernetes integration tags and the role tag `instance` of `node` lacks.
pub(super) fn kubernetes_tags_missing(
    cx: &Ctx,
    node: &crate::config::Node,
    instance: &Instance,
) -> Vec<(String, String)> {
    let mut missing = crate::aws::Tags::for_cluster(&cx.config)
        .kubernetes_missing(&aws_sdk_ec2::types::ResourceType::Instance, instance.tags());
    if ec2_tag_value(instance.tags(), ROLE).is_none() {
        let role = node.role.unwrap_or_default().as_str();
        missing.push((ROLE.to_string(), role.to_string()));
    }
    missing
}

// Long by design: per node, one check per property (state, profile, IMDS, tags, drift).
pub(super) fn plan(
    cx: &Ctx,
    found: &Existing,
    net: Option<&NetworkOut>,
) -> Result<(Vec<Action>, Vec<String>)> {
    let iam: Option<IamOut> = cx.state().output(ids::IAM);
    let config = &cx.config;
    let mut todo = Vec::new();
    let mut drift = Vec::new();
    if found.key == KeyState::Missing {
        todo.push(Action::new(
            format!("key-pair/{}", config.cluster.spec.aws.key_pair.name.value),
            "import the public key",
        ));
    }
    for node in config.nodes() {
        let name = node.name.as_str();
        match found.nodes.get(name).map(Vec::as_slice).unwrap_or_default() {
            [] => todo.push(Action::new(
                name,
                format!(
                    "launch {} ({} GiB gp3, encrypted) in {}",
                    node.instance_type, node.disk_gb, node.subnet.value
                ),
            )),
            [one] => {
                if state_name(one) != InstanceStateName::Running {
                    todo.push(Action::new(
                        name,
                        format!(
                            "wait until {} is running (now {})",
                            one.instance_id().unwrap_or_default(),
                            state_name(one).as_str()
                        ),
                    ));
                }
                if let Some(want) = iam.as_ref().map(|i| i.profile_for(node))
                    && !wears_profile(&found.associated, one, want)
                {
                    todo.push(Action::new(
                        name,
                        format!(
                            "switch {} to instance profile {want} (in place)",
                            one.instance_id().unwrap_or_default()
                        ),
                    ));
                }
                if metadata_drift(one, node) {
                    todo.push(Action::new(
                        name,
                        format!(
                            "require IMDSv2 with hop limit {} on {} (in place, no relaunch)",
                            hop_limit(node),
                            one.instance_id().unwrap_or_default()
                        ),
                    ));
                }
                let untagged = kubernetes_tags_missing(cx, node, one);
                if !untagged.is_empty() {
                    let pairs: Vec<String> =
                        untagged.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    todo.push(Action::new(
                        name,
                        format!(
                            "add tags {} to {}",
                            pairs.join(", "),
                            one.instance_id().unwrap_or_default()
                        ),
                    ));
                }
                let running_type = one.instance_type().map(|t| t.as_str()).unwrap_or_default();
                if running_type != node.instance_type.as_str() {
                    drift.push(format!(
                        "{name} runs {running_type}, config says {} (not replaced)",
                        node.instance_type
                    ));
                }
                let subnet = net
                    .and_then(|n| n.subnets.get(node.subnet.as_str()))
                    .map(|s| s.id.as_str());
                if subnet.is_some() && one.subnet_id() != subnet {
                    drift.push(format!(
                        "{name} is in {}, config says subnet {} (not replaced)",
                        one.subnet_id().unwrap_or_default(),
                        node.subnet.value
                    ));
                }
            }
            many => {
                let ids: Vec<&str> = many.iter().filter_map(|i| i.instance_id()).collect();
                return Err(Error::StageFailed {
                    stage: ID.into(),
                    message: format!("node `{name}` has {} instances: {}", many.len(), ids.join(", ")),
                    help: "ecoboot never picks one: terminate the extra instance(s) and rerun `ecoboot up`".into(),
                });
            }
        }
    }
    Ok((todo, drift))
}
