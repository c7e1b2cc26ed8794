//! The typed shape of `inventory/cluster.yaml`.
//!
//! Fields are defaulted so that a missing required field is reported by validation together
//! with every other problem, instead of stopping the parser at the first one.

use std::collections::BTreeMap;

pub use super::located::{Located, plain};
use serde::{Deserialize, Serialize};

use super::model_argocd::ArgoCd;

/// The whole config document.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct Cluster {
    /// Must be `ecoboot.io/v1alpha1`.
    pub api_version: Located<String>,
    /// Must be `Cluster`.
    pub kind: Located<String>,
    /// Name and other metadata.
    pub metadata: Metadata,
    /// Everything that describes the cluster.
    pub spec: Spec,
}

/// `metadata:`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Metadata {
    /// Cluster name; tags, state directory and resource names derive from it.
    pub name: Located<String>,
}

/// `spec:`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Spec {
    /// AWS account layout.
    pub aws: Aws,
    /// How ecoboot reaches the nodes.
    pub ssh: Ssh,
    /// Kubernetes versions and networks.
    pub kubernetes: Kubernetes,
    /// ArgoCD install and root application.
    pub argocd: ArgoCd,
    /// The nodes of the cluster.
    pub nodes: Vec<Located<Node>>,
    /// Where the journal, host keys and lock live.
    pub state: super::model_state::State,
    /// Repository credentials and pull secrets the GitOps tree needs (values from env/files).
    pub gitops: super::model_gitops::Gitops,
    /// etcd backups: where they go and how many are kept.
    pub backup: super::model_state::Backup,
    /// Remove nodes that left `nodes` on every `up`, as `up --prune` does (default: only report
    /// them).
    pub prune: bool,
}

/// `spec.aws`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct Aws {
    /// Region; `AWS_REGION` overrides it when set.
    pub region: Located<String>,
    /// VPC CIDR block.
    pub vpc_cidr: Located<String>,
    /// Public subnets, one per availability zone.
    pub subnets: Vec<Located<Subnet>>,
    /// Which image to boot.
    pub ami: Ami,
    /// The EC2 key pair.
    pub key_pair: KeyPair,
    /// CIDRs allowed to reach SSH (22), or `self`: the public address of the machine running
    /// ecoboot, opened while a command runs and closed after it (GitHub-hosted runners).
    /// Required: there is no default.
    pub allowed_ssh_cidrs: Vec<Located<String>>,
    /// CIDRs allowed to reach the API server (6443); used (and required) only with
    /// `apiAccess: direct`.
    pub allowed_api_cidrs: Vec<Located<String>>,
    /// CIDRs allowed to reach the NodePort range; empty means no rule.
    pub node_port_cidrs: Vec<Located<String>>,
    /// Lets `allowedSshCidrs` (and `allowedApiCidrs` with `apiAccess: direct`) cover more
    /// than a /8 of internet addresses; every run then warns.
    pub allow_world: bool,
    /// Managed policy ARNs of the node role (every node); policies ecoboot attached earlier
    /// and no longer listed are detached.
    pub iam_policies: Vec<Located<String>>,
    /// Extra managed policy ARNs of the controller role, worn only by nodes with
    /// `awsControllers: true` (EBS CSI controller, load balancer controller).
    pub controller_iam_policies: Vec<Located<String>>,
    /// Policy documents (files or pinned URLs) for the node role, or with `controllerOnly`
    /// for the controller role; inline while they fit, customer-managed beyond.
    pub policy_documents: Vec<Located<super::model_iam::PolicyDocument>>,
    /// Extra tags for every resource.
    pub tags: BTreeMap<String, Located<String>>,
}

impl Default for Aws {
    fn default() -> Self {
        Aws {
            region: Located::default(),
            vpc_cidr: Located::default(),
            subnets: Vec::new(),
            ami: Ami::default(),
            key_pair: KeyPair::default(),
            allowed_ssh_cidrs: Vec::new(),
            allowed_api_cidrs: Vec::new(),
            node_port_cidrs: Vec::new(),
            allow_world: false,
            iam_policies: vec![
                plain("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore".into()),
                plain("arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly".into()),
            ],
            controller_iam_policies: vec![plain(
                "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy".into(),
            )],
            policy_documents: Vec::new(),
            tags: BTreeMap::new(),
        }
    }
}

