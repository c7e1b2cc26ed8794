//! The builder instance of `ecoboot image build`: found by its tags (the cluster, role
//! `image-builder` and the content hash it builds), launched with a deterministic ClientToken
//! (a crash between the call and the next run cannot launch a second one), polled to a state,
//! stopped for imaging and terminated afterwards.

use std::time::Duration;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, Instance, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceType, ResourceType, VolumeType,
};
use sha2::{Digest, Sha256};

use crate::aws::images::{HASH, ROLE_BUILDER};
use crate::aws::tags::ROLE;
use crate::aws::{Aws, aws_error, ec2_tag_value};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::retry::{Backoff, Try, retry};

use super::ID;

/// How many spent launch tokens (builders terminated since) one hash may show.
const MAX_GENERATIONS: u32 = 64;
/// How long a builder may take to reach a state.
const STATE_TIMEOUT: Duration = Duration::from_secs(900);

/// One builder instance as EC2 describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builder {
    /// `i-…`.
    pub id: String,
    /// `pending`, `running`, `stopping`, `stopped`.
    pub state: String,
    /// The content hash it builds (its tag).
    pub hash: String,
    /// Its public IP (empty while it has none).
    pub public_ip: String,
}

impl Builder {
    fn from(i: &Instance) -> Builder {
        Builder {
            id: i.instance_id().unwrap_or_default().to_string(),
            state: (i.state().and_then(|s| s.name()))
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
            hash: ec2_tag_value(i.tags(), HASH)
                .unwrap_or_default()
                .to_string(),
            public_ip: i.public_ip_address().unwrap_or_default().to_string(),
        }
    }
}

/// The cluster's builder instances that are not terminated.
pub async fn find(aws: &Aws) -> Result<Vec<Builder>> {
    let live = ["pending", "running", "stopping", "stopped"];
    Ok((aws.instances(&live).await?.iter())
        .filter(|i| ec2_tag_value(i.tags(), ROLE) == Some(ROLE_BUILDER))
        .map(Builder::from)
        .collect())
}

/// What a builder is launched with.
pub struct Launch<'a> {
    /// The AMI it starts from (the base image).
    pub ami: &'a str,
    /// The content hash it builds.
    pub hash: &'a str,
    /// Subnet id.
    pub subnet: &'a str,
    /// Security group id.
    pub security_group: &'a str,
}

/// The builder's root volume: the smallest node disk, so every node can launch from the image.
fn disk_gb(config: &Config) -> i32 {
    let least = config.nodes().map(|n| n.disk_gb).min().unwrap_or(20).max(8);
    i32::try_from(least).unwrap_or(20)
}

/// Launches the builder (or, for a token AWS has seen, gets the instance it launched then).
pub async fn launch(aws: &Aws, config: &Config, l: &Launch<'_>) -> Result<Builder> {
    let name = format!("{}-image-builder", aws.tags.cluster);
    let extra = [(ROLE, ROLE_BUILDER), (HASH, l.hash)];
    let spec = |kind: ResourceType, name: &str| aws.tags.plain_spec(kind, name, &extra);
    let b = &config.cluster.spec.aws.ami.builder;
    for generation in 0..MAX_GENERATIONS {
        let token = hex::encode(Sha256::digest(
            format!("{}/image-builder/{}/{generation}", aws.tags.cluster, l.hash).as_bytes(),
        ));
        aws.pace().await;
        let out = aws
            .ec2
            .run_instances()
            .client_token(&token[..64])
            .image_id(l.ami)
            .instance_type(InstanceType::from(b.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .key_name(config.cluster.spec.aws.key_pair.name.as_str())
            .subnet_id(l.subnet)
            .security_group_ids(l.security_group)
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name("/dev/sda1")
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(disk_gb(config))
                            .volume_type(VolumeType::Gp3)
                            .encrypted(true)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .tag_specifications(spec(ResourceType::Instance, &name))
            .tag_specifications(spec(ResourceType::Volume, &format!("{name}-root")))
            .send()
            .await
            .map_err(|e| aws_error("RunInstances", &name, e))?;
        let Some(instance) = out.instances().first() else {
            break;
        };
        let builder = Builder::from(instance);
        if !matches!(builder.state.as_str(), "terminated" | "shutting-down") {
            return Ok(builder);
        }
    }
    Err(Error::StageFailed {
        stage: ID.into(),
        message: format!("RunInstances did not launch the image builder {name}"),
        help: "rerun `ecoboot image build`; the launch token makes the retry safe".into(),
    })
}

/// Polls builder `id` until it is in `want` (`running` or `stopped`); its description then.
pub async fn wait_for(aws: &Aws, id: &str, want: &str) -> Result<Builder> {
    let backoff = Backoff::poll(Duration::from_secs(3), STATE_TIMEOUT);
    let filter = crate::aws::ec2_filter("instance-id", id);
    let all = [
        "pending",
        "running",
        "stopping",
        "stopped",
        "shutting-down",
        "terminated",
    ];
    retry(&backoff, |_| {
        let filter = filter.clone();
        async move {
            let found = match aws.instances_where(&all, Some(filter)).await {
                Ok(list) => list.first().map(Builder::from),
                Err(e) => return Try::Fail(e),
            };
            match found {
                Some(b) if b.state == want => Try::Done(b),
                Some(b) if matches!(b.state.as_str(), "terminated" | "shutting-down") => {
                    Try::Fail(Error::StageFailed {
                        stage: ID.into(),
                        message: format!(
                            "the image builder {id} ended ({}) while waiting for {want}",
                            b.state
                        ),
                        help: "rerun `ecoboot image build`: it launches a new builder".into(),
                    })
                }
                other => Try::Again(Error::StageFailed {
                    stage: ID.into(),
                    message: format!(
                        "the image builder {id} is still {} after {} s (waiting for {want})",
                        other.map_or("not listed".to_string(), |b| b.state),
                        STATE_TIMEOUT.as_secs()
                    ),
                    help:
                        "look at the instance in the EC2 console, then rerun `ecoboot image build`"
                            .into(),
                }),
            }
        }
    })
    .await
}

/// Stops builder `id` (a consistent disk for CreateImage).
pub async fn stop(aws: &Aws, id: &str) -> Result<()> {
    aws.pace().await;
    aws.ec2
        .stop_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| aws_error("StopInstances", id, e))?;
    Ok(())
}

/// Terminates builders `ids`.
pub async fn terminate(aws: &Aws, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    aws.pace().await;
    aws.ec2
        .terminate_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| aws_error("TerminateInstances", &ids.join(","), e))?;
    Ok(())
}
