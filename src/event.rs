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
    /// Whether this event ends its stage (done, skipped or failed).
    pub fn ends_stage(&self) -> bool {
        matches!(
            self,
            Event::StageDone { .. } | Event::StageSkipped { .. } | Event::StageFailed { .. }
        )
    }

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
    order: Arc<std::sync::Mutex<Option<Order>>>,
}

/// While stages overlap, their events reach the reporter stage by stage: those of a later
/// stage wait until every stage before it has ended, so the output reads as a sequential
/// run's (the debug log has them as they happened).
struct Order {
    stages: Vec<String>,
    head: usize,
    held: Vec<Event>,
}

impl Order {
    fn position(&self, stage: &str) -> Option<usize> {
        self.stages.iter().position(|s| s == stage)
    }

    /// Whether `event` may go out now; a stage's end moves the head past every ended stage.
    fn admit(&mut self, event: &Event) -> bool {
        let Some(at) = event.stage().and_then(|s| self.position(s)) else {
            return true;
        };
        at <= self.head
    }

    /// Moves the head past `stage` when it is the head; returns the held events now due.
    fn ended(&mut self, stage: &str) -> Vec<Event> {
        let mut due = Vec::new();
        if self.position(stage) != Some(self.head) {
            return due;
        }
        self.head += 1;
        while let Some(next) = self.stages.get(self.head).cloned() {
            let (now, later): (Vec<Event>, Vec<Event>) = std::mem::take(&mut self.held)
                .into_iter()
                .partition(|e| e.stage() == Some(next.as_str()));
            self.held = later;
            let finished = now.iter().any(Event::ends_stage);
            due.extend(now);
            if !finished {
                break;
            }
            self.head += 1;
        }
        due
    }
}

impl Events {
    /// Wraps a reporter.
    pub fn new(reporter: Arc<dyn Reporter>) -> Self {
        Events {
            reporter,
            order: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// From now on, events of `stages` reach the reporter in that order of stages (see
    /// [`Events::end_order`]).
    pub fn begin_order(&self, stages: Vec<String>) {
        *self.lock_order() = Some(Order {
            stages,
            head: 0,
            held: Vec::new(),
        });
    }

    /// Releases whatever is still held (stages that never ended: a failure stopped them), in
    /// stage order, and stops ordering.
    pub fn end_order(&self) {
        let Some(order) = self.lock_order().take() else {
            return;
        };
        let mut held = order.held;
        held.sort_by_key(|e| {
            e.stage()
                .and_then(|s| order.stages.iter().position(|x| x == s))
        });
        for event in &held {
            self.reporter.event(event);
        }
    }

    fn lock_order(&self) -> std::sync::MutexGuard<'_, Option<Order>> {
        self.order.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Emits `event` to the reporter and to the debug log.
    pub fn emit(&self, event: Event) {
        tracing::debug!(event = %serde_json::to_string(&event).unwrap_or_default(), "event");
        let mut order = self.lock_order();
        let Some(o) = order.as_mut() else {
            drop(order);
            self.reporter.event(&event);
            return;
        };
        if !o.admit(&event) {
            o.held.push(event);
            return;
        }
        // The reporter is called under the lock: events keep their order.
        self.reporter.event(&event);
        if event.ends_stage()
            && let Some(stage) = event.stage()
        {
            for due in o.ended(stage) {
                self.reporter.event(&due);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Log(std::sync::Mutex<Vec<String>>);

    impl Reporter for Log {
        fn event(&self, e: &Event) {
            let kind = match e {
                Event::StageStarted { .. } => "start",
                Event::Progress { .. } => "progress",
                e if e.ends_stage() => "end",
                _ => "other",
            };
            let line = format!("{}:{kind}", e.stage().unwrap_or("-"));
            self.0.lock().unwrap().push(line);
        }
    }

    fn start(s: &str) -> Event {
        Event::StageStarted {
            stage: s.into(),
            title: String::new(),
        }
    }

    fn end(s: &str) -> Event {
        Event::StageSkipped {
            stage: s.into(),
            message: String::new(),
            aws_calls: Default::default(),
        }
    }

    #[test]
    fn overlapping_stages_are_reported_stage_by_stage() {
        let log = Arc::new(Log(Default::default()));
        let events = Events::new(log.clone());
        events.begin_order(vec!["a".into(), "b".into(), "c".into()]);
        events.emit(start("a"));
        events.emit(start("b"));
        events.progress("b", None, "early");
        events.emit(start("c"));
        events.emit(end("c"));
        events.progress("a", None, "late");
        events.emit(end("a"));
        events.emit(end("b"));
        events.end_order();
        let got = log.0.lock().unwrap().clone();
        assert_eq!(
            got,
            [
                "a:start",
                "a:progress",
                "a:end",
                "b:start",
                "b:progress",
                "b:end",
                "c:start",
                "c:end"
            ]
        );
    }

    #[test]
    fn what_never_ended_is_released_at_the_end_in_stage_order() {
        let log = Arc::new(Log(Default::default()));
        let events = Events::new(log.clone());
        events.begin_order(vec!["a".into(), "b".into(), "c".into()]);
        events.emit(start("c"));
        events.emit(start("b"));
        events.emit(start("a"));
        events.end_order();
        events.progress("x", None, "after");
        let got = log.0.lock().unwrap().clone();
        assert_eq!(got, ["a:start", "b:start", "c:start", "x:progress"]);
    }
}
