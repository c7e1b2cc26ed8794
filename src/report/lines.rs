//! Plain line-per-event output, optionally with GitHub Actions workflow commands.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use super::sanitize::{clean as sanitize, write_foreign};
use crate::event::{Event, Reporter};

/// One line per event: `[stage] node: message`. With `github`, stages are wrapped in
/// `::group::`/`::endgroup::`, failures become `::error::` annotations and a Markdown table is
/// appended to `$GITHUB_STEP_SUMMARY` at the end.
pub struct LineReporter {
    out: Mutex<Box<dyn Write + Send>>,
    github: bool,
    quiet: bool,
    summary_path: Option<PathBuf>,
    rows: Mutex<Vec<(String, String, u64)>>,
    warnings: Mutex<Vec<String>>,
    detail: bool,
}

impl LineReporter {
    /// Builds a reporter writing to `out`.
    pub fn new(
        out: Mutex<Box<dyn Write + Send>>,
        github: bool,
        quiet: bool,
        summary_path: Option<PathBuf>,
    ) -> Self {
        LineReporter {
            out,
            github,
            quiet,
            summary_path,
            rows: Mutex::new(Vec::new()),
            warnings: Mutex::new(Vec::new()),
            detail: false,
        }
    }

    /// Plans one line per action instead of grouped.
    pub fn detail(mut self, detail: bool) -> Self {
        self.detail = detail;
        self
    }

    /// Prints text that may carry foreign content (node output, API messages). In GitHub mode a
    /// block with anything command-like is fenced by `::stop-commands::<random token>`, so a
    /// node printing `::add-mask::` or `::warning::` shows as plain text instead of acting.
    fn line(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        write_foreign(&mut *out, text, self.github);
        let _ = out.flush();
    }

