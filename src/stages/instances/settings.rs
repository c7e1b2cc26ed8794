//! Settings of a running instance that ecoboot fixes in place, never by relaunching: the
//! instance metadata options (IMDSv2 required, hop limit by role) and the instance profile
//! (node or controller role).

use aws_sdk_ec2::types::{
    HttpTokensState, IamInstanceProfileAssociationState, IamInstanceProfileSpecification, Instance,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
};

use crate::aws::{Aws, aws_error, ec2_filter};
use crate::config::Node;
use crate::error::Result;

/// IMDSv2 only (a pod cannot read the node role's credentials with a plain GET), hop limit 1
/// so containers cannot reach it at all, except on nodes marked `awsControllers: true`, whose
/// pods need one more hop.
pub(super) fn hop_limit(node: &Node) -> i32 {
    if node.aws_controllers { 2 } else { 1 }
}

pub(super) fn metadata_options(node: &Node) -> InstanceMetadataOptionsRequest {
    InstanceMetadataOptionsRequest::builder()
        .http_tokens(HttpTokensState::Required)
        .http_endpoint(InstanceMetadataEndpointState::Enabled)
        .http_put_response_hop_limit(hop_limit(node))
        .build()
}

pub(super) fn profile_arn_is(arn: Option<&str>, name: &str) -> bool {
    arn.is_some_and(|arn| arn.ends_with(&format!("instance-profile/{name}")))
}

/// True when instance `i` wears (or is being switched to) the instance profile `name`;
/// `associated` holds current associations that DescribeInstances may not show yet.
pub(super) fn wears_profile(
    associated: &std::collections::BTreeMap<String, String>,
    i: &Instance,
    name: &str,
) -> bool {
    let id = i.instance_id().unwrap_or_default();
    let arn = associated
        .get(id)
        .map(String::as_str)
        .or_else(|| i.iam_instance_profile().and_then(|p| p.arn()));
    profile_arn_is(arn, name)
}

/// The current (associated or associating) profile association of instance `id`: its id and
/// the profile ARN.
pub(super) async fn current_association(aws: &Aws, id: &str) -> Result<Option<(String, String)>> {
    let out = aws
        .ec2
        .describe_iam_instance_profile_associations()
        .filters(ec2_filter("instance-id", id))
        .send()
        .await
        .map_err(|e| aws_error("DescribeIamInstanceProfileAssociations", id, e))?;
    Ok(out
        .iam_instance_profile_associations()
        .iter()
        .filter(|a| {
            matches!(
                a.state(),
                Some(
                    IamInstanceProfileAssociationState::Associated
                        | IamInstanceProfileAssociationState::Associating
                )
            )
        })
        .find_map(|a| {
            Some((
                a.association_id()?.to_string(),
                a.iam_instance_profile()?.arn()?.to_string(),
            ))
        }))
}

/// Puts instance `id` into instance profile `name`: replaces its association, or associates
/// one if it has none. No relaunch.
pub(super) async fn switch_profile(aws: &Aws, id: &str, name: &str) -> Result<()> {
    let profile = IamInstanceProfileSpecification::builder()
        .name(name)
        .build();
    let current = current_association(aws, id).await?;
    aws.pace().await;
    match current {
        Some((association, _)) => aws
            .ec2
            .replace_iam_instance_profile_association()
            .association_id(association)
            .iam_instance_profile(profile)
            .send()
            .await
            .map(drop)
            .map_err(|e| aws_error("ReplaceIamInstanceProfileAssociation", id, e)),
        None => aws
            .ec2
            .associate_iam_instance_profile()
            .instance_id(id)
            .iam_instance_profile(profile)
            .send()
            .await
            .map(drop)
            .map_err(|e| aws_error("AssociateIamInstanceProfile", id, e)),
    }
}

/// True when a running instance's metadata options differ from [`metadata_options`].
pub(super) fn metadata_drift(i: &Instance, node: &Node) -> bool {
    let m = i.metadata_options();
    m.and_then(|m| m.http_tokens()) != Some(&HttpTokensState::Required)
        || m.and_then(|m| m.http_put_response_hop_limit()) != Some(hop_limit(node))
}

/// Requires IMDSv2 with the node's hop limit on a running instance.
pub(super) async fn require_imdsv2(aws: &Aws, id: &str, node: &Node) -> Result<()> {
    aws.pace().await;
    aws.ec2
        .modify_instance_metadata_options()
        .instance_id(id)
        .http_tokens(HttpTokensState::Required)
        .http_endpoint(InstanceMetadataEndpointState::Enabled)
        .http_put_response_hop_limit(hop_limit(node))
        .send()
        .await
        .map(drop)
        .map_err(|e| aws_error("ModifyInstanceMetadataOptions", id, e))
}
