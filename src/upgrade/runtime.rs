//! `ecoboot migrate-runtime`: moves nodes still on containerd 1.x (Ubuntu's package) to the
//! pinned containerd 2.x, one batch at a time: cordon, drain through the Eviction API, stop
//! kubelet, remove the old package, run the prepare-nodes playbook (runc, containerd from its
//! release tarball, config version 3), restart kubelet, uncordon, wait until Ready. Journaled
//! per node like an upgrade, so a crash resumes at the node in progress.

use std::time::Duration;

use super::journal::{Phase, Record};
use super::{Options, drain};
use crate::config::Role;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::playbook::Playbook;
use crate::stages::shared::preflight;

/// The journal key of a runtime migration, and its event stage.
pub const KEY: &str = "runtime-migration";
/// Event stage name.
pub const ID: &str = "migrate-runtime";

/// Nodes whose containerd is older than 2.0, in migration order (control plane last: its pods
/// are the cluster's own), batched by `max_unavailable`.
pub async fn plan(cx: &Ctx, opts: &Options) -> Result<Vec<Vec<String>>> {
    let previous: Option<Record> = cx.state().output(KEY);
    let (conns, unreachable) = cx.connect_nodes(ID, |_| true).await?;
    if let Some(f) = unreachable.first() {
        return Err(Error::StageFailed {
            stage: ID.into(),
            message: format!("{} is unreachable: {}", f.node, f.tail),
            help: "every node must answer before the runtime migration starts".into(),
        });
    }
    let reports = crate::fanout::each(conns, 0, |(t, conn)| async move {
        (t, preflight::report(&conn).await)
    })
    .await;
    let mut workers = Vec::new();
    let mut control_plane = Vec::new();
    for (t, report) in reports {
        let report = report.map_err(|tail| Error::StageFailed {
            stage: ID.into(),
            message: format!("{}: cannot read the container runtime: {tail}", t.node),
            help: "check the node".into(),
        })?;
        let old = report
            .containerd
            .as_deref()
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
            .is_some_and(|major| major < 2);
        let unfinished = previous.as_ref().is_some_and(|r| {
            !r.finished() && r.phase(&t.node) != Phase::Done && r.nodes.contains_key(&t.node)
        });
        if old || unfinished {
            match t.role {
                Role::ControlPlane => control_plane.push(t.node),
                Role::Worker => workers.push(t.node),
            }
        }
    }
    let mut batches: Vec<Vec<String>> = workers
        .chunks(opts.max_unavailable.max(1))
        .map(|c| c.to_vec())
        .collect();
    if !control_plane.is_empty() {
        batches.push(control_plane);
    }
    Ok(batches)
}

/// Migrates the planned nodes: the old package removed, the prepare-nodes playbook run,
/// kubelet restarted, inside the rolling frame ([`super::rolling`]).
pub async fn migrate(cx: &Ctx, batches: &[Vec<String>], opts: &Options) -> Result<()> {
    let book = Playbook::load("prepare-nodes", cx.playbooks.as_deref())?;
    let rolling = super::rolling::Rolling {
        key: KEY,
        id: ID,
        op: drain::Op {
            stage: super::ID,
            rerun: "ecoboot migrate-runtime",
        },
        reason: "runtime",
        done: "containerd migrated; node Ready",
    };
    rolling
        .run(cx, batches, opts, |name| {
            let book = &book;
            async move {
                let (_, conn) = super::connect(cx, &name).await?;
                let stop = "set -e\nsystemctl stop kubelet\nexport DEBIAN_FRONTEND=noninteractive\nif dpkg-query -W -f='${Status}' containerd 2>/dev/null | grep -q 'install ok installed'; then systemctl stop containerd || true; apt-get remove -y -q containerd; fi";
                let out = conn.run("remove the old containerd", stop, Duration::from_secs(600), true).await?;
                if !out.ok() {
                    return Err(Error::StageFailed {
                        stage: ID.into(),
                        message: format!("{name}: removing the old containerd failed: {}", out.tail(5)),
                        help: "see the node log; rerun `ecoboot migrate-runtime` to continue at this node".into(),
                    });
                }
                let summary = crate::ssh::run::apply(&cx.config, &cx.events, ID, book, std::slice::from_ref(&conn)).await;
                if let Some(f) = summary.failures.first() {
                    return Err(Error::StageFailed {
                        stage: ID.into(),
                        message: format!("{f}"),
                        help: "fix the cause and rerun `ecoboot migrate-runtime`: it continues at this node".into(),
                    });
                }
                let restart = conn.run("restart kubelet", "systemctl restart kubelet", Duration::from_secs(120), true).await?;
                if !restart.ok() {
                    return Err(Error::StageFailed {
                        stage: ID.into(),
                        message: format!("{name}: kubelet did not restart: {}", restart.tail(5)),
                        help: "check `journalctl -u kubelet` on the node".into(),
                    });
                }
                Ok(())
            }
        })
        .await
}