    /// Prints one of ecoboot's own workflow commands (`::group::`, `::error::`).
    fn command(&self, command: &str) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{}", sanitize(command));
        let _ = out.flush();
    }

    fn row(&self, stage: &str, status: &str, ms: u64) {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).push((
            stage.to_string(),
            status.to_string(),
            ms,
        ));
    }

    fn write_summary(&self) {
        let Some(path) = &self.summary_path else {
            return;
        };
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let warnings = self.warnings.lock().unwrap_or_else(|p| p.into_inner());
        if rows.is_empty() && warnings.is_empty() {
            return;
        }
        let mut md = String::from("### ecoboot\n\n");
        for w in warnings.iter() {
            md.push_str(&format!("> [!WARNING]\n> {}\n\n", sanitize(w)));
        }
        if !rows.is_empty() {
            md.push_str("| stage | status | duration |\n|---|---|---|\n");
            for (stage, status, ms) in rows.iter() {
                md.push_str(&sanitize(&format!(
                    "| {stage} | {status} | {} |\n",
                    seconds(*ms)
                )));
            }
            md.push('\n');
        }
        let appended = crate::fsutil::append_nofollow()
            .open(path)
            .and_then(|mut f| f.write_all(md.as_bytes()));
        if let Err(e) = appended {
            self.line(&format!(
                "warning: cannot write the step summary {}: {e}",
                path.display()
            ));
        }
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// Escapes a message for a GitHub workflow command (`%`, CR, LF).
pub fn gh_escape(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

impl Reporter for LineReporter {
    // Long by design: one match arm per event kind, each a line or two of output.
    fn event(&self, event: &Event) {
        match event {
            Event::RunStarted {
                command, cluster, ..
            } => {
                if !self.quiet {
                    self.line(&format!("ecoboot {command}: cluster {cluster}"));
                }
            }
            Event::StageStarted { stage, title } => {
                if self.github {
                    self.command(&format!("::group::{stage}: {title}"));
                } else if !self.quiet {
                    self.line(&format!("[{stage}] {title}"));
                }
            }
            Event::StageSkipped { stage, message, .. } => {
                if !self.quiet {
                    self.line(&format!("[{stage}] done already: {message}"));
                }
                if self.github {
                    self.command("::endgroup::");
                }
                self.row(stage, "done (skipped)", 0);
            }
            Event::StagePlan { stage, actions } => {
                for (target, what) in super::plan_view::render(actions, self.detail) {
                    self.line(&format!("[{stage}] {target}: would {what}"));
                }
            }
            Event::Progress {
                stage,
                node,
                message,
                done,
                total,
            } => {
                if self.quiet {
                    return;
                }
                let count = match (done, total) {
                    (Some(d), Some(t)) => format!(" ({d}/{t})"),
                    _ => String::new(),
                };
                match node {
                    Some(node) => self.line(&format!("[{stage}] {node}: {message}{count}")),
                    None => self.line(&format!("[{stage}] {message}{count}")),
                }
            }
            Event::StageDone {
                stage,
                duration_ms,
                counters,
                ..
            } => {
                let counts: Vec<String> =
                    counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let counts = if counts.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", counts.join(", "))
                };
                if !self.quiet {
                    self.line(&format!(
                        "[{stage}] done in {}{counts}",
                        seconds(*duration_ms)
                    ));
                }
                if self.github {
                    self.command("::endgroup::");
                }
                self.row(stage, "done", *duration_ms);
            }
            Event::StageFailed {
                stage,
                duration_ms,
                message,
            } => {
                self.line(&format!(
                    "[{stage}] FAILED after {}: {message}",
                    seconds(*duration_ms)
                ));
                if self.github {
                    self.command("::endgroup::");
                    self.command(&format!(
                        "::error title=ecoboot stage {stage} failed::{}",
                        gh_escape(message)
                    ));
                }
                self.row(stage, "failed", *duration_ms);
            }
            Event::Warning {
                subject,
                message,
                help,
            } => {
                self.line(&format!("warning: {message}; {help}"));
                if self.github {
                    self.command(&format!(
                        "::warning title={}::{}",
                        gh_escape(subject).replace([',', ':'], " "),
                        gh_escape(&format!("{message}; {help}"))
                    ));
                }
                (self.warnings.lock().unwrap_or_else(|p| p.into_inner()))
                    .push(format!("{message}; {help}"));
            }
            Event::RunFinished { ok, duration_ms } => {
                if !self.quiet || !ok {
                    let verdict = if *ok { "finished" } else { "stopped" };
                    self.line(&format!("ecoboot {verdict} in {}", seconds(*duration_ms)));
                }
            }
        }
    }

    fn finish(&self) {
        if self.github {
            self.write_summary();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn github_groups_annotations_and_summary() {
        let buf = Buf::default();
        let dir = tempfile::tempdir().unwrap();
        let summary = dir.path().join("summary.md");
        let r = LineReporter::new(
            Mutex::new(Box::new(buf.clone())),
            true,
            false,
            Some(summary.clone()),
        );
        r.event(&Event::StageStarted {
            stage: "network".into(),
            title: "Create network".into(),
        });
        r.event(&Event::StageDone {
            stage: "network".into(),
            duration_ms: 1500,
            counters: Default::default(),
            aws_calls: Default::default(),
        });
        r.event(&Event::StageStarted {
            stage: "iam".into(),
            title: "Create IAM".into(),
        });
        r.event(&Event::StageFailed {
            stage: "iam".into(),
            duration_ms: 10,
            message: "boom\nline 2 100%".into(),
        });
        r.finish();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("::group::network: Create network\n"));
        assert_eq!(text.matches("::endgroup::").count(), 2);
        assert!(text.contains("::error title=ecoboot stage iam failed::boom%0Aline 2 100%25"));
        let md = std::fs::read_to_string(summary).unwrap();
        assert!(md.contains("| network | done | 1.5s |"));
        assert!(md.contains("| iam | failed | 0.0s |"));
    }

    #[test]
    fn node_output_cannot_issue_workflow_commands() {
        let buf = Buf::default();
        let r = LineReporter::new(Mutex::new(Box::new(buf.clone())), true, false, None);
        r.event(&Event::Progress {
            stage: "prepare-nodes".into(),
            node: Some("k8s-api-auth".into()),
            message: "stderr:\n::add-mask::x\n::warning::owned".into(),
            done: None,
            total: None,
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let token = lines[0].strip_prefix("::stop-commands::").expect("fenced");
        assert!(token.len() > 20);
        assert_eq!(lines.last().unwrap(), &format!("::{token}::"));
        assert!(lines[1..lines.len() - 1].contains(&"::add-mask::x"));
    }

    #[test]
    fn sanitize_strips_escapes() {
        assert_eq!(sanitize("\u{1b}[31mred\u{1b}[0m\r ok"), "red ok");
    }
}
