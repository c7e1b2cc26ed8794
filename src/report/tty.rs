//! Interactive terminal output: a spinner per stage and a bar per node.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::event::{Event, Reporter};

/// indicatif rendering of engine events.
pub struct TtyReporter {
    multi: MultiProgress,
    quiet: bool,
    detail: bool,
    bars: Mutex<Bars>,
    /// The plan lines already shown per stage: after the user said yes, the apply pass shows
    /// progress, not the same plan again.
    shown: Mutex<HashMap<String, Vec<String>>>,
}

#[derive(Default)]
struct Bars {
    stage: Option<ProgressBar>,
    nodes: HashMap<String, ProgressBar>,
}

impl TtyReporter {
    /// Builds the reporter (draws to stderr); `detail` prints plans one line per action.
    pub fn new(quiet: bool, detail: bool) -> Self {
        TtyReporter {
            multi: MultiProgress::new(),
            quiet,
            detail,
            bars: Mutex::new(Bars::default()),
            shown: Mutex::new(HashMap::new()),
        }
    }

    fn println(&self, text: &str) {
        let _ = self.multi.println(super::sanitize::clean(text));
    }

    /// The line of one node (or application): a bar once steps are counted, else a spinner.
    fn node_bar(&self, bars: &mut Bars, node: &str) -> ProgressBar {
        bars.nodes
            .entry(node.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix:<22} {wide_msg}")
                        .expect("valid template"),
                );
                bar.set_prefix(super::sanitize::clean(node));
                bar
            })
            .clone()
    }

    fn close_stage(&self, bars: &mut Bars, line: String) {
        Self::clear(bars);
        self.println(&line);
    }

    /// Removes the stage's spinner and node lines.
    fn clear(bars: &mut Bars) {
        if let Some(spinner) = bars.stage.take() {
            spinner.finish_and_clear();
        }
        for (_, bar) in bars.nodes.drain() {
            bar.finish_and_clear();
        }
    }
}

impl Reporter for TtyReporter {
    // Long by design: one match arm per event kind (bars started, moved, finished).
    fn event(&self, event: &Event) {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::RunStarted {
                command, cluster, ..
            } if !self.quiet => {
                self.println(&format!("ecoboot {command}: cluster {cluster}"));
            }
            Event::StageStarted { stage, title } => {
                let spinner = self.multi.add(ProgressBar::new_spinner());
                spinner.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} [{elapsed}]")
                        .expect("valid template"),
                );
                spinner.set_prefix(stage.clone());
                spinner.set_message(super::sanitize::clean(title));
                spinner.enable_steady_tick(Duration::from_millis(120));
                bars.stage = Some(spinner);
            }
            Event::StageSkipped { stage, message, .. } => {
                self.close_stage(&mut bars, format!("✓ {stage}: done already ({message})"));
            }
            Event::StagePlan { stage, actions } => {
                // The probe's lines are done: the plan takes their place.
                Self::clear(&mut bars);
                let lines: Vec<String> = super::plan_view::render(actions, self.detail)
                    .into_iter()
                    .map(|(target, what)| format!("  ~ [{stage}] {target}: {what}"))
                    .collect();
                let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
                if shown.get(stage) != Some(&lines) {
                    for line in &lines {
                        self.println(line);
                    }
                    shown.insert(stage.clone(), lines);
                }
            }
            Event::Progress {
                node: Some(node),
                message,
                done,
                total,
                ..
            } => {
                let bar = self.node_bar(&mut bars, node);
                if let Some(total) = total {
                    if bar.length() != Some(*total) {
                        bar.set_style(
                            ProgressStyle::with_template(
                                "  {prefix:<22} [{bar:20}] {pos}/{len} {wide_msg}",
                            )
                            .expect("valid template")
                            .progress_chars("=> "),
                        );
                    }
                    bar.set_length(*total);
                }
                if let Some(done) = done {
                    bar.set_position(*done);
                }
                bar.set_message(super::sanitize::clean(message));
            }
            Event::Progress {
                node: None,
                message,
                ..
            } => match &bars.stage {
                Some(spinner) => spinner.set_message(super::sanitize::clean(message)),
                None => self.println(message),
            },
            Event::StageDone {
                stage, duration_ms, ..
            } => {
                let line = format!("✓ {stage} ({:.1}s)", *duration_ms as f64 / 1000.0);
                self.close_stage(&mut bars, line);
            }
            Event::StageFailed { stage, message, .. } => {
                self.close_stage(&mut bars, format!("✗ {stage}: {message}"));
            }
            Event::RunFinished { ok, duration_ms } => {
                let verdict = if *ok { "finished" } else { "stopped" };
                self.println(&format!(
                    "ecoboot {verdict} in {:.1}s",
                    *duration_ms as f64 / 1000.0
                ));
            }
            Event::Warning { message, help, .. } => {
                self.println(&format!("! warning: {message}; {help}"));
            }
            Event::RunStarted { .. } => {}
        }
    }

    fn finish(&self) {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(spinner) = bars.stage.take() {
            spinner.finish_and_clear();
        }
        for (_, bar) in bars.nodes.drain() {
            bar.finish_and_clear();
        }
    }
}
