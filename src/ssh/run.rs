//! Runs a playbook on many nodes at once. No barrier between steps: each node goes through its
//! own step list; a failure stops that node only, and every failure is reported at the end.

use std::sync::Arc;
use std::time::Duration;

use super::Conn;
use crate::config::Config;
use crate::engine::Ctx;
use crate::event::Event;
use crate::playbook::{self, Playbook};

/// Why one node did not finish.
#[derive(Debug, Clone)]
pub struct NodeFailure {
    /// Node name.
    pub node: String,
    /// Step name (or `connect`).
    pub step: String,
    /// Exit code, if the step ran.
    pub code: Option<i32>,
    /// Last lines of its stderr.
    pub tail: String,
}

impl std::fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = self.code.map_or(String::new(), |c| format!(" (exit {c})"));
        write!(f, "{}: step `{}` failed{code}", self.node, self.step)?;
        for line in self.tail.lines() {
            write!(f, "\n      | {line}")?;
        }
        Ok(())
    }
}

/// What the run did across nodes.
#[derive(Debug, Default)]
pub struct Summary {
    /// Steps executed (mutating).
    pub executed: u64,
    /// Steps skipped because their guard was satisfied.
    pub skipped: u64,
    /// Nodes that did not finish.
    pub failures: Vec<NodeFailure>,
}

/// Steps whose guard is not satisfied on `conn` (read-only), or an error message.
pub async fn pending(
    config: &Config,
    book: &Playbook,
    conn: &Conn,
) -> Result<Vec<String>, NodeFailure> {
    let vals = playbook::values(config, &conn.node, conn.role);
    let mut out = Vec::new();
    for step in &book.steps {
        let name = playbook::render(&step.name, &vals);
        if !guard_holds(conn, &name, step, &vals).await? {
            out.push(name);
        }
    }
    Ok(out)
}

async fn guard_holds(
    conn: &Conn,
    name: &str,
    step: &playbook::Step,
    vals: &std::collections::BTreeMap<&'static str, String>,
) -> Result<bool, NodeFailure> {
    let Some(guard) = step.guard() else {
        return Ok(false);
    };
    let guard = playbook::render(&guard, vals);
    let out = conn
        .run(
            &format!("guard: {name}"),
            &guard,
            Duration::from_secs(60),
            step.elevate,
        )
        .await;
    match out {
        Ok(o) => Ok(o.ok()),
        Err(e) => Err(NodeFailure {
            node: conn.node.clone(),
            step: name.to_string(),
            code: None,
            tail: e.to_string(),
        }),
    }
}

/// Runs `book` on every connection in parallel.
pub async fn apply(cx: &Ctx, stage: &str, book: &Playbook, conns: &[Arc<Conn>]) -> Summary {
    let mut set = tokio::task::JoinSet::new();
    for conn in conns {
        let conn = conn.clone();
        let book = book.clone();
        let config = cx.config.clone();
        let events = cx.events.clone();
        let stage = stage.to_string();
        set.spawn(async move { run_node(&config, &events, &stage, &book, &conn).await });
    }
    let mut summary = Summary::default();
    while let Some(done) = set.join_next().await {
        let (executed, skipped, failure) = done.expect("node task");
        summary.executed += executed;
        summary.skipped += skipped;
        summary.failures.extend(failure);
    }
    summary.failures.sort_by(|a, b| a.node.cmp(&b.node));
    summary
}

async fn run_node(
    config: &Config,
    events: &crate::event::Events,
    stage: &str,
    book: &Playbook,
    conn: &Conn,
) -> (u64, u64, Option<NodeFailure>) {
    let vals = playbook::values(config, &conn.node, conn.role);
    let total = book.steps.len() as u64;
    let (mut executed, mut skipped) = (0, 0);
    let progress = |done: u64, message: String| {
        events.emit(Event::Progress {
            stage: stage.into(),
            node: Some(conn.node.clone()),
            message,
            done: Some(done),
            total: Some(total),
        });
    };
    for (i, step) in book.steps.iter().enumerate() {
        let name = playbook::render(&step.name, &vals);
        match guard_holds(conn, &name, step, &vals).await {
            Ok(true) => {
                skipped += 1;
                continue;
            }
            Ok(false) => {}
            Err(f) => return (executed, skipped, Some(f)),
        }
        progress(i as u64, name.clone());
        let script = playbook::render(&step.run, &vals);
        let mut attempt = 0;
        loop {
            let out = conn
                .run(
                    &name,
                    &script,
                    Duration::from_secs(step.timeout),
                    step.elevate,
                )
                .await;
            match out {
                Ok(o) if o.ok() => break,
                Ok(o) if attempt < step.retries => {
                    attempt += 1;
                    progress(
                        i as u64,
                        format!(
                            "{name}: exit {:?}, retry {attempt}/{}",
                            o.code, step.retries
                        ),
                    );
                    tokio::time::sleep(Duration::from_secs(step.delay)).await;
                }
                Ok(o) => {
                    return (
                        executed,
                        skipped,
                        Some(NodeFailure {
                            node: conn.node.clone(),
                            step: name,
                            code: o.code,
                            tail: o.tail(5),
                        }),
                    );
                }
                Err(e) => {
                    return (
                        executed,
                        skipped,
                        Some(NodeFailure {
                            node: conn.node.clone(),
                            step: name,
                            code: None,
                            tail: e.to_string(),
                        }),
                    );
                }
            }
        }
        executed += 1;
    }
    progress(
        total,
        format!("done ({executed} ran, {skipped} already done)"),
    );
    (executed, skipped, None)
}
