//! Choosing and building the reporter that renders engine events.

mod json;
mod lines;
pub mod plan_view;
pub mod sanitize;
mod tty;

use std::io::Write;
use std::sync::{Arc, Mutex};

pub use json::JsonReporter;
pub use lines::{LineReporter, gh_escape};
pub use sanitize::{clean as sanitize, print_line};
pub use tty::TtyReporter;

use crate::event::Reporter;

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// indicatif spinners and per-node bars.
    Tty,
    /// One plain line per event, no control characters.
    Plain,
    /// Plain lines plus `::group::`, `::error::` and the step summary.
    Github,
    /// One JSON object per event on stdout; plain lines (or GitHub markup) on stderr.
    Json {
        /// Whether the stderr lines use GitHub Actions markup.
        github: bool,
    },
}

/// What the environment looks like, as far as output is concerned.
#[derive(Debug, Clone, Copy, Default)]
pub struct Env {
    /// stdout is a terminal.
    pub stdout_tty: bool,
    /// `CI` is set to a non-empty value other than `false`/`0`.
    pub ci: bool,
    /// `GITHUB_ACTIONS=true`.
    pub github_actions: bool,
    /// `--output json`.
    pub json: bool,
    /// `--no-progress`.
    pub no_progress: bool,
}

impl Env {
    /// Reads the process environment (flags are filled in by the caller).
    pub fn detect(json: bool, no_progress: bool) -> Env {
        use std::io::IsTerminal;
        let flag = |name: &str| {
            std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
        };
        Env {
            stdout_tty: std::io::stdout().is_terminal(),
            ci: flag("CI"),
            github_actions: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
            json,
            no_progress,
        }
    }
}

/// Picks the display mode. Pure, so every row of the table is unit-tested.
pub fn resolve(env: Env) -> Mode {
    if env.json {
        Mode::Json {
            github: env.github_actions,
        }
    } else if env.github_actions {
        Mode::Github
    } else if env.stdout_tty && !env.ci && !env.no_progress {
        Mode::Tty
    } else {
        Mode::Plain
    }
}

/// Builds the reporter for `mode`. `quiet` drops progress lines but keeps failures; `detail`
/// prints plans one line per action instead of grouped.
pub fn build(mode: Mode, quiet: bool, detail: bool) -> Arc<dyn Reporter> {
    let stdout = || -> Mutex<Box<dyn Write + Send>> { Mutex::new(Box::new(std::io::stdout())) };
    let stderr = || -> Mutex<Box<dyn Write + Send>> { Mutex::new(Box::new(std::io::stderr())) };
    let summary = std::env::var_os("GITHUB_STEP_SUMMARY").map(Into::into);
    match mode {
        Mode::Tty => Arc::new(TtyReporter::new(quiet, detail)),
        Mode::Plain => Arc::new(LineReporter::new(stdout(), false, quiet, None).detail(detail)),
        Mode::Github => Arc::new(LineReporter::new(stdout(), true, quiet, summary).detail(detail)),
        Mode::Json { github } => Arc::new(JsonReporter::new(
            stdout(),
            LineReporter::new(stderr(), github, quiet, if github { summary } else { None })
                .detail(detail),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(stdout_tty: bool, ci: bool, github_actions: bool, json: bool, no_progress: bool) -> Env {
        Env {
            stdout_tty,
            ci,
            github_actions,
            json,
            no_progress,
        }
    }

    #[test]
    fn resolve_table() {
        // (tty, CI, GITHUB_ACTIONS, --output json, --no-progress) -> mode
        let rows = [
            (env(true, false, false, false, false), Mode::Tty),
            (env(true, false, false, false, true), Mode::Plain),
            (env(true, true, false, false, false), Mode::Plain),
            (env(false, false, false, false, false), Mode::Plain),
            (env(false, true, false, false, false), Mode::Plain),
            (env(false, true, true, false, false), Mode::Github),
            (env(true, true, true, false, false), Mode::Github),
            (
                env(true, false, false, true, false),
                Mode::Json { github: false },
            ),
            (
                env(false, true, true, true, false),
                Mode::Json { github: true },
            ),
            (
                env(false, false, false, true, true),
                Mode::Json { github: false },
            ),
        ];
        for (input, expected) in rows {
            assert_eq!(resolve(input), expected, "{input:?}");
        }
    }
}
