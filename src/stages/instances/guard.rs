//! The control plane is never replaced behind the user's back: an instance tagged
//! `ecoboot.io/role=control-plane` whose node is none of the config's control planes means the
//! control plane was renamed or replaced in the config. Launching a second one would start a
//! second cluster and strand etcd, so `plan` and `up` stop before anything is created.

use aws_sdk_ec2::types::Instance;

use crate::aws::ec2_tag_value;
use crate::aws::tags::{NODE, ROLE};
use crate::config::Config;
use crate::error::Error;

/// The error when a live control-plane instance belongs to another node than the config's.
pub fn moved(config: &Config, instances: &[Instance]) -> Option<Error> {
    let wanted = config.control_plane().name.as_str();
    let other = instances.iter().find_map(|i| {
        let node = ec2_tag_value(i.tags(), NODE)?;
        let configured = config.control_planes().any(|n| n.name.as_str() == node);
        (ec2_tag_value(i.tags(), ROLE) == Some("control-plane") && !configured).then(|| {
            (
                node.to_string(),
                i.instance_id().unwrap_or_default().to_string(),
            )
        })
    })?;
    Some(Error::Usage(format!(
        "the cluster's control plane is `{}` ({}), but the config names `{wanted}`: ecoboot never replaces or prunes the control plane; put `{}` back as the control plane in spec.nodes (to move it, restore a backup onto a new control plane with `ecoboot restore`)",
        other.0, other.1, other.0
    )))
}
