//! Stage `label-nodes`: reconciles every node's labels and taints through the API on every run
//! (including `node-role.kubernetes.io/<role>`, which kubelet may not set itself), removes the
//! ones ecoboot set earlier that the config no longer lists, then waits until every configured
//! node is `Ready` and CoreDNS is available (see [`coredns`]). What ecoboot owns is recorded on the Node itself (annotations), so the
//! cluster stays the authority even without the state file.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::Value;

mod coredns;
mod serving_certs;

use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::stages::shared::ids;
use crate::stages::shared::node_labels::{not_ready, reconcile};

/// Stage id.
pub const ID: &str = ids::LABEL_NODES;

/// The `label-nodes` stage.
pub struct LabelNodes;

async fn nodes(client: &kube::Client) -> Result<BTreeMap<String, KubeNode>> {
    let api: Api<KubeNode> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| crate::api::error("list", "nodes", e))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name.clone().map(|name| (name, n)))
        .collect())
}

/// What one node still needs.
pub struct NodeTodo {
    name: String,
    /// The merge patch and what it changes (none: labels and taints are right).
    patch: Option<(Value, String)>,
    /// Why the node is not Ready (or not registered) yet.
    waiting: Option<String>,
}

/// The nodes that need a patch or are not Ready yet, and whether CoreDNS is still unavailable.
pub struct LabelPlan {
    nodes: Vec<NodeTodo>,
    /// Why CoreDNS is not available yet.
    dns: Option<String>,
    /// Kubelet serving-certificate requests to approve ([`serving_certs`]).
    csrs: Vec<serving_certs::Approve>,
}

impl StagePlan for LabelPlan {
    fn actions(&self) -> Vec<Action> {
        let mut out = Vec::new();
        for n in &self.nodes {
            if let Some((_, what)) = &n.patch {
                out.push(Action::new(&n.name, what.clone()));
            }
            match n.waiting.as_deref() {
                Some(NOT_REGISTERED) => {
                    out.push(Action::new(&n.name, "not registered yet: wait for it"))
                }
                Some(why) => out.push(Action::new(&n.name, format!("wait until Ready ({why})"))),
                None => {}
            }
        }
        if let Some(why) = &self.dns {
            out.push(Action::new(
                format!("deployment/{}/{}", coredns::NAMESPACE, coredns::NAME),
                format!("wait until available ({why})"),
            ));
        }
        for c in &self.csrs {
            let what = format!(
                "approve kubelet serving certificate request {} ({})",
                c.csr, c.names
            );
            out.push(Action::new(&c.node, what));
        }
        out
    }
}

const NOT_REGISTERED: &str = "not registered";

