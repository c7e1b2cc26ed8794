//! One home for what is known about each node: the instances stage's record (instance, zone,
//! addresses), the SSH address rule (the configured `address`, else the public IP), and the
//! files in the cluster's state directory that belong to the nodes (admin.conf, kubeconfig,
//! known_hosts). Clients and stages read these; nothing here reaches up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The journal key under which the `instances` stage records [`InstancesOut`].
pub const INSTANCES: &str = "instances";

/// The journal key under which the `load-balancer` stage records [`LoadBalancerOut`].
pub const LOAD_BALANCER: &str = "load-balancer";

/// What `load-balancer` records: the API load balancer (several control planes only).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadBalancerOut {
    /// Load balancer ARN.
    pub arn: String,
    /// Its DNS name: the control-plane endpoint unless the config names its own.
    pub dns_name: String,
}

/// With several control planes, the control-plane endpoint hosts: the configured
/// `controlPlaneEndpoint` first, then the load balancer's DNS name (both go into the API
/// server certificate); empty with one control plane or while no load balancer is known.
pub fn endpoints(config: &crate::config::Config, lb: Option<LoadBalancerOut>) -> Vec<String> {
    if !config.is_ha() {
        return Vec::new();
    }
    let mut out: Vec<String> = (config.cluster.spec.kubernetes.control_plane_endpoint)
        .iter()
        .map(|e| e.value.clone())
        .chain(lb.map(|l| l.dns_name).filter(|d| !d.is_empty()))
        .collect();
    out.dedup();
    out
}

/// The host a client outside the VPC reaches the API server at with `apiAccess: direct`: the
/// control-plane endpoint with several control planes (the internet-facing load balancer, or
/// the configured name), else the control plane's SSH host.
pub fn api_host(
    config: &Config,
    records: Option<&InstancesOut>,
    lb: Option<LoadBalancerOut>,
) -> String {
    if let Some(endpoint) = endpoints(config, lb).into_iter().next() {
        return endpoint;
    }
    let cp = config.control_plane().name.value.clone();
    let address = ssh_address(config, &cp, records);
    host_port(&address, 22).0
}

/// What the stage records in state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InstancesOut {
    /// The AMI pinned on first use; later runs never switch to a newer one.
    pub ami_id: String,
    /// Launch generation per node; bumped when AWS answers a token with a terminated instance.
    #[serde(default)]
    pub generations: BTreeMap<String, u32>,
    /// ClientToken journaled before each launch.
    #[serde(default)]
    pub tokens: BTreeMap<String, String>,
    /// What was found per node.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeOut>,
}

/// One node's instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeOut {
    /// Instance id.
    pub instance_id: String,
    /// Availability zone.
    pub az: String,
    /// Private IPv4.
    pub private_ip: String,
    /// Public IPv4 (empty if none).
    pub public_ip: String,
    /// Instance type as running.
    pub instance_type: String,
    /// Current state.
    pub state: String,
    /// The SSH address last configured for the node (`address`), kept after the node leaves
    /// the config so `up --prune` can still reach it; empty: the public IP is the address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ssh: String,
}

/// A node's SSH address as written: its configured `address` (`host[:port]`), else the public
/// IP `instances` recorded; empty when neither is known.
pub fn ssh_address(config: &Config, node: &str, out: Option<&InstancesOut>) -> String {
    let configured = config
        .nodes()
        .find(|n| n.name.as_str() == node)
        .and_then(|n| n.address.as_ref());
    let in_config = config.nodes().any(|n| n.name.as_str() == node);
    match configured {
        Some(addr) => addr.value.clone(),
        None => out
            .and_then(|o| o.nodes.get(node))
            .map(|n| match n.ssh.as_str() {
                // A node no longer configured keeps the address it was last reached at.
                ssh if !in_config && !ssh.is_empty() => ssh.to_string(),
                _ => n.public_ip.clone(),
            })
            .unwrap_or_default(),
    }
}

/// [`ssh_address`] split into host and port (`default_port` when the address has none).
pub fn host_port(address: &str, default_port: u16) -> (String, u16) {
    match address.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(default_port)),
        None => (address.to_string(), default_port),
    }
}

/// The cluster's admin kubeconfig (fetched by `init-master`, 0600).
pub fn admin_conf(state_dir: &Path) -> PathBuf {
    state_dir.join("admin.conf")
}

/// The user kubeconfig `ecoboot kubeconfig` writes by default (0600).
pub fn kubeconfig(state_dir: &Path) -> PathBuf {
    state_dir.join("kubeconfig")
}

/// ecoboot's own known_hosts for the cluster's nodes.
pub fn known_hosts(state_dir: &Path) -> PathBuf {
    state_dir.join("known_hosts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_is_the_load_balancer_with_several_control_planes() {
        let lb = || {
            Some(LoadBalancerOut {
                arn: "arn:aws:elasticloadbalancing:x".into(),
                dns_name: "ecoboot-c-api-1.elb.amazonaws.com".into(),
            })
        };
        let ha = crate::config::tests_support::ha_config();
        assert_eq!(
            api_host(&ha, None, lb()),
            "ecoboot-c-api-1.elb.amazonaws.com"
        );
        assert_eq!(endpoints(&ha, None), Vec::<String>::new());
        let one = crate::config::tests_support::config();
        assert!(
            endpoints(&one, lb()).is_empty(),
            "one control plane: no endpoint"
        );
        assert_ne!(
            api_host(&one, None, lb()),
            "ecoboot-c-api-1.elb.amazonaws.com"
        );
    }
}
