//! Semantic checks of a parsed config. Every check adds to one list so the user sees all
//! problems at once.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::{API_VERSION, Cidr, Cluster, FileChecks, Located, Problem, Role};

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

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn err<T>(&mut self, at: &Located<T>, message: impl Into<String>, help: impl Into<String>) {
        self.problems
            .push(Problem::new(at.span, message).help(help.into()));
    }

    fn required(&mut self, at: &Located<String>, key: &str) -> bool {
        if at.trim().is_empty() {
            self.err(at, format!("`{key}` is required"), format!("set `{key}`"));
            false
        } else {
            true
        }
    }

    fn cidr(&mut self, at: &Located<String>, key: &str) -> Option<Cidr> {
        if !self.required(at, key) {
            return None;
        }
        match at.parse::<Cidr>() {
            Ok(c) => Some(c),
            Err(e) => {
                self.err(
                    at,
                    format!("`{key}`: {e}"),
                    "write an IPv4 block such as 10.0.0.0/16",
                );
                None
            }
        }
    }

    fn sha256(&mut self, at: &Located<String>, key: &str) {
        if at.len() != 64 || !at.chars().all(|c| c.is_ascii_hexdigit()) {
            self.err(
                at,
                format!("`{key}` must be a sha256 digest: 64 hex characters"),
                "run `sha256sum` on the manifest you pinned and paste the digest",
            );
        }
    }
}

/// Validates `c`; `base` is the config file's directory (for relative paths).
pub fn validate(c: &Cluster, base: &Path, files: FileChecks) -> Vec<Problem> {
    let mut ck = Checker {
        problems: Vec::new(),
    };
    if c.api_version.value != API_VERSION {
        ck.err(
            &c.api_version,
            format!(
                "`apiVersion` must be `{API_VERSION}`, found `{}`",
                c.api_version.value
            ),
            format!("set `apiVersion: {API_VERSION}`"),
        );
    }
    if c.kind.value != "Cluster" {
        ck.err(
            &c.kind,
            format!("`kind` must be `Cluster`, found `{}`", c.kind.value),
            "set `kind: Cluster`",
        );
    }
    let name = &c.metadata.name;
    if ck.required(name, "metadata.name") && !is_dns_label(name) {
        ck.err(
            name,
            format!("cluster name `{}` is not a DNS-1123 label", name.value),
            "use lower-case letters, digits and '-', at most 63 characters, starting and ending with a letter or digit",
        );
    }
    let networks = check_aws(&mut ck, c, base, files);
    check_kubernetes(&mut ck, c, networks);
    check_nodes(&mut ck, c);
    ck.problems
}

/// Returns the VPC CIDR if valid, for the overlap checks.
fn check_aws(ck: &mut Checker, c: &Cluster, base: &Path, files: FileChecks) -> Option<Cidr> {
    let aws = &c.spec.aws;
    ck.required(&aws.region, "spec.aws.region");
    let vpc = ck.cidr(&aws.vpc_cidr, "spec.aws.vpcCidr");
    if aws.subnets.is_empty() {
        ck.err(
            &aws.vpc_cidr,
            "`spec.aws.subnets` must list at least one subnet",
            "add one public subnet per availability zone",
        );
    }
    let mut seen = HashSet::new();
    let mut blocks: Vec<Cidr> = Vec::new();
    for s in &aws.subnets {
        if s.name.is_empty() || !seen.insert(s.name.clone()) {
            ck.err(
                s,
                format!("subnet name `{}` is empty or used twice", s.name),
                "give every subnet a unique `name`",
            );
        }
        if s.az.is_empty() {
            ck.err(
                s,
                format!("subnet `{}` has no `az`", s.name),
                "set `az`, e.g. ap-northeast-2a",
            );
        }
        let Some(block) = ck.cidr(&s.cidr, "cidr") else {
            continue;
        };
        if let Some(vpc) = vpc
            && !vpc.contains(block)
        {
            ck.err(
                &s.cidr,
                format!("subnet {block} is outside the VPC {vpc}"),
                format!("pick a block inside {vpc}"),
            );
        }
        if let Some(other) = blocks.iter().find(|b| b.overlaps(block)) {
            ck.err(
                &s.cidr,
                format!("subnet {block} overlaps subnet {other}"),
                "subnets must not overlap",
            );
        }
        blocks.push(block);
    }
    for (key, list) in [
        ("allowedSshCidrs", &aws.allowed_ssh_cidrs),
        ("allowedApiCidrs", &aws.allowed_api_cidrs),
        ("nodePortCidrs", &aws.node_port_cidrs),
    ] {
        for cidr in list {
            ck.cidr(cidr, &format!("spec.aws.{key}"));
        }
    }
    ck.required(&aws.key_pair.name, "spec.aws.keyPair.name");
    let key_path = &aws.key_pair.public_key_path;
    if ck.required(key_path, "spec.aws.keyPair.publicKeyPath") && files == FileChecks::Check {
        let resolved = super::resolve_path(base, key_path);
        match std::fs::read_to_string(&resolved) {
            Ok(text) if text.starts_with("ssh-") || text.starts_with("ecdsa-") => {}
            Ok(_) => ck.err(
                key_path,
                format!("{} is not an OpenSSH public key", resolved.display()),
                "point at the `.pub` file (ssh-ed25519 / ssh-rsa ...)",
            ),
            Err(e) => ck.err(
                key_path,
                format!("cannot read public key {}: {e}", resolved.display()),
                "create it with `ssh-keygen -t ed25519 -f <path without .pub>` or fix the path",
            ),
        }
    }
    vpc
}

