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
    /// Its instance is still starting in this run (pipelined `up`): checked when it runs.
    Starting,
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
                NodeWork::Starting => {
                    Action::new(node, "prepare as soon as its instance runs (checked then)")
                }
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
        let targeted: Vec<String> = (cx.config.nodes())
            .filter(|n| book.targets(n.name.as_str(), n.role.unwrap_or_default()))
            .map(|n| n.name.value.clone())
            .collect();
        if cx.board.wait_probed(ids::INSTANCES).await
            && targeted.iter().any(|n| !cx.board.marked(ids::INSTANCES, n))
        {
            // Pipelined, and instances are still coming up: each node is checked (preflight,
            // guards) as soon as it runs; the re-probe, once all run, checks them all.
            let nodes = (targeted.into_iter())
                .map(|n| (n, NodeWork::Starting))
                .collect();
            return Ok(Found::Todo(PreparePlan { nodes }));
        }
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

    /// Runs the playbook on the planned nodes only (a finished node is not even connected to),
    /// each node on its own: it starts when its instance runs (a pipelined `up`) and is marked
    /// prepared on the board when it finishes, so its join need not wait for the others.
    async fn apply(&self, cx: &Ctx, plan: PreparePlan) -> Result<()> {
        let book = Playbook::load(ID, cx.playbooks.as_deref())?;
        for node in cx.config.nodes() {
            if !plan.nodes.iter().any(|(n, _)| n == node.name.as_str()) {
                cx.board.mark(ID, node.name.as_str());
            }
        }
        let version = cx.config.cluster.spec.kubernetes.version.as_str();
        let starting = plan
            .nodes
            .iter()
            .any(|(_, w)| matches!(w, NodeWork::Starting));
        let (book, total) = (&book, plan.nodes.len());
        let results = crate::fanout::each(
            plan.nodes.iter().map(|(n, _)| n.clone()),
            0,
            |node| async move {
                if let Err(tail) = cx.board.wait(ids::INSTANCES, &node).await {
                    return (
                        0,
                        0,
                        vec![NodeFailure {
                            node,
                            step: "instance".into(),
                            code: None,
                            tail,
                        }],
                    );
                }
                let (conns, mut failures) = match reachable(cx, book, |n| n == node).await {
                    Ok(found) => found,
                    Err(e) => {
                        return (
                            0,
                            0,
                            vec![NodeFailure {
                                node,
                                step: "connect".into(),
                                code: None,
                                tail: e.to_string(),
                            }],
                        );
                    }
                };
                if starting && let Some(conn) = conns.first() {
                    // Not checked at probe time: the read-only preflight first, as the probe does.
                    match preflight::check(conn, version).await {
                        Ok(p) if p.is_empty() => {}
                        Ok(p) => failures.push(NodeFailure {
                            node: node.clone(),
                            step: "preflight".into(),
                            code: None,
                            tail: p.join("; "),
                        }),
                        Err(tail) => failures.push(NodeFailure {
                            node: node.clone(),
                            step: "preflight".into(),
                            code: None,
                            tail,
                        }),
                    }
                }
                if !failures.is_empty() {
                    return (0, 0, failures);
                }
                let summary = run::apply(&cx.config, &cx.events, ID, book, &conns).await;
                if summary.failures.is_empty() && !conns.is_empty() {
                    cx.board.mark(ID, &node);
                }
                (summary.executed, summary.skipped, summary.failures)
            },
        )
        .await;
        let mut failures = Vec::new();
        for (executed, skipped, failed) in results {
            cx.count("steps.executed", executed);
            cx.count("steps.skipped", skipped);
            failures.extend(failed);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failed(&failures, total))
        }
    }

    fn after(&self) -> Option<&'static [&'static str]> {
        // Overlaps `instances` (each node waits for its own instance on the board).
        Some(&[ids::NETWORK, ids::IAM])
    }
}
