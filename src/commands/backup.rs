//! `ecoboot backup` and `ecoboot restore`: `crate::backup` in the common operation frame (a
//! backup changes nothing in the cluster and needs no consent; a restore does).

use futures::FutureExt;
use futures::future::BoxFuture;

use super::operation::{self, Operation, Work};
use crate::backup::{self, restore};
use crate::cli::Global;
use crate::engine::Ctx;
use crate::error::Result;
use crate::event::Action;

struct Backup {
    to: Option<String>,
}

impl Work for Backup {
    fn plan<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<(Vec<Action>, String)>> {
        async move {
            let location = backup::location(cx, self.to.as_deref())?;
            // A healthy control plane holding the cluster (any member has the whole keyspace).
            let (target, _) = cx.control_plane(backup::ID).await?;
            let node = target.node;
            let keep = cx.config.cluster.spec.backup.keep.value;
            let actions = vec![
                Action::new(&node, "etcd snapshot (checked) with /etc/kubernetes/pki"),
                Action::new(
                    format!("{location}/{}/backups/", cx.config.name()),
                    format!("upload (encrypted, tagged) and keep the newest {keep}"),
                ),
            ];
            Ok((actions, "Take a backup?".to_string()))
        }
        .boxed()
    }

    fn apply<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<()>> {
        async move {
            let location = backup::location(cx, self.to.as_deref())?;
            let done = backup::backup(cx, location).await?;
            cx.events.progress(
                backup::ID,
                None,
                format!(
                    "backup {} (etcd revision {}, {} keys); restore with `ecoboot restore --from {}`",
                    done.url, done.status.revision, done.status.total_key, done.url
                ),
            );
            Ok(())
        }
        .boxed()
    }
}

/// Runs `ecoboot backup`.
pub(super) async fn backup(g: &Global, to: Option<String>, dry_run: bool) -> Result<()> {
    let op = Operation {
        command: "backup",
        stage: backup::ID,
        title: "Back up etcd and the control plane's pki to S3",
        dry_run,
        yes: true,
        destructive: false,
    };
    operation::run(g, op, &mut Backup { to }).await
}

struct Restore {
    from: String,
    plan: Option<restore::RestorePlan>,
}

impl Work for Restore {
    fn plan<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<(Vec<Action>, String)>> {
        async move {
            let (plan, actions) = restore::plan(cx, &self.from).await?;
            self.plan = Some(plan);
            Ok((actions, "Restore the cluster from this backup?".to_string()))
        }
        .boxed()
    }

    fn apply<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<()>> {
        async move {
            let plan = self.plan.take().expect("planned first");
            restore::restore(cx, &plan).await
        }
        .boxed()
    }
}

/// Runs `ecoboot restore`.
pub(super) async fn restore(g: &Global, from: String, dry_run: bool, yes: bool) -> Result<()> {
    let op = Operation {
        command: "restore",
        stage: backup::ID,
        title: "Restore the cluster from an etcd backup onto a fresh control plane",
        dry_run,
        yes,
        destructive: true,
    };
    operation::run(g, op, &mut Restore { from, plan: None }).await
}
