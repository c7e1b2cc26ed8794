//! `down`'s plan: what it would delete, read-only, shown before anything is deleted.

use super::network::NETWORK_ORDER;
use super::{NOT_TERMINATED, controllers};
use crate::aws::{Aws, aws_error};
use crate::error::Result;
use crate::event::Action;

/// Read-only: what [`down`] would delete (and the controller-made volumes it keeps unless
/// `delete_volumes`; the golden images it keeps unless `images`), as plan actions.
pub async fn plan(
    aws: &Aws,
    role_names: &[String],
    delete_volumes: bool,
    images: bool,
) -> Result<Vec<Action>> {
    let mut out = Vec::new();
    for i in aws.instances(&NOT_TERMINATED).await? {
        let node = crate::aws::ec2_tag_value(i.tags(), crate::aws::tags::NODE)
            .or_else(|| crate::aws::ec2_tag_value(i.tags(), crate::aws::tags::ROLE))
            .unwrap_or("?");
        out.push(Action::new(
            i.instance_id().unwrap_or_default(),
            format!("terminate instance of {node}"),
        ));
    }
    let vpcs = controllers::vpcs(aws).await?;
    out.extend(controllers::find(aws, &vpcs).await?.actions(delete_volumes));
    for kind in NETWORK_ORDER {
        for (id, _) in kind.find(aws).await? {
            out.push(Action::new(&id, "delete"));
        }
    }
    for m in crate::aws::managed_policies::list(aws, &aws.tags.cluster)
        .await?
        .values()
    {
        out.push(Action::new(
            format!("policy/{}", m.arn),
            "delete managed policy",
        ));
    }
    for name in role_names {
        if aws.iam.get_role().role_name(name).send().await.is_ok() {
            out.push(Action::new(
                format!("role/{name}"),
                "delete with its instance profile and inline policies",
            ));
        }
    }
    let pairs = (aws
        .ec2
        .describe_key_pairs()
        .filters(aws.tags.filter())
        .send()
        .await)
        .map_err(|e| aws_error("DescribeKeyPairs", "key pairs", e))?;
    for p in pairs.key_pairs() {
        out.push(Action::new(
            format!("key-pair/{}", p.key_name().unwrap_or_default()),
            "delete",
        ));
    }
    for image in crate::aws::images::golden_images(aws).await? {
        out.push(match images {
            true => Action::new(
                &image.id,
                format!(
                    "deregister golden image {} and delete its snapshots",
                    image.name
                ),
            ),
            false => Action::new(
                &image.id,
                format!(
                    "keep golden image {} (`down --images` deletes it)",
                    image.name
                ),
            ),
        });
    }
    Ok(out)
}
