//! Where each node is reached: its configured `address`, else the public IP the `instances`
//! stage recorded.

use super::Target;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::nodes::{self, InstancesOut};

/// The SSH targets of every node: static `address` from config, else the public IP the
/// `instances` stage recorded. `stage` is named in the error when addresses are missing.
pub fn targets(
    config: &Config,
    instances: Option<&InstancesOut>,
    stage: &'static str,
) -> Result<Vec<Target>> {
    targets_of(config, instances, stage, |_, _| true)
}

/// [`targets`] of the nodes `keep` selects (by name and role): another node's missing address
/// (its instance still starting) is not an error here.
pub fn targets_of(
    config: &Config,
    instances: Option<&InstancesOut>,
    stage: &'static str,
    keep: impl Fn(&str, crate::config::Role) -> bool,
) -> Result<Vec<Target>> {
    let default_port = config.cluster.spec.ssh.port;
    config
        .nodes()
        .filter(|n| keep(n.name.as_str(), n.role.unwrap_or_default()))
        .map(|n| {
            let address = nodes::ssh_address(config, &n.name, instances);
            if address.is_empty() {
                return Err(Error::Prerequisite {
                    stage,
                    what: format!("the address of node `{}`", n.name.value),
                    needs: "instances",
                });
            }
            let (host, port) = nodes::host_port(&address, default_port);
            let instance_id = instances
                .and_then(|o| o.nodes.get(n.name.as_str()))
                .map(|i| i.instance_id.clone())
                .filter(|id| !id.is_empty());
            Ok(Target {
                instance_id,
                node: n.name.value.clone(),
                role: n.role.unwrap_or_default(),
                host,
                port,
            })
        })
        .collect()
}
