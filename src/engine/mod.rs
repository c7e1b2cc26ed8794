//! The stage engine: probe → skip if done → plan → apply → re-probe → record. The [`Ctx`]
//! (`ctx.rs`) is everything a stage may use; the [`Runner`] (`runner.rs`) drives the stages.

pub mod board;
mod console_pins;
mod control_plane;
mod ctx;
mod runner;
pub mod runner_access;

pub use ctx::Ctx;
pub use runner::{RunMode, Runner, select};

use std::any::Any;

use async_trait::async_trait;

use crate::error::Result;
use crate::event::Action;

/// What a stage records once its probe finds it done (journal outputs, the inventory files).
/// The runner runs it; probes themselves never write.
pub type Commit = Box<dyn FnOnce(&Ctx) -> Result<()> + Send + Sync>;

/// What a stage's read-only probe found, with the stage's own plan type.
pub enum Found<P> {
    /// Nothing to do: what exists, and what to record about it.
    Done {
        /// One line on what exists.
        summary: String,
        /// What the runner records (in memory for read-only runs, persisted otherwise).
        commit: Option<Commit>,
    },
    /// Work to do: the plan `apply` receives, exactly as the probe made it.
    Todo(P),
}

impl<P> Found<P> {
    /// Done, nothing to record.
    pub fn done(summary: impl Into<String>) -> Found<P> {
        Found::Done {
            summary: summary.into(),
            commit: None,
        }
    }
}

/// A stage's plan: typed data for its `apply`, shown as actions in `plan`, events and errors.
pub trait StagePlan: Send + Sync + 'static {
    /// The plan as actions.
    fn actions(&self) -> Vec<Action>;
}

/// Stages whose apply needs nothing but the list of actions.
impl StagePlan for Vec<Action> {
    fn actions(&self) -> Vec<Action> {
        self.clone()
    }
}

/// One step of the pipeline. Probes never change anything; applies must be safe to re-run
/// after a crash at any point. The probe's plan is typed, and `apply` receives it.
#[async_trait]
pub trait Stage: Send + Sync + 'static {
    /// What the probe hands to `apply`.
    type Plan: StagePlan;
    /// Stable id: state key and `--from/--to/stage` value.
    fn id(&self) -> &'static str;
    /// Human title for logs and plans.
    fn title(&self) -> &'static str;
    /// Looks at the real world and says what is left to do.
    async fn probe(&self, cx: &Ctx) -> Result<Found<Self::Plan>>;
    /// Does the work of `plan`.
    async fn apply(&self, cx: &Ctx, plan: Self::Plan) -> Result<()>;
    /// The earlier stages this one needs finished before it starts, when `up` pipelines
    /// (`None`: all of them). A stage that starts early waits per node on the [`board::Board`]
    /// for what it needs (its node's instance running, its node prepared).
    fn after(&self) -> Option<&'static [&'static str]> {
        None
    }
}

/// A probe result with the plan type erased, as the runner and `status` see it.
pub enum Probe {
    /// Nothing to do.
    Done {
        /// One line on what exists.
        summary: String,
        /// What to record.
        commit: Option<Commit>,
    },
    /// Work to do.
    Todo {
        /// The plan as actions.
        actions: Vec<Action>,
        /// The stage's own plan, handed back to its `apply`.
        plan: Box<dyn Any + Send + Sync>,
    },
}

/// The one adapter that erases [`Stage::Plan`], so stages of different plan types share a list.
#[async_trait]
pub trait DynStage: Send + Sync {
    /// See [`Stage::id`].
    fn id(&self) -> &'static str;
    /// See [`Stage::title`].
    fn title(&self) -> &'static str;
    /// See [`Stage::probe`].
    async fn probe(&self, cx: &Ctx) -> Result<Probe>;
    /// See [`Stage::apply`]; `plan` must come from this stage's own probe.
    async fn apply(&self, cx: &Ctx, plan: Box<dyn Any + Send + Sync>) -> Result<()>;
    /// See [`Stage::after`].
    fn after(&self) -> Option<&'static [&'static str]>;
}

#[async_trait]
impl<S: Stage> DynStage for S {
    fn id(&self) -> &'static str {
        Stage::id(self)
    }

    fn title(&self) -> &'static str {
        Stage::title(self)
    }

    fn after(&self) -> Option<&'static [&'static str]> {
        Stage::after(self)
    }

    async fn probe(&self, cx: &Ctx) -> Result<Probe> {
        Ok(match Stage::probe(self, cx).await? {
            Found::Done { summary, commit } => Probe::Done { summary, commit },
            Found::Todo(plan) => Probe::Todo {
                actions: plan.actions(),
                plan: Box::new(plan),
            },
        })
    }

    async fn apply(&self, cx: &Ctx, plan: Box<dyn Any + Send + Sync>) -> Result<()> {
        let plan = plan
            .downcast::<S::Plan>()
            .expect("a stage's apply gets the plan of its own probe");
        Stage::apply(self, cx, *plan).await
    }
}
