//! `ecoboot validate [--wait DURATION]`, and the validation `up` runs after its last stage.

use std::time::{Duration, Instant};

use crate::cli::{Global, Output};
use crate::config::FileChecks;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::validate::Report;

/// Validates until everything passes or `wait` runs out (one round without `wait`); see
/// [`crate::validate::run`] for `extra_nodes_ok`.
pub(super) async fn until(
    cx: &Ctx,
    wait: Option<Duration>,
    extra_nodes_ok: bool,
) -> Result<Report> {
    let client = cx.kube("validate").await?;
    let deadline = Instant::now() + wait.unwrap_or_default();
    loop {
        let mut report = crate::validate::run(&client, &cx.config, extra_nodes_ok).await;
        report
            .checks
            .extend(crate::validate::control_planes::checks(cx).await);
        if report.ok() || Instant::now() >= deadline {
            return Ok(report);
        }
        let failing = report.failures().len();
        cx.events.progress(
            "validate",
            None,
            format!("{failing} check(s) failing; checking again"),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Prints `report` (table, JSON, or the GitHub step summary too) and turns a failure into the
/// command's error (exit 1).
pub(super) fn finish(g: &Global, report: &Report) -> Result<()> {
    match g.output {
        Output::Json => println!("{}", serde_json::to_string(report).unwrap_or_default()),
        Output::Human => {
            for line in report.table() {
                crate::say!("{line}");
            }
        }
    }
    if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true")
        && let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY")
    {
        let text = crate::report::sanitize::clean(&report.markdown());
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    }
    if report.ok() {
        return Ok(());
    }
    let first = report
        .failures()
        .first()
        .map(|c| format!("{} {}: {}", c.check, c.subject, c.detail))
        .unwrap_or_default();
    Err(Error::StageFailed {
        stage: "validate".into(),
        message: format!("{} check(s) failed; first: {first}", report.failures().len()),
        help: "fix what the table names, then `ecoboot validate` (or `up` again); `--wait 10m` keeps checking while the cluster settles".into(),
    })
}

/// `ecoboot validate`.
pub(super) async fn validate(g: &Global, wait: Option<Duration>) -> Result<()> {
    let config = super::load_config(g, FileChecks::Skip)?;
    crate::output::init_tracing(g.verbose, None, "validate");
    let cx = super::read_only_ctx(g, &config).await?;
    let report = until(&cx, wait, false).await;
    cx.close_ssh().await;
    finish(g, &report?)
}
