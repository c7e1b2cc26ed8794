//! The stage ids, in pipeline order: the journal's keys and the values of `--from`/`--to`.
//! A stage that waits for another names it through these, never through the other stage.

/// `network`: VPC, subnets, gateway, routes, security group.
pub const NETWORK: &str = "network";
/// `iam`: roles and instance profiles.
pub const IAM: &str = "iam";
/// `instances`: the EC2 nodes (same key as [`crate::nodes::INSTANCES`]).
pub const INSTANCES: &str = crate::nodes::INSTANCES;
/// `load-balancer`: the control planes' Network Load Balancer (several control planes only).
pub const LOAD_BALANCER: &str = crate::nodes::LOAD_BALANCER;
/// `prepare-nodes`: OS prerequisites and the container runtime.
pub const PREPARE_NODES: &str = "prepare-nodes";
/// `init-master`: kubeadm init on the control plane.
pub const INIT_MASTER: &str = "init-master";
/// `join-control-plane`: kubeadm join --control-plane on the other control planes.
pub const JOIN_CONTROL_PLANE: &str = "join-control-plane";
/// `join-workers`: kubeadm join on every other node.
pub const JOIN_WORKERS: &str = "join-workers";
/// `install-cni`: Calico.
pub const INSTALL_CNI: &str = "install-cni";
/// `label-nodes`: node labels and taints.
pub const LABEL_NODES: &str = "label-nodes";
/// `install-argocd`: ArgoCD.
pub const INSTALL_ARGOCD: &str = "install-argocd";
/// `root-app`: the App-of-Apps root Application.
pub const ROOT_APP: &str = "root-app";
