//! Cordon, drain through the Eviction API (PodDisruptionBudgets are honoured by the API server;
//! DaemonSet and mirror pods stay), and uncordon. A drain that a budget blocks past its timeout
//! fails naming the pod and the budget.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::error::{Error, Result};
use crate::retry::{Backoff, Try, retry};

/// Node annotation: the upgrade target (or `prune`) ecoboot cordoned the node for (a node cordoned with it is
/// ecoboot's own, from an interrupted run; any other cordon is someone else's).
pub const CORDONED_FOR: &str = "ecoboot.io/cordoned-for-upgrade";

fn api_error(action: &str, target: &str, e: kube::Error) -> Error {
    crate::api::error(action, target, e)
}

/// Marks `node` unschedulable (or schedulable again), recording why in [`CORDONED_FOR`].
pub async fn cordon(client: &kube::Client, node: &str, target: Option<&str>) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({
        "metadata": {"annotations": {CORDONED_FOR: target}},
        "spec": {"unschedulable": target.is_some()},
    });
    let params = PatchParams {
        field_manager: Some(crate::api::FIELD_MANAGER.into()),
        ..Default::default()
    };
    nodes
        .patch(node, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| api_error("cordon", &format!("node {node}"), e))?;
    Ok(())
}

/// The pods a drain evicts: everything on the node but DaemonSet pods, mirror pods and pods
/// already terminating.
async fn evictable(client: &kube::Client, node: &str) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .map_err(|e| api_error("list", &format!("pods on {node}"), e))?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| {
            let m = &p.metadata;
            let daemon = (m.owner_references.iter().flatten()).any(|o| o.kind == "DaemonSet");
            let mirror =
                (m.annotations.iter().flatten()).any(|(k, _)| k == "kubernetes.io/config.mirror");
            !daemon && !mirror && m.deletion_timestamp.is_none()
        })
        .collect())
}

/// The budgets in the pod's namespace whose selector matches it.
async fn budgets_of(client: &kube::Client, pod: &Pod) -> Vec<String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let Ok(list) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|b| {
            let sel = b.spec.as_ref().and_then(|s| s.selector.as_ref());
            sel.and_then(|s| s.match_labels.as_ref())
                .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
        })
        .filter_map(|b| b.metadata.name.map(|n| format!("{ns}/{n}")))
        .collect()
}

/// Which operation drains, for its diagnostics: the event stage and the command that resumes it.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// Event stage id (`upgrade`, `prune`).
    pub stage: &'static str,
    /// The command that continues the operation (`ecoboot upgrade`).
    pub rerun: &'static str,
}

/// Evicts every evictable pod on `node` until none is left; a pod whose budget keeps refusing
/// past `timeout` fails the drain naming the pod and the budget. Returns how many were evicted.
pub async fn drain(
    client: &kube::Client,
    node: &str,
    timeout: Duration,
    op: Op,
    progress: &(dyn Fn(String) + Sync),
) -> Result<usize> {
    let evicted = AtomicUsize::new(0);
    let blocked: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    let set = |pod: Option<(String, String)>| {
        let mut b = blocked.lock().unwrap_or_else(|p| p.into_inner());
        match pod {
            Some((pod, pdb)) => {
                b.insert(pod, pdb);
            }
            None => b.clear(),
        }
    };
    let outcome = retry(&Backoff::poll(Duration::from_secs(2), timeout), |_| {
        let (evicted, set) = (&evicted, &set);
        async move {
            let pods = match evictable(client, node).await {
                Ok(p) => p,
                Err(e) => return Try::Fail(Some(e)),
            };
            if pods.is_empty() {
                return Try::Done(());
            }
            set(None);
            for pod in pods {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                match api.evict(&name, &EvictParams::default()).await {
                    Ok(_) => {
                        evicted.fetch_add(1, Ordering::Relaxed);
                        progress(format!("evicted {ns}/{name}"));
                    }
                    Err(kube::Error::Api(r)) if r.code == 404 => {}
                    Err(kube::Error::Api(r)) if r.code == 429 => {
                        let budgets = budgets_of(client, &pod).await.join(", ");
                        set(Some((format!("{ns}/{name}"), budgets)));
                    }
                    Err(e) => {
                        let target = format!("pod {ns}/{name}");
                        return Try::Fail(Some(api_error("evict", &target, e)));
                    }
                }
            }
            Try::Again(None)
        }
    })
    .await;
    match outcome {
        Ok(()) => Ok(evicted.into_inner()),
        Err(Some(e)) => Err(e),
        Err(None) => {
            let blocked = blocked.into_inner().unwrap_or_else(|p| p.into_inner());
            let lines: Vec<String> = blocked
                .iter()
                .map(|(pod, pdb)| match pdb.as_str() {
                    "" => format!("  pod {pod} is still on the node"),
                    pdb => format!("  pod {pod}: PodDisruptionBudget {pdb} allows no disruption"),
                })
                .collect();
            Err(Error::StageFailed {
                stage: op.stage.into(),
                message: format!(
                    "draining {node} did not finish within {}s (the node stays cordoned):\n{}",
                    timeout.as_secs(),
                    lines.join("\n")
                ),
                help: format!(
                    "relax the budget or scale the workload so another replica is healthy, then rerun `{}`: it continues at this node",
                    op.rerun
                ),
            })
        }
    }
}
