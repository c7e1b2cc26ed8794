//! What more than one stage (or a day-2 operation) needs: stage ids, the AWS stages' journal
//! outputs, control-plane facts, node labels and taints, the node preflight, the manifest-stage
//! machinery and where scheduled backups go. Nothing here imports a stage.

pub mod ami;
pub mod backup_target;
pub mod backup_timer;
pub mod control_plane;
pub mod ids;
pub mod join_token;
pub mod key_pair;
pub mod manifest;
pub mod node_labels;
pub mod outputs;
pub mod preflight;
