//! Stage `instances`: key pair, Ubuntu AMI (pinned on first use) and one EC2 instance per node.
//! Instances are found by tags; launches carry a deterministic `ClientToken`, journaled before
//! the call, so a crash between the call and the state write cannot create a second instance.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::InstanceStateName;

mod discover;
mod eip;
mod guard;
mod launch;
pub mod quota;
mod settings;

use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::stages::shared::ids;
use crate::stages::shared::key_pair::{self, KeyState};
use crate::stages::shared::outputs::{IamOut, NetworkOut};
use settings::{metadata_drift, require_imdsv2, switch_profile, wears_profile};

/// Stage id (also the journal key of [`InstancesOut`]).
pub const ID: &str = ids::INSTANCES;
/// How many spent launch tokens (instances terminated out of band) one node may show.
const MAX_GENERATIONS: u32 = 64;
/// How long `RunInstances` is retried while IAM has not propagated the new instance profile.
pub(super) const PROFILE_PROPAGATION: Duration = Duration::from_secs(120);

pub use crate::nodes::{InstancesOut, NodeOut};

/// The `instances` stage.
#[derive(Default)]
pub struct Instances;

/// What the instances probe hands to apply: what exists, and the actions it implies.
pub struct InstancesPlan {
    actions: Vec<Action>,
    existing: Existing,
    eip: Option<Eip>,
}

impl StagePlan for InstancesPlan {
    fn actions(&self) -> Vec<Action> {
        self.actions.clone()
    }
}

use discover::{Existing, discover, kubernetes_tags_missing, needs, node_out, plan, state_name};
use eip::Eip;
use launch::{Launch, client_token, journal_token, launch_failures, wait_running};

