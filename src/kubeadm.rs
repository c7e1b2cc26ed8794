//! kubeadm configuration files generated from the cluster config (kubeadm.k8s.io/v1beta4).
//! Labels, taints and the AWS provider ID are part of node registration, so a node never
//! exists in the API without them.

use serde_json::{Value, json};

use crate::config::{Config, Node, Taint};

/// What kubeadm needs to know about one node beyond the config.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    /// Private IPv4 (advertise address, control-plane endpoint).
    pub private_ip: String,
    /// Address ecoboot reaches the node at (goes into the API server certificate).
    pub public_address: String,
    /// The node's public IPv4 as AWS reports it (the control plane's Elastic IP), also in the
    /// certificate when it differs from `public_address` (a configured DNS name or bastion).
    pub public_ip: String,
    /// `aws:///<az>/<instance-id>` when the instance is known.
    pub provider_id: Option<String>,
}

/// The description of the bootstrap token `kubeadm init` creates, so ecoboot can find and
/// delete it once the stage is done.
pub const INIT_TOKEN_DESCRIPTION: &str = "ecoboot: kubeadm init token, deleted after init-master";

/// Placeholder replaced on the node by the installed kubeadm's own version.
pub const VERSION_PLACEHOLDER: &str = "__KUBEADM_VERSION__";

fn registration(node: &Node, facts: &NodeFacts) -> Value {
    let mut extra = Vec::new();
    let labels: Vec<String> = node
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.value))
        .collect();
    if !labels.is_empty() {
        extra.push(json!({"name": "node-labels", "value": labels.join(",")}));
    }
    if let Some(id) = &facts.provider_id {
        extra.push(json!({"name": "provider-id", "value": id}));
    }
    // The address kubelet registers and puts in its serving certificate request: the one EC2
    // reports, which label-nodes checks the request against.
    if !facts.private_ip.is_empty() {
        extra.push(json!({"name": "node-ip", "value": facts.private_ip}));
    }
    let taints: Vec<Value> = node
        .taints
        .iter()
        .filter_map(|t| t.parse::<Taint>().ok())
        .map(|t| {
            let mut v = json!({"key": t.key, "effect": t.effect.as_str()});
            if !t.value.is_empty() {
                v["value"] = json!(t.value);
            }
            v
        })
        .collect();
    json!({
        "name": node.name.value,
        "criSocket": "unix:///run/containerd/containerd.sock",
        "kubeletExtraArgs": extra,
        "taints": taints,
    })
}

/// Serialises documents as one multi-document YAML file (a serializer, never text
/// templates: no config value can add a key or end a document).
fn documents(header: Option<&str>, docs: &[Value]) -> String {
    let mut out = String::new();
    if let Some(h) = header {
        out.push_str(&format!("# {h}\n"));
    }
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(doc).expect("JSON values serialise"));
    }
    out
}

/// InitConfiguration + ClusterConfiguration for the control-plane node. kubeadm's own
/// bootstrap token lives 15 minutes (ecoboot deletes it after the stage).
pub fn init_config(config: &Config, node: &Node, facts: &NodeFacts) -> String {
    let k = &config.cluster.spec.kubernetes;
    let version = k.version.trim_start_matches('v');
    let version = if version.split('.').count() == 3 {
        format!("v{version}")
    } else {
        VERSION_PLACEHOLDER.to_string()
    };
    let mut sans = vec![
        facts.public_address.clone(),
        facts.public_ip.clone(),
        facts.private_ip.clone(),
        "127.0.0.1".to_string(),
        "localhost".to_string(),
    ];
    sans.retain(|s| !s.is_empty());
    sans.dedup();
    let init = json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "InitConfiguration",
        "bootstrapTokens": [{
            "description": INIT_TOKEN_DESCRIPTION,
            "ttl": "15m0s",
            "usages": ["signing", "authentication"],
            "groups": ["system:bootstrappers:kubeadm:default-node-token"],
        }],
        "localAPIEndpoint": {"advertiseAddress": facts.private_ip, "bindPort": 6443},
        "nodeRegistration": registration(node, facts),
        "skipPhases": ["addon/kube-proxy"],
    });
    let cluster = json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "clusterName": config.name(),
        "kubernetesVersion": version,
        "controlPlaneEndpoint": format!("{}:6443", facts.private_ip),
        "networking": {"podSubnet": k.pod_cidr.value, "serviceSubnet": k.service_cidr.value},
        "apiServer": {
            "certSANs": sans,
            "extraArgs": crate::hardening::api_server_args(config).into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect::<Vec<_>>(),
            "extraVolumes": crate::hardening::api_server_volumes(config),
        },
    });
    documents(
        Some("generated by ecoboot; do not edit (rewritten on every init)"),
        &[init, cluster, kubelet_configuration()],
    )
}

/// The cluster-wide kubelet settings `kubeadm init` stores (ConfigMap kubelet-config) and every
/// joining node downloads: systemd cgroups (as containerd is configured), client certificate
/// rotation (kubelets renew their own client certificates before they expire), no read-only
/// port, and protected kernel defaults.
fn kubelet_configuration() -> serde_json::Value {
    json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
        "rotateCertificates": true,
        // Hardening (CIS 4.2.x): no unauthenticated read-only port, and kubelet refuses to
        // start on kernel settings other than its defaults (prepare-nodes sets them).
        "readOnlyPort": 0,
        "protectKernelDefaults": true,
        // Serving certificates signed by the cluster CA (requests approved by label-nodes after
        // checking them against EC2), not self-signed ones.
        "serverTLSBootstrap": true,
    })
}

/// JoinConfiguration for a worker. Contains the bootstrap token: never log or store it.
pub fn join_config(
    node: &Node,
    facts: &NodeFacts,
    endpoint: &str,
    token: &str,
    ca_hash: &str,
) -> String {
    let join = json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "JoinConfiguration",
        "discovery": {"bootstrapToken": {
            "apiServerEndpoint": endpoint,
            "token": token,
            "caCertHashes": [ca_hash],
        }},
        "nodeRegistration": registration(node, facts),
    });
    documents(None, &[join])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::snapshot;

    fn facts() -> NodeFacts {
        NodeFacts {
            private_ip: "10.0.1.10".into(),
            public_address: "54.180.0.10".into(),
            public_ip: "54.180.0.10".into(),
            provider_id: Some("aws:///ap-northeast-2a/i-0123456789abcdef0".into()),
        }
    }

    #[test]
    fn the_elastic_ip_joins_the_sans_when_ecoboot_reaches_the_node_elsewhere() {
        let config = crate::config::tests_support::config();
        let mut f = facts();
        f.public_address = "api.example.com".into();
        let text = init_config(&config, config.control_plane(), &f);
        for san in ["api.example.com", "54.180.0.10", "10.0.1.10"] {
            assert!(text.contains(san), "{san} in\n{text}");
        }
    }

    #[test]
    fn master_init_config_snapshot() {
        let config = crate::config::tests_support::config();
        snapshot(
            "kubeadm-init-k8s-master.yaml",
            &init_config(&config, config.control_plane(), &facts()),
        );
    }

    #[test]
    fn worker_join_config_snapshot() {
        let config = crate::config::tests_support::config();
        let node = config
            .nodes()
            .find(|n| n.name.as_str() == "k8s-postgresql")
            .unwrap();
        let join = join_config(
            node,
            &facts(),
            "10.0.1.10:6443",
            "abcdef.0123456789abcdef",
            "sha256:00ff",
        );
        snapshot("kubeadm-join-k8s-postgresql.yaml", &join);
    }
}
