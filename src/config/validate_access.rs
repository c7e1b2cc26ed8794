//! Checks of how the cluster is reached and where its state lives: `spec.ssh`, what is
//! exposed to whom (closed by default), and `spec.state`.

use super::cidr::{self, Cidr};
use super::syntax::{self, clip};
use super::validate::Checker;
use super::{ApiAccess, Cluster, Problem};

pub(super) fn check_state(ck: &mut Checker, c: &Cluster) {
    let st = &c.spec.state;
    if st.backend == super::StateBackend::S3 {
        match &st.bucket {
            None => ck.problems.push(
                Problem::new(
                    c.metadata.name.span,
                    "`spec.state.bucket` is required with `backend: s3`",
                )
                .help("name the bucket (create it once with `ecoboot state init`)"),
            ),
            Some(b) => {
                ck.syntax(
                    b,
                    "spec.state.bucket",
                    syntax::bucket_name,
                    "an S3 bucket name: 3-63 lower-case letters, digits, '.' and '-'",
                );
            }
        }
    }
    if let Some(k) = &st.key {
        ck.syntax(
            k,
            "spec.state.key",
            syntax::repo_path,
            "a key prefix such as ecoboot/prod (no leading '/', no '..')",
        );
    }
    if let Some(r) = &st.region {
        ck.syntax(
            r,
            "spec.state.region",
            syntax::region,
            "an AWS region such as ap-northeast-2",
        );
    }
}

pub(super) fn check_backup(ck: &mut Checker, c: &Cluster) {
    let b = &c.spec.backup;
    if let Some(to) = &b.to {
        ck.syntax(
            to,
            "spec.backup.to",
            syntax::s3_url,
            "an S3 location such as s3://my-backups/ecoboot",
        );
    }
    if let Some(schedule) = &b.schedule {
        ck.syntax(
            schedule,
            "spec.backup.schedule",
            syntax::on_calendar,
            "a systemd OnCalendar expression such as daily or *-*-* 03:00:00",
        );
        if b.to.is_none() {
            ck.problems.push(
                Problem::new(
                    schedule.span,
                    "`spec.backup.schedule` needs `spec.backup.to`",
                )
                .help("name the bucket the timer uploads to: to: s3://bucket/prefix"),
            );
        }
    }
    if b.keep.value == 0 {
        ck.problems.push(
            Problem::new(b.keep.span, "`spec.backup.keep` must be at least 1")
                .help("keep 7 (the default) or more backups"),
        );
    }
}

pub(super) fn check_ssh(ck: &mut Checker, c: &Cluster) {
    let ssh = &c.spec.ssh;
    if ssh.port == 0 {
        let at = crate::config::Located {
            value: "0".to_string(),
            span: ck.span_of(&["spec", "ssh", "port"]),
        };
        ck.err(
            &at,
            "`spec.ssh.port: 0` is not a port",
            "use 1-65535 (22 unless sshd listens elsewhere)",
        );
    }
    ck.syntax(
        &ssh.user,
        "spec.ssh.user",
        syntax::posix_user,
        "a POSIX user name such as ubuntu",
    );
    if let Some(bastion) = &ssh.bastion {
        ck.syntax(
            bastion,
            "spec.ssh.bastion",
            syntax::jump_host,
            "write [user@]host[:port]",
        );
    }
    let policy = &ssh.known_hosts;
    if !["console", "accept-new", "strict"].contains(&policy.as_str()) {
        ck.err(
            policy,
            format!("`knownHosts: {}` is not a host key policy", clip(policy)),
            "use `console` (first contact verified against the instance's console output), `accept-new` (record on first contact) or `strict` (must already be known)",
        );
    }
}

