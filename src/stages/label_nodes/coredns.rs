//! CoreDNS as `label-nodes` waits for it: everything after that stage (ArgoCD's repo-server
//! fetching Git, the platform's controllers) needs cluster DNS. kubeadm creates
//! `kube-system/coredns`; it becomes available only when a Ready node exists whose
//! NoSchedule/NoExecute taints its pods tolerate, so a wait that times out names the taints
//! that keep it Pending (the reference system's CoreDNS stayed Pending for exactly this).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node as KubeNode, Taint, Toleration};
use kube::api::Api;

use crate::error::Result;
use crate::stages::shared::node_labels::not_ready;

/// Namespace and name of kubeadm's CoreDNS Deployment.
pub const NAMESPACE: &str = "kube-system";
/// See [`NAMESPACE`].
pub const NAME: &str = "coredns";

/// Why CoreDNS is not available yet, or `None` when it is (or when the cluster has no
/// `kube-system/coredns`: kubeadm's addon phase skipped, another DNS in its place).
pub async fn waiting(client: &kube::Client) -> Result<Option<(String, Deployment)>> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let Some(d) = api
        .get_opt(NAME)
        .await
        .map_err(|e| crate::api::error("get", "deployment kube-system/coredns", e))?
    else {
        return Ok(None);
    };
    let status = d.status.clone().unwrap_or_default();
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let available = status.available_replicas.unwrap_or(0);
    if available >= 1 {
        return Ok(None);
    }
    let why = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Available")
        .and_then(|c| c.message)
        .unwrap_or_else(|| "no replica available".into());
    Ok(Some((format!("0 of {want} replicas available: {why}"), d)))
}

/// The scheduler's toleration match (core/v1 `Toleration.ToleratesTaint`).
fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key = t.key.as_deref().unwrap_or_default();
        effect_ok
            && match t.operator.as_deref() {
                Some("Exists") => key.is_empty() || key == taint.key,
                _ => {
                    key == taint.key
                        && t.value.as_deref().unwrap_or_default()
                            == taint.value.as_deref().unwrap_or_default()
                }
            }
    })
}

fn show(t: &Taint) -> String {
    match t.value.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => format!("{}={v}:{}", t.key, t.effect),
        None => format!("{}:{}", t.key, t.effect),
    }
}

/// What keeps CoreDNS's pods off every node: per Ready node, the NoSchedule/NoExecute taints the
/// pod template does not tolerate (grouped: taint → node count), plus nodes cordoned or NotReady.
pub fn blockers(d: &Deployment, nodes: &[KubeNode]) -> String {
    let spec = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    let tolerations = spec.tolerations.unwrap_or_default();
    let mut by_taint: BTreeMap<String, usize> = BTreeMap::new();
    let (mut cordoned, mut not_ready_nodes, mut free) = (0, 0, Vec::new());
    for n in nodes {
        if not_ready(n).is_some() {
            not_ready_nodes += 1;
            continue;
        }
        if n.spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
        {
            cordoned += 1;
            continue;
        }
        let blocking: Vec<String> = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .iter()
            .filter(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
            .filter(|t| !tolerates(&tolerations, t))
            .map(show)
            .collect();
        if blocking.is_empty() {
            free.push(n.metadata.name.clone().unwrap_or_default());
        }
        for t in blocking {
            *by_taint.entry(t).or_default() += 1;
        }
    }
    let mut parts: Vec<String> = by_taint
        .iter()
        .map(|(t, n)| format!("{n} node(s) have untolerated taint {t}"))
        .collect();
    if cordoned > 0 {
        parts.push(format!("{cordoned} node(s) cordoned"));
    }
    if not_ready_nodes > 0 {
        parts.push(format!("{not_ready_nodes} node(s) NotReady"));
    }
    if !free.is_empty() {
        parts.push(format!(
            "{} node(s) could take it ({}): check the coredns pods' events",
            free.len(),
            free.join(", ")
        ));
    }
    format!(
        "{}/{} nodes are available: {}",
        free.len(),
        nodes.len(),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(str::to_string),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn tol(key: Option<&str>, op: &str, value: Option<&str>, effect: Option<&str>) -> Toleration {
        Toleration {
            key: key.map(str::to_string),
            operator: Some(op.into()),
            value: value.map(str::to_string),
            effect: effect.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn tolerations_match_as_the_scheduler_does() {
        let cp = taint("node-role.kubernetes.io/control-plane", None, "NoSchedule");
        let infra = taint("dedicated", Some("infra"), "NoSchedule");
        let kubeadm = [
            tol(Some("CriticalAddonsOnly"), "Exists", None, None),
            tol(
                Some("node-role.kubernetes.io/control-plane"),
                "Equal",
                None,
                Some("NoSchedule"),
            ),
        ];
        assert!(tolerates(&kubeadm, &cp));
        assert!(!tolerates(&kubeadm, &infra));
        assert!(
            tolerates(&[tol(None, "Exists", None, None)], &infra),
            "tolerate everything"
        );
        assert!(tolerates(
            &[tol(Some("dedicated"), "Equal", Some("infra"), None)],
            &infra
        ));
        assert!(!tolerates(
            &[tol(Some("dedicated"), "Equal", Some("db"), None)],
            &infra
        ));
        assert!(!tolerates(
            &[tol(Some("dedicated"), "Exists", None, Some("NoExecute"))],
            &infra
        ));
        assert_eq!(show(&infra), "dedicated=infra:NoSchedule");
    }
}
