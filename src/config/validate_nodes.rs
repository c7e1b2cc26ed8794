//! Validation of `spec.nodes` (names, roles, addresses, labels, taints) and `spec.argocd`
//! (placement, Service, projects, root application): every value that reaches a node, a
//! generated file or an API object.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::syntax::{self, Taint, clip, is_dns_label, is_dns_subdomain};
use super::validate::Checker;
use super::{Cluster, Located, Node, Problem, Role};

/// Label key prefixes kubelet refuses in `--node-labels` (the node then never registers).
const RESERVED_LABEL_PREFIXES: [&str; 2] = ["kubernetes.io", "k8s.io"];
/// Prefixes under the reserved domains that kubelet does allow.
const KUBELET_ALLOWED_PREFIXES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];
/// Individual reserved labels kubelet may set itself.
const KUBELET_ALLOWED_LABELS: [&str; 8] = [
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];

// Long by design: one check per field of `spec.argocd`, in file order (see `check_aws`).
pub(super) fn check_argocd(ck: &mut Checker, c: &Cluster) {
    let a = &c.spec.argocd;
    for t in &a.placement.tolerations {
        if let Err(e) = t.parse::<Taint>() {
            ck.err(
                t,
                format!("toleration `{}`: {e}", clip(t)),
                "write a toleration as key[=value]:Effect, e.g. role=control-plane:NoSchedule",
            );
        }
    }
    let kind = &a.service.kind;
    if !["ClusterIP", "NodePort", "LoadBalancer"].contains(&kind.as_str()) {
        ck.err(
            kind,
            format!("`{}` is not a Service type", clip(kind)),
            "use ClusterIP, NodePort or LoadBalancer",
        );
    }
    for port in [&a.service.http_node_port, &a.service.https_node_port]
        .into_iter()
        .flatten()
    {
        if !(30000..=32767).contains(&port.value) {
            ck.err(
                port,
                format!("NodePort {} is outside the range 30000-32767", port.value),
                "pick a port in 30000-32767",
            );
        }
    }
    for name in &a.projects {
        if !is_dns_label(name) {
            ck.err(
                name,
                format!("AppProject name `{}` is not a DNS-1123 label", clip(name)),
                "use lowercase letters, digits and '-'",
            );
        }
    }
    for (key, value) in &a.namespace_labels {
        check_selector(ck, "spec.argocd.namespaceLabels", key, value);
    }
    for (key, value) in &a.placement.node_selector {
        check_selector(ck, "spec.argocd.placement.nodeSelector", key, value);
    }
    let scope = &a.project_scope;
    for repo in &scope.source_repos {
        ck.syntax(
            repo,
            "spec.argocd.projectScope.sourceRepos",
            syntax::git_url,
            "a repository URL such as https://github.com/org/repo",
        );
    }
    for ns in &scope.namespaces {
        ck.syntax(
            ns,
            "spec.argocd.projectScope.namespaces",
            project_namespace,
            "`*`, a namespace, or `!namespace` to deny one",
        );
    }
    for kind in &scope.cluster_resources {
        ck.syntax(
            kind,
            "spec.argocd.projectScope.clusterResources",
            cluster_kind,
            "write group/Kind: `/Namespace`, `rbac.authorization.k8s.io/ClusterRole`, or `*/*`",
        );
    }
    let r = &a.root_app;
    let dns = "use lowercase letters, digits and '-'";
    ck.syntax(&a.namespace, "spec.argocd.namespace", dns_label, dns);
    ck.syntax(&r.name, "spec.argocd.rootApp.name", dns_label, dns);
    ck.syntax(&r.project, "spec.argocd.rootApp.project", dns_label, dns);
    ck.syntax(
        &r.destination_namespace,
        "spec.argocd.rootApp.destinationNamespace",
        dns_label,
        dns,
    );
    ck.syntax(
        &r.repo_url,
        "spec.argocd.rootApp.repoUrl",
        syntax::git_url,
        "write https://host/org/repo or git@host:org/repo",
    );
    ck.syntax(
        &r.target_revision,
        "spec.argocd.rootApp.targetRevision",
        syntax::repo_path,
        "a branch, tag or commit SHA",
    );
    ck.syntax(
        &r.path,
        "spec.argocd.rootApp.path",
        syntax::repo_path,
        "a directory inside the repository, e.g. argocd/components",
    );
    ck.syntax(
        &r.sync_wave,
        "spec.argocd.rootApp.syncWave",
        sync_wave,
        "an integer such as \"-2\"",
    );
}

fn dns_label(s: &str) -> Result<(), String> {
    if is_dns_label(s) {
        Ok(())
    } else {
        Err(format!("`{}` is not a DNS-1123 label", clip(s)))
    }
}

