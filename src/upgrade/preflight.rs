//! Everything that must hold before an upgrade starts, checked read-only and reported at once:
//! the target is supported, every node is registered and Ready, no node is cordoned by someone
//! else, every node's runtime and cgroups suit the target, `kubeadm upgrade plan` succeeds on the
//! control plane, and enough nodes stay schedulable while a batch drains.

use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::api::{Api, ListParams};

use super::drain::CORDONED_FOR;
use super::journal::{Phase, Record};
use super::{ID, Options, UpgradePlan, node};
use crate::config::{Role, support};
use crate::engine::Ctx;
use crate::error::{Error, Result};

/// Fails with every problem found, or returns when the upgrade may start.
// Long by design: every preflight check in turn, all read-only, all problems collected.
pub async fn check(
    cx: &Ctx,
    client: &kube::Client,
    plan: &UpgradePlan,
    record: &Record,
    opts: &Options,
) -> Result<()> {
    let mut problems = Vec::new();
    let k = &cx.config.cluster.spec.kubernetes;
    let target = plan.to.minor_str();
    let supported = support::supported_kubernetes(support::Day::today());
    if !k.allow_unsupported_version && !supported.contains(&target.as_str()) {
        problems.push(format!(
            "Kubernetes {target} is not a supported minor today (supported: {})",
            supported.join(", ")
        ));
    }
    let nodes: Api<KubeNode> = Api::all(client.clone());
    let live = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| crate::api::error("list", "nodes", e))?;
    for n in cx.config.nodes() {
        let name = n.name.as_str();
        let Some(l) = live
            .items
            .iter()
            .find(|l| l.metadata.name.as_deref() == Some(name))
        else {
            problems.push(format!("{name}: not registered with the API server"));
            continue;
        };
        let cordoned = l.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
        let ours = (l.metadata.annotations.as_ref())
            .and_then(|a| a.get(CORDONED_FOR))
            .is_some_and(|t| t.starts_with(&target));
        if cordoned && !ours {
            problems.push(format!(
                "{name}: cordoned by someone else (uncordon it, or finish what they are doing, first)"
            ));
        }
        if let Some(why) = crate::stages::shared::node_labels::not_ready(l)
            && record.phase(name) == Phase::Pending
        {
            problems.push(format!("{name}: {why}"));
        }
    }
    let workers = cx
        .config
        .nodes()
        .filter(|n| n.role != Some(Role::ControlPlane))
        .count();
    if workers > 0 && workers <= opts.max_unavailable {
        problems.push(format!(
            "--max-unavailable {} would cordon all {workers} worker node(s) at once: nothing would be left to run the drained pods",
            opts.max_unavailable
        ));
    }
    let (conns, unreachable) = cx.connect_nodes(ID, |_| true).await?;
    problems.extend(
        unreachable
            .iter()
            .map(|f| format!("{}: unreachable ({})", f.node, f.tail)),
    );
    let version = plan.to.to_string();
    let checked = crate::fanout::each(conns, 0, |(t, conn)| {
        let version = version.clone();
        async move {
            let mut out: Vec<String> =
                match crate::stages::shared::preflight::check(&conn, &version).await {
                    Ok(p) => p.into_iter().map(|p| format!("{}: {p}", t.node)).collect(),
                    Err(tail) => vec![format!("{}: preflight could not run: {tail}", t.node)],
                };
            if t.role == Role::ControlPlane
                && let Err(e) = node::check_plan(&conn).await
            {
                out.push(e.to_string());
            }
            out
        }
    })
    .await;
    problems.extend(checked.into_iter().flatten());
    if cx.config.is_ha() {
        // Every etcd member healthy: an upgrade restarts each member in turn, and one already
        // down would cost the quorum.
        match cx.control_plane(ID).await {
            Ok((_, conn)) => match crate::etcd::health(&conn).await {
                Ok(health) => problems.extend(
                    (health.iter().filter(|h| !h.health)).map(|h| {
                        format!(
                            "etcd member {} unhealthy ({}): the upgrade restarts every member in turn; `ecoboot up` replaces a lost control plane first",
                            h.endpoint,
                            h.error.clone().unwrap_or_default()
                        )
                    }),
                ),
                Err(e) => problems.push(e.to_string()),
            },
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::StageFailed {
        stage: ID.into(),
        message: format!(
            "preflight: {} problem(s) keep the cluster from moving to Kubernetes {version}; nothing was changed:\n{}",
            problems.len(),
            problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
        ),
        help: "fix each one and rerun `ecoboot upgrade` (`--dry-run` shows the order without changing anything)".into(),
    })
}
