//! The control planes' Network Load Balancer (TCP 6443), its target group and listener: found
//! by the cluster's tags (`ecoboot.io/cluster` + `ecoboot.io/role=api`), created tagged, and
//! read back as one typed [`ApiLb`]. Only this cluster's own load balancer is ever returned;
//! what the AWS Load Balancer Controller makes carries other tags and is `down`'s business.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, LoadBalancerSchemeEnum, LoadBalancerTypeEnum, ProtocolEnum, Tag,
    TargetDescription, TargetGroupAttribute, TargetTypeEnum,
};

use super::tags::{CLUSTER, ROLE};
use super::{Aws, aws_error};
use crate::error::{Error, Result};

/// The role tag value of the API load balancer and its target group.
pub const ROLE_API: &str = "api";
/// The API server port, on the listener and on the targets.
pub const PORT: i32 = 6443;
/// Target group attribute: off, so a control plane reaching the API through the load balancer
/// can land on itself (NLB instance targets drop hairpinned connections when the client IP is
/// preserved).
pub const PRESERVE_CLIENT_IP: &str = "preserve_client_ip.enabled";

/// The cluster's API load balancer as AWS describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiLb {
    /// Load balancer ARN.
    pub arn: String,
    /// Its DNS name (the control-plane endpoint unless the config names its own).
    pub dns_name: String,
    /// `provisioning`, `active`, `active_impaired` or `failed`.
    pub state: String,
    /// `internet-facing` or `internal`.
    pub scheme: String,
    /// The target group, when it exists.
    pub target_group: Option<TargetGroup>,
    /// A TCP 6443 listener forwards to the target group.
    pub listener: bool,
}

/// The control planes' target group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetGroup {
    /// Target group ARN.
    pub arn: String,
    /// Registered instance ids and their health (`healthy`, `initial`, `unhealthy`, ...).
    pub targets: BTreeMap<String, String>,
    /// The instances AWS is still registering (`Elb.RegistrationInProgress`: the load balancer
    /// sends them nothing yet; AWS takes 3-5 minutes).
    pub registering: std::collections::BTreeSet<String>,
    /// The client IP is preserved (ecoboot turns it off).
    pub preserve_client_ip: bool,
}

fn tags(aws: &Aws, name: &str) -> Vec<Tag> {
    (aws.tags.pairs(name, &[(ROLE, ROLE_API)]).into_iter())
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// The ARNs among `arns` that carry this cluster's API role tags (DescribeTags takes 20 at a
/// time).
async fn ours(aws: &Aws, arns: Vec<String>) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for chunk in arns.chunks(20) {
        let described = (aws.elb.describe_tags())
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| aws_error("DescribeTags", "load balancers", e))?;
        for d in described.tag_descriptions() {
            let has = |key: &str, value: &str| {
                d.tags()
                    .iter()
                    .any(|t| t.key() == Some(key) && t.value() == Some(value))
            };
            if has(CLUSTER, &aws.tags.cluster) && has(ROLE, ROLE_API) {
                out.extend(d.resource_arn().map(String::from));
            }
        }
    }
    Ok(out)
}

/// The cluster's API load balancer, found by its tags (None when there is none).
pub async fn find(aws: &Aws) -> Result<Option<ApiLb>> {
    let lbs = (aws.elb.describe_load_balancers().send().await)
        .map_err(|e| aws_error("DescribeLoadBalancers", "load balancers", e))?;
    let arns = (lbs.load_balancers().iter())
        .filter_map(|lb| lb.load_balancer_arn().map(String::from))
        .collect();
    let mine = ours(aws, arns).await?;
    let Some(lb) = (lbs.load_balancers().iter())
        .find(|lb| lb.load_balancer_arn().is_some_and(|a| mine.contains(a)))
    else {
        return Ok(None);
    };
    let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
    let mut found = ApiLb {
        arn: arn.clone(),
        dns_name: lb.dns_name().unwrap_or_default().to_string(),
        state: (lb.state().and_then(|s| s.code()))
            .map(|c| c.as_str().to_string())
            .unwrap_or_default(),
        scheme: lb
            .scheme()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        target_group: target_group(aws).await?,
        listener: false,
    };
    let listeners = (aws
        .elb
        .describe_listeners()
        .load_balancer_arn(&arn)
        .send()
        .await)
        .map_err(|e| aws_error("DescribeListeners", &arn, e))?;
    let tg = found.target_group.as_ref().map(|t| t.arn.as_str());
    found.listener = listeners.listeners().iter().any(|l| {
        l.port() == Some(PORT)
            && l.default_actions()
                .iter()
                .any(|a| a.target_group_arn().is_some() && a.target_group_arn() == tg)
    });
    Ok(Some(found))
}

