//! Bad-config fixtures: each one breaks the shipped config in one way and asserts the
//! diagnostic's message and the line its span points at.

use std::path::Path;

use ecoboot::config::support::{Day, pin_today};
use ecoboot::config::{Config, ConfigProblems, FileChecks};

const SHIPPED: &str = include_str!("../inventory/cluster.yaml");

struct Case {
    name: &'static str,
    /// (from, to) replacements; `to` replaces every occurrence unless `first_only`.
    edits: &'static [(&'static str, &'static str)],
    first_only: bool,
    message: &'static str,
    /// The diagnostic must point at the first line containing this text (`LAST:` prefix: the last).
    line_with: &'static str,
}

const fn case(
    name: &'static str,
    edits: &'static [(&'static str, &'static str)],
    message: &'static str,
    line_with: &'static str,
) -> Case {
    Case {
        name,
        edits,
        first_only: false,
        message,
        line_with,
    }
}

const CASES: &[Case] = &[
    case(
        "unknown top-level key",
        &[("kind: Cluster\n", "kind: Cluster\nmetdata: {}\n")],
        "unknown key `metdata`",
        "metdata: {}",
    ),
    case(
        "unknown node key",
        &[("instanceType: t3.xlarge", "instanceTyp: t3.xlarge")],
        "unknown key `spec.nodes.0.instanceTyp`",
        "instanceTyp: t3.xlarge",
    ),
    case(
        "missing instance type",
        &[("instanceType: t3.xlarge", "instanceTyp: t3.xlarge")],
        "node `k8s-master` has no `instanceType`",
        "- name: k8s-master",
    ),
    case(
        "wrong apiVersion",
        &[("ecoboot.io/v1alpha1", "ecoboot.io/v9")],
        "`apiVersion` must be `ecoboot.io/v1alpha1`",
        "apiVersion:",
    ),
    case(
        "wrong kind",
        &[("kind: Cluster", "kind: Clustr")],
        "`kind` must be `Cluster`",
        "kind: Clustr",
    ),
    case(
        "empty cluster name",
        &[("metadata:\n  name: sesacthon", "metadata:\n  name: \"\"")],
        "`metadata.name` is required",
        "name: \"\"",
    ),
    case(
        "cluster name not DNS",
        &[(
            "metadata:\n  name: sesacthon",
            "metadata:\n  name: SeSACTHON",
        )],
        "is not a DNS-1123 label",
        "name: SeSACTHON",
    ),
    case(
        "duplicate node name",
        &[("name: k8s-api-my", "name: k8s-api-auth")],
        "duplicate node name `k8s-api-auth`",
        "LAST:name: k8s-api-auth",
    ),
    case(
        "no control plane",
        &[("role: control-plane", "role: worker")],
        "0 nodes have `role: control-plane`; ecoboot runs 1, 3 or 5",
        "- name: k8s-master",
    ),
    case(
        "node name not DNS",
        &[("name: k8s-redis", "name: k8s_redis")],
        "node name `k8s_redis` is not a DNS-1123 name",
        "k8s_redis",
    ),
    case(
        "bad VPC prefix",
        &[("vpcCidr: 10.0.0.0/16", "vpcCidr: 10.0.0.0/33")],
        "is not a prefix length",
        "vpcCidr:",
    ),
    case(
        "VPC host bits",
        &[("vpcCidr: 10.0.0.0/16", "vpcCidr: 10.0.0.1/16")],
        "has host bits set",
        "vpcCidr:",
    ),
    case(
        "subnet outside VPC",
        &[("cidr: 10.0.3.0/24", "cidr: 10.1.3.0/24")],
        "subnet 10.1.3.0/24 is outside the VPC 10.0.0.0/16",
        "cidr: 10.1.3.0/24",
    ),
    case(
        "overlapping subnets",
        &[("cidr: 10.0.3.0/24", "cidr: 10.0.2.128/25")],
        "overlaps subnet 10.0.2.0/24",
        "cidr: 10.0.2.128/25",
    ),
    case(
        "pod and service overlap",
        &[("podCidr: 192.168.0.0/16", "podCidr: 10.96.0.0/16")],
        "the service CIDR 10.96.0.0/12 overlaps the pod CIDR 10.96.0.0/16",
        "serviceCidr:",
    ),
    case(
        "pod overlaps VPC",
        &[("podCidr: 192.168.0.0/16", "podCidr: 10.0.0.0/8")],
        "the pod CIDR 10.0.0.0/8 overlaps the VPC CIDR",
        "podCidr:",
    ),
    case(
        "reserved node-role label",
        &[(
            "        tier: \"platform\"",
            "        node-role.kubernetes.io/control-plane: \"\"",
        )],
        "reserved prefix `node-role.kubernetes.io/`",
        "node-role.kubernetes.io/control-plane: \"\"",
    ),
    case(
        "reserved k8s.io label",
        &[(
            "        tier: \"platform\"",
            "        example.k8s.io/tier: \"platform\"",
        )],
        "reserved prefix `example.k8s.io/`",
        "example.k8s.io/tier",
    ),
    case(
        "bad label value",
        &[("        tier: \"platform\"", "        tier: \"a,b\"")],
        "label value `a,b`",
        "tier: \"a,b\"",
    ),
    case(
        "taint with unknown effect",
        &[("role=control-plane:NoSchedule", "role=control-plane:Never")],
        "unknown effect `Never`",
        "control-plane:Never",
    ),
    case(
        "taint without effect",
        &[(
            "[domain=observability:NoSchedule]",
            "[domain=observability]",
        )],
        "missing `:Effect`",
        "[domain=observability]",
    ),
    case(
        "short sha256",
        &[(
            "sha256: a1df919d9721cf667accdc3e72848911b0cb25cfab7d2478ad0c996302c95744",
            "sha256: a1df919d",
        )],
        "`spec.kubernetes.calico.sha256` must be a sha256 digest",
        "sha256: a1df919d",
    ),
    case(
        "non-hex sha256",
        &[(
            "795a3a972224da6a7f9d32c3e946445f062b60fb46028476715affeb688236e3",
            "z95a3a972224da6a7f9d32c3e946445f062b60fb46028476715affeb688236e3",
        )],
        "`spec.argocd.install.sha256` must be a sha256 digest",
        "sha256: z95a",
    ),
    case(
        "unknown subnet",
        &[("subnet: public-c", "subnet: public-d")],
        "names subnet `public-d`",
        "subnet: public-d",
    ),
    case(
        "bad host key policy",
        &[("knownHosts: console", "knownHosts: \"no\"")],
        "is not a host key policy",
        "knownHosts:",
    ),
    case(
        "bad kubernetes version",
        &[("version: \"1.36\"", "version: latest")],
        "`latest` is not a Kubernetes version",
        "version: latest",
    ),
    case(
        "missing cluster name points at metadata",
        &[("metadata:\n  name: sesacthon", "metadata: {}")],
        "`metadata.name` is required",
        "metadata: {}",
    ),
    case(
        "missing key pair name points at keyPair",
        &[("    keyPair:\n      name: sesacthon\n", "    keyPair:\n")],
        "`spec.aws.keyPair.name` is required",
        "    keyPair:",
    ),
    case(
        "every node tainted: CoreDNS could never schedule",
        &[
            (
                "      subnet: public-a\n      labels:\n        role: \"worker\"",
                "      subnet: public-a\n      taints: [x=y:NoSchedule]\n      labels:\n        role: \"worker\"",
            ),
            (
                "      subnet: public-c\n      labels:\n        role: \"worker\"",
                "      subnet: public-c\n      taints: [x=y:NoExecute]\n      labels:\n        role: \"worker\"",
            ),
        ],
        "no node is free of NoSchedule/NoExecute taints (14 of 14 tainted, e.g. k8s-api-auth [domain=auth:NoSchedule])",
        "- name: k8s-master",
    ),
    case(
        "kubernetes minor past its support window",
        &[("version: \"1.36\"", "version: \"1.34\"")],
        "Kubernetes 1.34 is not inside its support window on 2026-11-23 (supported: 1.35, 1.36, 1.37)",
        "version: \"1.34\"",
    ),
    case(
        "containerd too old for the minor",
        &[("version: \"2.3.4\"", "version: \"1.7.24\"")],
        "containerd 1.7.24 cannot run Kubernetes 1.36",
        "version: \"1.7.24\"",
    ),
    case(
        "wrong type",
        &[("diskGb: 60", "diskGb: sixty")],
        "cannot parse the config",
        "diskGb: sixty",
    ),
    case(
        "disk too small",
        &[("diskGb: 60", "diskGb: 4")],
        "`diskGb` must be at least 8",
        "- name: k8s-monitoring",
    ),
    case(
        "bad address",
        &[(
            "subnet: public-b\n      labels:\n        role: \"infrastructure\"\n        domain: \"observability\"",
            "subnet: public-b\n      address: \"127.0.1.14:99999\"\n      labels:\n        role: \"infrastructure\"\n        domain: \"observability\"",
        )],
        "is not host[:port]",
        "address:",
    ),
    Case {
        name: "two control planes",
        edits: &[("role: worker", "role: control-plane")],
        first_only: true,
        message: "2 nodes have `role: control-plane`; ecoboot runs 1, 3 or 5",
        line_with: "- name: k8s-master",
    },
    case(
        "three control planes in one zone",
        &[
            (
                "name: k8s-api-auth\n      role: worker",
                "name: k8s-api-auth\n      role: control-plane",
            ),
            (
                "name: k8s-api-character\n      role: worker",
                "name: k8s-api-character\n      role: control-plane",
            ),
        ],
        "all 3 control planes are in one availability zone (ap-northeast-2a)",
        "subnet: public-a",
    ),
    case(
        "controlPlaneEndpoint with one control plane",
        &[(
            "    apiAccess: tunnel",
            "    controlPlaneEndpoint: api.example.com\n    apiAccess: tunnel",
        )],
        "`controlPlaneEndpoint` is used only with several control planes",
        "controlPlaneEndpoint:",
    ),
    case(
        "controlPlaneEndpoint not a DNS name",
        &[
            (
                "name: k8s-api-my\n      role: worker",
                "name: k8s-api-my\n      role: control-plane",
            ),
            (
                "name: k8s-api-scan\n      role: worker",
                "name: k8s-api-scan\n      role: control-plane",
            ),
            (
                "    apiAccess: tunnel",
                "    controlPlaneEndpoint: \"api.example.com:6443\"\n    apiAccess: tunnel",
            ),
        ],
        "is not a DNS name",
        "controlPlaneEndpoint:",
    ),
    case(
        "unknown Service type for argocd-server",
        &[("service: {type: NodePort,", "service: {type: NodeProt,")],
        "`NodeProt` is not a Service type",
        "service: {type: NodeProt,",
    ),
    case(
        "NodePort out of range",
        &[("httpNodePort: 30080", "httpNodePort: 8080")],
        "NodePort 8080 is outside the range 30000-32767",
        "httpNodePort: 8080",
    ),
    case(
        "malformed toleration",
        &[(
            "tolerations: [role=control-plane:NoSchedule,",
            "tolerations: [role=control-plane:Never,",
        )],
        "toleration `role=control-plane:Never`: unknown effect `Never`",
        "role=control-plane:Never",
    ),
    case(
        "AppProject name not DNS-1123",
        &[("projects: [dev, prod]", "projects: [dev, Prod_1]")],
        "AppProject name `Prod_1` is not a DNS-1123 label",
        "projects: [dev, Prod_1]",
    ),
    case(
        "AppProject cluster resource not group/Kind",
        &[(
            "clusterResources: [/Namespace]",
            "clusterResources: [Namespace]",
        )],
        "`Namespace` is not group/Kind",
        "clusterResources: [Namespace]",
    ),
    case(
        "unknown key under argocd",
        &[(
            "    keepNetworkPolicies: true",
            "    keepNetworkPolicy: true",
        )],
        "unknown key `spec.argocd.keepNetworkPolicy`",
        "keepNetworkPolicy: true",
    ),
    case(
        "apiAccess not tunnel or direct",
        &[("apiAccess: tunnel ", "apiAccess: ssh ")],
        "unknown variant `ssh`, expected one of tunnel, direct",
        "apiAccess: ssh",
    ),
    case(
        "gitops token from a bad environment variable name",
        &[(
            "\n  argocd:\n",
            "\n  gitops:\n    repositories:\n      - name: backend\n        url: https://github.com/SeSACTHON/backend\n        password: { env: \"GITOPS-TOKEN\" }\n  argocd:\n",
        )],
        "`GITOPS-TOKEN` is not an environment variable name",
        "GITOPS-TOKEN",
    ),
    case(
        "gitops repository with a password and an ssh key",
        &[(
            "\n  argocd:\n",
            "\n  gitops:\n    repositories:\n      - name: backend\n        url: https://github.com/SeSACTHON/backend\n        password: { env: TOKEN }\n        sshPrivateKey: { file: key }\n  argocd:\n",
        )],
        "needs exactly one of `password` (https) or `sshPrivateKey` (ssh)",
        "url: https://github.com/SeSACTHON/backend",
    ),
    case(
        "gitops ssh key on an https url",
        &[(
            "\n  argocd:\n",
            "\n  gitops:\n    repositories:\n      - name: backend\n        url: https://github.com/SeSACTHON/backend\n        sshPrivateKey: { file: key }\n  argocd:\n",
        )],
        "SSH credentials do not fit this URL",
        "url: https://github.com/SeSACTHON/backend",
    ),
    case(
        "pull secret without namespaces and with a value source missing",
        &[(
            "\n  argocd:\n",
            "\n  gitops:\n    imagePullSecrets:\n      - name: ghcr\n        registry: ghcr.io\n        username: bot\n        password: {}\n  argocd:\n",
        )],
        "`spec.gitops.imagePullSecrets[0].namespaces` is empty",
        "- name: ghcr",
    ),
    case(
        "pull secret name not a DNS label",
        &[(
            "\n  argocd:\n",
            "\n  gitops:\n    imagePullSecrets:\n      - name: GHCR_Pull\n        registry: ghcr.io\n        username: bot\n        password: { env: GHCR_TOKEN }\n        namespaces: [api]\n  argocd:\n",
        )],
        "`GHCR_Pull` is not a DNS label",
        "GHCR_Pull",
    ),
    case(
        "backup location that is not s3",
        &[(
            "\nspec:\n",
            "\nspec:\n  backup:\n    to: https://backups.example.com/x\n",
        )],
        "spec.backup.to",
        "to: https://backups.example.com/x",
    ),
    case(
        "backup schedule that is no calendar expression",
        &[(
            "\nspec:\n",
            "\nspec:\n  backup:\n    to: s3://my-backups\n    schedule: \"daily; rm -rf /\"\n",
        )],
        "spec.backup.schedule",
        "schedule: \"daily; rm -rf /\"",
    ),
    case(
        "backup schedule without a location",
        &[("\nspec:\n", "\nspec:\n  backup:\n    schedule: daily\n")],
        "`spec.backup.schedule` needs `spec.backup.to`",
        "schedule: daily",
    ),
    case(
        "backup keep of zero",
        &[("\nspec:\n", "\nspec:\n  backup:\n    keep: 0\n")],
        "`spec.backup.keep` must be at least 1",
        "keep: 0",
    ),
    case(
        "policy document url without sha256",
        &[(
            "        sha256: 16f232c9d9f79366fe949c4550ad517a202380058a9e48d45a4e215044a20a6a\n",
            "",
        )],
        "has a `url` but no `sha256`",
        "docs/install/iam_policy.json",
    ),
    case(
        "policy document with a bad name",
        &[(
            "- name: aws-load-balancer-controller",
            "- name: aws load balancer",
        )],
        "spec.aws.policyDocuments[].name",
        "- name: aws load balancer",
    ),
    case(
        "policy document from nowhere",
        &[(
            "        url: https://raw.githubusercontent.com/kubernetes-sigs/aws-load-balancer-controller/v3.5.0/docs/install/iam_policy.json\n",
            "",
        )],
        "has neither `url` nor `path`",
        "- name: aws-load-balancer-controller",
    ),
    // Hostile configs (#25, finding 9 and 11): address space measured, not spelled.
    case(
        "insecure ArgoCD NodePorts open to the internet through two halves",
        &[(
            "nodePortCidrs: [10.0.0.0/16]",
            "nodePortCidrs: [0.0.0.0/1, 128.0.0.0/1]",
        )],
        "serves the ArgoCD UI and API over plain HTTP beyond your private network",
        "nodePortCidrs: [0.0.0.0/1",
    ),
    case(
        "the world spelled with a leading zero",
        &[(
            "nodePortCidrs: [10.0.0.0/16]",
            "nodePortCidrs: [0.0.0.0/00]",
        )],
        "is not a prefix length",
        "nodePortCidrs: [0.0.0.0/00]",
    ),
    case(
        "insecure NodePorts open to one public address",
        &[(
            "nodePortCidrs: [10.0.0.0/16]",
            "nodePortCidrs: [10.0.0.0/16, 203.0.113.9/32]",
        )],
        "open to 1 internet address(es)",
        "nodePortCidrs: [10.0.0.0/16, 203.0.113.9/32]",
    ),
    case(
        "SSH open to the world without allowWorld",
        &[("allowedSshCidrs: [self]", "allowedSshCidrs: [0.0.0.0/0]")],
        "`spec.aws.allowedSshCidrs` opens the port to",
        "allowedSshCidrs: [0.0.0.0/0]",
    ),
    case(
        "SSH open to the world in three pieces",
        &[(
            "allowedSshCidrs: [self]",
            "allowedSshCidrs: [1.0.0.0/8, 64.0.0.0/2, 128.0.0.0/1]",
        )],
        "that is the whole internet",
        "allowedSshCidrs: [1.0.0.0/8",
    ),
    case(
        "a YAML tag",
        &[(
            "instanceType: t3.xlarge",
            "instanceType: !ruby/object t3.xlarge",
        )],
        "the YAML tag `!ruby/object` is not accepted",
        "instanceType: !ruby/object t3.xlarge",
    ),
    case(
        "a binary YAML tag",
        &[("  name: sesacthon", "  name: !!binary c2VzYWN0aG9u")],
        "is not accepted",
        "name: !!binary",
    ),
    case(
        "credentials in a download URL",
        &[(
            "url: https://github.com/containerd/containerd/releases",
            "url: https://user:pass@github.com/containerd/containerd/releases",
        )],
        "without credentials",
        "url: https://user:pass@github.com/containerd",
    ),
    case(
        "userinfo hiding the real host",
        &[(
            "url: https://raw.githubusercontent.com/projectcalico",
            "url: https://raw.githubusercontent.com@evil.example/projectcalico",
        )],
        "without credentials",
        "url: https://raw.githubusercontent.com@evil.example",
    ),
    case(
        "a secret read from /proc",
        &[(
            "\n  argocd:\n",
            "\n  gitops:\n    repositories:\n      - name: backend\n        url: https://github.com/SeSACTHON/backend\n        password: { file: /proc/self/environ }\n  argocd:\n",
        )],
        "is under /proc",
        "password: { file: /proc/self/environ }",
    ),
    case(
        "SSH port 0",
        &[("    port: 22\n", "    port: 0\n")],
        "`spec.ssh.port: 0` is not a port",
        "port: 0",
    ),
];

