//! What every control plane holding the cluster keeps equal: the hardening files and API
//! server flags, and the scheduled-backup timer. With one control plane that is the one
//! init-master checks; with several, the others that joined are converged the same way after
//! it (the Secrets encryption key copied from it, never made anew on a peer).

use std::sync::Arc;

use super::{ID, Steps, hardening};
use crate::config::Role;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::event::Action;
use crate::hardening::ENCRYPTION;
use crate::ssh::{Conn, Target, script};
use crate::stages::shared::backup_timer;
use crate::stages::shared::control_plane::facts;

/// The other control planes that hold the cluster (unreachable or not yet joined ones are
/// join-control-plane's business).
pub(super) async fn others(cx: &Ctx, chosen: &Target) -> Result<Vec<(Target, Arc<Conn>)>> {
    if !cx.config.is_ha() {
        return Ok(Vec::new());
    }
    let (conns, _) = cx
        .connect_nodes(ID, |t| {
            t.role == Role::ControlPlane && t.node != chosen.node
        })
        .await?;
    let keep: Vec<String> = (crate::ssh::run::each_node(
        conns.clone(),
        "holds the cluster",
        &format!("{} && echo yes; true", crate::kubeadm::HOLDS_CLUSTER),
    )
    .await)
        .into_iter()
        .filter(|(_, out)| out.as_ref().is_ok_and(|o| o.stdout.trim() == "yes"))
        .map(|(t, _)| t.node)
        .collect();
    Ok(conns
        .into_iter()
        .filter(|(t, _)| keep.contains(&t.node))
        .collect())
}

/// What `node` still needs (hardening, timer).
pub(super) async fn pending(cx: &Ctx, node: &str, conn: &Conn) -> Result<Vec<Action>> {
    let seen = hardening::seen(conn).await?;
    let mut out: Vec<Action> = hardening::differs(&cx.config, &seen, node)?
        .into_iter()
        .collect();
    out.extend(backup_timer::probe(&cx.config, conn, node).await?);
    Ok(out)
}

/// Converges one control plane holding the cluster; `key` is the EncryptionConfiguration to
/// put in place first on a peer that lacks it.
pub(super) async fn converge(
    cx: &Ctx,
    target: &Target,
    conn: &Conn,
    key: Option<&str>,
) -> Result<()> {
    let node = target.node.as_str();
    let seen = hardening::seen(conn).await?;
    if hardening::differs(&cx.config, &seen, node)?.is_some() {
        if cx.config.is_ha() && seen.turning_on(&cx.config) {
            return Err(Error::StageFailed {
                stage: ID.into(),
                message: format!("{node}: Secrets encryption would be turned on on a running cluster with several control planes; every API server must hold the key before any of them writes with it, which this version does not do"),
                help: "keep `encryptSecrets: false` on this cluster, or turn it on when the cluster is built (every control plane then gets the same key at join)".into(),
            });
        }
        if let Some(text) = key.filter(|_| !seen.turning_on(&cx.config)) {
            let write = format!(
                "set -e\nmkdir -p {d}\n[ -s {ENCRYPTION} ] || {{ {w}; }}",
                d = crate::hardening::DIR,
                w = script::write_file(ENCRYPTION, text.as_bytes(), 0o600)
            );
            conn.run_ok(
                ID,
                "the encryption key from the first control plane",
                &write,
                std::time::Duration::from_secs(60),
                "see the node log; rerun `ecoboot up`",
            )
            .await?;
        }
        let text = crate::kubeadm::init_config(
            &cx.config,
            cx.config.node(node).expect("configured control plane"),
            &facts(cx, target),
        );
        let steps = Steps { cx, conn, node };
        hardening::reconcile(cx, conn, &seen, &text, async || steps.wait_healthy().await).await?;
        cx.events.progress(ID, Some(node), "hardening reconciled");
    }
    if let Some(todo) = backup_timer::probe(&cx.config, conn, node).await? {
        backup_timer::apply(&cx.config, conn, ID).await?;
        cx.events.progress(ID, Some(node), todo.what);
    }
    Ok(())
}
