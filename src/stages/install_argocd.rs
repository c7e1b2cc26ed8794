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
use serde_json::{Value, json};

use crate::api::{apply::Applier, manifest};
use crate::config::ArgoCd;
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

/// A toleration for a `key[=value]:Effect` taint.
fn toleration(spec: &str) -> Value {
    let t = super::label_nodes::taint(spec);
    match t.value {
        Some(v) => json!({"key": t.key, "operator": "Equal", "value": v, "effect": t.effect}),
        None => json!({"key": t.key, "operator": "Exists", "effect": t.effect}),
    }
}

/// Parses the install manifest and renders it with `cfg`: the namespace first, then the
/// manifest's objects (NetworkPolicies only when kept), then the AppProjects.
pub fn render(text: &str, cfg: &ArgoCd) -> Result<Vec<DynamicObject>> {
    let source = "the ArgoCD install manifest";
    let ns = cfg.namespace.as_str();
    let mut out = manifest::objects(
        vec![json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "labels": cfg.namespace_labels}})],
        source,
    )?;
    for mut obj in manifest::objects(manifest::documents(text, source)?, source)? {
        let name = obj.metadata.name.clone().unwrap_or_default();
        match manifest::kind(&obj) {
            "NetworkPolicy" if !cfg.keep_network_policies => continue,
            "ClusterRoleBinding" | "RoleBinding" => {
                for s in obj.data["subjects"].as_array_mut().into_iter().flatten() {
                    if s.get("namespace").is_some() {
                        s["namespace"] = json!(ns);
                    }
                }
            }
            "ConfigMap" if name == "argocd-cmd-params-cm" => {
                if !obj.data["data"].is_object() {
                    obj.data["data"] = json!({});
                }
                obj.data["data"]["server.insecure"] = json!(cfg.server_insecure.to_string());
            }
            "Service" if name == "argocd-server" => {
                obj.data["spec"]["type"] = json!(cfg.service.kind.value);
                let ports = [
                    ("http", cfg.service.http_node_port.as_ref().map(|p| p.value)),
                    (
                        "https",
                        cfg.service.https_node_port.as_ref().map(|p| p.value),
                    ),
                ];
                for p in obj.data["spec"]["ports"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    let port = ports
                        .iter()
                        .find(|(n, _)| p["name"] == *n)
                        .and_then(|(_, port)| *port);
                    if let (Some(port), "NodePort") = (port, cfg.service.kind.as_str()) {
                        p["nodePort"] = json!(port);
                    }
                }
            }
            "Deployment" | "StatefulSet" => {
                let pod = &mut obj.data["spec"]["template"]["spec"];
                if !cfg.placement.node_selector.is_empty() {
                    pod["nodeSelector"] = json!(cfg.placement.node_selector);
                }
                if !cfg.placement.tolerations.is_empty() {
                    let t: Vec<Value> = cfg
                        .placement
                        .tolerations
                        .iter()
                        .map(|t| toleration(t))
                        .collect();
                    pod["tolerations"] = json!(t);
                }
            }
            _ => {}
        }
        obj.metadata.namespace = obj.metadata.namespace.take().or_else(|| {
            // Cluster-scoped kinds are fixed up by the applier; namespaced ones go to `ns`.
            (!matches!(
                manifest::kind(&obj),
                "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding"
            ))
            .then(|| ns.to_string())
        });
        out.push(obj);
    }
    let spec = project_spec(cfg);
    let projects: Vec<Value> = cfg
        .projects
        .iter()
        .map(|p| {
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
                   "metadata": {"name": p.value, "namespace": ns},
                   "spec": spec})
        })
        .collect();
    out.extend(manifest::objects(projects, "spec.argocd.projects")?);
    Ok(out)
}

