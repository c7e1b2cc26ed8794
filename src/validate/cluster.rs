//! The checks that read the API: nodes (count, Ready, labels, taints), the control plane's
//! static pods, pods of the system-critical priority classes, ArgoCD's Applications.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node as KubeNode, Pod};
use kube::api::{Api, ListParams};

use super::Check;
use crate::config::Config;
use crate::stages::shared::node_labels::{not_ready, reconcile};

/// The control plane's static pods, by component.
const STATIC: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
];

fn pod_ready(p: &Pod) -> bool {
    let st = p.status.as_ref();
    st.and_then(|s| s.phase.as_deref()) == Some("Running")
        && (st.and_then(|s| s.conditions.as_ref()).into_iter().flatten())
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Why a pod is not Ready, from its phase and first waiting/terminated container.
pub(super) fn why_not(p: &Pod) -> String {
    let st = p.status.clone().unwrap_or_default();
    let phase = st.phase.unwrap_or_else(|| "Unknown".into());
    let container = (st.container_statuses.iter().flatten()).find_map(|c| {
        let s = c.state.as_ref()?;
        (s.waiting
            .as_ref()
            .map(|w| (w.reason.clone(), w.message.clone())))
        .or_else(|| {
            s.terminated
                .as_ref()
                .map(|t| (t.reason.clone(), t.message.clone()))
        })
    });
    match container {
        Some((reason, message)) => format!(
            "{phase}: {} {}",
            reason.unwrap_or_default(),
            message.unwrap_or_default()
        )
        .trim()
        .to_string(),
        None => format!("{phase}, not Ready"),
    }
}

fn failed(check: &'static str, what: &str, e: kube::Error) -> Vec<Check> {
    vec![Check::fail(check, what, format!("cannot read: {e}"))]
}

/// Node count, Ready, labels and taints as configured. Nodes not in the config fail the count
/// unless `extra_ok` (after `up`, which already reported them and leaves them unless `--prune`).
pub(super) async fn nodes(client: &kube::Client, config: &Config, extra_ok: bool) -> Vec<Check> {
    let list = match Api::<KubeNode>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => l.items,
        Err(e) => return failed("nodes", "nodes", e),
    };
    let live: BTreeMap<String, KubeNode> = (list.into_iter())
        .filter_map(|n| Some((n.metadata.name.clone()?, n)))
        .collect();
    let mut out = Vec::new();
    let want = config.nodes().count();
    let extra: Vec<&String> = (live.keys())
        .filter(|n| config.nodes().all(|c| c.name.as_str() != n.as_str()))
        .collect();
    if !extra.is_empty() {
        let detail = format!(
            "{} Node(s), the config has {want}; not in the config: {extra:?} (`ecoboot up --prune` removes them)",
            live.len()
        );
        out.push(match extra_ok {
            true => Check::pass("nodes", "count", detail),
            false => Check::fail("nodes", "count", detail),
        });
    }
    for node in config.nodes() {
        let name = node.name.as_str();
        let Some(n) = live.get(name) else {
            out.push(Check::fail("nodes", name, "not registered: kubelet never joined (see `ecoboot status` and the node's kubelet log)"));
            continue;
        };
        if let Some(why) = not_ready(n) {
            out.push(Check::fail("nodes", name, why));
        } else if let Some((_, change)) = reconcile(node, n) {
            out.push(Check::fail("nodes", name, format!("labels/taints differ from the config ({change}): run `ecoboot stage label-nodes`")));
        } else {
            out.push(Check::pass(
                "nodes",
                name,
                "Ready, labels and taints as configured",
            ));
        }
    }
    out
}

/// Every control plane's static pods (`<component>-<node>` in kube-system) Running and Ready.
pub(super) async fn static_pods(client: &kube::Client, config: &Config) -> Vec<Check> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let mut out = Vec::new();
    for node in config.control_planes().map(|n| n.name.as_str()) {
        for c in STATIC {
            let name = format!("{c}-{node}");
            out.push(match pods.get_opt(&name).await {
                Ok(Some(p)) if pod_ready(&p) => Check::pass("static pods", &name, "Running, Ready"),
                Ok(Some(p)) => Check::fail("static pods", &name, format!("{}: see `crictl ps -a` and `/var/log/pods` on {node}", why_not(&p))),
                Ok(None) => Check::fail("static pods", &name, format!("no mirror pod: is kubelet running on {node} and is /etc/kubernetes/manifests/{c}.yaml there?")),
                Err(e) => Check::fail("static pods", &name, format!("cannot read: {e}")),
            });
        }
    }
    out
}

/// Every pod of priority class system-cluster-critical or system-node-critical Ready.
pub(super) async fn critical_pods(client: &kube::Client) -> Vec<Check> {
    let list = match Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => l.items,
        Err(e) => return failed("critical pods", "pods", e),
    };
    let critical = |p: &Pod| {
        let class = p
            .spec
            .as_ref()
            .and_then(|s| s.priority_class_name.as_deref());
        matches!(
            class,
            Some("system-cluster-critical" | "system-node-critical")
        )
    };
    let mut out = Vec::new();
    for p in list.iter().filter(|p| critical(p)) {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = format!("{ns}/{}", p.metadata.name.clone().unwrap_or_default());
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| "(not scheduled)".into());
        out.push(match pod_ready(p) {
            true => Check::pass("critical pods", name, format!("Ready on {node}")),
            false => Check::fail("critical pods", name, format!("on {node}: {}", why_not(p))),
        });
    }
    if out.is_empty() {
        out.push(Check::fail("critical pods", "kube-system", "no system-critical pod at all: the control plane's static pods and CoreDNS are missing"));
    }
    out
}

/// ArgoCD's Applications Synced and Healthy (when the config installs ArgoCD).
pub(super) async fn applications(client: &kube::Client, config: &Config) -> Vec<Check> {
    let ns = config.cluster.spec.argocd.namespace.as_str();
    let apps = match crate::stages::root_app::app_statuses(client, ns).await {
        Ok(a) => a,
        Err(e) => return failed("applications", ns, e),
    };
    (apps.into_iter())
        .map(|a| match a.settled() {
            true => Check::pass("applications", &a.name, "Synced, Healthy"),
            false => Check::fail(
                "applications",
                &a.name,
                format!(
                    "{} {}: {}",
                    a.sync,
                    a.health,
                    a.error.clone().unwrap_or(a.detail.clone())
                ),
            ),
        })
        .collect()
}
