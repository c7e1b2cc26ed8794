//! The one implementation behind every "pinned manifest" stage (install-cni, install-argocd):
//! fetch the pinned source (sha256-checked, cached) → render it for the config → server-side
//! apply what differs → wait, bounded, until the workloads are ready. A [`Bundle`] says what is
//! specific to one manifest; [`ManifestStage`] does the rest.

use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::DynamicObject;

use crate::api::apply::Applier;
use crate::config::{Config, Manifest};
use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::{Error, Result};
use crate::event::Action;

/// What is specific to one pinned manifest.
#[async_trait]
pub trait Bundle: Send + Sync + 'static {
    /// Stage id.
    const ID: &'static str;
    /// Stage title.
    const TITLE: &'static str;
    /// Target named in the plan's actions (e.g. `calico`).
    const TARGET: &'static str;
    /// What the workloads are called in messages (e.g. `ArgoCD`).
    const NAME: &'static str;

    /// The pinned source and a label for it (e.g. `Calico v3.31.3`).
    fn source(config: &Config) -> (&Manifest, String);
    /// The namespace for namespaced objects that name none.
    fn namespace(config: &Config) -> &str;
    /// The manifest rendered for the config.
    fn render(text: &str, config: &Config) -> Result<Vec<DynamicObject>>;
    /// The workloads that are not ready yet, each with why (empty: ready).
    async fn waiting(client: &kube::Client, config: &Config) -> Result<Vec<String>>;
    /// How long to wait for readiness.
    fn wait_seconds(config: &Config) -> u64;
    /// What to do when the wait times out.
    fn help(config: &Config) -> String;
}

/// What a manifest stage found to do.
pub struct ManifestPlan {
    target: &'static str,
    /// Objects to create or update (as the applier's diff shows them); empty: all applied.
    pub changes: Vec<Action>,
    /// Workloads not ready yet (only looked at once nothing is left to apply).
    pub waiting: Vec<String>,
}

impl StagePlan for ManifestPlan {
    fn actions(&self) -> Vec<Action> {
        let mut out = self.changes.clone();
        if self.changes.is_empty() {
            out.extend(
                (self.waiting.iter()).map(|w| Action::new(self.target, format!("wait: {w}"))),
            );
        } else {
            out.push(Action::new(
                self.target,
                "wait until every workload is ready",
            ));
        }
        out
    }
}

/// A stage that installs the manifest `B` describes.
pub struct ManifestStage<B> {
    rendered: tokio::sync::OnceCell<Vec<DynamicObject>>,
    bundle: PhantomData<B>,
}

impl<B> Default for ManifestStage<B> {
    fn default() -> Self {
        ManifestStage {
            rendered: tokio::sync::OnceCell::new(),
            bundle: PhantomData,
        }
    }
}

impl<B: Bundle> ManifestStage<B> {
    /// The rendered manifest, fetched and parsed once per run (probe, apply and re-probe all
    /// use it).
    async fn objects(&self, cx: &Ctx) -> Result<&[DynamicObject]> {
        let objs = self
            .rendered
            .get_or_try_init(|| async {
                let (source, label) = B::source(&cx.config);
                let text = cx.manifest(source, &label, B::ID).await?;
                B::render(&text, &cx.config)
            })
            .await?;
        Ok(objs)
    }
}

#[async_trait]
impl<B: Bundle> Stage for ManifestStage<B> {
    type Plan = ManifestPlan;

    fn id(&self) -> &'static str {
        B::ID
    }

    fn title(&self) -> &'static str {
        B::TITLE
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<ManifestPlan>> {
        let client = cx.kube(B::ID).await?;
        let objs = self.objects(cx).await?;
        let applier = Applier::new(&client, B::namespace(&cx.config));
        let changes = applier.plan(objs, B::TARGET).await?;
        let waiting = match changes.is_empty() {
            true => B::waiting(&client, &cx.config).await?,
            false => Vec::new(),
        };
        Ok(if changes.is_empty() && waiting.is_empty() {
            let (_, label) = B::source(&cx.config);
            Found::done(format!(
                "{label} applied ({} objects) and ready",
                objs.len()
            ))
        } else {
            Found::Todo(ManifestPlan {
                target: B::TARGET,
                changes,
                waiting,
            })
        })
    }

    async fn apply(&self, cx: &Ctx, plan: ManifestPlan) -> Result<()> {
        let client = cx.kube(B::ID).await?;
        if !plan.changes.is_empty() {
            let objs = self.objects(cx).await?;
            let progress = |m: String| cx.events.progress(B::ID, None, m);
            let report = Applier::new(&client, B::namespace(&cx.config))
                .apply(objs.to_vec(), &progress)
                .await?;
            cx.count_all(report.counters());
        }
        let timeout = Duration::from_secs(B::wait_seconds(&cx.config));
        let last = crate::api::wait::until(timeout, Duration::from_secs(1), || async {
            let waiting = B::waiting(&client, &cx.config).await?;
            if waiting.is_empty() {
                return Ok(None);
            }
            let line = format!(
                "waiting for {} workload(s): {}",
                waiting.len(),
                waiting.join("; ")
            );
            cx.events.progress(B::ID, None, line);
            Ok(Some(waiting.join("\n  ")))
        })
        .await?;
        match last {
            None => Ok(()),
            Some(waiting) => Err(Error::StageFailed {
                stage: B::ID.into(),
                message: format!(
                    "{} is not available after {}s:\n  {waiting}",
                    B::NAME,
                    timeout.as_secs()
                ),
                help: B::help(&cx.config),
            }),
        }
    }
}
