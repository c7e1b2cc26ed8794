//! Semantic checks of a parsed config. Every check adds to one list so the user sees all
//! problems at once.

use std::collections::HashSet;
use std::path::Path;

use super::support;
use super::syntax::{self, clip, is_dns_label};
use super::validate_access::{check_backup, check_builder, check_exposure, check_ssh, check_state};
use super::validate_nodes::{check_argocd, check_nodes};
use super::{API_VERSION, Cidr, Cluster, FileChecks, Kubernetes, Located, Problem, Seg};

/// Collects problems; shared by the validation modules.
pub(super) struct Checker<'s> {
    pub(super) problems: Vec<Problem>,
    /// The config text, to point at the mapping a missing key belongs in.
    source: &'s str,
}

impl Checker<'_> {
    pub(super) fn err<T>(
        &mut self,
        at: &Located<T>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.problems
            .push(Problem::new(at.span, message).help(help.into()));
    }

    /// Reports `check(value)`'s error at `at`, prefixed with `key`.
    pub(super) fn syntax(
        &mut self,
        at: &Located<String>,
        key: &str,
        check: impl FnOnce(&str) -> Result<(), String>,
        help: &str,
    ) -> bool {
        match check(at) {
            Ok(()) => true,
            Err(e) => {
                self.err(at, format!("`{key}`: {e}"), help);
                false
            }
        }
    }

    /// The span of the value at `path` in the config text, if it is there.
    pub(super) fn span_of(&self, path: &[&str]) -> Option<miette::SourceSpan> {
        let segs: Vec<Seg> = path.iter().map(|k| Seg::Key(k.to_string())).collect();
        super::locate::locate(self.source, &segs)
    }

    pub(super) fn required(&mut self, at: &Located<String>, key: &str) -> bool {
        if !at.trim().is_empty() {
            return true;
        }
        // A missing key has no span of its own: point at the nearest mapping that exists.
        let path: Vec<&str> = key.split('.').collect();
        let span = at.span.or_else(|| {
            (1..path.len()).rev().find_map(|n| {
                let segs: Vec<Seg> = path[..n].iter().map(|k| Seg::Key(k.to_string())).collect();
                super::locate::locate(self.source, &segs)
            })
        });
        let field = path.last().copied().unwrap_or(key);
        let problem =
            Problem::new(span, format!("`{key}` is required")).help(format!("add `{field}:` here"));
        self.problems.push(match (at.span, span) {
            (None, Some(_)) => problem.label(format!("`{field}` is missing in this mapping")),
            _ => problem,
        });
        false
    }

    pub(super) fn cidr(&mut self, at: &Located<String>, key: &str) -> Option<Cidr> {
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

    pub(super) fn sha256(&mut self, at: &Located<String>, key: &str) {
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
pub fn validate(c: &Cluster, source: &str, base: &Path, files: FileChecks) -> Vec<Problem> {
    let mut ck = Checker {
        problems: Vec::new(),
        source,
    };
    if c.api_version.value != API_VERSION {
        ck.err(
            &c.api_version,
            format!(
                "`apiVersion` must be `{API_VERSION}`, found `{}`",
                clip(&c.api_version.value)
            ),
            format!("set `apiVersion: {API_VERSION}`"),
        );
    }
    if c.kind.value != "Cluster" {
        ck.err(
            &c.kind,
            format!("`kind` must be `Cluster`, found `{}`", clip(&c.kind.value)),
            "set `kind: Cluster`",
        );
    }
    let name = &c.metadata.name;
    if ck.required(name, "metadata.name") && !is_dns_label(name) {
        ck.err(
            name,
            format!("cluster name `{}` is not a DNS-1123 label", clip(name)),
            "use lower-case letters, digits and '-', at most 63 characters, starting and ending with a letter or digit",
        );
    }
    let networks = check_aws(&mut ck, c, base, files);
    check_kubernetes(&mut ck, c, networks);
    check_nodes(&mut ck, c);
    ck.problems
}

/// Returns the VPC CIDR if valid, for the overlap checks.
// Long by design: one check per field of `spec.aws`, in the order of the file, so the
// diagnostics come out in the order a reader meets them.
fn check_aws(ck: &mut Checker, c: &Cluster, base: &Path, files: FileChecks) -> Option<Cidr> {
    let aws = &c.spec.aws;
    if ck.required(&aws.region, "spec.aws.region") {
        ck.syntax(
            &aws.region,
            "spec.aws.region",
            syntax::region,
            "write a region such as ap-northeast-2",
        );
    }
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
        if !is_dns_label(&s.name) || !seen.insert(s.name.value.clone()) {
            ck.err(
                s,
                format!(
                    "subnet name `{}` is empty, used twice or not a DNS-1123 label",
                    clip(&s.name)
                ),
                "give every subnet a unique lower-case `name` such as public-a",
            );
        }
        if s.az.is_empty() {
            ck.err(
                s,
                format!("subnet `{}` has no `az`", clip(&s.name)),
                "set `az`, e.g. ap-northeast-2a",
            );
        } else {
            ck.syntax(
                &s.az,
                "az",
                |az| syntax::zone(az, &aws.region),
                "write a zone of the region, e.g. ap-northeast-2a",
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
            // `self`: the address of the machine running ecoboot, opened per command.
            if key == "allowedSshCidrs" && cidr.value == "self" {
                continue;
            }
            ck.cidr(cidr, &format!("spec.aws.{key}"));
        }
    }
    check_exposure(ck, c);
    ck.syntax(
        &aws.ami.owner,
        "spec.aws.ami.owner",
        syntax::ami_owner,
        "an AWS account id (12 digits), `amazon` or `self`",
    );
    ck.syntax(
        &aws.ami.name_filter,
        "spec.aws.ami.nameFilter",
        syntax::image_name_filter,
        "an image name pattern such as ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
    );
    check_builder(ck, c);
    for (key, value) in &aws.tags {
        if let Err(e) = syntax::aws_tag(key, value) {
            ck.err(value, format!("`spec.aws.tags`: {e}"), "AWS tags: letters, digits, spaces and _.:/=+-@; keys starting with aws: are reserved by AWS");
        }
    }
    for arn in aws.iam_policies.iter().chain(&aws.controller_iam_policies) {
        ck.syntax(
            arn,
            "IAM policy",
            syntax::policy_arn,
            "a managed policy ARN such as arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
        );
    }
    super::validate_iam::check_policy_documents(ck, aws, base, files);
    if ck.required(&aws.key_pair.name, "spec.aws.keyPair.name") {
        ck.syntax(
            &aws.key_pair.name,
            "spec.aws.keyPair.name",
            |n| syntax::plain_token(n, 255),
            "a key pair name of letters, digits, '.', '_' and '-'",
        );
    }
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
    let version_ok = ck.syntax(
        &k.version,
        "spec.kubernetes.version",
        syntax::kubernetes_version,
        "write MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. 1.36 or 1.36.4",
    );
    let today = support::Day::today();
    let supported = support::supported_kubernetes(today);
    let minor = support::minor(&k.version);
    if version_ok && !k.allow_unsupported_version && !supported.contains(&minor.as_str()) {
        ck.err(
            &k.version,
            format!(
                "Kubernetes {minor} is not inside its support window on {today} (supported: {})",
                supported.join(", ")
            ),
            "use a supported minor (the newest is the default), or set `spec.kubernetes.allowUnsupportedVersion: true` to run it anyway (every run then warns)",
        );
    }
    check_runtime(ck, k);
    check_state(ck, c);
    super::model_hardening::check(ck, &c.spec.kubernetes.hardening);
    check_backup(ck, c);
    super::validate_gitops::check_gitops(ck, &c.spec.gitops);
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
    for (m, key) in [
        (&k.calico, "spec.kubernetes.calico"),
        (&c.spec.argocd.install, "spec.argocd.install"),
    ] {
        ck.syntax(
            &m.url,
            &format!("{key}.url"),
            syntax::https_url,
            "a pinned https:// URL",
        );
        ck.syntax(
            &m.version,
            &format!("{key}.version"),
            |v| syntax::plain_token(v, 64),
            "a release tag such as v3.32.1",
        );
    }
    check_ssh(ck, c);
}

fn check_runtime(ck: &mut Checker, k: &Kubernetes) {
    for (a, key, example) in [
        (&k.containerd, "spec.kubernetes.containerd", "2.3.4"),
        (&k.runc, "spec.kubernetes.runc", "1.4.3"),
    ] {
        ck.syntax(
            &a.version,
            &format!("{key}.version"),
            syntax::release_version,
            &format!("a release version such as {example} (no `v`)"),
        );
        ck.syntax(
            &a.url,
            &format!("{key}.url"),
            syntax::https_url,
            "a pinned https:// URL",
        );
        ck.sha256(&a.sha256, &format!("{key}.sha256"));
    }
    let (major, minor) = support::min_containerd(&k.version);
    let have: Vec<u32> = (k.containerd.version.split('.'))
        .map_while(|p| p.parse().ok())
        .collect();
    if have.len() >= 2 && (have[0], have[1]) < (major, minor) {
        ck.err(
            &k.containerd.version,
            format!(
                "containerd {} cannot run Kubernetes {} (it needs containerd {major}.{minor} or newer)",
                k.containerd.version,
                support::minor(&k.version)
            ),
            "pin a containerd 2.x release (url and sha256 of the same release)",
        );
    }
}
