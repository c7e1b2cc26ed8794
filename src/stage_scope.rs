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