/// One public subnet.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Subnet {
    /// Name nodes refer to in `subnet:`.
    pub name: Located<String>,
    /// Availability zone, e.g. `ap-northeast-2a`.
    pub az: Located<String>,
    /// CIDR inside the VPC.
    pub cidr: Located<String>,
}

/// `spec.aws.ami`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct Ami {
    /// Image owner account (Canonical by default).
    pub owner: Located<String>,
    /// Image name filter.
    pub name_filter: Located<String>,
    /// Launch nodes from the golden image `ecoboot image build` made for this config (the
    /// base image, prepared and with every container image pre-pulled) when one matches;
    /// otherwise from the base image, with a warning.
    pub golden: bool,
    /// The instance `ecoboot image build` prepares and images.
    pub builder: Builder,
}

impl Default for Ami {
    fn default() -> Self {
        Ami {
            owner: plain("099720109477".into()),
            name_filter: plain(
                "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*".into(),
            ),
            golden: false,
            builder: Builder::default(),
        }
    }
}

/// `spec.aws.ami.builder`: the temporary instance `ecoboot image build` launches.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct Builder {
    /// EC2 instance type of the builder.
    pub instance_type: Located<String>,
    /// Subnet name from `spec.aws.subnets` (default: the first one).
    pub subnet: Option<Located<String>>,
    /// Static SSH address (`host[:port]`) overriding the builder's public IP (sandbox, bastion).
    pub address: Option<Located<String>>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            instance_type: plain("t3.medium".into()),
            subnet: None,
            address: None,
        }
    }
}

/// `spec.aws.keyPair`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct KeyPair {
    /// EC2 key pair name.
    pub name: Located<String>,
    /// Path of the OpenSSH public key to import.
    pub public_key_path: Located<String>,
}

/// `spec.ssh`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct Ssh {
    /// Remote user; non-root users get `sudo -n`.
    pub user: Located<String>,
    /// Private key file (used with `IdentitiesOnly`).
    pub identity_file: Option<String>,
    /// Default port.
    pub port: u16,
    /// Optional ProxyJump host (`user@host:port`).
    pub bastion: Option<Located<String>>,
    /// Host key policy: `console` (default: the first contact must present a key whose
    /// fingerprint the instance's console printed), `accept-new` or `strict`.
    pub known_hosts: Located<String>,
    /// How many nodes at once; 0 means all.
    pub concurrency: usize,
    /// How long to wait for a node to answer SSH.
    pub connect_timeout_seconds: u64,
}

impl Default for Ssh {
    fn default() -> Self {
        Ssh {
            user: plain("ubuntu".into()),
            identity_file: None,
            port: 22,
            bastion: None,
            known_hosts: plain("console".into()),
            concurrency: 0,
            connect_timeout_seconds: 300,
        }
    }
}

/// `spec.kubernetes`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct Kubernetes {
    /// Kubernetes version, e.g. `1.36.4` or `1.36`.
    pub version: Located<String>,
    /// Accept a minor outside its support window (warned about on every run).
    pub allow_unsupported_version: bool,
    /// containerd from its upstream release tarball, downloaded on each node and checked
    /// against the sha256.
    pub containerd: Artifact,
    /// runc, the OCI runtime containerd runs (upstream release binary).
    pub runc: Artifact,
    /// Pod network CIDR (Calico IP pool).
    pub pod_cidr: Located<String>,
    /// Service CIDR.
    pub service_cidr: Located<String>,
    /// The pinned Calico manifest.
    pub calico: Manifest,
    /// How ecoboot reaches the API server.
    pub api_access: ApiAccess,
    /// With several control planes: a DNS name of your own (a CNAME to the load balancer)
    /// used as kubeadm's `controlPlaneEndpoint` instead of the load balancer's DNS name.
    /// Either way it is in the API server certificate.
    pub control_plane_endpoint: Option<Located<String>>,
    /// Bound on each wait (Calico ready, nodes Ready).
    pub wait_seconds: u64,
    /// Secrets encryption at rest, the audit log, Pod Security defaults (all on by default).
    pub hardening: super::Hardening,
}

