//! The [`Runner`]: probe → skip if done → plan → apply → re-probe → journal, per stage.

use crate::aws::is_mutating;
use crate::error::{Error, Result};
use crate::event::{Action, Event, millis};
use crate::state::{StageStatus, now};
use std::time::Instant;

use super::{Ctx, DynStage, Probe};

/// How far the runner goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Probe and apply.
    Apply,
    /// Probe only and report the plan (`plan`, `--dry-run`).
    Plan,
}

impl RunMode {
    /// `Plan` for `--dry-run`, else `Apply`.
    pub fn from_dry_run(dry_run: bool) -> RunMode {
        if dry_run {
            RunMode::Plan
        } else {
            RunMode::Apply
        }
    }
}

/// Runs an ordered list of stages against one context.
pub struct Runner<'a> {
    stages: &'a [Box<dyn DynStage>],
    cx: &'a Ctx,
}

impl<'a> Runner<'a> {
    /// A runner over `stages` (already narrowed by `--from/--to`).
    pub fn new(stages: &'a [Box<dyn DynStage>], cx: &'a Ctx) -> Self {
        Runner { stages, cx }
    }

    /// Runs every stage in order, stopping at the first failure. Ctrl-C or SIGTERM stops the
    /// current stage, records it as `interrupted` and returns [`Error::Interrupted`]. With
    /// [`Ctx::pipeline`], applying stages overlap as their [`super::Stage::after`] allows.
    pub async fn run(&self, mode: RunMode) -> Result<()> {
        if mode == RunMode::Apply && self.cx.pipeline && self.stages.len() > 1 {
            return self.run_pipelined().await;
        }
        let mut interrupt = std::pin::pin!(shutdown_signal());
        for stage in self.stages {
            let id = stage.id();
            tokio::select! {
                result = crate::stage_scope::within(id, self.run_stage(stage.as_ref(), mode)) => result?,
                () = &mut interrupt => {
                    self.record(stage.id(), |r| {
                        if r.status == StageStatus::Running {
                            r.status = StageStatus::Interrupted;
                            r.finished = Some(now());
                        }
                    })?;
                    self.cx.events.emit(Event::StageFailed {
                        stage: stage.id().into(),
                        duration_ms: 0,
                        message: "interrupted".into(),
                    });
                    return Err(Error::Interrupted);
                }
            }
        }
        Ok(())
    }

