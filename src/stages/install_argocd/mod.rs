//! Stage `install-argocd`: the pinned ArgoCD install manifest, rendered with the settings the
//! reference system patched in after the fact (server.insecure, the argocd-server Service,
//! node placement, NetworkPolicies kept or dropped) plus the namespace and the configured
//! AppProjects, applied with server-side apply (client-side apply cannot work: the
//! ApplicationSet CRD exceeds the 262144-byte annotation limit); then a bounded wait until every
//! ArgoCD Deployment and the application-controller StatefulSet are available.

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, DynamicObject};

mod render;

use crate::config::{Config, Manifest};
use crate::error::Result;
use crate::stages::shared::ids;
use crate::stages::shared::manifest::{Bundle, ManifestStage};
use render::render;

/// Stage id.
pub const ID: &str = ids::INSTALL_ARGOCD;

/// The ArgoCD install manifest as a [`Bundle`].
pub struct Argocd;

/// The `install-argocd` stage.
pub type InstallArgocd = ManifestStage<Argocd>;

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
impl Bundle for Argocd {
    const ID: &'static str = ID;
    const TITLE: &'static str = "Install ArgoCD with server-side apply";
    const TARGET: &'static str = "argocd";
    const NAME: &'static str = "ArgoCD";

    fn source(config: &Config) -> (&Manifest, String) {
        let a = &config.cluster.spec.argocd;
        (&a.install, format!("ArgoCD {}", a.install.version))
    }

    fn namespace(config: &Config) -> &str {
        &config.cluster.spec.argocd.namespace
    }

    fn render(text: &str, config: &Config) -> Result<Vec<DynamicObject>> {
        render(text, &config.cluster.spec.argocd)
    }

    async fn waiting(client: &kube::Client, config: &Config) -> Result<Vec<String>> {
        unavailable(client, &config.cluster.spec.argocd.namespace).await
    }

    fn wait_seconds(config: &Config) -> u64 {
        config.cluster.spec.argocd.wait_seconds
    }

    fn help(config: &Config) -> String {
        let ns = &config.cluster.spec.argocd.namespace;
        format!(
            "look at the pods: `kubectl -n {ns} get pods` and `kubectl -n {ns} describe pod <name>` (placement: a nodeSelector nothing matches, or a missing toleration, keeps pods Pending)"
        )
    }
}
