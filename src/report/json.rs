//! `--output json`: one JSON object per event on stdout, human lines on stderr.

use std::io::Write;
use std::sync::Mutex;

use super::LineReporter;
use crate::event::{Event, Reporter};

/// Writes `{"ts": ..., "event": ..., "stage": ..., ...}` lines to `out` and forwards every
/// event to a [`LineReporter`] on stderr.
pub struct JsonReporter {
    out: Mutex<Box<dyn Write + Send>>,
    human: LineReporter,
}

impl JsonReporter {
    /// Builds the reporter.
    pub fn new(out: Mutex<Box<dyn Write + Send>>, human: LineReporter) -> Self {
        JsonReporter { out, human }
    }
}

/// The JSON line for one event, with a `ts` field.
pub fn json_line(event: &Event) -> String {
    let mut value = serde_json::to_value(event).expect("events serialize");
    if let Some(map) = value.as_object_mut() {
        // Millisecond precision: per-node phase timings are read from these.
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        map.insert("ts".into(), ts.into());
    }
    value.to_string()
}

impl Reporter for JsonReporter {
    fn event(&self, event: &Event) {
        {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(out, "{}", json_line(event));
            let _ = out.flush();
        }
        self.human.event(event);
    }

    fn finish(&self) {
        self.human.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_ts_event_and_stage() {
        let line = json_line(&Event::Progress {
            stage: "instances".into(),
            node: Some("k8s-master".into()),
            message: "running".into(),
            done: None,
            total: None,
        });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["event"], "progress");
        assert_eq!(v["stage"], "instances");
        assert_eq!(v["node"], "k8s-master");
    }
}