#[async_trait]
impl Stage for Instances {
    type Plan = InstancesPlan;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Import key pair and launch EC2 instances"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<InstancesPlan>> {
        let aws = cx.aws().await;
        let found = discover(cx, aws).await?;
        let net: Option<NetworkOut> = cx.state().output(ids::NETWORK);
        let (mut actions, drift) = plan(cx, &found, net.as_ref())?;
        let cp = cx.config.control_plane().name.value.clone();
        let eip = eip::find(aws, &cp).await?;
        let cp_instance = found
            .nodes
            .get(&cp)
            .and_then(|list| list.first())
            .and_then(|i| i.instance_id());
        actions.extend(eip::actions(eip.as_ref(), cp_instance, &cp));
        for note in &drift {
            cx.events.progress(ID, None, format!("drift: {note}"));
        }
        if !actions.is_empty() {
            return Ok(Found::Todo(InstancesPlan {
                actions,
                existing: found,
                eip,
            }));
        }
        let mut out: InstancesOut = cx.state().output(ID).unwrap_or_default();
        out.ami_id = found.ami.clone().unwrap_or(out.ami_id);
        out.nodes = found
            .nodes
            .iter()
            .map(|(n, list)| {
                let mut rec = node_out(&list[0]);
                rec.ssh = match cx.config.nodes().find(|c| c.name.as_str() == n) {
                    Some(c) => c
                        .address
                        .as_ref()
                        .map(|a| a.value.clone())
                        .unwrap_or_default(),
                    None => (out.nodes.get(n))
                        .map(|p| p.ssh.clone())
                        .unwrap_or_default(),
                };
                (n.clone(), rec)
            })
            .collect();
        // The control plane is reached at its Elastic IP (SAN, kubeconfig, SSH).
        if let (Some(eip), Some(node)) = (&eip, out.nodes.get_mut(&cp)) {
            node.public_ip = eip.public_ip.clone();
        }
        let mut summary = format!("{} instances running, AMI {}", out.nodes.len(), out.ami_id);
        if let Some(eip) = &eip {
            summary.push_str(&format!(", control plane at Elastic IP {}", eip.public_ip));
        }
        if !drift.is_empty() {
            summary.push_str(&format!("; drift: {}", drift.join("; ")));
        }
        Ok(Found::Done {
            summary,
            commit: Some(Box::new(move |cx: &Ctx| {
                if cx.writable() {
                    forget_replaced(cx, &out)?;
                }
                cx.update_state(|s| s.set_output(ID, &out))?;
                if cx.writable() {
                    crate::inventory::write(&cx.config, &cx.state_dir(), &out)?;
                }
                Ok(())
            })),
        })
    }

    async fn apply(&self, cx: &Ctx, plan: InstancesPlan) -> Result<()> {
        let aws = cx.aws().await;
        let net: NetworkOut = needs(cx, ids::NETWORK, "the subnets and security group")?;
        let iam: IamOut = needs(cx, ids::IAM, "the node instance profile")?;
        let found = plan.existing;
        if found.key == KeyState::Missing {
            key_pair::import(cx, aws, ID).await?;
        }
        let ami = crate::stages::shared::ami::for_launch(cx, aws, found.ami.clone(), ID)
            .await?
            .id;
        cx.update_state(|s| {
            let mut out: InstancesOut = s.output(ID).unwrap_or_default();
            out.ami_id = ami.clone();
            s.set_output(ID, &out);
        })?;
        fix_in_place(cx, aws, &found, &iam).await?;
        let mut launches = Vec::new();
        for node in cx.config.nodes() {
            if found.nodes.contains_key(node.name.as_str()) {
                continue;
            }
            let subnet =
                net.subnets
                    .get(node.subnet.as_str())
                    .ok_or_else(|| Error::Prerequisite {
                        stage: ID,
                        what: format!("subnet `{}`", node.subnet.value),
                        needs: ids::NETWORK,
                    })?;
            launches.push(Launch {
                aws: aws.clone(),
                node: node.clone(),
                ami: ami.clone(),
                subnet_id: subnet.id.clone(),
                sg: net.security_group_id.clone(),
                profile: iam.profile_for(node).to_string(),
                key: cx.config.cluster.spec.aws.key_pair.name.value.clone(),
            });
        }
        // A pipelined `up` starts on a node as soon as it runs: those already running now.
        let cp = cx.config.control_plane().name.value.clone();
        for (node, list) in &found.nodes {
            if let [one] = list.as_slice()
                && state_name(one) == InstanceStateName::Running
                && *node != cp
            {
                publish(cx, node, one)?;
            }
        }
        let results = crate::fanout::each(launches, 0, |l| launch_node(cx, l)).await;
        let (launched, failures): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
        let launched: Vec<String> = launched.into_iter().filter_map(Result::ok).collect();
        let running = |i: &aws_sdk_ec2::types::Instance| match crate::aws::ec2_tag_value(
            i.tags(),
            crate::aws::tags::NODE,
        ) {
            Some(node) if node != cp => publish(cx, node, i),
            _ => Ok(()),
        };
        wait_running(cx, aws, &launched, &running).await?;
        let failures: Vec<Error> = failures.into_iter().filter_map(Result::err).collect();
        launch_failures(failures)?;
        eip::ensure(cx, aws, plan.eip).await?;
        // The control plane last: its address is the Elastic IP, associated just now.
        if cx.board.pending(ID) {
            for i in aws.instances(&["running"]).await? {
                if crate::aws::ec2_tag_value(i.tags(), crate::aws::tags::NODE) == Some(cp.as_str())
                {
                    publish(cx, &cp, &i)?;
                }
            }
        }
        Ok(())
    }
}

/// In a pipelined `up`, records a running node's instance and address in the journal and marks
/// it on the board, so the stages waiting for it (prepare-nodes) start on it now.
fn publish(cx: &Ctx, node: &str, instance: &aws_sdk_ec2::types::Instance) -> Result<()> {
    if !cx.board.pending(ID) {
        return Ok(());
    }
    let mut rec = node_out(instance);
    if let Some(c) = cx.config.nodes().find(|c| c.name.as_str() == node) {
        rec.ssh = c
            .address
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
    }
    let mut now: InstancesOut = cx.state().output(ID).unwrap_or_default();
    if rec.public_ip.is_empty()
        && let Some(old) = now.nodes.get(node)
        && old.instance_id == rec.instance_id
    {
        rec.public_ip = old.public_ip.clone();
    }
    now.nodes.insert(node.to_string(), rec);
    if cx.writable() {
        // A replaced instance's old host key goes now: the node is contacted next.
        forget_replaced(cx, &now)?;
    }
    cx.update_state(|s| s.set_output(ID, &now))?;
    cx.board.mark(ID, node);
    Ok(())
}