fn check_kubernetes(ck: &mut Checker, c: &Cluster, vpc: Option<Cidr>) {
    let k = &c.spec.kubernetes;
    let version = k.version.trim_start_matches('v');
    let parts: Vec<&str> = version.split('.').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.parse::<u32>().is_err()) {
        ck.err(
            &k.version,
            format!("`{}` is not a Kubernetes version", k.version.value),
            "write MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. 1.34 or 1.34.1",
        );
    }
    let pod = ck.cidr(&k.pod_cidr, "spec.kubernetes.podCidr");
    let svc = ck.cidr(&k.service_cidr, "spec.kubernetes.serviceCidr");
    let pairs = [
        (pod, svc, &k.service_cidr, "pod CIDR", "service CIDR"),
        (vpc, pod, &k.pod_cidr, "VPC CIDR", "pod CIDR"),
        (vpc, svc, &k.service_cidr, "VPC CIDR", "service CIDR"),
    ];
    for (a, b, at, an, bn) in pairs {
        if let (Some(a), Some(b)) = (a, b)
            && a.overlaps(b)
        {
            ck.err(at, format!("the {bn} {b} overlaps the {an} {a}"), "pod, service and VPC networks must be disjoint (defaults: 192.168.0.0/16, 10.96.0.0/12, 10.0.0.0/16)");
        }
    }
    ck.sha256(&k.calico.sha256, "spec.kubernetes.calico.sha256");
    ck.sha256(&c.spec.argocd.install.sha256, "spec.argocd.install.sha256");
    check_argocd(ck, c);
    let policy = &c.spec.ssh.known_hosts;
    if !["accept-new", "strict"].contains(&policy.as_str()) {
        ck.err(
            policy,
            format!("`knownHosts: {}` is not a host key policy", policy.value),
            "use `accept-new` (record on first contact) or `strict` (must already be known)",
        );
    }
}

fn check_argocd(ck: &mut Checker, c: &Cluster) {
    let a = &c.spec.argocd;
    for t in &a.placement.tolerations {
        if let Err(e) = check_taint(t) {
            ck.err(
                t,
                format!("toleration `{}`: {e}", t.value),
                "write a toleration as key[=value]:Effect, e.g. role=control-plane:NoSchedule",
            );
        }
    }
    let kind = &a.service.kind;
    if !["ClusterIP", "NodePort", "LoadBalancer"].contains(&kind.as_str()) {
        ck.err(
            kind,
            format!("`{}` is not a Service type", kind.value),
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
                format!("AppProject name `{}` is not a DNS-1123 label", name.value),
                "use lowercase letters, digits and '-'",
            );
        }
    }
    for (name, key) in [
        (&a.namespace, "spec.argocd.namespace"),
        (&a.root_app.name, "spec.argocd.rootApp.name"),
    ] {
        if !is_dns_label(name) {
            ck.problems.push(
                Problem::new(None, format!("`{key}: {name}` is not a DNS-1123 label"))
                    .help("use lowercase letters, digits and '-'".to_string()),
            );
        }
    }
}