fn apply(case: &Case) -> String {
    let mut text = SHIPPED.to_string();
    for (from, to) in case.edits {
        assert!(
            text.contains(from),
            "{}: fixture edit `{from}` does not match the shipped config",
            case.name
        );
        text = if case.first_only {
            text.replacen(from, to, 1)
        } else {
            text.replace(from, to)
        };
    }
    text
}

fn line_with(text: &str, needle: &str) -> usize {
    let (needle, last) = match needle.strip_prefix("LAST:") {
        Some(n) => (n, true),
        None => (needle, false),
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1);
    let found = if last { lines.last() } else { lines.next() };
    found.unwrap_or_else(|| panic!("no line contains `{needle}`"))
}

/// Support windows are judged on the suite's fixed day, never the clock.
fn pin_the_day() {
    pin_today(Day::ymd(2026, 11, 23));
}

fn problems(text: String, files: FileChecks) -> Box<ConfigProblems> {
    pin_the_day();
    Config::parse(Path::new("cluster.yaml"), text, files, "digest")
        .expect_err("config must be rejected")
}

#[test]
fn shipped_config_is_valid() {
    pin_the_day();
    let config = Config::parse(
        Path::new("cluster.yaml"),
        SHIPPED.into(),
        FileChecks::Skip,
        "d",
    )
    .unwrap();
    assert_eq!(config.nodes().count(), 14);
    assert_eq!(config.control_plane().name.value, "k8s-master");
    assert!(!config.is_ha());
    // The HA sandbox: the same 14 nodes, three control planes in three zones.
    let ha = Config::parse(
        Path::new("sandbox-ha.yaml"),
        include_str!("../inventory/sandbox-ha.yaml").into(),
        FileChecks::Skip,
        "d",
    )
    .unwrap();
    assert_eq!(ha.nodes().count(), 14);
    let cps: Vec<&str> = ha.control_planes().map(|n| n.subnet.as_str()).collect();
    assert_eq!(cps, ["public-a", "public-b", "public-c"]);
}

