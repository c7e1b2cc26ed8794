//! Which stage the running task works for (a tokio task-local set by the engine's runner), so
//! counters and AWS calls made while stages overlap (`up`'s per-node pipelining) are reported
//! with their own stage. Below every client: the AWS call counter reads it too.

use std::future::Future;

tokio::task_local! {
    static STAGE: &'static str;
}

/// The stage of the current task (`""` outside any stage, or in a task spawned without it).
pub fn current() -> &'static str {
    STAGE.try_with(|s| *s).unwrap_or("")
}

/// Runs `f` as work of `stage`.
pub async fn within<F: Future>(stage: &'static str, f: F) -> F::Output {
    STAGE.scope(stage, f).await
}

/// Counts keyed by the stage that made them.
pub type ByStage = std::collections::BTreeMap<(&'static str, String), u64>;

/// Takes out of `all` the counts of the current stage and those made outside any stage,
/// summed by name.
pub fn take_current(all: &mut ByStage) -> std::collections::BTreeMap<String, u64> {
    let stage = current();
    let mut out = std::collections::BTreeMap::new();
    all.retain(|(s, name), n| {
        let mine = *s == stage || s.is_empty();
        if mine {
            *out.entry(name.clone()).or_default() += *n;
        }
        !mine
    });
    out
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn scoped_work_knows_its_stage() {
        assert_eq!(super::current(), "");
        let inner = super::within("prepare-nodes", async { super::current() }).await;
        assert_eq!(inner, "prepare-nodes");
        assert_eq!(super::current(), "");
    }
}
