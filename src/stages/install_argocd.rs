//! Stage `install-argocd`: the pinned ArgoCD install manifest, rendered with the settings the
//! reference system patched in after the fact (server.insecure, the argocd-server Service,
//! node placement, NetworkPolicies kept or dropped) plus the namespace and the configured
//! AppProjects, applied with server-side apply (client-side apply cannot work: the
//! ApplicationSet CRD exceeds the 262144-byte annotation limit); then a bounded wait until every
//! ArgoCD Deployment and the application-controller StatefulSet are available.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, DynamicObject};

use super::argocd_render::render;
use crate::api::apply::Applier;
use crate::engine::{Ctx, Found, Stage};
use crate::error::{Error, Result};
use crate::event::Action;

/// Stage id.
pub const ID: &str = "install-argocd";

/// The `install-argocd` stage.
#[derive(Default)]
pub struct InstallArgocd {
    rendered: tokio::sync::OnceCell<Vec<DynamicObject>>,
}

impl InstallArgocd {
    /// The rendered manifest, fetched and parsed once per run (probe, apply and re-probe
    /// all use it).
    async fn objects(&self, cx: &Ctx) -> Result<&[DynamicObject]> {
        let objs = self
            .rendered
            .get_or_try_init(|| async {
                let a = &cx.config.cluster.spec.argocd;
                let text = cx
                    .manifest(&a.install, &format!("ArgoCD {}", a.install.version), ID)
                    .await?;
                render(&text, a)
            })
            .await?;
        Ok(objs)
    }
}

/// The ArgoCD workloads that are not available yet, with why.
pub async fn unavailable(client: &kube::Client, ns: &str) -> Result<Vec<String>> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let list =
        |what: &'static str| move |e| crate::api::error("list", &format!("{what} in {ns}"), e);
    let mut out = Vec::new();
    for d in deployments
        .list(&Default::default())
        .await
        .map_err(list("deployments"))?
        .items
    {
        let name = d.metadata.name.clone().unwrap_or_default();
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.unwrap_or_default();
        let available = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Available");
        if status.available_replicas.unwrap_or(0) < want
            || available.is_none_or(|c| c.status != "True")
        {
            let why = available
                .and_then(|c| c.message.clone())
                .unwrap_or_else(|| "no Available condition yet".into());
            out.push(format!(
                "Deployment {name}: {}/{want} available ({why})",
                status.available_replicas.unwrap_or(0)
            ));
        }
    }
    for s in sets
        .list(&Default::default())
        .await
        .map_err(list("statefulsets"))?
        .items
    {
        let name = s.metadata.name.clone().unwrap_or_default();
        let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let ready = s.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        if ready < want {
            out.push(format!("StatefulSet {name}: {ready}/{want} ready"));
        }
    }
    Ok(out)
}

#[async_trait]
impl Stage for InstallArgocd {
    type Plan = Vec<Action>;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Install ArgoCD with server-side apply"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<Vec<Action>>> {
        let client = cx.kube(ID).await?;
        let ns = &cx.config.cluster.spec.argocd.namespace;
        let objs = self.objects(cx).await?;
        let total = objs.len();
        let mut todo: Vec<Action> = Applier::new(&client, ns).plan(objs, "argocd").await?;
        let deployed = todo.is_empty();
        if deployed {
            todo.extend(
                unavailable(&client, ns)
                    .await?
                    .into_iter()
                    .map(|w| Action::new("argocd", format!("wait: {w}"))),
            );
        } else {
            todo.push(Action::new(
                "argocd",
                "wait until every ArgoCD workload is available",
            ));
        }
        Ok(if todo.is_empty() {
            Found::done(format!(
                "ArgoCD {} applied ({total} objects) and available",
                cx.config.cluster.spec.argocd.install.version
            ))
        } else {
            Found::Todo(todo)
        })
    }

    async fn apply(&self, cx: &Ctx, _plan: Vec<Action>) -> Result<()> {
        let client = cx.kube(ID).await?;
        let a = &cx.config.cluster.spec.argocd;
        let objs = self.objects(cx).await?;
        let progress = |m: String| cx.events.progress(ID, None, m);
        let report = Applier::new(&client, &a.namespace)
            .apply(objs.to_vec(), &progress)
            .await?;
        cx.count_all(report.counters());
        let timeout = Duration::from_secs(a.wait_seconds);
        let last = crate::api::wait::until(timeout, Duration::from_secs(1), || async {
            let waiting = unavailable(&client, &a.namespace).await?;
            if waiting.is_empty() {
                return Ok(None);
            }
            cx.events.progress(
                ID,
                None,
                format!(
                    "waiting for {} workload(s): {}",
                    waiting.len(),
                    waiting.join("; ")
                ),
            );
            Ok(Some(waiting.join("\n  ")))
        })
        .await?;
        match last {
            None => Ok(()),
            Some(waiting) => Err(Error::StageFailed {
                stage: ID.into(),
                message: format!(
                    "ArgoCD is not available after {}s:\n  {waiting}",
                    timeout.as_secs()
                ),
                help: format!(
                    "look at the pods: `kubectl -n {} get pods` and `kubectl -n {} describe pod <name>` (placement: a nodeSelector nothing matches, or a missing toleration, keeps pods Pending)",
                    a.namespace, a.namespace
                ),
            }),
        }
    }
}