fn project_namespace(s: &str) -> Result<(), String> {
    let name = s.strip_prefix('!').unwrap_or(s);
    if s == "*" || is_dns_label(name) {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not `*`, a namespace or `!namespace`",
            clip(s)
        ))
    }
}

fn cluster_kind(s: &str) -> Result<(), String> {
    let ok = s.split_once('/').is_some_and(|(group, kind)| {
        (group.is_empty() || group == "*" || is_dns_subdomain(group))
            && (kind == "*"
                || (!kind.is_empty()
                    && kind.len() <= 63
                    && kind.chars().all(|c| c.is_ascii_alphanumeric())))
    });
    if ok {
        Ok(())
    } else {
        Err(format!("`{}` is not group/Kind", clip(s)))
    }
}

fn sync_wave(s: &str) -> Result<(), String> {
    match s.parse::<i32>() {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("`{}` is not an integer", clip(s))),
    }
}

fn check_selector(ck: &mut Checker, key_path: &str, key: &str, value: &Located<String>) {
    if let Err(e) = syntax::qualified_name(key).and_then(|_| syntax::label_value(value)) {
        ck.err(
            value,
            format!("`{key_path}`: {e}"),
            "label keys are [prefix/]name and values at most 63 characters of [A-Za-z0-9_.-]",
        );
    }
}

