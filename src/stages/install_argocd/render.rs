//! The ArgoCD install manifest rendered with the reference system's settings, declaratively:
//! server.insecure, the argocd-server Service, placement of every workload, NetworkPolicies kept
//! or dropped, RoleBinding subjects in the configured namespace, the namespace itself and the
//! scoped AppProjects.

use kube::api::DynamicObject;
use serde_json::{Value, json};

use crate::api::manifest;
use crate::config::ArgoCd;
use crate::error::Result;

/// A toleration for a `key[=value]:Effect` taint.
fn toleration(spec: &str) -> Value {
    let t = crate::stages::shared::node_labels::taint(spec);
    match t.value {
        Some(v) => json!({"key": t.key, "operator": "Equal", "value": v, "effect": t.effect}),
        None => json!({"key": t.key, "operator": "Exists", "effect": t.effect}),
    }
}

/// Parses the install manifest and renders it with `cfg`: the namespace first, then the
/// manifest's objects (NetworkPolicies only when kept), then the AppProjects.
// Long by design: the render steps in order (namespace, objects, policies, projects).
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
