//! AWS clients shared by the provisioning stages and `down`: credentials and endpoint from the
//! SDK default chain (so `AWS_ENDPOINT_URL` works), adaptive retries, a call counter and a
//! client-side pace for mutating calls.

mod calls;
pub mod console;
pub mod deployer_policy;
pub mod deployer_role;
mod errors;
pub mod images;
pub mod live;
pub mod managed_policies;
pub mod nlb;
pub mod permissions;
pub mod quota;
pub mod tags;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::retry::RetryConfig;
use tokio::sync::Mutex;

pub use calls::{CallCounter, is_mutating};
pub use errors::{aws_error, code_of};
pub use tags::{Tags, ec2_filter, ec2_tag_value};

use crate::config::Config;

/// Attempts per call, as kops and eksctl use.
pub const MAX_ATTEMPTS: u32 = 13;
/// Minimum spacing between mutating calls (client-side pace, 10 per second).
const MUTATION_INTERVAL: Duration = Duration::from_millis(100);

/// EC2, IAM, ELBv2 and Service Quotas clients for one cluster.
#[derive(Clone)]
pub struct Aws {
    /// EC2.
    pub ec2: aws_sdk_ec2::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// ELBv2 (only `down` uses it: load balancers the in-cluster controller made).
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// Service Quotas (the vCPU quota preflight; read-only).
    pub quotas: aws_sdk_servicequotas::Client,
    /// Tags every resource of this cluster carries.
    pub tags: Tags,
    /// The SDK configuration (region, credentials, endpoint) other clients are built from.
    pub shared: aws_config::SdkConfig,
    pace: Arc<Mutex<Instant>>,
}

impl Aws {
    /// Builds clients from the default credential chain; region from `AWS_REGION` or config.
    pub async fn connect(config: &Config, counter: CallCounter) -> Aws {
        let region = std::env::var("AWS_REGION")
            .ok()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| config.cluster.spec.aws.region.value.clone());
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region));
        // The SDK's own AWS_MAX_ATTEMPTS / AWS_RETRY_MODE win when the user sets them.
        if std::env::var_os("AWS_MAX_ATTEMPTS").is_none()
            && std::env::var_os("AWS_RETRY_MODE").is_none()
        {
            loader = loader.retry_config(RetryConfig::adaptive().with_max_attempts(MAX_ATTEMPTS));
        }
        let shared = loader.load().await;
        let ec2 = aws_sdk_ec2::config::Builder::from(&shared)
            .interceptor(counter.clone())
            .interceptor(permissions::Permitted)
            .build();
        let iam = aws_sdk_iam::config::Builder::from(&shared)
            .interceptor(counter.clone())
            .interceptor(permissions::Permitted)
            .build();
        let elb = aws_sdk_elasticloadbalancingv2::config::Builder::from(&shared)
            .interceptor(counter.clone())
            .interceptor(permissions::Permitted)
            .build();
        let quotas = aws_sdk_servicequotas::config::Builder::from(&shared)
            .interceptor(counter)
            .interceptor(permissions::Permitted)
            .build();
        Aws {
            ec2: aws_sdk_ec2::Client::from_conf(ec2),
            iam: aws_sdk_iam::Client::from_conf(iam),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(elb),
            quotas: aws_sdk_servicequotas::Client::from_conf(quotas),
            tags: Tags::for_cluster(config),
            shared,
            pace: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Instances tagged for this cluster in one of `states`, across all result pages.
    pub async fn instances(
        &self,
        states: &[&str],
    ) -> crate::error::Result<Vec<aws_sdk_ec2::types::Instance>> {
        self.instances_where(states, Some(self.tags.filter())).await
    }

    /// Instances in one of `states` (of every owner unless `filter` narrows them), across all
    /// result pages.
    pub async fn instances_where(
        &self,
        states: &[&str],
        filter: Option<aws_sdk_ec2::types::Filter>,
    ) -> crate::error::Result<Vec<aws_sdk_ec2::types::Instance>> {
        let states = aws_sdk_ec2::types::Filter::builder()
            .name("instance-state-name")
            .set_values(Some(states.iter().map(|s| s.to_string()).collect()))
            .build();
        let pages = self
            .ec2
            .describe_instances()
            .set_filters(Some(filter.into_iter().chain([states]).collect()))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws_error("DescribeInstances", "instances", e))?;
        Ok(pages
            .iter()
            .flat_map(|p| p.reservations())
            .flat_map(|r| r.instances())
            .cloned()
            .collect())
    }

    /// Whether instance `id` is provably node `node` of this cluster, as EC2 itself answers
    /// (never the journal's word): the cluster tag and the `ecoboot.io/node` tag must both
    /// match before anything destroys it.
    pub async fn ownership(&self, id: &str, node: &str) -> crate::error::Result<Ownership> {
        let id_filter = aws_sdk_ec2::types::Filter::builder()
            .name("instance-id")
            .values(id)
            .build();
        let all = ["pending", "running", "stopping", "stopped", "shutting-down"];
        let found = self.instances_where(&all, Some(id_filter)).await?;
        let Some(i) = found.first() else {
            return Ok(Ownership::Gone);
        };
        let cluster = ec2_tag_value(i.tags(), tags::CLUSTER);
        let named = ec2_tag_value(i.tags(), tags::NODE);
        if cluster == Some(self.tags.cluster.as_str()) && named == Some(node) {
            return Ok(Ownership::Ours);
        }
        Ok(Ownership::Foreign(format!(
            "its tags say cluster {:?} node {:?}, not cluster `{}` node `{node}`",
            cluster.unwrap_or("(none)"),
            named.unwrap_or("(none)"),
            self.tags.cluster
        )))
    }

    /// Waits for the client-side pace before a mutating call, so a burst of 14 launches does
    /// not trip the account's API rate limit.
    pub async fn pace(&self) {
        crate::lock_health::hold_or_park().await;
        let mut next = self.pace.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep(*next - now).await;
        }
        *next = Instant::now().max(*next) + MUTATION_INTERVAL;
    }
}

/// What EC2 says about an instance ecoboot is about to destroy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Tagged with this cluster and the expected node.
    Ours,
    /// Not there (or already terminated).
    Gone,
    /// Someone else's, or not tagged as expected (why).
    Foreign(String),
}