/// Fixes running instances in place: the instance profile their role calls for, and IMDSv2.
async fn fix_in_place(
    cx: &Ctx,
    aws: &crate::aws::Aws,
    found: &Existing,
    iam: &IamOut,
) -> Result<()> {
    for node in cx.config.nodes() {
        let Some([one]) = found.nodes.get(node.name.as_str()).map(Vec::as_slice) else {
            continue;
        };
        let id = one.instance_id().unwrap_or_default();
        let want = iam.profile_for(node);
        if !wears_profile(&found.associated, one, want) {
            switch_profile(aws, id, want).await?;
            let what = format!("{id}: instance profile {want}");
            cx.events.progress(ID, Some(node.name.as_str()), what);
        }
        let untagged = kubernetes_tags_missing(cx, node, one);
        if !untagged.is_empty() {
            aws.add_tags(&[id], &untagged).await?;
            let what = format!("{id}: tagged for Kubernetes");
            cx.events.progress(ID, Some(node.name.as_str()), what);
        }
        if metadata_drift(one, node) {
            require_imdsv2(aws, id, node).await?;
            let what = format!("{id}: IMDSv2 required");
            cx.events.progress(ID, Some(node.name.as_str()), what);
        }
    }
    Ok(())
}

/// Launches one node's instance with its journaled token. AWS answers a spent token with the
/// instance it launched then, terminated out of band since: try the next generation, as often
/// as AWS reports spent ones (a lost journal starts again at 0, so the generation is learnt
/// from AWS, never reused). Returns the new instance id.
async fn launch_node(cx: &Ctx, launch: Launch) -> Result<String> {
    let cluster = cx.config.name().to_string();
    let name = launch.node.name.value.clone();
    let mut generation = cx
        .state()
        .output::<InstancesOut>(ID)
        .and_then(|o| o.generations.get(&name).copied())
        .unwrap_or(0);
    let token_for = |generation: u32| {
        client_token(
            &cluster,
            &launch.node,
            &launch.ami,
            &launch.subnet_id,
            generation,
        )
    };
    let token = token_for(generation);
    journal_token(cx, &name, &token, generation)?;
    let what = format!(
        "launching {} (token {})",
        launch.node.instance_type,
        &token[..12]
    );
    cx.events.progress(ID, Some(&name), what);
    let mut instance = launch.run(&token).await?;
    while matches!(
        state_name(&instance),
        InstanceStateName::Terminated | InstanceStateName::ShuttingDown
    ) {
        generation += 1;
        if generation > MAX_GENERATIONS {
            return Err(Error::StageFailed {
                stage: ID.into(),
                message: format!("{name}: {MAX_GENERATIONS} launch tokens in a row answered with terminated instances"),
                help: "something keeps terminating this node's instances (an ASG, a cleanup job?): stop it, then rerun".into(),
            });
        }
        let token = token_for(generation);
        journal_token(cx, &name, &token, generation)?;
        let what = format!("a previous instance was terminated; launching generation {generation}");
        cx.events.progress(ID, Some(&name), what);
        instance = launch.run(&token).await?;
    }
    let id = instance.instance_id().unwrap_or_default().to_string();
    cx.events
        .progress(ID, Some(&name), format!("launched {id}"));
    Ok(id)
}

/// Forgets the pinned host key of every node whose recorded instance was replaced (another
/// instance id now): ecoboot launched the new one, so the old key is known to be stale, and the
/// next contact verifies the new instance by the configured policy.
fn forget_replaced(cx: &Ctx, now: &InstancesOut) -> Result<()> {
    let Some(before) = cx.state().output::<InstancesOut>(ID) else {
        return Ok(());
    };
    let file = crate::nodes::known_hosts(&cx.state_dir());
    let port = cx.config.cluster.spec.ssh.port;
    for (node, old) in &before.nodes {
        let replaced = now
            .nodes
            .get(node)
            .is_some_and(|new| !old.instance_id.is_empty() && new.instance_id != old.instance_id);
        if !replaced {
            continue;
        }
        let mut forgot = false;
        for out in [&before, now] {
            let address = crate::nodes::ssh_address(&cx.config, node, Some(out));
            let (host, port) = crate::nodes::host_port(&address, port);
            forgot |= crate::ssh::hostkeys::forget(&file, &host, port)?;
        }
        if forgot {
            cx.events.progress(
                ID,
                Some(node),
                format!(
                    "instance replaced ({} → {}): its old host key is forgotten",
                    old.instance_id, now.nodes[node].instance_id
                ),
            );
        }
    }
    Ok(())
}
