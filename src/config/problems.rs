//! What is wrong with a config: one [`Problem`] per finding (message, span, help), and
//! [`ConfigProblems`], every problem of one file rendered against its source (exit 2).

use std::path::{Path, PathBuf};

use miette::{Diagnostic, NamedSource, SourceSpan};
use thiserror::Error;

use super::MAX_PROBLEMS;

/// One problem found in the config.
#[derive(Debug, Error, Diagnostic, Clone)]
#[error("{message}")]
pub struct Problem {
    /// What is wrong, naming the key.
    pub message: String,
    /// Where in the file.
    #[label("{label}")]
    pub span: Option<SourceSpan>,
    /// The label text under the span.
    pub label: String,
    /// What to do about it.
    #[help]
    pub help: Option<String>,
}

impl Problem {
    /// A problem at `span` (if known).
    pub fn new(span: Option<SourceSpan>, message: impl Into<String>) -> Self {
        let mut message: String = message.into();
        if message.chars().count() > 300 {
            // Values echoed in messages (parser errors included) stay short.
            message = message.chars().take(300).collect::<String>() + "…";
        }
        Problem {
            message,
            span,
            label: "here".into(),
            help: None,
        }
    }

    /// Adds a help line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sets the label shown under the span.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }
}

/// Every problem found in one config file, rendered together.
#[derive(Debug, Error, Diagnostic)]
#[error("{} in {}", count(problems.len()), path.display())]
#[diagnostic(
    code(ecoboot::config),
    help("fix the problems above; nothing was changed")
)]
pub struct ConfigProblems {
    /// The config file.
    pub path: PathBuf,
    /// Its text, for spans.
    #[source_code]
    pub source_code: NamedSource<String>,
    /// The problems, in file order.
    #[related]
    pub problems: Vec<Problem>,
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 problem".into()
    } else {
        format!("{n} problems")
    }
}

impl ConfigProblems {
    pub(super) fn new(path: &Path, source: String, mut problems: Vec<Problem>) -> Box<Self> {
        problems.sort_by_key(|p| p.span.map_or(usize::MAX, |s| s.offset()));
        if problems.len() > MAX_PROBLEMS {
            let more = problems.len() - MAX_PROBLEMS;
            problems.truncate(MAX_PROBLEMS);
            problems.push(
                Problem::new(None, format!("and {more} more problems"))
                    .help("fix the ones above first"),
            );
        }
        Box::new(ConfigProblems {
            path: path.to_path_buf(),
            source_code: NamedSource::new(path.display().to_string(), source),
            problems,
        })
    }

    /// 1-based line number of a problem's span, for tests and plain output.
    pub fn line_of(&self, problem: &Problem) -> Option<usize> {
        let span = problem.span?;
        let text = self.source_code.inner();
        Some(text[..span.offset().min(text.len())].matches('\n').count() + 1)
    }
}