#[async_trait]
impl Stage for LabelNodes {
    type Plan = LabelPlan;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Reconcile node labels and taints, wait until Ready"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<LabelPlan>> {
        let client = cx.kube(ID).await?;
        let live = nodes(&client).await?;
        let mut todo = Vec::new();
        for node in cx.config.nodes() {
            let name = node.name.as_str();
            let (patch, waiting) = match live.get(name) {
                None => (None, Some(NOT_REGISTERED.to_string())),
                Some(l) => (reconcile(node, l), not_ready(l)),
            };
            if patch.is_some() || waiting.is_some() {
                todo.push(NodeTodo {
                    name: name.to_string(),
                    patch,
                    waiting,
                });
            }
        }
        let dns = coredns::waiting(&client).await?.map(|(why, _)| why);
        let (csrs, refused) = serving_certs::pending(cx, &client).await?;
        for (csr, why) in refused {
            cx.events.emit(crate::event::Event::Warning {
                subject: format!("csr/{csr}"),
                message: format!("kubelet serving certificate request not approved: {why}"),
                help: "check where it comes from; `kubectl certificate deny` it, or approve it by hand if the node is yours".into(),
            });
        }
        Ok(if todo.is_empty() && dns.is_none() && csrs.is_empty() {
            Found::done(format!(
                "{} node(s) labelled, tainted and Ready; CoreDNS available",
                live.len()
            ))
        } else {
            Found::Todo(LabelPlan {
                nodes: todo,
                dns,
                csrs,
            })
        })
    }

    /// Sends the planned patches, then waits until every node is Ready, reconciling the nodes
    /// that register meanwhile.
    async fn apply(&self, cx: &Ctx, plan: LabelPlan) -> Result<()> {
        let client = cx.kube(ID).await?;
        let api: Api<KubeNode> = Api::all(client.clone());
        for (name, (patch, what)) in
            (plan.nodes.into_iter()).filter_map(|n| Some((n.name, n.patch?)))
        {
            patch_node(cx, &api, &name, &patch, what).await?;
        }
        let timeout = Duration::from_secs(cx.config.cluster.spec.kubernetes.wait_seconds);
        let reported: std::sync::Mutex<BTreeMap<String, String>> = Default::default();
        let last = crate::api::wait::until(timeout, Duration::from_secs(1), || {
            let (api, client, reported) = (&api, &client, &reported);
            async move {
                let live = nodes(client).await?;
                let mut waiting = Vec::new();
                for node in cx.config.nodes() {
                    let name = node.name.as_str();
                    let Some(l) = live.get(name) else {
                        waiting.push(format!("{name}: {NOT_REGISTERED}"));
                        continue;
                    };
                    if let Some((patch, what)) = reconcile(node, l) {
                        patch_node(cx, api, name, &patch, what).await?;
                    }
                    let status = match not_ready(l) {
                        None => "Ready".to_string(),
                        Some(why) => {
                            waiting.push(format!("{name}: {why}"));
                            why
                        }
                    };
                    let mut seen = reported.lock().unwrap_or_else(|p| p.into_inner());
                    if seen.insert(name.to_string(), status.clone()) != Some(status.clone()) {
                        cx.events.progress(ID, Some(name), status);
                    }
                }
                Ok((!waiting.is_empty()).then(|| waiting.join("; ")))
            }
        })
        .await?;
        if let Some(waiting) = last {
            return Err(Error::StageFailed {
                stage: ID.into(),
                message: format!("not every node is Ready after {}s: {waiting}", timeout.as_secs()),
                help: "a node that never registered did not join (`ecoboot stage join-workers`); a NotReady node usually has no CNI yet: check calico-node on it and the kubelet log".into(),
            });
        }
        wait_for_dns(cx, &client, timeout).await?;
        // The planned requests, then those kubelets that started meanwhile made.
        let approve = |c: serving_certs::Approve| {
            let client = &client;
            async move {
                serving_certs::approve(client, &c).await?;
                let what = format!("serving certificate request {} approved", c.csr);
                cx.events.progress(ID, Some(&c.node), what);
                Ok::<(), Error>(())
            }
        };
        for c in plan.csrs {
            approve(c).await?;
        }
        for c in serving_certs::pending(cx, &client).await?.0 {
            approve(c).await?;
        }
        Ok(())
    }
}

/// Waits until CoreDNS is available; on timeout names what keeps its pods off every node.
async fn wait_for_dns(cx: &Ctx, client: &kube::Client, timeout: Duration) -> Result<()> {
    let subject = format!("deployment/{}/{}", coredns::NAMESPACE, coredns::NAME);
    let stuck = std::sync::Mutex::new(None);
    let last = crate::api::wait::until(timeout, Duration::from_secs(1), || {
        let stuck = &stuck;
        async move {
            let found = coredns::waiting(client).await?;
            let why = found.as_ref().map(|(why, _)| why.clone());
            *stuck.lock().unwrap_or_else(|p| p.into_inner()) = found.map(|(_, d)| d);
            Ok(why)
        }
    })
    .await?;
    let Some(why) = last else {
        cx.events.progress(ID, Some(&subject), "available");
        return Ok(());
    };
    let deployment = stuck.into_inner().unwrap_or_else(|p| p.into_inner());
    let live: Vec<KubeNode> = nodes(client).await?.into_values().collect();
    let blockers = deployment
        .map(|d| coredns::blockers(&d, &live))
        .unwrap_or_default();
    Err(Error::StageFailed {
        stage: ID.into(),
        message: format!(
            "CoreDNS ({subject}) is not available after {}s: {why}; {blockers}",
            timeout.as_secs()
        ),
        help: "leave at least one node without NoSchedule/NoExecute taints (or with taints CoreDNS tolerates) and uncordoned; everything after this stage needs cluster DNS".into(),
    })
}

/// Sends one node's merge patch (field manager ecoboot) and reports what it changed.
async fn patch_node(
    cx: &Ctx,
    api: &Api<KubeNode>,
    name: &str,
    patch: &Value,
    what: String,
) -> Result<()> {
    let params = PatchParams {
        field_manager: Some(crate::api::FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch(name, &params, &Patch::Merge(patch))
        .await
        .map_err(|e| crate::api::error("label", &format!("node {name}"), e))?;
    cx.count("api.updated", 1);
    cx.events.progress(ID, Some(name), what);
    Ok(())
}
