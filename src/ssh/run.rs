//! Runs a playbook on many nodes at once. No barrier between steps: each node goes through its
//! own step list; a failure stops that node only, and every failure is reported at the end.

use std::sync::Arc;
use std::time::Duration;

use super::{Conn, Output, Target};
use crate::config::Config;
use crate::event::{Event, Events};
use crate::playbook::{self, Playbook};
use crate::retry::{Backoff, Try, retry};

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

/// Exit code a step's combined guard-and-run script uses to say "guard satisfied, skipped".
/// A step whose own script exits with it is reported as skipped.
pub const SKIPPED: i32 = 197;

/// Runs one short read-only `script` (a state check) on every connection at once (60 s
/// bound); each node's output, or why it could not run, with its target.
pub async fn each_node(
    conns: Vec<(Target, Arc<Conn>)>,
    label: &str,
    script: &str,
) -> Vec<(Target, crate::error::Result<Output>)> {
    crate::fanout::each(conns, 0, |(target, conn)| async move {
        let out = conn.run(label, script, Duration::from_secs(60), true).await;
        (target, out)
    })
    .await
}

/// Steps whose guard is not satisfied on `conn`, checked read-only in one round trip.
pub async fn pending(
    config: &Config,
    book: &Playbook,
    conn: &Conn,
) -> Result<Vec<String>, NodeFailure> {
    let vals = playbook::values(config, &conn.node, conn.role);
    let mut script = String::new();
    for (i, step) in book.steps.iter().enumerate() {
        match step.guard() {
            Some(guard) => script.push_str(&format!(
                "if ( {} ) >/dev/null 2>&1; then echo 'done {i}'; else echo 'todo {i}'; fi\n",
                playbook::render(&guard, &vals)
            )),
            None => script.push_str(&format!("echo 'todo {i}'\n")),
        }
    }
    let elevate = book.steps.iter().any(|s| s.elevate);
    let failure = |tail: String| NodeFailure {
        node: conn.node.clone(),
        step: "check guards".into(),
        code: None,
        tail,
    };
    let out = conn
        .run("check guards", &script, Duration::from_secs(120), elevate)
        .await
        .map_err(|e| failure(e.to_string()))?;
    if !out.ok() {
        return Err(failure(out.tail(5)));
    }
    let mut todo = Vec::new();
    for line in out.stdout.lines() {
        if let Some(i) = line
            .strip_prefix("todo ")
            .and_then(|i| i.parse::<usize>().ok())
            && let Some(step) = book.steps.get(i)
        {
            todo.push(playbook::render(&step.name, &vals));
        }
    }
    Ok(todo)
}

/// Runs `book` on every connection in parallel.
pub async fn apply(
    config: &Arc<Config>,
    events: &Events,
    stage: &str,
    book: &Playbook,
    conns: &[Arc<Conn>],
) -> Summary {
    let mut summary = Summary::default();
    let results = crate::fanout::each(conns.iter().cloned(), 0, |conn| async move {
        run_node(config, events, stage, book, &conn).await
    })
    .await;
    for (executed, skipped, failure) in results {
        summary.executed += executed;
        summary.skipped += skipped;
        summary.failures.extend(failure);
    }
    summary.failures.sort_by(|a, b| a.node.cmp(&b.node));
    summary
}

// Long by design: one node's playbook loop (check, apply, verify per step, with its log).
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
        progress(i as u64, name.clone());
        // Guard and action in one round trip: the guard is evaluated right before the action.
        let mut script = playbook::render(&step.run, &vals);
        if let Some(guard) = step.guard() {
            script = format!(
                "if ( {} ) >/dev/null 2>&1; then exit {SKIPPED}; fi\n{script}",
                playbook::render(&guard, &vals)
            );
        }
        let failure = |code, tail| NodeFailure {
            node: conn.node.clone(),
            step: name.clone(),
            code,
            tail,
        };
        let backoff = Backoff::attempts(step.retries + 1, Duration::from_secs(step.delay));
        let ran = retry(&backoff, |attempt| {
            let (name, script, failure, progress) = (&name, &script, &failure, &progress);
            async move {
                match conn
                    .run(
                        name,
                        script,
                        Duration::from_secs(step.timeout),
                        step.elevate,
                    )
                    .await
                {
                    Ok(o) if o.code == Some(SKIPPED) => Try::Done(false),
                    Ok(o) if o.ok() => Try::Done(true),
                    Ok(o) => {
                        if attempt <= step.retries {
                            progress(
                                i as u64,
                                format!(
                                    "{name}: exit {:?}, retry {attempt}/{}",
                                    o.code, step.retries
                                ),
                            );
                        }
                        Try::Again(failure(o.code, o.tail(5)))
                    }
                    Err(e) => Try::Fail(failure(None, e.to_string())),
                }
            }
        })
        .await;
        let ran = match ran {
            Ok(ran) => ran,
            Err(f) => return (executed, skipped, Some(f)),
        };
        if ran {
            executed += 1;
        } else {
            skipped += 1;
        }
    }
    progress(
        total,
        format!("done ({executed} ran, {skipped} already done)"),
    );
    (executed, skipped, None)
}
