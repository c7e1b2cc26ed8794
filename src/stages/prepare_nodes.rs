//! Stage `prepare-nodes`: a read-only preflight on every node (cgroup v2, kernel modules, the
//! runtime against the Kubernetes minor), then the `prepare-nodes` playbook (swap, kernel
//! modules, sysctl, containerd and runc, Kubernetes packages) over SSH, all nodes at once.

use std::sync::Arc;

use async_trait::async_trait;

use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::playbook::Playbook;
use crate::ssh::Conn;
use crate::ssh::run::{self, NodeFailure};
use crate::stages::shared::ids;
use crate::stages::shared::preflight;

/// Stage id.
pub const ID: &str = ids::PREPARE_NODES;

/// The `prepare-nodes` stage.
pub struct PrepareNodes;

/// What one node still needs.
pub enum NodeWork {
    /// It could not be reached at probe time (apply tries again).
    Unreachable(String),
    /// The playbook steps whose guard says they are not done.
    Steps(Vec<String>),
    /// Its guards could not be checked (apply runs the playbook, which re-checks each guard).
    Unchecked(String),
}

/// The nodes that are not prepared yet, by name, and what each needs.
pub struct PreparePlan {
    nodes: Vec<(String, NodeWork)>,
}

impl StagePlan for PreparePlan {
    fn actions(&self) -> Vec<Action> {
        (self.nodes.iter())
            .map(|(node, work)| match work {
                NodeWork::Unreachable(tail) => Action::new(node, format!("unreachable: {tail}")),
                NodeWork::Steps(steps) => Action::new(
                    node,
                    format!("run {} step(s): {}", steps.len(), steps.join(", ")),
                ),
                NodeWork::Unchecked(tail) => Action::new(node, format!("cannot check: {tail}")),
            })
            .collect()
    }
}

async fn reachable(
    cx: &Ctx,
    book: &Playbook,
    keep: impl Fn(&str) -> bool,
) -> Result<(Vec<Arc<Conn>>, Vec<NodeFailure>)> {
    let (conns, failures) = cx
        .connect_nodes(ID, |t| book.targets(&t.node, t.role) && keep(&t.node))
        .await?;
    Ok((conns.into_iter().map(|(_, c)| c).collect(), failures))
}

fn failed(failures: &[NodeFailure], total: usize) -> Error {
    let lines: Vec<String> = failures.iter().map(|f| format!("  {f}")).collect();
    Error::StageFailed {
        stage: ID.into(),
        message: format!("{} of {total} node(s) did not finish:\n{}", failures.len(), lines.join("\n")),
        help: "the other nodes finished; fix the cause (per-node logs are in <state-dir>/<cluster>/logs/nodes/) and rerun: only unfinished steps run".into(),
    }
}

#[async_trait]
impl Stage for PrepareNodes {
    type Plan = PreparePlan;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Prepare nodes: swap, kernel modules, containerd, kubeadm"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<PreparePlan>> {
        let book = Playbook::load(ID, cx.playbooks.as_deref())?;
        let (conns, unreachable) = reachable(cx, &book, |_| true).await?;
        let mut nodes: Vec<(String, NodeWork)> = unreachable
            .into_iter()
            .map(|f| (f.node, NodeWork::Unreachable(f.tail)))
            .collect();
        let (book, version) = (&book, cx.config.cluster.spec.kubernetes.version.as_str());
        let checked = crate::fanout::each(conns.iter().cloned(), 0, |conn| async move {
            let problems = preflight::check(&conn, version).await;
            let pending = match &problems {
                Ok(p) if p.is_empty() => Some(run::pending(&cx.config, book, &conn).await),
                _ => None,
            };
            (conn.node.clone(), problems, pending)
        })
        .await;
        let mut refused = Vec::new();
        for (node, problems, pending) in checked {
            match (problems, pending) {
                (Ok(p), _) if !p.is_empty() => {
                    refused.extend(p.into_iter().map(|p| format!("  {node}: {p}")))
                }
                (Err(tail), _) => nodes.push((node, NodeWork::Unchecked(tail))),
                (_, Some(Ok(steps))) if steps.is_empty() => {}
                (_, Some(Ok(steps))) => nodes.push((node, NodeWork::Steps(steps))),
                (_, Some(Err(f))) => nodes.push((node, NodeWork::Unchecked(f.tail))),
                (_, None) => {}
            }
        }
        if !refused.is_empty() {
            return Err(Error::StageFailed {
                stage: ID.into(),
                message: format!(
                    "preflight: {} problem(s) keep nodes from running Kubernetes {version}; nothing was changed:\n{}",
                    refused.len(),
                    refused.join("\n")
                ),
                help: "fix every node listed (or replace it), then rerun; `ecoboot plan` shows the same check without changing anything".into(),
            });
        }
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        if nodes.is_empty() {
            Ok(Found::done(format!("{} node(s) prepared", conns.len())))
        } else {
            Ok(Found::Todo(PreparePlan { nodes }))
        }
    }

    /// Runs the playbook on the planned nodes only (a finished node is not even connected to).
    async fn apply(&self, cx: &Ctx, plan: PreparePlan) -> Result<()> {
        let book = Playbook::load(ID, cx.playbooks.as_deref())?;
        let planned = |node: &str| plan.nodes.iter().any(|(n, _)| n == node);
        let (conns, mut failures) = reachable(cx, &book, planned).await?;
        let total = conns.len() + failures.len();
        let summary = run::apply(&cx.config, &cx.events, ID, &book, &conns).await;
        cx.count("steps.executed", summary.executed);
        cx.count("steps.skipped", summary.skipped);
        failures.extend(summary.failures);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failed(&failures, total))
        }
    }
}
