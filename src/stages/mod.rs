//! The ordered list of stages `ecoboot up` runs.

mod applications;
mod argocd_render;
mod backup_timer;
mod bootstrap_secrets;
mod control_plane_guard;
mod coredns;
pub mod iam;
mod iam_documents;
pub mod init_master;
mod init_master_steps;
pub mod install_argocd;
pub mod install_cni;
mod instance_settings;
pub mod instances;
mod instances_eip;
mod instances_found;
mod instances_launch;
pub mod join_workers;
pub mod label_nodes;
pub mod manifest_stage;
pub mod network;
mod network_discover;
mod network_ensure;
mod node_labels;
pub mod preflight;
pub mod prepare_nodes;
pub mod root_app;
pub mod vcpu_quota;

use crate::engine::DynStage;

/// Every stage, in pipeline order.
pub fn all() -> Vec<Box<dyn DynStage>> {
    vec![
        Box::new(network::Network),
        Box::new(iam::Iam),
        Box::new(instances::Instances),
        Box::new(prepare_nodes::PrepareNodes),
        Box::new(init_master::InitMaster),
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
