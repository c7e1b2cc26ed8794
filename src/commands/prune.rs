//! What `plan` and `up` do about nodes that left the config (see [`crate::prune`]): `plan`
//! lists them, `up` warns and leaves them, `up --prune` (or `spec.prune: true`) removes them
//! after every stage converged. A control plane is pruned only with several left and `--yes`
//! (its etcd member first, never below quorum), and more than one infrastructure node in one
//! run needs an explicit `--yes`.

use std::time::{Duration, Instant};

use crate::cli::RunFlags;
use crate::engine::{Ctx, RunMode};
use crate::error::{Error, Result};
use crate::event::{Event, millis};
use crate::prune::{self, ID, Orphan};

/// How long one orphan's drain may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Finds the orphans after the stages ran and plans, reports or removes them.
pub(super) async fn orphans(cx: &Ctx, mode: RunMode, flags: &RunFlags) -> Result<()> {
    let found = match prune::find(cx).await {
        Ok(found) => found,
        // A plan stays a plan: say what could not be looked at instead of failing.
        Err(e) if mode == RunMode::Plan => {
            cx.events.emit(Event::Warning {
                subject: "nodes not in the config".into(),
                message: format!("could not look for them: {e}"),
                help: "the plan does not show nodes that left the config".into(),
            });
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if found.is_empty() {
        return Ok(());
    }
    let pruning = flags.prune || cx.config.cluster.spec.prune;
    let events = &cx.events;
    if mode == RunMode::Apply && !pruning {
        for o in &found {
            events.emit(Event::Warning {
                subject: format!("node {}", o.node),
                message: describe(o),
                help: match o.control_plane {
                    true => "put the control plane back in spec.nodes, or (several control planes) `ecoboot up --prune --yes` removes it and its etcd member".into(),
                    false => {
                        "`ecoboot up --prune` drains and removes it; or put it back in spec.nodes"
                            .into()
                    }
                },
            });
        }
        return Ok(());
    }
    events.emit(Event::StageStarted {
        stage: ID.into(),
        title: "Remove nodes no longer in the config".into(),
    });
    events.emit(Event::StagePlan {
        stage: ID.into(),
        actions: found.iter().map(|o| o.action(pruning)).collect(),
    });
    if mode != RunMode::Apply {
        return Ok(());
    }
    let infra: Vec<&str> = (found.iter())
        .filter(|o| o.infrastructure && !o.control_plane)
        .map(|o| o.node.as_str())
        .collect();
    if infra.len() > 1 && !flags.yes {
        return Err(Error::Usage(format!(
            "pruning would remove {} infrastructure nodes in one run ({}): their data goes with them; pass --yes to confirm, or remove one at a time",
            infra.len(),
            infra.join(", ")
        )));
    }
    let started = Instant::now();
    let result = prune::prune(cx, found, DRAIN_TIMEOUT, flags.yes).await;
    match &result {
        Ok(()) => events.emit(Event::StageDone {
            stage: ID.into(),
            duration_ms: millis(started.elapsed()),
            counters: Default::default(),
            aws_calls: cx.take_aws_calls(),
        }),
        Err(e) => events.emit(Event::StageFailed {
            stage: ID.into(),
            duration_ms: millis(started.elapsed()),
            message: e.to_string(),
        }),
    }
    result
}

fn describe(o: &Orphan) -> String {
    let mut what = Vec::new();
    if let Some(id) = &o.instance_id {
        what.push(format!("instance {id}"));
    }
    if o.node_object {
        what.push("a Node object".to_string());
    }
    format!(
        "is not in the config but has {}; left as is",
        what.join(" and ")
    )
}
