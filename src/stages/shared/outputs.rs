//! What the AWS stages record in the journal and later stages read: `network`'s and `iam`'s
//! outputs (the instances' record is node facts: [`crate::nodes::InstancesOut`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the stage records in state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NetworkOut {
    /// VPC id.
    pub vpc_id: String,
    /// Subnet id and AZ by config subnet name.
    pub subnets: BTreeMap<String, SubnetOut>,
    /// Internet gateway id.
    pub igw_id: String,
    /// Public route table id.
    pub route_table_id: String,
    /// Cluster security group id.
    pub security_group_id: String,
}

/// One subnet in state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SubnetOut {
    /// Subnet id.
    pub id: String,
    /// Availability zone.
    pub az: String,
}

/// What the stage records in state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IamOut {
    /// Role name.
    pub role: String,
    /// Instance profile name (what `RunInstances` takes).
    pub instance_profile: String,
    /// The controller role's instance profile, for nodes with `awsControllers: true`.
    #[serde(default)]
    pub controller_instance_profile: Option<String>,
    /// The control plane's own instance profile, when scheduled backups need one.
    #[serde(default)]
    pub control_plane_instance_profile: Option<String>,
}

impl IamOut {
    /// The instance profile a node wears.
    pub fn profile_for(&self, node: &crate::config::Node) -> &str {
        if node.role == Some(crate::config::Role::ControlPlane)
            && let Some(cp) = &self.control_plane_instance_profile
        {
            return cp;
        }
        match (&self.controller_instance_profile, node.aws_controllers) {
            (Some(controller), true) => controller,
            _ => &self.instance_profile,
        }
    }
}