/// The spec of ecoboot's AppProjects from `spec.argocd.projectScope` (see its defaults).
fn project_spec(cfg: &ArgoCd) -> Value {
    let scope = &cfg.project_scope;
    let values = |list: &[crate::config::Located<String>]| -> Vec<String> {
        list.iter().map(|v| v.value.clone()).collect()
    };
    let mut repos = values(&scope.source_repos);
    if repos.is_empty() {
        repos.push(cfg.root_app.repo_url.value.clone());
    }
    let mut namespaces = values(&scope.namespaces);
    if namespaces.is_empty() {
        namespaces = vec![
            "!kube-system".into(),
            "!kube-public".into(),
            format!("!{}", cfg.namespace.value),
            "*".into(),
        ];
    }
    let server = "https://kubernetes.default.svc";
    let destinations: Vec<Value> = namespaces
        .iter()
        .map(|n| json!({"namespace": n, "server": server}))
        .collect();
    let mut kinds = values(&scope.cluster_resources);
    if kinds.is_empty() {
        kinds.push("/Namespace".into());
    }
    let whitelist: Vec<Value> = kinds
        .iter()
        .map(|k| {
            let (group, kind) = k.split_once('/').unwrap_or(("", k));
            json!({"group": group, "kind": kind})
        })
        .collect();
    json!({"description": "created by ecoboot (spec.argocd.projectScope)",
           "sourceRepos": repos, "destinations": destinations,
           "clusterResourceWhitelist": whitelist})
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cmd-params-cm}
---
apiVersion: v1
kind: Service
metadata: {name: argocd-server}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}, {name: https, port: 443, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: argocd-server-network-policy}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: argocd-server}
subjects: [{kind: ServiceAccount, name: argocd-server, namespace: argocd}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: argocd-server}
spec: {template: {spec: {containers: [{name: s}]}}}
"#;

    fn cfg() -> ArgoCd {
        ArgoCd {
            namespace: crate::config::plain("gitops".into()),
            service: crate::config::ArgoService {
                kind: crate::config::plain("NodePort".into()),
                http_node_port: Some(crate::config::plain(30080)),
                https_node_port: None,
            },
            placement: crate::config::Placement {
                node_selector: [(
                    "role".to_string(),
                    crate::config::plain("control-plane".to_string()),
                )]
                .into(),
                tolerations: vec![crate::config::plain("role=control-plane:NoSchedule".into())],
            },
            keep_network_policies: false,
            projects: vec![crate::config::plain("dev".into())],
            ..ArgoCd::default()
        }
    }

    #[test]
    fn projects_are_scoped_not_wide_open() {
        let objs = render(MINI, &cfg()).unwrap();
        let project = objs
            .iter()
            .find(|o| manifest::kind(o) == "AppProject")
            .unwrap();
        let spec = &project.data["spec"];
        assert_eq!(
            spec["sourceRepos"],
            json!(["https://github.com/SeSACTHON/backend"])
        );
        let dests = spec["destinations"].as_array().unwrap();
        assert!(
            dests
                .iter()
                .all(|d| d["server"] == "https://kubernetes.default.svc")
        );
        let namespaces: Vec<&str> = dests
            .iter()
            .map(|d| d["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(namespaces, ["!kube-system", "!kube-public", "!gitops", "*"]);
        assert_eq!(
            spec["clusterResourceWhitelist"],
            json!([{"group": "", "kind": "Namespace"}])
        );

        let mut wide = cfg();
        wide.project_scope.cluster_resources = vec![crate::config::plain("*/*".into())];
        wide.project_scope.source_repos = vec![crate::config::plain(
            "https://charts.example.com/repo".into(),
        )];
        let objs = render(MINI, &wide).unwrap();
        let project = objs
            .iter()
            .find(|o| manifest::kind(o) == "AppProject")
            .unwrap();
        assert_eq!(
            project.data["spec"]["clusterResourceWhitelist"],
            json!([{"group": "*", "kind": "*"}])
        );
        assert_eq!(
            project.data["spec"]["sourceRepos"],
            json!(["https://charts.example.com/repo"])
        );
    }

    #[test]
    fn renders_the_reference_settings_declaratively() {
        let objs = render(MINI, &cfg()).unwrap();
        let kinds: Vec<&str> = objs.iter().map(manifest::kind).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ConfigMap",
                "Service",
                "ClusterRoleBinding",
                "Deployment",
                "AppProject"
            ]
        );
        assert_eq!(objs[1].data["data"]["server.insecure"], "true");
        assert_eq!(objs[1].metadata.namespace.as_deref(), Some("gitops"));
        assert_eq!(objs[2].data["spec"]["type"], "NodePort");
        assert_eq!(objs[2].data["spec"]["ports"][0]["nodePort"], 30080);
        assert!(objs[2].data["spec"]["ports"][1].get("nodePort").is_none());
        assert_eq!(objs[3].data["subjects"][0]["namespace"], "gitops");
        assert_eq!(objs[3].metadata.namespace, None);
        let pod = &objs[4].data["spec"]["template"]["spec"];
        assert_eq!(pod["nodeSelector"]["role"], "control-plane");
        assert_eq!(
            pod["tolerations"][0],
            json!({"key": "role", "operator": "Equal", "value": "control-plane", "effect": "NoSchedule"})
        );
        assert_eq!(objs[5].metadata.name.as_deref(), Some("dev"));
    }
}