/// Closed by default: SSH (and, with `apiAccess: direct`, the API) must name who may connect,
/// and ArgoCD's plain-HTTP UI is never reachable from the whole internet.
pub(super) fn check_exposure(ck: &mut Checker, c: &Cluster) {
    let aws = &c.spec.aws;
    const FIND_IP: &str = "list the CIDRs that may connect, e.g. your address as `203.0.113.7/32` (`curl -s https://checkip.amazonaws.com`), or `self`: the address of the machine running ecoboot, opened only while a command runs (what GitHub-hosted runners need: they change address on every run)";
    if aws.allowed_ssh_cidrs.is_empty() {
        ck.err(
            &aws.region,
            "`spec.aws.allowedSshCidrs` is required: ecoboot opens port 22 to no one by default",
            FIND_IP,
        );
    }
    if c.spec.kubernetes.api_access == ApiAccess::Direct && aws.allowed_api_cidrs.is_empty() {
        ck.err(
            &aws.region,
            "`spec.aws.allowedApiCidrs` is required with `apiAccess: direct`",
            FIND_IP,
        );
    }
    let a = &c.spec.argocd;
    let exposed = a.service.kind.as_str() != "ClusterIP";
    let node_ports = blocks(&aws.node_port_cidrs);
    if a.server_insecure
        && exposed
        && cidr::public_size(&node_ports) > 0
        && let Some(first) = aws.node_port_cidrs.iter().find(|x| {
            x.value
                .parse::<Cidr>()
                .is_ok_and(|b| cidr::public_size(&[b]) > 0)
        })
    {
        ck.err(
            first,
            format!(
                "`serverInsecure: true` with a NodePort open to {} internet address(es) serves the ArgoCD UI and API over plain HTTP beyond your private network",
                cidr::public_size(&node_ports)
            ),
            "keep spec.aws.nodePortCidrs inside private ranges (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, e.g. the load balancer's subnets), set `serverInsecure: false`, or use `service: {type: ClusterIP}` and `ecoboot argocd ui`",
        );
    }
    let api_direct = c.spec.kubernetes.api_access == ApiAccess::Direct;
    for (key, list, applies) in [
        ("allowedSshCidrs", &aws.allowed_ssh_cidrs, true),
        ("allowedApiCidrs", &aws.allowed_api_cidrs, api_direct),
    ] {
        let open = cidr::public_size(&blocks(list));
        if applies
            && open > cidr::WORLD
            && !aws.allow_world
            && let Some(first) = list.first()
        {
            ck.err(
                first,
                format!("`spec.aws.{key}` opens the port to {open} internet addresses (more than a /8): that is the whole internet"),
                "list the addresses that need it; if you really mean the world, add `allowWorld: true` under spec.aws (every run then warns)",
            );
        }
    }
}

/// The blocks of a CIDR list that parse (the others get their own diagnostic).
fn blocks(list: &[crate::config::Located<String>]) -> Vec<Cidr> {
    list.iter().filter_map(|x| x.value.parse().ok()).collect()
}

/// With `allowWorld: true`: which ports are open to the world (every run warns about them).
pub fn world_open(c: &Cluster) -> Vec<&'static str> {
    let aws = &c.spec.aws;
    let mut open = Vec::new();
    if cidr::public_size(&blocks(&aws.allowed_ssh_cidrs)) > cidr::WORLD {
        open.push("SSH (22)");
    }
    if c.spec.kubernetes.api_access == ApiAccess::Direct
        && cidr::public_size(&blocks(&aws.allowed_api_cidrs)) > cidr::WORLD
    {
        open.push("the Kubernetes API (6443)");
    }
    open
}

/// `spec.aws.ami.builder`: the image builder's instance type, subnet and SSH address.
pub(super) fn check_builder(ck: &mut Checker, c: &Cluster) {
    let b = &c.spec.aws.ami.builder;
    ck.syntax(
        &b.instance_type,
        "spec.aws.ami.builder.instanceType",
        |t| syntax::plain_token(t, 32),
        "an EC2 instance type such as t3.medium",
    );
    if let Some(subnet) = &b.subnet
        && !c
            .spec
            .aws
            .subnets
            .iter()
            .any(|s| s.name.value == subnet.value)
    {
        let names: Vec<&str> = c.spec.aws.subnets.iter().map(|s| s.name.as_str()).collect();
        ck.err(
            subnet,
            format!(
                "`spec.aws.ami.builder.subnet` names `{}`, which is not in spec.aws.subnets",
                clip(subnet)
            ),
            format!("use one of: {}", names.join(", ")),
        );
    }
    if let Some(addr) = &b.address
        && let Err(e) = syntax::host_port(addr)
    {
        ck.err(
            addr,
            format!(
                "`spec.aws.ami.builder.address: {}` is not host[:port]: {e}",
                clip(addr)
            ),
            "write e.g. 203.0.113.7 or 127.0.1.15:2222",
        );
    }
}
