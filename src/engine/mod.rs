//! The stage engine: probe → skip if done → plan → apply → re-probe → record. The [`Ctx`]
//! (`ctx.rs`) is everything a stage may use; the [`Runner`] (`runner.rs`) drives the stages.

mod ctx;
mod runner;

pub use ctx::Ctx;
pub use runner::{RunMode, Runner, select};

use async_trait::async_trait;

use crate::error::Result;
use crate::event::Action;

/// What a read-only probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Nothing to do; the string summarises what exists.
    Done(String),
    /// These actions are needed.
    Todo(Vec<Action>),
}

/// One step of the pipeline. Probes never change anything; applies must be safe to re-run
/// after a crash at any point.
#[async_trait]
pub trait Stage: Send + Sync {
    /// Stable id: state key and `--from/--to/stage` value.
    fn id(&self) -> &'static str;
    /// Human title for logs and plans.
    fn title(&self) -> &'static str;
    /// Looks at the real world and says what is left to do.
    async fn probe(&self, cx: &Ctx) -> Result<Probe>;
    /// Does the work the probe listed.
    async fn apply(&self, cx: &Ctx, todo: &[Action]) -> Result<()>;
}
