//! The `spec.argocd` part of the config: the pinned install, the argocd-server Service,
//! placement and the root Application.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::model::{Located, Manifest, plain};

/// `spec.argocd`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct ArgoCd {
    /// The pinned install manifest.
    pub install: Manifest,
    /// Namespace ArgoCD is installed into.
    pub namespace: Located<String>,
    /// Labels of that namespace.
    pub namespace_labels: BTreeMap<String, Located<String>>,
    /// `server.insecure` in `argocd-cmd-params-cm` (TLS terminated at a load balancer).
    pub server_insecure: bool,
    /// The `argocd-server` Service.
    pub service: ArgoService,
    /// Node placement of every ArgoCD workload.
    pub placement: Placement,
    /// Keep the manifest's NetworkPolicies (they blocked DNS in the reference cluster).
    pub keep_network_policies: bool,
    /// AppProjects created before any Application, scoped by `project_scope`.
    pub projects: Vec<Located<String>>,
    /// What the AppProjects of `projects` allow.
    pub project_scope: ProjectScope,
    /// The App-of-Apps root Application.
    pub root_app: RootApp,
    /// Bound on each wait (ArgoCD available, applications synced and healthy).
    pub wait_seconds: u64,
}

impl Default for ArgoCd {
    fn default() -> Self {
        ArgoCd {
            install: Manifest {
                version: plain("v3.5.1".into()),
                url: plain("https://raw.githubusercontent.com/argoproj/argo-cd/v3.5.1/manifests/install.yaml".into()),
                sha256: plain(
                    "795a3a972224da6a7f9d32c3e946445f062b60fb46028476715affeb688236e3".into(),
                ),
                path: None,
            },
            namespace: plain("argocd".into()),
            namespace_labels: BTreeMap::new(),
            server_insecure: true,
            service: ArgoService::default(),
            placement: Placement::default(),
            keep_network_policies: true,
            projects: Vec::new(),
            project_scope: ProjectScope::default(),
            root_app: RootApp::default(),
            wait_seconds: 600,
        }
    }
}

/// `spec.argocd.service`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct ArgoService {
    /// `ClusterIP`, `NodePort` or `LoadBalancer`.
    #[serde(rename = "type")]
    pub kind: Located<String>,
    /// NodePort of the http port (NodePort only).
    pub http_node_port: Option<Located<u16>>,
    /// NodePort of the https port (NodePort only).
    pub https_node_port: Option<Located<u16>>,
}

impl Default for ArgoService {
    fn default() -> Self {
        ArgoService {
            kind: plain("ClusterIP".into()),
            http_node_port: None,
            https_node_port: None,
        }
    }
}

/// Where workloads run: a nodeSelector and tolerations (taints in `key=value:Effect` form).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct Placement {
    /// Node labels a pod's node must carry.
    pub node_selector: BTreeMap<String, Located<String>>,
    /// Taints tolerated, as `key[=value]:Effect`.
    pub tolerations: Vec<Located<String>>,
}

/// `spec.argocd.rootApp`: values filled into the root Application template.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct RootApp {
    /// The template (relative to the config file); empty = the one built into ecoboot.
    pub template: Option<String>,
    /// Application name.
    pub name: Located<String>,
    /// AppProject.
    pub project: Located<String>,
    /// Git repository.
    pub repo_url: Located<String>,
    /// Branch, tag or commit.
    pub target_revision: Located<String>,
    /// Directory of the child Applications in the repository.
    pub path: Located<String>,
    /// Destination namespace.
    pub destination_namespace: Located<String>,
    /// `argocd.argoproj.io/sync-wave`.
    pub sync_wave: Located<String>,
}

impl Default for RootApp {
    fn default() -> Self {
        RootApp {
            template: None,
            name: plain("root-app".into()),
            project: plain("default".into()),
            repo_url: plain("https://github.com/SeSACTHON/backend".into()),
            target_revision: plain("develop".into()),
            path: plain("argocd/components".into()),
            destination_namespace: plain("argocd".into()),
            sync_wave: plain("-2".into()),
        }
    }
}

/// `spec.argocd.projectScope`: what ecoboot's AppProjects allow. The reference allowed
/// everything (`*` repositories, clusters, namespaces and cluster resources); ecoboot's
/// defaults are the root app's repository, the in-cluster API only, every namespace but
/// kube-system, kube-public and ArgoCD's own, and Namespaces as the only cluster resource.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct ProjectScope {
    /// Repositories (git or Helm URLs) the projects may deploy from; empty = the root app's.
    pub source_repos: Vec<Located<String>>,
    /// Destination namespaces (`*`, a name, or `!name` to deny); empty = the defaults above.
    pub namespaces: Vec<Located<String>>,
    /// Cluster-scoped kinds as `group/Kind` (`/Namespace` for the core group, `*/*` for all);
    /// empty = Namespaces only.
    pub cluster_resources: Vec<Located<String>>,
}
