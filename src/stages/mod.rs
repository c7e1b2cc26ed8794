//! The ordered list of stages `ecoboot up` runs: one folder per stage with more than one part
//! (`mod.rs` holds the `Stage` impl and its plan), one file per single-part stage, and
//! [`shared`] for what more than one stage needs. A stage never imports another stage.

pub mod iam;
pub mod init_master;
pub mod install_argocd;
pub mod install_cni;
pub mod instances;
pub mod join_control_plane;
pub mod join_workers;
pub mod label_nodes;
pub mod load_balancer;
pub mod network;
pub mod prepare_nodes;
pub mod root_app;
pub mod shared;

use crate::engine::DynStage;

/// Every stage, in pipeline order.
pub fn all() -> Vec<Box<dyn DynStage>> {
    vec![
        Box::new(network::Network),
        Box::new(iam::Iam),
        Box::new(instances::Instances),
        Box::new(load_balancer::LoadBalancer),
        Box::new(prepare_nodes::PrepareNodes),
        Box::new(init_master::InitMaster),
        Box::new(join_control_plane::JoinControlPlane),
        Box::new(join_workers::JoinWorkers),
        Box::new(install_cni::InstallCni::default()),
        Box::new(label_nodes::LabelNodes),
        Box::new(install_argocd::InstallArgocd::default()),
        Box::new(root_app::RootApp),
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
                "load-balancer",
                "prepare-nodes",
                "init-master",
                "join-control-plane",
                "join-workers",
                "install-cni",
                "label-nodes",
                "install-argocd",
                "root-app"
            ]
        );
    }
}
