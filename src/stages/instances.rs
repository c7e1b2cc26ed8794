//! Stage `instances`: key pair, Ubuntu AMI (pinned on first use) and one EC2 instance per node.
//! Instances are found by tags; launches carry a deterministic `ClientToken`, journaled before
//! the call, so a crash between the call and the state write cannot create a second instance.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, IamInstanceProfileSpecification, Instance,
    InstanceStateName, InstanceType, ResourceType, VolumeType,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::iam::{self, IamOut};
use super::instance_settings::{
    current_association, hop_limit, metadata_drift, metadata_options, profile_arn_is,
    require_imdsv2, switch_profile, wears_profile,
};
use super::network::{self, NetworkOut};
use crate::aws::tags::NODE;
use crate::aws::{Aws, aws_error, code_of, ec2_filter, ec2_tag_value};
use crate::config::{Config, Node};
use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::retry::{Backoff, Try, retry};

/// Stage id (also the journal key of [`InstancesOut`]).
pub const ID: &str = crate::nodes::INSTANCES;
/// How long `RunInstances` is retried while IAM has not propagated the new instance profile.
const PROFILE_PROPAGATION: Duration = Duration::from_secs(120);
/// How long to wait for launched instances to be running.
const RUNNING_TIMEOUT: Duration = Duration::from_secs(600);
const KEY_TAG: &str = "ecoboot.io/public-key-sha256";

pub use crate::nodes::{InstancesOut, NodeOut};

/// The `instances` stage.
#[derive(Default)]
pub struct Instances;

/// What the instances probe hands to apply: what exists, and the actions it implies.
pub struct InstancesPlan {
    actions: Vec<Action>,
    existing: Existing,
}

impl StagePlan for InstancesPlan {
    fn actions(&self) -> Vec<Action> {
        self.actions.clone()
    }
}

#[derive(Clone)]
struct Existing {
    key: KeyState,
    ami: Option<String>,
    nodes: BTreeMap<String, Vec<Instance>>,
    /// Instance id → the instance profile ARN of its current association, for the instances
    /// whose DescribeInstances view disagrees with the config (an association being replaced
    /// shows there only once it completes).
    associated: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq)]
enum KeyState {
    Missing,
    Ours,
}

fn needs<T: for<'de> Deserialize<'de>>(cx: &Ctx, stage: &'static str, what: &str) -> Result<T> {
    cx.state().output(stage).ok_or_else(|| Error::Prerequisite {
        stage: ID,
        what: what.into(),
        needs: stage,
    })
}

fn public_key(config: &Config) -> Result<(String, String)> {
    let path = config.resolve_path(&config.cluster.spec.aws.key_pair.public_key_path);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    let material: String = text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let digest = hex::encode(Sha256::digest(material.as_bytes()));
    Ok((material, digest))
}

