//! The upgrade's journal entry: the target and each node's phase, written before and after every
//! phase, so a crash or Ctrl-C resumes at the node in progress and never drains a finished node
//! again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The journal key.
pub const KEY: &str = "upgrade";

/// Where one node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Not started.
    Pending,
    /// Cordoned; pods being evicted.
    Draining,
    /// Packages and configuration at the target; still cordoned.
    Upgraded,
    /// Uncordoned and Ready at the target.
    Done,
}

/// The upgrade in progress (or the last one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// What the API server ran when the upgrade started.
    pub from: String,
    /// Target, with the patch once the control plane resolved it (`1.37.2`).
    pub to: String,
    /// Phase per node.
    pub nodes: BTreeMap<String, Phase>,
    /// Drain count per node (each node is drained once per upgrade).
    #[serde(default)]
    pub drains: BTreeMap<String, u32>,
}

impl Record {
    /// The phase of `node` (pending when unknown).
    pub fn phase(&self, node: &str) -> Phase {
        self.nodes.get(node).copied().unwrap_or(Phase::Pending)
    }

    /// Every node done.
    pub fn finished(&self) -> bool {
        !self.nodes.is_empty() && self.nodes.values().all(|p| *p == Phase::Done)
    }
}