    /// Every stage starts once the earlier stages it needs have ended; a stage whose need
    /// failed does not start. Events still reach the reporter stage by stage; the first
    /// failure in stage order is the result.
    async fn run_pipelined(&self) -> Result<()> {
        let ids: Vec<&'static str> = self.stages.iter().map(|s| s.id()).collect();
        let board = &self.cx.board;
        board.schedule(&ids);
        self.cx
            .events
            .begin_order(ids.iter().map(|s| s.to_string()).collect());
        let work = self.stages.iter().enumerate().map(|(i, stage)| {
            let ids = &ids;
            async move {
                let id = stage.id();
                let earlier = &ids[..i];
                let needs: Vec<&'static str> = match stage.after() {
                    Some(list) => earlier
                        .iter()
                        .copied()
                        .filter(|e| list.contains(e))
                        .collect(),
                    None => earlier.to_vec(),
                };
                for need in needs {
                    if board.wait_stage(need).await.is_err() {
                        board.finish(id, false);
                        return None;
                    }
                }
                let result =
                    crate::stage_scope::within(id, self.run_stage(stage.as_ref(), RunMode::Apply))
                        .await;
                board.finish(id, result.is_ok());
                Some(result)
            }
        });
        let mut interrupt = std::pin::pin!(shutdown_signal());
        let results = tokio::select! {
            results = futures::future::join_all(work) => results,
            () = &mut interrupt => {
                for id in &ids {
                    let mut was_running = false;
                    self.record(id, |r| {
                        if r.status == StageStatus::Running {
                            r.status = StageStatus::Interrupted;
                            r.finished = Some(now());
                            was_running = true;
                        }
                    })?;
                    if was_running {
                        self.cx.events.emit(Event::StageFailed {
                            stage: id.to_string(),
                            duration_ms: 0,
                            message: "interrupted".into(),
                        });
                    }
                }
                self.cx.events.end_order();
                return Err(Error::Interrupted);
            }
        };
        self.cx.events.end_order();
        results
            .into_iter()
            .flatten()
            .collect::<Result<Vec<()>>>()
            .map(drop)
    }

    fn record(&self, id: &str, f: impl FnOnce(&mut crate::state::StageRecord)) -> Result<()> {
        self.cx.update_state(|s| f(s.record_mut(id)))
    }

    /// One stage: probe; done → commit and skip; else plan, and in apply mode apply, verify by
    /// probing again, and journal the outcome.
    async fn run_stage(&self, stage: &dyn DynStage, mode: RunMode) -> Result<()> {
        let id = stage.id();
        let events = &self.cx.events;
        events.emit(Event::StageStarted {
            stage: id.into(),
            title: stage.title().into(),
        });
        let started = Instant::now();
        self.cx.take_aws_calls();
        let fail = |err: Error| -> Error {
            events.emit(Event::StageFailed {
                stage: id.into(),
                duration_ms: millis(started.elapsed()),
                message: err.to_string(),
            });
            err
        };
        let (todo, plan) = match stage.probe(self.cx).await {
            Ok(Probe::Done { summary, commit }) => {
                return self.skip(id, mode, summary, commit).map_err(&fail);
            }
            Ok(Probe::Todo { actions, plan }) => (actions, plan),
            Err(Error::Prerequisite { needs, what, .. }) if mode == RunMode::Plan => {
                events.emit(Event::StagePlan {
                    stage: id.into(),
                    actions: vec![Action::new(
                        id,
                        format!("run after `{needs}` provides {what}"),
                    )],
                });
                return Ok(());
            }
            Err(err) => {
                if mode == RunMode::Apply {
                    let message = err.to_string();
                    self.record(id, |r| {
                        r.status = StageStatus::Failed;
                        r.attempts += 1;
                        r.finished = Some(now());
                        r.last_error = Some(message);
                    })?;
                }
                return Err(fail(err));
            }
        };
        events.emit(Event::StagePlan {
            stage: id.into(),
            actions: todo.clone(),
        });
        if mode == RunMode::Plan {
            return Ok(());
        }
        self.cx.board.applying(id);
        self.record(id, |r| {
            r.status = StageStatus::Running;
            r.started = Some(now());
            r.finished = None;
            r.attempts += 1;
        })?;
        self.cx.take_counters();
        let probe_calls = self.cx.take_aws_calls();
        match self.apply_and_verify(stage, plan).await {
            Ok(()) => self.done(id, started, probe_calls),
            Err(err) => {
                let message = err.to_string();
                self.record(id, |r| {
                    r.status = StageStatus::Failed;
                    r.finished = Some(now());
                    r.last_error = Some(message);
                })?;
                Err(fail(err))
            }
        }
    }

    /// A stage its probe found done: its commit runs, the journal says done, it is skipped.
    fn skip(
        &self,
        id: &str,
        mode: RunMode,
        summary: String,
        commit: Option<super::Commit>,
    ) -> Result<()> {
        if let Some(commit) = commit {
            commit(self.cx)?;
        }
        if mode == RunMode::Apply && self.cx.state().record(id).status != StageStatus::Done {
            self.record(id, |r| {
                r.status = StageStatus::Done;
                r.finished.get_or_insert_with(now);
            })?;
        }
        self.cx.events.emit(Event::StageSkipped {
            stage: id.into(),
            message: summary,
            aws_calls: self.cx.take_aws_calls(),
        });
        Ok(())
    }

    /// Applies `plan`, then probes again: only a probe that finds the stage done (its commit
    /// run) counts as success; anything left is [`Error::Unverified`].
    async fn apply_and_verify(
        &self,
        stage: &dyn DynStage,
        plan: Box<dyn std::any::Any + Send + Sync>,
    ) -> Result<()> {
        stage.apply(self.cx, plan).await?;
        match stage.probe(self.cx).await? {
            Probe::Done { commit, .. } => commit.map_or(Ok(()), |commit| commit(self.cx)),
            Probe::Todo { actions: left, .. } => Err(Error::Unverified {
                stage: stage.id().into(),
                remaining: left
                    .iter()
                    .map(|a| format!("{}: {}", a.target, a.what))
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }

    /// Journals a stage done and reports its duration, counters and AWS calls.
    fn done(
        &self,
        id: &str,
        started: Instant,
        probe_calls: std::collections::BTreeMap<String, u64>,
    ) -> Result<()> {
        self.record(id, |r| {
            r.status = StageStatus::Done;
            r.finished = Some(now());
            r.last_error = None;
        })?;
        let mut aws_calls = probe_calls;
        for (op, n) in self.cx.take_aws_calls() {
            *aws_calls.entry(op).or_default() += n;
        }
        let mut counters = self.cx.take_counters();
        if !aws_calls.is_empty() {
            let mutating: u64 = aws_calls
                .iter()
                .filter(|(op, _)| is_mutating(op))
                .map(|(_, n)| n)
                .sum();
            let total: u64 = aws_calls.values().sum();
            counters.insert("aws_calls.mutating".into(), mutating);
            counters.insert("aws_calls.read".into(), total - mutating);
        }
        self.cx.events.emit(Event::StageDone {
            stage: id.into(),
            duration_ms: millis(started.elapsed()),
            counters,
            aws_calls,
        });
        Ok(())
    }
}

/// Resolves when the process receives SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Narrows `stages` to the inclusive range `from..=to` (ids); unknown ids are usage errors.
pub fn select<'s>(
    stages: &'s [Box<dyn DynStage>],
    from: Option<&str>,
    to: Option<&str>,
) -> Result<&'s [Box<dyn DynStage>]> {
    let index = |id: &str| {
        stages.iter().position(|s| s.id() == id).ok_or_else(|| {
            let ids: Vec<&str> = stages.iter().map(|s| s.id()).collect();
            Error::Usage(format!(
                "unknown stage `{id}`; stages are: {}",
                ids.join(", ")
            ))
        })
    };
    let start = from.map(index).transpose()?.unwrap_or(0);
    let end = to
        .map(index)
        .transpose()?
        .unwrap_or(stages.len().saturating_sub(1));
    if start > end {
        return Err(Error::Usage(format!(
            "--from {} comes after --to {}",
            from.unwrap_or_default(),
            to.unwrap_or_default()
        )));
    }
    Ok(&stages[start..=end])
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
