//! The control plane's Elastic IP: one tagged address per cluster, associated with the
//! control-plane instance, so a stop/start keeps the certificate SAN, the kubeconfig server
//! and the SSH address valid (all three follow the node's public IP). Found by its tags;
//! `down` releases it.

use aws_sdk_ec2::types::{DomainType, ResourceType};

use crate::aws::tags::NODE;
use crate::aws::{Aws, aws_error, ec2_filter, ec2_tag_value};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::event::Action;

use super::ID;

/// The control plane's address as it exists.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Eip {
    /// `eipalloc-…`.
    pub(super) allocation_id: String,
    /// The public IPv4.
    pub(super) public_ip: String,
    /// The instance it is associated with, if any.
    pub(super) instance_id: Option<String>,
}

/// The cluster's control-plane address (the oldest allocation, if a crash ever left two).
pub(super) async fn find(aws: &Aws, control_plane: &str) -> Result<Option<Eip>> {
    let out = aws
        .ec2
        .describe_addresses()
        .filters(aws.tags.filter())
        .filters(ec2_filter(&format!("tag:{NODE}"), control_plane))
        .send()
        .await
        .map_err(|e| aws_error("DescribeAddresses", control_plane, e))?;
    let mut found: Vec<Eip> = out
        .addresses()
        .iter()
        .filter(|a| ec2_tag_value(a.tags(), NODE) == Some(control_plane))
        .map(|a| Eip {
            allocation_id: a.allocation_id().unwrap_or_default().to_string(),
            public_ip: a.public_ip().unwrap_or_default().to_string(),
            instance_id: a.instance_id().map(str::to_string),
        })
        .collect();
    found.sort_by(|a, b| a.allocation_id.cmp(&b.allocation_id));
    Ok(found.into_iter().next())
}

/// What the address still needs: allocation and/or association with `instance`.
pub(super) fn actions(
    eip: Option<&Eip>,
    instance: Option<&str>,
    control_plane: &str,
) -> Vec<Action> {
    let target = format!("elastic-ip/{control_plane}");
    match eip {
        None => vec![Action::new(
            target,
            "allocate an Elastic IP and associate it with the control plane",
        )],
        Some(e) if instance.is_some() && e.instance_id.as_deref() != instance => {
            vec![Action::new(
                target,
                format!("associate {} with the control-plane instance", e.public_ip),
            )]
        }
        Some(_) => Vec::new(),
    }
}

/// Allocates the address if missing and associates it with the running control-plane
/// instance (re-associating is allowed: the address is ours, the instance may be new).
pub(super) async fn ensure(cx: &Ctx, aws: &Aws, eip: Option<Eip>) -> Result<()> {
    let cp = cx.config.control_plane().name.value.clone();
    let eip = match eip {
        Some(e) => e,
        None => {
            aws.pace().await;
            let out = aws
                .ec2
                .allocate_address()
                .domain(DomainType::Vpc)
                .tag_specifications(aws.tags.spec(
                    ResourceType::ElasticIp,
                    &format!("{}-control-plane", cx.config.name()),
                    &[(NODE, &cp)],
                ))
                .send()
                .await
                .map_err(|e| aws_error("AllocateAddress", &cp, e))?;
            let e = Eip {
                allocation_id: out.allocation_id().unwrap_or_default().to_string(),
                public_ip: out.public_ip().unwrap_or_default().to_string(),
                instance_id: None,
            };
            cx.events.progress(
                ID,
                Some(&format!("elastic-ip/{cp}")),
                format!("allocated {}", e.public_ip),
            );
            e
        }
    };
    let instance = aws
        .instances(&["pending", "running", "stopped"])
        .await?
        .into_iter()
        .find(|i| ec2_tag_value(i.tags(), NODE) == Some(cp.as_str()))
        .and_then(|i| i.instance_id().map(str::to_string))
        .ok_or_else(|| Error::StageFailed {
            stage: ID.into(),
            message: format!("no instance of the control plane {cp} to give its Elastic IP"),
            help: "rerun `ecoboot up`: the launch above did not leave a control-plane instance"
                .into(),
        })?;
    if eip.instance_id.as_deref() == Some(instance.as_str()) {
        return Ok(());
    }
    aws.pace().await;
    aws.ec2
        .associate_address()
        .allocation_id(&eip.allocation_id)
        .instance_id(&instance)
        .allow_reassociation(true)
        .send()
        .await
        .map_err(|e| aws_error("AssociateAddress", &eip.allocation_id, e))?;
    cx.events.progress(
        ID,
        Some(&format!("elastic-ip/{cp}")),
        format!("{} associated with {instance}", eip.public_ip),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eip(instance: Option<&str>) -> Eip {
        Eip {
            allocation_id: "eipalloc-1".into(),
            public_ip: "3.34.0.1".into(),
            instance_id: instance.map(str::to_string),
        }
    }

    #[test]
    fn actions_allocate_associate_or_nothing() {
        assert_eq!(actions(None, None, "m").len(), 1);
        assert!(
            actions(Some(&eip(None)), Some("i-1"), "m")[0]
                .what
                .contains("associate 3.34.0.1")
        );
        assert!(actions(Some(&eip(Some("i-0"))), Some("i-1"), "m").len() == 1);
        assert!(actions(Some(&eip(Some("i-1"))), Some("i-1"), "m").is_empty());
        assert!(
            actions(Some(&eip(None)), None, "m").is_empty(),
            "no instance yet: the launch plan carries it"
        );
    }
}