/// The cluster's API target group with its targets' health.
async fn target_group(aws: &Aws) -> Result<Option<TargetGroup>> {
    let tgs = (aws.elb.describe_target_groups().send().await)
        .map_err(|e| aws_error("DescribeTargetGroups", "target groups", e))?;
    let arns = (tgs.target_groups().iter())
        .filter_map(|t| t.target_group_arn().map(String::from))
        .collect();
    let Some(arn) = ours(aws, arns).await?.into_iter().next() else {
        return Ok(None);
    };
    let health = (aws
        .elb
        .describe_target_health()
        .target_group_arn(&arn)
        .send()
        .await)
        .map_err(|e| aws_error("DescribeTargetHealth", &arn, e))?;
    let targets = (health.target_health_descriptions().iter())
        .filter_map(|d| {
            let id = d.target()?.id()?.to_string();
            let state = (d.target_health().and_then(|h| h.state()))
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            Some((id, state))
        })
        .collect();
    let registering = (health.target_health_descriptions().iter())
        .filter(|d| {
            d.target_health()
                .and_then(|h| h.reason())
                .map(|r| r.as_str())
                == Some("Elb.RegistrationInProgress")
        })
        .filter_map(|d| d.target()?.id().map(String::from))
        .collect();
    let attributes = (aws.elb.describe_target_group_attributes())
        .target_group_arn(&arn)
        .send()
        .await
        .map_err(|e| aws_error("DescribeTargetGroupAttributes", &arn, e))?;
    let preserve_client_ip = (attributes.attributes().iter())
        .any(|a| a.key() == Some(PRESERVE_CLIENT_IP) && a.value() == Some("true"));
    Ok(Some(TargetGroup {
        arn,
        targets,
        registering,
        preserve_client_ip,
    }))
}

/// Creates the Network Load Balancer in `subnets` with the cluster security group; returns its
/// ARN and DNS name.
pub async fn create_load_balancer(
    aws: &Aws,
    name: &str,
    subnets: Vec<String>,
    security_group: &str,
    internal: bool,
) -> Result<(String, String)> {
    let scheme = match internal {
        true => LoadBalancerSchemeEnum::Internal,
        false => LoadBalancerSchemeEnum::InternetFacing,
    };
    let out = (aws.elb.create_load_balancer())
        .name(name)
        .r#type(LoadBalancerTypeEnum::Network)
        .scheme(scheme)
        .set_subnets(Some(subnets))
        .security_groups(security_group)
        .set_tags(Some(tags(aws, name)))
        .send()
        .await
        .map_err(|e| aws_error("CreateLoadBalancer", name, e))?;
    let lb = out.load_balancers().first().ok_or_else(|| Error::Aws {
        operation: "CreateLoadBalancer".into(),
        target: name.into(),
        code: "Empty".into(),
        message: "AWS answered without a load balancer".into(),
        help: "rerun `ecoboot up`: the load balancer is found by its tags".into(),
    })?;
    Ok((
        lb.load_balancer_arn().unwrap_or_default().to_string(),
        lb.dns_name().unwrap_or_default().to_string(),
    ))
}