// Long by design: one check per node field, then the cross-node rules, in file order.
pub(super) fn check_nodes(ck: &mut Checker, c: &Cluster) {
    let nodes = &c.spec.nodes;
    let subnets: HashSet<&str> = c.spec.aws.subnets.iter().map(|s| s.name.as_str()).collect();
    let mut names: BTreeMap<&str, ()> = BTreeMap::new();
    let mut control_planes = 0;
    for node in nodes {
        let name = &node.name;
        if ck.required(name, "name") {
            if !is_dns_subdomain(name) {
                ck.err(name, format!("node name `{}` is not a DNS-1123 name", clip(name)), "use lower-case letters, digits, '-' and '.'; it becomes the hostname and the Kubernetes node name");
            }
            if names.insert(name.as_str(), ()).is_some() {
                ck.err(
                    name,
                    format!("duplicate node name `{}`", name.value),
                    "node names must be unique",
                );
            }
        }
        match node.role {
            None => ck.err(
                node,
                format!("node `{}` has no `role`", name.value),
                "set `role: control-plane` or `role: worker`",
            ),
            Some(Role::ControlPlane) => control_planes += 1,
            Some(Role::Worker) => {}
        }
        if !node.instance_type.is_empty() {
            ck.syntax(
                &node.instance_type,
                "instanceType",
                |t| syntax::plain_token(t, 32),
                "an EC2 instance type such as t3.medium",
            );
        } else {
            ck.err(
                node,
                format!("node `{}` has no `instanceType`", name.value),
                "set an EC2 instance type such as t3.medium",
            );
        }
        if node.disk_gb < 8 {
            ck.err(
                node,
                format!("node `{}`: `diskGb` must be at least 8", name.value),
                "set the root volume size in GiB, e.g. diskGb: 30",
            );
        }
        if !subnets.contains(node.subnet.as_str()) {
            ck.err(
                &node.subnet,
                format!(
                    "node `{}` names subnet `{}`, which is not in spec.aws.subnets",
                    name.value, node.subnet.value
                ),
                format!(
                    "use one of: {}",
                    subnets.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        if let Some(addr) = &node.address
            && let Err(e) = syntax::host_port(addr)
        {
            ck.err(
                addr,
                format!("`address: {}` is not host[:port]: {e}", clip(addr)),
                "write e.g. 203.0.113.7 or 127.0.1.3:2222",
            );
        }
        for (key, value) in &node.labels {
            check_label(ck, key, value);
        }
        for taint in &node.taints {
            if let Err(e) = taint.parse::<Taint>() {
                ck.err(
                    taint,
                    format!("taint `{}`: {e}", clip(taint)),
                    "write key[=value]:NoSchedule|PreferNoSchedule|NoExecute",
                );
            }
        }
    }
    check_control_planes(ck, c, control_planes);
    check_schedulable(ck, c);
}

/// One control plane, or an odd number of them (3 or 5: etcd's quorum) spread over at least
/// two availability zones when the subnets allow it.
fn check_control_planes(ck: &mut Checker, c: &Cluster, count: usize) {
    let nodes = &c.spec.nodes;
    let at = nodes
        .first()
        .map(|n| n.span)
        .unwrap_or(c.metadata.name.span);
    if !matches!(count, 1 | 3 | 5) {
        ck.problems.push(
            Problem::new(
                at,
                format!("{count} nodes have `role: control-plane`; ecoboot runs 1, 3 or 5"),
            )
            .help(match count {
                0 => "give one node `role: control-plane` (or three, for a highly available control plane)",
                2 | 4 => "etcd needs a majority: 2 control planes survive no failure more than 1 does, 4 no more than 3; use 3 or 5",
                _ => "more than 5 etcd members slow every write; use 3 or 5",
            }),
        );
    }
    let zones: BTreeSet<&str> = (c.spec.aws.subnets.iter()).map(|s| s.az.as_str()).collect();
    let used: BTreeSet<&str> = (nodes.iter())
        .filter(|n| n.role == Some(Role::ControlPlane))
        .filter_map(|n| {
            c.spec
                .aws
                .subnets
                .iter()
                .find(|s| s.name.as_str() == n.subnet.as_str())
        })
        .map(|s| s.az.as_str())
        .collect();
    if count > 1 && zones.len() > 1 && used.len() < 2 {
        let first = nodes.iter().find(|n| n.role == Some(Role::ControlPlane));
        ck.problems.push(
            Problem::new(
                first.map(|n| n.subnet.span).unwrap_or(at),
                format!(
                    "all {count} control planes are in one availability zone ({}): losing that zone loses the cluster",
                    used.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            )
            .help("put the control planes in subnets of different zones (spec.aws.subnets has several)"),
        );
    }
    if let Some(endpoint) = &c.spec.kubernetes.control_plane_endpoint {
        if count == 1 {
            ck.err(
                endpoint,
                "`controlPlaneEndpoint` is used only with several control planes".to_string(),
                "remove it, or give 3 nodes `role: control-plane`",
            );
        } else if !is_dns_subdomain(endpoint.as_str()) || !endpoint.contains('.') {
            ck.err(
                endpoint,
                format!("`controlPlaneEndpoint: {}` is not a DNS name", clip(endpoint)),
                "write a DNS name you own, e.g. api.example.com (a CNAME to the load balancer), without a port",
            );
        }
    }
}

/// CoreDNS and ArgoCD's repo-server tolerate no workload taint: at least one node must carry
/// no `NoSchedule`/`NoExecute` taint, or they stay Pending (the reference system's CoreDNS did).
fn check_schedulable(ck: &mut Checker, c: &Cluster) {
    let blocking = |node: &Node| -> Option<String> {
        let taints: Vec<&str> = (node.taints.iter())
            .filter(|t| {
                t.parse::<Taint>()
                    .is_ok_and(|t| t.effect != syntax::Effect::PreferNoSchedule)
            })
            .map(|t| t.as_str())
            .collect();
        (!taints.is_empty()).then(|| format!("{} [{}]", node.name.as_str(), taints.join(", ")))
    };
    let nodes = &c.spec.nodes;
    let blocked: Vec<String> = nodes.iter().filter_map(|n| blocking(n)).collect();
    if nodes.is_empty() || blocked.len() < nodes.len() {
        return;
    }
    // The easiest one to free: a worker with the fewest taints.
    let example = (nodes.iter())
        .filter(|n| n.role != Some(Role::ControlPlane))
        .min_by_key(|n| n.taints.len())
        .and_then(|n| blocking(n))
        .unwrap_or_else(|| blocked[0].clone());
    ck.problems.push(
        Problem::new(
            nodes.first().and_then(|n| n.span),
            format!(
                "no node is free of NoSchedule/NoExecute taints ({} of {} tainted, e.g. {example}): CoreDNS and the ArgoCD repo-server tolerate none of them and would stay Pending",
                blocked.len(),
                nodes.len()
            ),
        )
        .help("leave at least one node without such taints (the shipped topology keeps its two workers untainted), or make them PreferNoSchedule"),
    );
}

fn check_label(ck: &mut Checker, key: &str, value: &Located<String>) {
    if let Err(e) = syntax::qualified_name(key) {
        ck.err(value, format!("label key `{}` is invalid: {e}", clip(key)), "a label key is [prefix/]name: a DNS subdomain prefix and at most 63 characters of [A-Za-z0-9_.-]");
        return;
    }
    if let Some((prefix, _)) = key.split_once('/') {
        let reserved = RESERVED_LABEL_PREFIXES
            .iter()
            .any(|r| prefix == *r || prefix.ends_with(&format!(".{r}")));
        let allowed =
            KUBELET_ALLOWED_PREFIXES.contains(&prefix) || KUBELET_ALLOWED_LABELS.contains(&key);
        if reserved && !allowed {
            ck.err(
                value,
                format!("label `{key}` uses the reserved prefix `{prefix}/`: kubelet refuses it at registration and the node never joins"),
                "use a plain key such as `role=`; ecoboot sets node-role.kubernetes.io/<role> itself through the API in the label-nodes stage",
            );
            return;
        }
    }
    if syntax::label_value(value).is_err() {
        ck.err(value, format!("label value `{}` (key `{key}`) is invalid", clip(value)), "a label value is at most 63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric; commas are not allowed");
    }
}
