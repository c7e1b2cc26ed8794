//! The ordered list of stages `ecoboot up` runs.

mod pending;

use crate::engine::Stage;
use pending::Pending;

/// Every stage, in pipeline order.
pub fn all() -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(Pending::new(
            "network",
            "Create VPC, subnets, gateway, routes and security group",
            pending::network,
        )),
        Box::new(Pending::new(
            "iam",
            "Create node IAM role and instance profile",
            pending::iam,
        )),
        Box::new(Pending::new(
            "instances",
            "Import key pair and launch EC2 instances",
            pending::instances,
        )),
        Box::new(Pending::new(
            "prepare-nodes",
            "Prepare nodes: swap, kernel modules, containerd, kubeadm",
            pending::every_node,
        )),
        Box::new(Pending::new(
            "init-master",
            "Initialise the control plane with kubeadm",
            pending::control_plane,
        )),
        Box::new(Pending::new(
            "join-workers",
            "Join the other nodes with a fresh bootstrap token",
            pending::workers,
        )),
        Box::new(Pending::new(
            "install-cni",
            "Install Calico (VXLAN) with server-side apply",
            pending::calico,
        )),
        Box::new(Pending::new(
            "label-nodes",
            "Reconcile node labels and taints, wait until Ready",
            pending::every_node,
        )),
        Box::new(Pending::new(
            "install-argocd",
            "Install ArgoCD with server-side apply",
            pending::argocd,
        )),
        Box::new(Pending::new(
            "root-app",
            "Apply the App-of-Apps root Application",
            pending::root_app,
        )),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_in_documented_order() {
        let ids: Vec<&str> = super::all().iter().map(|s| s.id()).collect();
        assert_eq!(
            ids,
            [
                "network",
                "iam",
                "instances",
                "prepare-nodes",
                "init-master",
                "join-workers",
                "install-cni",
                "label-nodes",
                "install-argocd",
                "root-app"
            ]
        );
    }
}
