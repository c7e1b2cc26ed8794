//! Kubelet serving certificates (`serverTLSBootstrap`): each kubelet asks for its serving
//! certificate with a CSR (signer `kubernetes.io/kubelet-serving`), which nothing in a kubeadm
//! cluster approves. ecoboot approves one only when it comes from a configured node
//! (`system:node:<name>` in `system:nodes`) and every name it asks for is that node's: its
//! name, or an address EC2 reports for its instance (or its configured address). Anything
//! else stays pending and is reported.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::engine::Ctx;
use crate::error::Result;

const SIGNER: &str = "kubernetes.io/kubelet-serving";

/// A pending serving CSR ecoboot will approve.
#[derive(Debug, Clone)]
pub struct Approve {
    /// The CSR's name.
    pub csr: String,
    /// The node it is for.
    pub node: String,
    /// What it asks to be named (for the plan line).
    pub names: String,
}

/// Pending serving CSRs: those to approve, and those refused with why.
pub async fn pending(
    cx: &Ctx,
    client: &kube::Client,
) -> Result<(Vec<Approve>, Vec<(String, String)>)> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let list = (api.list(&ListParams::default()).await)
        .map_err(|e| crate::api::error("list", "certificatesigningrequests", e))?;
    let records = cx.node_records().await.ok().flatten();
    let mut approve = Vec::new();
    let mut refused = Vec::new();
    for c in list.items {
        let name = c.metadata.name.clone().unwrap_or_default();
        let decided =
            (c.status.as_ref().and_then(|s| s.conditions.as_ref())).is_some_and(|v| !v.is_empty());
        if c.spec.signer_name != SIGNER || decided {
            continue;
        }
        let user = c.spec.username.clone().unwrap_or_default();
        let Some(node) = user.strip_prefix("system:node:") else {
            refused.push((name, format!("requested by {user:?}, not a node")));
            continue;
        };
        let Some(configured) = cx.config.nodes().find(|n| n.name.as_str() == node) else {
            refused.push((name, format!("node {node} is not in the config")));
            continue;
        };
        if !(c.spec.groups.iter().flatten()).any(|g| g == "system:nodes") {
            refused.push((name, format!("{user} is not in group system:nodes")));
            continue;
        }
        let pem = String::from_utf8_lossy(&c.spec.request.0).into_owned();
        let names = match crate::csr::pem_der(&pem).and_then(|der| crate::csr::names(&der)) {
            Ok(n) => n,
            Err(why) => {
                refused.push((name, format!("unreadable request: {why}")));
                continue;
            }
        };
        let rec = records.as_ref().and_then(|r| r.nodes.get(node));
        let mut ips: BTreeSet<IpAddr> = BTreeSet::new();
        for ip in rec.iter().flat_map(|r| [&r.private_ip, &r.public_ip]) {
            ips.extend(ip.parse::<IpAddr>());
        }
        if let Some(a) = &configured.address {
            let host = a
                .value
                .rsplit_once(':')
                .map_or(a.value.as_str(), |(h, _)| h);
            ips.extend(host.parse::<IpAddr>());
        }
        let strange: Vec<String> = (names.ips.iter())
            .filter(|ip| !ips.contains(ip))
            .map(|ip| ip.to_string())
            .chain(names.dns.iter().filter(|d| d.as_str() != node).cloned())
            .collect();
        if !strange.is_empty() {
            let why = format!(
                "node {node} asks for {} that EC2 does not report for it",
                strange.join(", ")
            );
            refused.push((name, why));
            continue;
        }
        let all: Vec<String> = names
            .dns
            .iter()
            .cloned()
            .chain(names.ips.iter().map(|i| i.to_string()))
            .collect();
        approve.push(Approve {
            csr: name,
            node: node.to_string(),
            names: all.join(", "),
        });
    }
    Ok((approve, refused))
}

/// Approves `a` (the `approval` subresource, as `kubectl certificate approve` does).
pub async fn approve(client: &kube::Client, a: &Approve) -> Result<()> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let patch = json!({"status": {"conditions": [{
        "type": "Approved", "status": "True", "reason": "EcobootApproved",
        "message": format!("ecoboot: the names match node {}'s instance", a.node),
    }]}});
    (api.patch_approval(&a.csr, &PatchParams::default(), &Patch::Merge(&patch))
        .await)
        .map(drop)
        .map_err(|e| crate::api::error("approve", &format!("csr {}", a.csr), e))
}
