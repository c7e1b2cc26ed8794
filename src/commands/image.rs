//! `ecoboot image build|list|prune`: `crate::image` in the common operation frame (build and
//! prune show their plan first and ask; list only reads).

use futures::FutureExt;
use futures::future::BoxFuture;

use super::operation::{self, Operation, Work};
use crate::cli::{Global, ImageCommand, Output};
use crate::config::FileChecks;
use crate::engine::Ctx;
use crate::error::Result;
use crate::event::Action;
use crate::image::{self, build, catalog};

struct Build {
    plan: Option<build::BuildPlan>,
}

impl Work for Build {
    fn plan<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<(Vec<Action>, String)>> {
        async move {
            let plan = build::plan(cx).await?;
            if plan.steps.is_empty()
                && let Some(i) = &plan.image
            {
                let what = format!("golden image {} ({}) is up to date", i.id, i.name);
                cx.events.progress(image::ID, None, what);
            }
            let actions = plan.actions();
            self.plan = Some(plan);
            Ok((actions, "Build the golden image?".to_string()))
        }
        .boxed()
    }

    fn apply<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<()>> {
        async move {
            let plan = self.plan.take().expect("planned first");
            let made = build::apply(cx, plan).await?;
            let what = format!(
                "golden image {} ({}) is available; `up` launches from it with spec.aws.ami.golden: true",
                made.id, made.name
            );
            cx.events.progress(image::ID, None, what);
            Ok(())
        }
        .boxed()
    }
}

struct Prune {
    ids: Vec<String>,
}

impl Work for Prune {
    fn plan<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<(Vec<Action>, String)>> {
        async move {
            let (rows, _) = catalog::rows(cx).await?;
            let gone = catalog::prunable(&rows);
            self.ids = gone.iter().map(|r| r.id.clone()).collect();
            Ok((
                catalog::actions(&gone),
                "Deregister these golden images?".to_string(),
            ))
        }
        .boxed()
    }

    fn apply<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<()>> {
        async move { catalog::deregister(cx, &self.ids).await.map(drop) }.boxed()
    }
}

/// Runs `ecoboot image …`.
pub(super) async fn image(g: &Global, command: &ImageCommand) -> Result<()> {
    match command {
        ImageCommand::Build { dry_run, yes } => {
            let op = Operation {
                command: "image build",
                stage: image::ID,
                title: "Build the golden image (base AMI prepared, container images pre-pulled)",
                dry_run: *dry_run,
                yes: *yes,
                destructive: true,
            };
            operation::run(g, op, &mut Build { plan: None }).await
        }
        ImageCommand::Prune { dry_run, yes } => {
            let op = Operation {
                command: "image prune",
                stage: image::ID,
                title: "Deregister golden images no longer wanted",
                dry_run: *dry_run,
                yes: *yes,
                destructive: true,
            };
            operation::run(g, op, &mut Prune { ids: Vec::new() }).await
        }
        ImageCommand::List => {
            let config = super::load_config(g, FileChecks::Skip)?;
            let cx = super::read_only_ctx(g, &config).await?;
            let (rows, want) = catalog::rows(&cx).await?;
            catalog::print(&rows, &want, g.output == Output::Json);
            Ok(())
        }
    }
}