#[test]
fn every_bad_fixture_gets_its_diagnostic_on_its_line() {
    assert!(CASES.len() >= 20);
    let mut failures = Vec::new();
    for case in CASES {
        let text = apply(case);
        let expected_line = line_with(&text, case.line_with);
        let report = problems(text, FileChecks::Skip);
        let hit = report
            .problems
            .iter()
            .find(|p| p.message.contains(case.message));
        match hit {
            None => failures.push(format!(
                "{}: no diagnostic contains `{}`; got {:?}",
                case.name,
                case.message,
                report
                    .problems
                    .iter()
                    .map(|p| &p.message)
                    .collect::<Vec<_>>()
            )),
            Some(p) => {
                if report.line_of(p) != Some(expected_line) {
                    failures.push(format!(
                        "{}: span on line {:?}, expected {expected_line}",
                        case.name,
                        report.line_of(p)
                    ));
                }
                if p.help.is_none() {
                    failures.push(format!("{}: no help line", case.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = SHIPPED
        .replace("name: k8s-api-my", "name: k8s-api-auth")
        .replace("vpcCidr: 10.0.0.0/16", "vpcCidr: 10.0.0.0/33")
        .replace("knownHosts: console", "knownHosts: never");
    let report = problems(text, FileChecks::Skip);
    let messages: Vec<&str> = report.problems.iter().map(|p| p.message.as_str()).collect();
    assert!(messages.len() >= 3, "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("duplicate node name")));
    assert!(messages.iter().any(|m| m.contains("prefix length")));
    assert!(messages.iter().any(|m| m.contains("host key policy")));
}

#[test]
fn unreadable_public_key_is_reported_when_files_are_checked() {
    let text = SHIPPED.replace("~/.ssh/sesacthon.pub", "/nonexistent/ecoboot-test.pub");
    let report = problems(text.clone(), FileChecks::Check);
    let p = report
        .problems
        .iter()
        .find(|p| p.message.contains("cannot read public key"))
        .expect("key problem");
    assert_eq!(report.line_of(p), Some(line_with(&text, "publicKeyPath:")));
    assert!(Config::parse(Path::new("c.yaml"), text, FileChecks::Skip, "d").is_ok());
}

#[test]
fn a_policy_document_that_is_not_an_iam_policy_is_refused_at_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.json"), "{\"Statement\": [\n").unwrap();
    std::fs::write(dir.path().join("list.json"), "[1, 2]").unwrap();
    let entry = |name: &str, file: &str| {
        format!(
            "      - name: {name}\n        path: {}\n",
            dir.path().join(file).display()
        )
    };
    let text = SHIPPED.replace(
        "    policyDocuments:                    # inline while a role's total fits 10,240 chars, else managed\n",
        &format!(
            "    policyDocuments:\n{}{}",
            entry("broken", "broken.json"),
            entry("list", "list.json")
        ),
    );
    let report = problems(text.clone(), FileChecks::Check);
    for (file, says) in [
        ("broken.json", "is not JSON"),
        ("list.json", "not a JSON object"),
    ] {
        let p = report
            .problems
            .iter()
            .find(|p| p.message.contains(file))
            .unwrap_or_else(|| panic!("no problem for {file}: {:?}", report.problems));
        assert!(p.message.contains(says), "{}", p.message);
        assert_eq!(report.line_of(p), Some(line_with(&text, file)));
    }
}
