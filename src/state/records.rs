//! The journal's records: each stage's status, attempts and outcome, and the outputs stages
//! leave for later ones (a cache of resource ids; the real world stays the authority).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the state file layout this build reads and writes.
pub const SCHEMA: u32 = 1;

/// Where a stage stands in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    /// Never started.
    #[default]
    Pending,
    /// Started and not finished: the process is running or died.
    Running,
    /// Finished and verified.
    Done,
    /// Finished with an error.
    Failed,
    /// Stopped by Ctrl-C or a signal.
    Interrupted,
}

impl StageStatus {
    /// Lower-case name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Pending => "pending",
            StageStatus::Running => "running",
            StageStatus::Done => "done",
            StageStatus::Failed => "failed",
            StageStatus::Interrupted => "interrupted",
        }
    }
}

/// The journal entry of one stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StageRecord {
    /// Current status.
    pub status: StageStatus,
    /// RFC 3339 time the last attempt started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// RFC 3339 time the last attempt ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// How many times apply was started.
    pub attempts: u32,
    /// The last error message (never contains secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The whole state file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Layout version ([`SCHEMA`]).
    pub schema: u32,
    /// Cluster name.
    pub cluster: String,
    /// sha256 of the config file last used.
    pub config_digest: String,
    /// Journal, by stage id.
    pub stages: BTreeMap<String, StageRecord>,
    /// Stage outputs (resource ids, addresses, ...), by stage id. Never secrets.
    pub outputs: BTreeMap<String, serde_json::Value>,
}

impl State {
    /// An empty journal for `cluster`.
    pub fn new(cluster: &str) -> Self {
        State {
            schema: SCHEMA,
            cluster: cluster.to_string(),
            config_digest: String::new(),
            stages: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }

    /// The record of `stage` (default: pending).
    pub fn record(&self, stage: &str) -> StageRecord {
        self.stages.get(stage).cloned().unwrap_or_default()
    }

    /// Mutable record of `stage`, created if missing.
    pub fn record_mut(&mut self, stage: &str) -> &mut StageRecord {
        self.stages.entry(stage.to_string()).or_default()
    }

    /// The typed output of `stage`, if recorded and readable.
    pub fn output<T: for<'de> Deserialize<'de>>(&self, stage: &str) -> Option<T> {
        self.outputs
            .get(stage)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// Records the output of `stage`.
    pub fn set_output<T: Serialize>(&mut self, stage: &str, value: &T) {
        let value = serde_json::to_value(value).expect("outputs serialize to JSON");
        self.outputs.insert(stage.to_string(), value);
    }
}