async fn discover(cx: &Ctx, aws: &Aws) -> Result<Existing> {
    let config = &cx.config;
    let key_name = &config.cluster.spec.aws.key_pair.name.value;
    let key = match aws
        .ec2
        .describe_key_pairs()
        .key_names(key_name)
        .include_public_key(true)
        .send()
        .await
    {
        Ok(out) => {
            let pair = out.key_pairs().first();
            let (_, digest) = public_key(config)?;
            let material = pair
                .and_then(|p| p.public_key())
                .map(|k| k.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
            let tagged = pair.and_then(|p| ec2_tag_value(p.tags(), KEY_TAG));
            let same = match (material, tagged) {
                (Some(m), _) => hex::encode(Sha256::digest(m.as_bytes())) == digest,
                (None, Some(t)) => t == digest,
                (None, None) => false,
            };
            if !same {
                return Err(Error::Aws {
                    operation: "DescribeKeyPairs".into(),
                    target: format!("key-pair/{key_name}"),
                    code: "InvalidKeyPair.Duplicate".into(),
                    message: format!("key pair `{key_name}` exists with a different public key than {}", config.cluster.spec.aws.key_pair.public_key_path.value),
                    help: "ecoboot never overwrites a key pair: point spec.aws.keyPair.publicKeyPath at the matching key, or pick another keyPair.name".into(),
                });
            }
            KeyState::Ours
        }
        Err(e) if code_of(&e).as_deref() == Some("InvalidKeyPair.NotFound") => KeyState::Missing,
        Err(e) => return Err(aws_error("DescribeKeyPairs", key_name, e)),
    };
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
    let iam: Option<IamOut> = cx.state().output(iam::ID);
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

fn state_name(i: &Instance) -> InstanceStateName {
    i.state()
        .and_then(|s| s.name())
        .cloned()
        .unwrap_or(InstanceStateName::Pending)
}

fn node_out(i: &Instance) -> NodeOut {
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
    }
}

/// Actions left, plus drift notes (reported, never acted on).
fn plan(
    cx: &Ctx,
    found: &Existing,
    net: Option<&NetworkOut>,
) -> Result<(Vec<Action>, Vec<String>)> {
    let iam: Option<IamOut> = cx.state().output(iam::ID);
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

/// Records a launch token (and its generation) in the journal before the launch call.
fn journal_token(cx: &Ctx, node: &str, token: &str, generation: u32) -> Result<()> {
    cx.update_state(|s| {
        let mut out: InstancesOut = s.output(ID).unwrap_or_default();
        out.generations.insert(node.to_string(), generation);
        out.tokens.insert(node.to_string(), token.to_string());
        s.set_output(ID, &out);
    })
}

fn user_data(node: &Node) -> String {
    let name = node.name.as_str();
    let script = format!(
        "#!/bin/bash\n# written by ecoboot\nhostnamectl set-hostname {name}\ngrep -q ' {name}$' /etc/hosts || echo '127.0.0.1 {name}' >> /etc/hosts\n"
    );
    aws_smithy_types::base64::encode(script)
}

/// The launch token: same cluster, node, spec and generation → same token.
pub fn client_token(
    cluster: &str,
    node: &Node,
    ami: &str,
    subnet_id: &str,
    generation: u32,
) -> String {
    let spec = format!(
        "{cluster}/{}/{}/{}/{}/{ami}/{subnet_id}/{}/{generation}",
        node.name.value,
        node.instance_type,
        node.disk_gb,
        node.subnet.value,
        user_data(node)
    );
    hex::encode(Sha256::digest(spec.as_bytes()))
}

async fn newest_ami(aws: &Aws, config: &Config) -> Result<String> {
    let ami = &config.cluster.spec.aws.ami;
    let out = aws
        .ec2
        .describe_images()
        .owners(ami.owner.as_str())
        .filters(ec2_filter("name", &ami.name_filter))
        .filters(ec2_filter("state", "available"))
        .send()
        .await
        .map_err(|e| aws_error("DescribeImages", &ami.name_filter, e))?;
    out.images()
        .iter()
        .max_by_key(|i| i.creation_date().unwrap_or_default().to_string())
        .and_then(|i| i.image_id())
        .map(str::to_string)
        .ok_or_else(|| Error::StageFailed {
            stage: ID.into(),
            message: format!(
                "no image of owner {} matches `{}` in this region",
                ami.owner, ami.name_filter
            ),
            help: "check spec.aws.ami (owner and nameFilter) and the region".into(),
        })
}

struct Launch {
    aws: Aws,
    node: Node,
    ami: String,
    subnet_id: String,
    sg: String,
    profile: String,
    key: String,
}

impl Launch {
    /// RunInstances with retries while IAM propagates the new instance profile.
    async fn run(&self, token: &str) -> Result<Instance> {
        let name = self.node.name.as_str();
        let backoff = Backoff::exponential(
            Duration::from_secs(2),
            Duration::from_secs(10),
            PROFILE_PROPAGATION,
        );
        let launched = retry(&backoff, |n| async move {
            if n > 1 {
                tracing::info!(
                    node = name,
                    "instance profile not visible to EC2 yet; retrying"
                );
            }
            match self.launch_once(token).await {
                Ok(instance) => Try::Done(instance),
                Err(e) if profile_not_ready(&e) => Try::Again(e),
                Err(e) => Try::Fail(e),
            }
        })
        .await;
        match launched {
            Ok(out) => out
                .instances()
                .first()
                .cloned()
                .ok_or_else(|| Error::StageFailed {
                    stage: ID.into(),
                    message: format!("RunInstances for {name} returned no instance"),
                    help: "rerun `ecoboot up`; the launch token makes the retry safe".into(),
                }),
            Err(e) => {
                let mut err = aws_error("RunInstances", name, e);
                if let Error::Aws { code, help, .. } = &mut err
                    && code == "InvalidParameterValue"
                {
                    *help = format!(
                        "if the message names the instance profile, IAM did not propagate within {}s: rerun `ecoboot up` in a minute",
                        PROFILE_PROPAGATION.as_secs()
                    );
                }
                Err(err)
            }
        }
    }

    /// One RunInstances call (paced) with the node's launch settings.
    async fn launch_once(
        &self,
        token: &str,
    ) -> std::result::Result<
        aws_sdk_ec2::operation::run_instances::RunInstancesOutput,
        aws_sdk_ec2::error::SdkError<aws_sdk_ec2::operation::run_instances::RunInstancesError>,
    > {
        let name = self.node.name.as_str();
        self.aws.pace().await;
        let disk = EbsBlockDevice::builder()
            .volume_size(i32::try_from(self.node.disk_gb).unwrap_or(i32::MAX))
            .volume_type(VolumeType::Gp3)
            .encrypted(true)
            .delete_on_termination(true)
            .build();
        self.aws
            .ec2
            .run_instances()
            .client_token(token)
            .image_id(&self.ami)
            .instance_type(InstanceType::from(self.node.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .key_name(&self.key)
            .subnet_id(&self.subnet_id)
            .security_group_ids(&self.sg)
            .iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .name(&self.profile)
                    .build(),
            )
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name("/dev/sda1")
                    .ebs(disk)
                    .build(),
            )
            .metadata_options(metadata_options(&self.node))
            .user_data(user_data(&self.node))
            .tag_specifications(
                self.aws
                    .tags
                    .spec(ResourceType::Instance, name, &[(NODE, name)]),
            )
            .tag_specifications(self.aws.tags.spec(
                ResourceType::Volume,
                &format!("{name}-root"),
                &[(NODE, name)],
            ))
            .send()
            .await
    }
}

fn profile_not_ready<E: aws_sdk_ec2::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_ec2::error::SdkError<E, R>,
) -> bool {
    match e {
        aws_sdk_ec2::error::SdkError::ServiceError(s) => {
            let msg = s.err().message().unwrap_or_default().to_ascii_lowercase();
            s.err().code() == Some("InvalidParameterValue")
                && (msg.contains("iaminstanceprofile") || msg.contains("instance profile"))
        }
        _ => false,
    }
}

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
        let net: Option<NetworkOut> = cx.state().output(network::ID);
        let (actions, drift) = plan(cx, &found, net.as_ref())?;
        for note in &drift {
            cx.events.progress(ID, None, format!("drift: {note}"));
        }
        if !actions.is_empty() {
            return Ok(Found::Todo(InstancesPlan {
                actions,
                existing: found,
            }));
        }
        let mut out: InstancesOut = cx.state().output(ID).unwrap_or_default();
        out.ami_id = found.ami.clone().unwrap_or(out.ami_id);
        out.nodes = found
            .nodes
            .iter()
            .map(|(n, list)| (n.clone(), node_out(&list[0])))
            .collect();
        let mut summary = format!("{} instances running, AMI {}", out.nodes.len(), out.ami_id);
        if !drift.is_empty() {
            summary.push_str(&format!("; drift: {}", drift.join("; ")));
        }
        Ok(Found::Done {
            summary,
            commit: Some(Box::new(move |cx: &Ctx| {
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
        let config = &cx.config;
        let net: NetworkOut = needs(cx, network::ID, "the subnets and security group")?;
        let iam: IamOut = needs(cx, iam::ID, "the node instance profile")?;
        let found = plan.existing;
        let key = config.cluster.spec.aws.key_pair.name.value.clone();
        if found.key == KeyState::Missing {
            let (material, digest) = public_key(config)?;
            aws.pace().await;
            aws.ec2
                .import_key_pair()
                .key_name(&key)
                .public_key_material(Blob::new(material.into_bytes()))
                .tag_specifications(aws.tags.spec(
                    ResourceType::KeyPair,
                    &key,
                    &[(KEY_TAG, &digest)],
                ))
                .send()
                .await
                .map_err(|e| aws_error("ImportKeyPair", &format!("key-pair/{key}"), e))?;
            cx.events
                .progress(ID, Some(&format!("key-pair/{key}")), "imported");
        }
        let ami = match found.ami.clone() {
            Some(ami) => ami,
            None => newest_ami(aws, config).await?,
        };
        cx.update_state(|s| {
            let mut out: InstancesOut = s.output(ID).unwrap_or_default();
            out.ami_id = ami.clone();
            s.set_output(ID, &out);
        })?;
        for node in config.nodes() {
            let Some([one]) = found.nodes.get(node.name.as_str()).map(Vec::as_slice) else {
                continue;
            };
            let id = one.instance_id().unwrap_or_default();
            let want = iam.profile_for(node);
            if !wears_profile(&found.associated, one, want) {
                switch_profile(aws, id, want).await?;
                cx.events.progress(
                    ID,
                    Some(node.name.as_str()),
                    format!("{id}: instance profile {want}"),
                );
            }
            if !metadata_drift(one, node) {
                continue;
            }
            require_imdsv2(aws, id, node).await?;
            cx.events.progress(
                ID,
                Some(node.name.as_str()),
                format!("{id}: IMDSv2 required"),
            );
        }
        let mut launches = tokio::task::JoinSet::new();
        for node in config
            .nodes()
            .filter(|n| !found.nodes.contains_key(n.name.as_str()))
        {
            let subnet =
                net.subnets
                    .get(node.subnet.as_str())
                    .ok_or_else(|| Error::Prerequisite {
                        stage: ID,
                        what: format!("subnet `{}`", node.subnet.value),
                        needs: network::ID,
                    })?;
            let launch = Launch {
                aws: aws.clone(),
                node: node.clone(),
                ami: ami.clone(),
                subnet_id: subnet.id.clone(),
                sg: net.security_group_id.clone(),
                profile: iam.profile_for(node).to_string(),
                key: key.clone(),
            };
            let cluster = config.name().to_string();
            let name = node.name.value.clone();
            let generation = cx
                .state()
                .output::<InstancesOut>(ID)
                .and_then(|o| o.generations.get(&name).copied())
                .unwrap_or(0);
            let token = client_token(&cluster, node, &ami, &subnet.id, generation);
            journal_token(cx, &name, &token, generation)?;
            cx.events.progress(
                ID,
                Some(&name),
                format!("launching {} (token {})", node.instance_type, &token[..12]),
            );
            launches.spawn(async move {
                let instance = launch.run(&token).await?;
                Ok::<_, Error>((launch, cluster, generation, instance))
            });
        }
        let mut launched = Vec::new();
        let mut failures = Vec::new();
        while let Some(joined) = launches.join_next().await {
            let (launch, cluster, generation, mut instance) = match joined.expect("launch task") {
                Ok(done) => done,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            let name = launch.node.name.value.clone();
            if matches!(
                state_name(&instance),
                InstanceStateName::Terminated | InstanceStateName::ShuttingDown
            ) {
                // AWS answered the token with an instance terminated out of band: launch anew.
                let next = generation + 1;
                let token =
                    client_token(&cluster, &launch.node, &launch.ami, &launch.subnet_id, next);
                journal_token(cx, &name, &token, next)?;
                cx.events.progress(
                    ID,
                    Some(&name),
                    "previous instance was terminated; launching a new one",
                );
                instance = match launch.run(&token).await {
                    Ok(i) => i,
                    Err(e) => {
                        failures.push(e);
                        continue;
                    }
                };
            }
            let id = instance.instance_id().unwrap_or_default().to_string();
            cx.events
                .progress(ID, Some(&name), format!("launched {id}"));
            launched.push(id);
        }
        if !launched.is_empty() {
            cx.events.progress(
                ID,
                None,
                format!("waiting for {} instance(s) to be running", launched.len()),
            );
            aws.ec2
                .wait_until_instance_running()
                .set_instance_ids(Some(launched.clone()))
                .wait(RUNNING_TIMEOUT)
                .await
                .map_err(|e| Error::StageFailed {
                    stage: ID.into(),
                    message: format!(
                        "instances {} did not reach running: {e}",
                        launched.join(", ")
                    ),
                    help: "check the instances in the EC2 console; rerun `ecoboot up` to continue"
                        .into(),
                })?;
        }
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            n => {
                let lines: Vec<String> = failures.iter().map(|e| format!("  {e}")).collect();
                let help = match &failures[0] {
                    Error::Aws { help, .. } => format!("{help} (launched instances are kept)"),
                    _ => "fix the first error and rerun `ecoboot up`; launched instances are kept"
                        .into(),
                };
                Err(Error::StageFailed {
                    stage: ID.into(),
                    message: format!("{n} launches failed:\n{}", lines.join("\n")),
                    help,
                })
            }
        }
    }
}
