//! Typed events the engine emits; reporters render them. The engine never prints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// One planned change: which node or resource, and what would happen to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    /// Node name or resource (`vpc`, `subnet/public-a`, `k8s-api-auth`).
    pub target: String,
    /// What would be done, as a sentence fragment ("create VPC 10.0.0.0/16").
    pub what: String,
}

impl Action {
    /// Builds an action.
    pub fn new(target: impl Into<String>, what: impl Into<String>) -> Self {
        Action {
            target: target.into(),
            what: what.into(),
        }
    }
}

/// Something that happened during a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A command started working on a cluster.
    RunStarted {
        /// `up`, `stage`, `plan`, ...
        command: String,
        /// Cluster name.
        cluster: String,
        /// The binary's version and build facts.
        ecoboot: crate::build_info::BuildInfo,
    },
    /// A stage is being probed or applied.
    StageStarted {
        /// Stage id.
        stage: String,
        /// Human title.
        title: String,
    },
    /// The probe found nothing to do.
    StageSkipped {
        /// Stage id.
        stage: String,
        /// Why (the probe's summary).
        message: String,
        /// AWS calls the probe made, by operation.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        aws_calls: BTreeMap<String, u64>,
    },
    /// The probe found work; in plan/dry-run mode nothing more happens.
    StagePlan {
        /// Stage id.
        stage: String,
        /// The planned actions.
        actions: Vec<Action>,
    },
    /// A progress message about one node or resource.
    Progress {
        /// Stage id.
        stage: String,
        /// Node or resource, if the message is about one.
        #[serde(skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        /// What happened.
        message: String,
        /// Steps finished so far for this node (for progress bars).
        #[serde(skip_serializing_if = "Option::is_none")]
        done: Option<u64>,
        /// Total steps for this node.
        #[serde(skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
    /// A stage finished and its probe confirms it.
    StageDone {
        /// Stage id.
        stage: String,
        /// Wall time in milliseconds.
        duration_ms: u64,
        /// Counters such as `aws_calls.mutating` or `steps.skipped`.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        counters: BTreeMap<String, u64>,
        /// AWS calls made by probe and apply, by operation.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        aws_calls: BTreeMap<String, u64>,
    },
    /// A stage failed.
    StageFailed {
        /// Stage id.
        stage: String,
        /// Wall time in milliseconds.
        duration_ms: u64,
        /// The error, one line.
        message: String,
    },
    /// Something the operator should act on soon, that does not stop the run (e.g. a version
    /// near the end of its support window).
    Warning {
        /// What it is about.
        subject: String,
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },
    /// The run ended.
    RunFinished {
        /// True when every requested stage is done.
        ok: bool,
        /// Wall time in milliseconds.
        duration_ms: u64,
    },
}

impl Event {
    /// The stage this event belongs to, if any.
    pub fn stage(&self) -> Option<&str> {
        match self {
            Event::StageStarted { stage, .. }
            | Event::StageSkipped { stage, .. }
            | Event::StagePlan { stage, .. }
            | Event::Progress { stage, .. }
            | Event::StageDone { stage, .. }
            | Event::StageFailed { stage, .. } => Some(stage),
            Event::RunStarted { .. } | Event::RunFinished { .. } | Event::Warning { .. } => None,
        }
    }
}

/// Renders events (plain lines, progress bars, JSON, GitHub Actions markup).
pub trait Reporter: Send + Sync {
    /// Renders one event.
    fn event(&self, event: &Event);
    /// Flushes and clears anything still on screen.
    fn finish(&self) {}
}

/// Cheap, cloneable handle through which stages emit events.
#[derive(Clone)]
pub struct Events {
    reporter: Arc<dyn Reporter>,
}

impl Events {
    /// Wraps a reporter.
    pub fn new(reporter: Arc<dyn Reporter>) -> Self {
        Events { reporter }
    }

    /// Emits `event` to the reporter and to the debug log.
    pub fn emit(&self, event: Event) {
        tracing::debug!(event = %serde_json::to_string(&event).unwrap_or_default(), "event");
        self.reporter.event(&event);
    }

    /// Emits a progress message about `node` in `stage`.
    pub fn progress(&self, stage: &str, node: Option<&str>, message: impl Into<String>) {
        self.emit(Event::Progress {
            stage: stage.to_string(),
            node: node.map(str::to_string),
            message: message.into(),
            done: None,
            total: None,
        });
    }

    /// Finishes the reporter.
    pub fn finish(&self) {
        self.reporter.finish();
    }
}

/// Duration in whole milliseconds.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