/// Creates the TCP 6443 target group (instance targets, TCP health checks on 6443 every 10 s,
/// 2 checks either way); returns its ARN.
pub async fn create_target_group(aws: &Aws, name: &str, vpc: &str) -> Result<String> {
    let out = (aws.elb.create_target_group())
        .name(name)
        .protocol(ProtocolEnum::Tcp)
        .port(PORT)
        .vpc_id(vpc)
        .target_type(TargetTypeEnum::Instance)
        .health_check_protocol(ProtocolEnum::Tcp)
        .health_check_port("traffic-port")
        .health_check_interval_seconds(10)
        .healthy_threshold_count(2)
        .unhealthy_threshold_count(2)
        .set_tags(Some(tags(aws, name)))
        .send()
        .await
        .map_err(|e| aws_error("CreateTargetGroup", name, e))?;
    Ok((out.target_groups().first())
        .and_then(|t| t.target_group_arn())
        .unwrap_or_default()
        .to_string())
}

/// Turns client IP preservation off on the target group (see [`PRESERVE_CLIENT_IP`]).
pub async fn keep_no_client_ip(aws: &Aws, target_group: &str) -> Result<()> {
    let attribute = TargetGroupAttribute::builder()
        .key(PRESERVE_CLIENT_IP)
        .value("false")
        .build();
    (aws.elb.modify_target_group_attributes())
        .target_group_arn(target_group)
        .attributes(attribute)
        .send()
        .await
        .map_err(|e| aws_error("ModifyTargetGroupAttributes", target_group, e))?;
    Ok(())
}

/// Adds the TCP 6443 listener forwarding to `target_group`.
pub async fn create_listener(aws: &Aws, lb: &str, target_group: &str) -> Result<()> {
    let forward = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target_group)
        .build();
    (aws.elb.create_listener())
        .load_balancer_arn(lb)
        .protocol(ProtocolEnum::Tcp)
        .port(PORT)
        .default_actions(forward)
        .send()
        .await
        .map_err(|e| aws_error("CreateListener", lb, e))?;
    Ok(())
}

fn targets(ids: &[String]) -> Vec<TargetDescription> {
    (ids.iter())
        .map(|id| TargetDescription::builder().id(id).port(PORT).build())
        .collect()
}

/// Registers instances as targets.
pub async fn register(aws: &Aws, target_group: &str, ids: &[String]) -> Result<()> {
    (aws.elb.register_targets())
        .target_group_arn(target_group)
        .set_targets(Some(targets(ids)))
        .send()
        .await
        .map_err(|e| aws_error("RegisterTargets", target_group, e))?;
    Ok(())
}

/// Deregisters instances that are no longer control planes of the cluster.
pub async fn deregister(aws: &Aws, target_group: &str, ids: &[String]) -> Result<()> {
    (aws.elb.deregister_targets())
        .target_group_arn(target_group)
        .set_targets(Some(targets(ids)))
        .send()
        .await
        .map_err(|e| aws_error("DeregisterTargets", target_group, e))?;
    Ok(())
}

/// A load balancer or target group name (at most 32 characters, unique per account and
/// region): `ecoboot-<cluster>-<what>`, or a shortened cluster name and a hash of the whole.
pub fn name(cluster: &str, what: &str) -> String {
    let full = format!("ecoboot-{cluster}-{what}");
    if full.len() <= 32 {
        return full;
    }
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(full.as_bytes()));
    let keep = 32 - "ecoboot--".len() - what.len() - 7;
    let short: String = cluster.chars().take(keep).collect();
    format!(
        "ecoboot-{}-{}-{what}",
        short.trim_end_matches('-'),
        &hash[..6]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_fit_in_32_characters() {
        assert_eq!(super::name("sandbox", "api"), "ecoboot-sandbox-api");
        let long = super::name("a-very-long-cluster-name-for-a-test", "api");
        assert!(long.len() <= 32, "{long}");
        assert!(long.starts_with("ecoboot-a-very") && long.ends_with("-api"));
        assert_ne!(
            long,
            super::name("a-very-long-cluster-name-for-b-test", "api")
        );
    }
}
