//! `ecoboot upgrade`, `ecoboot migrate-runtime` and `ecoboot certs renew`: the day-2
//! operations of `crate::upgrade` and `crate::certs` in the common operation frame
//! (`backup` and `restore` are in `backup.rs`).

use futures::FutureExt;
use futures::future::BoxFuture;

use super::operation::{self, Operation, Work};
use crate::cli::{Global, RollingFlags};
use crate::engine::Ctx;
use crate::error::Result;
use crate::event::Action;
use crate::upgrade::{self, Options, Record, UpgradePlan, runtime};

struct Upgrade {
    opts: Options,
    ready: Option<(UpgradePlan, Record)>,
}

impl Work for Upgrade {
    fn plan<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<(Vec<Action>, String)>> {
        async move {
            let (plan, record) = upgrade::prepare(cx, &self.opts).await?;
            let question = format!("Upgrade the cluster to Kubernetes {}?", plan.to);
            let actions = plan.actions();
            self.ready = Some((plan, record));
            Ok((actions, question))
        }
        .boxed()
    }

    fn apply<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<()>> {
        async move {
            let (plan, record) = self.ready.take().expect("planned first");
            upgrade::run(cx, &plan, record, &self.opts).await?;
            let configured = crate::config::support::minor(&cx.config.cluster.spec.kubernetes.version);
            if configured != plan.to.minor_str() {
                cx.events.progress(
                    upgrade::ID,
                    None,
                    format!(
                        "set spec.kubernetes.version to \"{}\" in {} so that `up` matches the cluster",
                        plan.to.minor_str(),
                        cx.config.path.display()
                    ),
                );
            }
            Ok(())
        }
        .boxed()
    }
}

/// Runs `ecoboot upgrade`.
pub(super) async fn upgrade(g: &Global, opts: Options, f: &RollingFlags) -> Result<()> {
    let op = Operation {
        command: "upgrade",
        stage: upgrade::ID,
        title: "Upgrade Kubernetes: control plane first, then the nodes in batches",
        dry_run: f.dry_run,
        yes: f.yes,
        destructive: true,
    };
    operation::run(g, op, &mut Upgrade { opts, ready: None }).await
}

struct Migrate {
    opts: Options,
    batches: Vec<Vec<String>>,
}

impl Work for Migrate {
    fn plan<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<(Vec<Action>, String)>> {
        async move {
            self.batches = runtime::plan(cx, &self.opts).await?;
            let actions = (self.batches.iter().enumerate())
                .map(|(i, b)| {
                    Action::new(
                        b.join(", "),
                        format!(
                            "{}. cordon and drain, replace containerd 1.x with {} from its release, restart kubelet, uncordon",
                            i + 1,
                            cx.config.cluster.spec.kubernetes.containerd.version.value
                        ),
                    )
                })
                .collect();
            Ok((actions, "Migrate these nodes to containerd 2.x?".to_string()))
        }
        .boxed()
    }

    fn apply<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<()>> {
        async move { runtime::migrate(cx, &self.batches, &self.opts).await }.boxed()
    }
}

/// Runs `ecoboot migrate-runtime`.
pub(super) async fn migrate(g: &Global, opts: Options, f: &RollingFlags) -> Result<()> {
    let op = Operation {
        command: "migrate-runtime",
        stage: runtime::ID,
        title: "Migrate nodes on containerd 1.x to containerd 2.x, batch by batch",
        dry_run: f.dry_run,
        yes: f.yes,
        destructive: true,
    };
    operation::run(
        g,
        op,
        &mut Migrate {
            opts,
            batches: Vec::new(),
        },
    )
    .await
}

struct Reboot {
    opts: Options,
    only_needed: bool,
    batches: Vec<Vec<String>>,
}

impl Work for Reboot {
    fn plan<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<(Vec<Action>, String)>> {
        async move {
            self.batches = upgrade::reboot::plan(cx, &self.opts, self.only_needed).await?;
            let actions = (self.batches.iter().enumerate())
                .map(|(i, b)| Action::new(b.join(", "), format!("{}. cordon and drain, reboot, wait for the new boot, uncordon, wait Ready", i + 1)))
                .collect();
            Ok((actions, "Reboot these nodes, batch by batch?".to_string()))
        }
        .boxed()
    }

    fn apply<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<()>> {
        async move { upgrade::reboot::run(cx, &self.batches, &self.opts).await }.boxed()
    }
}

/// Runs `ecoboot reboot`.
pub(super) async fn reboot(
    g: &Global,
    opts: Options,
    f: &RollingFlags,
    only_needed: bool,
) -> Result<()> {
    let op = Operation {
        command: "reboot",
        stage: upgrade::reboot::ID,
        title: "Reboot nodes batch by batch (drained first)",
        dry_run: f.dry_run,
        yes: f.yes,
        destructive: true,
    };
    let work = &mut Reboot {
        opts,
        only_needed,
        batches: Vec::new(),
    };
    operation::run(g, op, work).await
}

struct RotateKey;

impl Work for RotateKey {
    fn plan<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<(Vec<Action>, String)>> {
        async move {
            if cx.config.is_ha() {
                let conns = crate::certs::rotate_ha::control_planes(cx).await?;
                let keys = crate::certs::secrets_key::key_names(&conns[0].1).await?;
                let nodes: Vec<String> = conns.iter().map(|(t, _)| t.node.clone()).collect();
                let actions = crate::certs::rotate_ha::actions(&nodes, &keys)?;
                return Ok((actions, "Rotate the Secrets encryption key?".to_string()));
            }
            let (target, conn) = cx.control_plane(crate::certs::secrets_key::ID).await?;
            let keys = crate::certs::secrets_key::key_names(&conn).await?;
            let actions = crate::certs::secrets_key::actions(&target.node, &keys)?;
            Ok((actions, "Rotate the Secrets encryption key?".to_string()))
        }
        .boxed()
    }

    fn apply<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<()>> {
        async move {
            match cx.config.is_ha() {
                true => crate::certs::rotate_ha::rotate(cx).await,
                false => crate::certs::secrets_key::rotate(cx).await,
            }
        }
        .boxed()
    }
}

/// Runs `ecoboot secrets rotate-key`.
pub(super) async fn rotate_key(g: &Global, dry_run: bool, yes: bool) -> Result<()> {
    let op = Operation {
        command: "secrets rotate-key",
        stage: crate::certs::secrets_key::ID,
        title: "Rotate the Secrets encryption key",
        dry_run,
        yes,
        destructive: true,
    };
    operation::run(g, op, &mut RotateKey).await
}

struct Renew {
    plan: Option<crate::certs::RenewPlan>,
}

impl Work for Renew {
    fn plan<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<(Vec<Action>, String)>> {
        async move {
            let (plan, actions) = crate::certs::plan(cx).await?;
            self.plan = Some(plan);
            let question = "Renew the control plane's certificates and restart its static pods?";
            Ok((actions, question.to_string()))
        }
        .boxed()
    }

    fn apply<'c>(&'c mut self, cx: &'c Ctx) -> BoxFuture<'c, Result<()>> {
        async move {
            let plan = self.plan.take().expect("planned first");
            crate::certs::renew(cx, &plan).await
        }
        .boxed()
    }
}

/// Runs `ecoboot certs renew`.
pub(super) async fn certs_renew(g: &Global, dry_run: bool, yes: bool) -> Result<()> {
    let op = Operation {
        command: "certs renew",
        stage: crate::certs::ID,
        title: "Renew the control plane's certificates",
        dry_run,
        yes,
        destructive: true,
    };
    operation::run(g, op, &mut Renew { plan: None }).await
}