/// `spec.kubernetes.apiAccess`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ApiAccess {
    /// An SSH local forward to the control plane's 127.0.0.1 (port 6443 stays closed).
    #[default]
    Tunnel,
    /// The control plane's address directly (port 6443 must be reachable).
    Direct,
}

impl Default for Kubernetes {
    fn default() -> Self {
        Kubernetes {
            version: plain("1.36".into()),
            allow_unsupported_version: false,
            containerd: Artifact {
                version: plain("2.3.4".into()),
                url: plain("https://github.com/containerd/containerd/releases/download/v2.3.4/containerd-2.3.4-linux-amd64.tar.gz".into()),
                sha256: plain("9d68969855fbf676cdb8ed758e420fb048d61f984f61de3e53eddfebe484d168".into()),
            },
            runc: Artifact {
                version: plain("1.4.3".into()),
                url: plain("https://github.com/opencontainers/runc/releases/download/v1.4.3/runc.amd64".into()),
                sha256: plain("f6ae8efc0fa40079e1475e97cbe9d1bd3f106a28d6af78a11d9f1bd565515e60".into()),
            },
            pod_cidr: plain("192.168.0.0/16".into()),
            service_cidr: plain("10.96.0.0/12".into()),
            calico: Manifest {
                version: plain("v3.32.1".into()),
                url: plain("https://raw.githubusercontent.com/projectcalico/calico/v3.32.1/manifests/calico.yaml".into()),
                sha256: Located::default(),
                path: None,
            },
            api_access: ApiAccess::Tunnel,
            control_plane_endpoint: None,
            wait_seconds: 600,
            hardening: super::Hardening::default(),
        }
    }
}

/// A pinned upstream manifest: where to get it and what it must hash to.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Manifest {
    /// Upstream version tag.
    pub version: Located<String>,
    /// Download URL.
    pub url: Located<String>,
    /// Expected sha256 (64 hex characters).
    pub sha256: Located<String>,
    /// Local file used instead of the URL (air-gapped runs).
    pub path: Option<String>,
}

/// A release artefact a node downloads itself: version, URL and the sha256 it must hash to.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Artifact {
    /// Release version without `v` (e.g. `2.3.4`).
    pub version: Located<String>,
    /// Download URL (https).
    pub url: Located<String>,
    /// Expected sha256 (64 hex characters).
    pub sha256: Located<String>,
}

/// Node role.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The single kubeadm control-plane node.
    ControlPlane,
    /// Everything else (API, worker and infra nodes).
    #[default]
    Worker,
}

impl Role {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        }
    }
}

/// One node of `spec.nodes`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct Node {
    /// Node name = hostname = EC2 `Name` tag = Kubernetes node name.
    pub name: Located<String>,
    /// Control plane or worker.
    pub role: Option<Role>,
    /// EC2 instance type.
    pub instance_type: Located<String>,
    /// Root volume size in GiB.
    pub disk_gb: u32,
    /// Subnet name from `spec.aws.subnets`.
    pub subnet: Located<String>,
    /// Static SSH address (`host[:port]`) overriding the discovered public IP.
    pub address: Option<Located<String>>,
    /// Node labels set at registration.
    pub labels: BTreeMap<String, Located<String>>,
    /// Taints `key[=value]:Effect` set at registration.
    pub taints: Vec<Located<String>>,
    /// The node runs AWS-facing controllers (load balancer controller, EBS CSI controller): it
    /// wears the controller role and its instance metadata hop limit is 2 so their pods can
    /// reach IMDSv2; everywhere else it is 1, so no pod can read the node role's credentials.
    pub aws_controllers: bool,
}