fn check_nodes(ck: &mut Checker, c: &Cluster) {
    let nodes = &c.spec.nodes;
    let subnets: HashSet<&str> = c.spec.aws.subnets.iter().map(|s| s.name.as_str()).collect();
    let mut names: BTreeMap<&str, ()> = BTreeMap::new();
    let mut control_planes = 0;
    for node in nodes {
        let name = &node.name;
        if ck.required(name, "name") {
            if !is_dns_subdomain(name) {
                ck.err(name, format!("node name `{}` is not a DNS-1123 name", name.value), "use lower-case letters, digits, '-' and '.'; it becomes the hostname and the Kubernetes node name");
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
        if node.instance_type.is_empty() {
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
            && !valid_address(addr)
        {
            ck.err(
                addr,
                format!("`address: {}` is not host[:port]", addr.value),
                "write e.g. 203.0.113.7 or 127.0.1.3:2222",
            );
        }
        for (key, value) in &node.labels {
            check_label(ck, key, value);
        }
        for taint in &node.taints {
            if let Err(e) = check_taint(taint) {
                ck.err(
                    taint,
                    format!("taint `{}`: {e}", taint.value),
                    "write key[=value]:NoSchedule|PreferNoSchedule|NoExecute",
                );
            }
        }
    }
    if control_planes != 1 {
        let at = nodes
            .first()
            .map(|n| n.span)
            .unwrap_or(c.metadata.name.span);
        ck.problems.push(
            Problem::new(
                at,
                format!("exactly one node must have `role: control-plane`, found {control_planes}"),
            )
            .help("ecoboot builds a single control-plane kubeadm cluster"),
        );
    }
}

fn check_label(ck: &mut Checker, key: &str, value: &Located<String>) {
    let (prefix, name) = key
        .rsplit_once('/')
        .map_or((None, key), |(p, n)| (Some(p), n));
    if let Some(prefix) = prefix {
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
        if !is_dns_subdomain(prefix) {
            ck.err(
                value,
                format!("label key `{key}` has an invalid prefix"),
                "a prefix is a DNS subdomain followed by '/'",
            );
        }
    }
    if !is_qualified_name_part(name) {
        ck.err(value, format!("label key `{key}` is invalid"), "a label name is at most 63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric");
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        ck.err(value, format!("label value `{}` (key `{key}`) is invalid", value.value), "a label value is at most 63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric; commas are not allowed");
    }
}

fn check_taint(taint: &str) -> Result<(), String> {
    let (kv, effect) = taint.rsplit_once(':').ok_or("missing `:Effect`")?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(format!("unknown effect `{effect}`"));
    }
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    let name = key.rsplit_once('/').map_or(key, |(_, n)| n);
    if key.is_empty() || !is_qualified_name_part(name) {
        return Err(format!("invalid key `{key}`"));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        return Err(format!("invalid value `{value}`"));
    }
    Ok(())
}

fn valid_address(addr: &str) -> bool {
    let (host, port) = match addr.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (addr, None),
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// RFC 1123 label: lower-case alphanumerics and '-', 1-63 chars, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints() {
        assert!(check_taint("domain=data:NoSchedule").is_ok());
        assert!(check_taint("dedicated:NoExecute").is_ok());
        assert!(check_taint("example.com/x=y:PreferNoSchedule").is_ok());
        assert!(check_taint("domain=data").is_err());
        assert!(check_taint("domain=data:Never").is_err());
        assert!(check_taint("=x:NoSchedule").is_err());
    }

    #[test]
    fn names() {
        assert!(is_dns_label("k8s-master"));
        assert!(!is_dns_label("K8s"));
        assert!(!is_dns_label("-a"));
        assert!(is_dns_subdomain("node.example.com"));
        assert!(valid_address("127.0.1.3:2222"));
        assert!(!valid_address("127.0.1.3:0"));
        assert!(!valid_address("a b"));
    }
}
