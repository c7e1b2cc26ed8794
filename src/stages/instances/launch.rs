//! Launching one node's instance: the deterministic ClientToken (journaled first), the user
//! data, the newest AMI, RunInstances retried while IAM propagates the instance profile, the
//! wait until the new instances are listed as running, and one error for all failed launches.

use std::time::Duration;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, IamInstanceProfileSpecification, Instance,
    InstanceStateName, InstanceType, ResourceType, VolumeType,
};
use sha2::{Digest, Sha256};

use super::settings::metadata_options;
use crate::aws::tags::{NODE, ROLE};
use crate::aws::{Aws, aws_error};
use crate::config::Node;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::retry::{Backoff, Try, retry};

/// How long to wait for launched instances to be running.
const RUNNING_TIMEOUT: Duration = Duration::from_secs(600);

use super::{ID, InstancesOut, PROFILE_PROPAGATION};

/// Records a launch token (and its generation) in the journal before the launch call.
pub(super) fn journal_token(cx: &Ctx, node: &str, token: &str, generation: u32) -> Result<()> {
    cx.update_state(|s| {
        let mut out: InstancesOut = s.output(ID).unwrap_or_default();
        out.generations.insert(node.to_string(), generation);
        out.tokens.insert(node.to_string(), token.to_string());
        s.set_output(ID, &out);
    })
}

pub(super) fn user_data(node: &Node) -> String {
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

pub(super) struct Launch {
    pub(super) aws: Aws,
    pub(super) node: Node,
    pub(super) ami: String,
    pub(super) subnet_id: String,
    pub(super) sg: String,
    pub(super) profile: String,
    pub(super) key: String,
}

impl Launch {
    /// RunInstances with retries while IAM propagates the new instance profile.
    pub(super) async fn run(&self, token: &str) -> Result<Instance> {
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
            .tag_specifications(self.aws.tags.spec(
                ResourceType::Instance,
                name,
                &[
                    (NODE, name),
                    (ROLE, self.node.role.unwrap_or_default().as_str()),
                ],
            ))
            .tag_specifications(self.aws.tags.spec(
                ResourceType::Volume,
                &format!("{name}-root"),
                &[(NODE, name)],
            ))
            .send()
            .await
    }
}

pub(super) fn profile_not_ready<E: aws_sdk_ec2::error::ProvideErrorMetadata, R>(
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

/// Waits until every launched instance is running, as the cluster's tag-filtered listing (what
/// the re-probe reads) shows it: one DescribeInstances every 2 s rather than the SDK waiter's
/// 15 s, so a node is seen running within seconds (EC2 is eventually consistent: a new
/// instance may be missing from the listing at first). An instance that ends instead (e.g.
/// `Server.InsufficientInstanceCapacity`) stops the wait with EC2's reason. `running` hears
/// of each instance once, as soon as it runs (a pipelined `up` starts on that node then).
pub(super) async fn wait_running(
    cx: &Ctx,
    aws: &Aws,
    launched: &[String],
    running: &(dyn Fn(&Instance) -> Result<()> + Sync),
) -> Result<()> {
    if launched.is_empty() {
        return Ok(());
    }
    let what = format!("waiting for {} instance(s) to be running", launched.len());
    cx.events.progress(ID, None, what);
    let states = ["pending", "running", "shutting-down", "terminated"];
    let backoff = Backoff::poll(Duration::from_secs(2), RUNNING_TIMEOUT);
    let heard = std::sync::Mutex::new(std::collections::BTreeSet::new());
    retry(&backoff, |_| async {
        let list = match aws.instances(&states).await {
            Ok(list) => list,
            Err(e) => return Try::Fail(e),
        };
        for i in &list {
            let id = i.instance_id().unwrap_or_default().to_string();
            let is_running = i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Running);
            let new = is_running
                && launched.contains(&id)
                && heard.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
            if new && let Err(e) = running(i) {
                return Try::Fail(e);
            }
        }
        let state = |id: &str| {
            (list.iter()).find(|i| i.instance_id() == Some(id)).map(|i| {
                let name = i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string());
                let reason = i.state_reason().and_then(|r| r.message()).unwrap_or_default().to_string();
                (name.unwrap_or_default(), reason)
            })
        };
        let mut missing = Vec::new();
        for id in launched {
            match state(id) {
                Some((s, _)) if s == "running" => {}
                Some((s, why)) if s == "terminated" || s == "shutting-down" => {
                    return Try::Fail(Error::StageFailed {
                        stage: ID.into(),
                        message: format!("instance {id} ended ({s}) instead of running: {why}"),
                        help: "fix the cause EC2 names (capacity: another instance type or AZ), then rerun `ecoboot up`: it launches a new instance for the node".into(),
                    });
                }
                _ => missing.push(id.clone()),
            }
        }
        match missing.is_empty() {
            true => Try::Done(()),
            false => Try::Again(Error::StageFailed {
                stage: ID.into(),
                message: format!("instances {missing:?} did not reach running within {}s", RUNNING_TIMEOUT.as_secs()),
                help: "check the instances in the EC2 console; rerun `ecoboot up` to continue".into(),
            }),
        }
    })
    .await
}

/// One error for every failed launch (the launched instances are kept).
pub(super) fn launch_failures(mut failures: Vec<Error>) -> Result<()> {
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => {
            let lines: Vec<String> = failures.iter().map(|e| format!("  {e}")).collect();
            let help = match &failures[0] {
                Error::Aws { help, .. } => format!("{help} (launched instances are kept)"),
                _ => {
                    "fix the first error and rerun `ecoboot up`; launched instances are kept".into()
                }
            };
            Err(Error::StageFailed {
                stage: ID.into(),
                message: format!("{n} launches failed:\n{}", lines.join("\n")),
                help,
            })
        }
    }
}
