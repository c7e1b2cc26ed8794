//! Stage `prepare-nodes`: the `prepare-nodes` playbook (swap, kernel modules, sysctl,
//! containerd, Kubernetes packages) on every node over SSH, all nodes at once.

use std::sync::Arc;

use async_trait::async_trait;

use crate::engine::{Ctx, Found, Stage};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::playbook::Playbook;
use crate::ssh::Conn;
use crate::ssh::run::{self, NodeFailure};

/// Stage id.
pub const ID: &str = "prepare-nodes";

/// The `prepare-nodes` stage.
pub struct PrepareNodes;

async fn reachable(cx: &Ctx, book: &Playbook) -> Result<(Vec<Arc<Conn>>, Vec<NodeFailure>)> {
    let (conns, failures) = cx
        .connect_nodes(ID, |t| book.targets(&t.node, t.role))
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
    type Plan = Vec<Action>;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Prepare nodes: swap, kernel modules, containerd, kubeadm"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<Vec<Action>>> {
        let book = Playbook::load(ID, cx.playbooks.as_deref())?;
        let (conns, unreachable) = reachable(cx, &book).await?;
        let mut todo: Vec<Action> = unreachable
            .iter()
            .map(|f| Action::new(&f.node, format!("unreachable: {}", f.tail)))
            .collect();
        let book = &book;
        let pending = crate::fanout::each(conns.iter().cloned(), 0, |conn| async move {
            (
                conn.node.clone(),
                run::pending(&cx.config, book, &conn).await,
            )
        })
        .await;
        for (node, result) in pending {
            match result {
                Ok(steps) if steps.is_empty() => {}
                Ok(steps) => todo.push(Action::new(
                    node,
                    format!("run {} step(s): {}", steps.len(), steps.join(", ")),
                )),
                Err(f) => todo.push(Action::new(node, format!("cannot check: {}", f.tail))),
            }
        }
        todo.sort_by(|a, b| a.target.cmp(&b.target));
        if todo.is_empty() {
            Ok(Found::done(format!("{} node(s) prepared", conns.len())))
        } else {
            Ok(Found::Todo(todo))
        }
    }

    async fn apply(&self, cx: &Ctx, _plan: Vec<Action>) -> Result<()> {
        let book = Playbook::load(ID, cx.playbooks.as_deref())?;
        let (conns, mut failures) = reachable(cx, &book).await?;
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
