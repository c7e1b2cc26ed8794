//! The frame every day-2 operation (`upgrade`, `migrate-runtime`) runs in: config, consent, the
//! state lock (none for `--dry-run`), a context, and the same events as `up` (run started, one
//! stage with the plan, done or failed, run finished).

use std::time::Instant;

use futures::future::BoxFuture;

use super::{confirm, events_for, finish_run, load_config};
use crate::cli::Global;
use crate::config::FileChecks;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::event::{Action, Event, millis};

/// What the frame needs to know about the operation.
pub(super) struct Operation {
    /// Command name (`upgrade`).
    pub command: &'static str,
    /// Event stage id.
    pub stage: &'static str,
    /// Event title.
    pub title: &'static str,
    /// Show the plan, change nothing.
    pub dry_run: bool,
    /// `--yes`.
    pub yes: bool,
    /// It changes the cluster: ask on a terminal, require `--yes` elsewhere (a backup does not).
    pub destructive: bool,
}

/// What an operation does: `plan` reads and returns its plan as actions plus a confirmation
/// question; `apply` does the work.
pub(super) trait Work: Send + Sync {
    /// Reads the world; the plan as actions and the question to ask on a terminal.
    fn plan<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<(Vec<Action>, String)>>;
    /// Does the work of the plan.
    fn apply<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<()>>;
}

/// Runs `work` in the frame of `op`.
pub(super) async fn run(g: &Global, op: Operation, work: &mut dyn Work) -> Result<()> {
    let config = load_config(g, FileChecks::Skip)?;
    let consent = match op.dry_run || !op.destructive {
        true => None,
        false => Some(confirm::consent(op.command, op.yes)?),
    };
    let store = super::state_cmd::open(g, &config, !op.dry_run).await?;
    let log_dir = (!op.dry_run).then(|| store.dir().join("logs"));
    let log = crate::output::init_tracing(g.verbose, log_dir.as_deref(), op.command);
    let state = store.load(config.name())?;
    let events = events_for(g, true);
    let cx = Ctx::new(config.clone(), events.clone(), store, state);
    events.emit(Event::RunStarted {
        command: op.command.into(),
        cluster: config.name().into(),
        ecoboot: crate::build_info::BUILD,
    });
    let started = Instant::now();
    events.emit(Event::StageStarted {
        stage: op.stage.into(),
        title: op.title.into(),
    });
    let result = async {
        let (actions, question) = work.plan(&cx).await?;
        let nothing = actions.is_empty();
        events.emit(Event::StagePlan {
            stage: op.stage.into(),
            actions,
        });
        if nothing {
            events.progress(op.stage, None, "nothing to do");
        }
        if op.dry_run || nothing {
            return Ok(());
        }
        if consent == Some(confirm::Consent::Ask) && !confirm::ask(&question) {
            return Err(Error::Usage("cancelled; nothing was changed".into()));
        }
        work.apply(&cx).await
    }
    .await;
    match &result {
        Ok(()) if !op.dry_run => events.emit(Event::StageDone {
            stage: op.stage.into(),
            duration_ms: millis(started.elapsed()),
            counters: Default::default(),
            aws_calls: Default::default(),
        }),
        Ok(()) => {}
        Err(e) => events.emit(Event::StageFailed {
            stage: op.stage.into(),
            duration_ms: millis(started.elapsed()),
            message: e.to_string(),
        }),
    }
    cx.close_ssh().await;
    let closed = cx.close_state().await;
    let result = result.and(closed);
    finish_run(&events, result.is_ok(), started, log.as_deref());
    result
}
