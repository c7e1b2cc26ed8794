//! The per-node board of a pipelined run: a stage marks each node it has finished (`instances`:
//! the node's instance runs and has its address; `prepare-nodes`: the node is prepared), and a
//! later stage that overlaps it waits for the node it needs instead of for the whole stage.
//! Only stages this run schedules are waited for: anything else is already done, or the
//! waiting stage's own probe finds out (the real world is the authority).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use tokio::sync::Notify;

/// Where a scheduled stage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Not started, or probing.
    Running,
    /// Its probe found work; it is applying it.
    Applying,
    Ok,
    Failed,
}

/// Milestones per node, for the stages of one run.
#[derive(Default)]
pub struct Board {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    stages: BTreeMap<&'static str, End>,
    marks: BTreeSet<(&'static str, String)>,
}

impl Board {
    /// The stages this run will run (pipelined): waits on them are real waits.
    pub fn schedule(&self, stages: &[&'static str]) {
        let mut s = self.lock();
        for id in stages {
            s.stages.insert(id, End::Running);
        }
    }

    /// `stage` ended (`ok`): every waiter on it wakes; nodes it did not mark count as done
    /// when it succeeded (its probe found them done), as failed when it failed.
    pub fn finish(&self, stage: &'static str, ok: bool) {
        if let Some(end) = self.lock().stages.get_mut(stage) {
            *end = if ok { End::Ok } else { End::Failed };
        }
        self.changed.notify_waiters();
    }

    /// `stage`'s probe found work: it is applying it now.
    pub fn applying(&self, stage: &str) {
        if let Some(end) = self.lock().stages.get_mut(stage) {
            *end = End::Applying;
        }
        self.changed.notify_waiters();
    }

    /// Waits until `stage` has probed: true when it is applying (work is under way, so a
    /// stage overlapping it should go per node), false when it ended or is not scheduled.
    pub async fn wait_probed(&self, stage: &str) -> bool {
        loop {
            let notified = self.changed.notified();
            match self.lock().stages.get(stage) {
                Some(End::Applying) => return true,
                Some(End::Running) => {}
                _ => return false,
            }
            notified.await;
        }
    }

    /// `stage` is done on `node`.
    pub fn mark(&self, stage: &'static str, node: &str) {
        self.lock().marks.insert((stage, node.to_string()));
        self.changed.notify_waiters();
    }

    /// Whether `stage` has marked `node`.
    pub fn marked(&self, stage: &str, node: &str) -> bool {
        (self.lock().marks.iter()).any(|(s, n)| *s == stage && n == node)
    }

    /// Whether `stage` is scheduled in this run and has not ended.
    pub fn pending(&self, stage: &str) -> bool {
        matches!(
            self.lock().stages.get(stage),
            Some(End::Running | End::Applying)
        )
    }

    /// Waits until `stage` is done on `node` (or has ended); an error names what did not finish.
    pub async fn wait(&self, stage: &'static str, node: &str) -> Result<(), String> {
        loop {
            let notified = self.changed.notified();
            {
                let s = self.lock();
                if s.marks.contains(&(stage, node.to_string())) {
                    return Ok(());
                }
                match s.stages.get(stage) {
                    None | Some(End::Ok) => return Ok(()),
                    Some(End::Failed) => return Err(format!("`{stage}` did not finish on {node}")),
                    Some(End::Running | End::Applying) => {}
                }
            }
            notified.await;
        }
    }

    /// Waits until `stage` has ended; an error when it failed.
    pub async fn wait_stage(&self, stage: &'static str) -> Result<(), String> {
        loop {
            let notified = self.changed.notified();
            match self.lock().stages.get(stage) {
                None | Some(End::Ok) => return Ok(()),
                Some(End::Failed) => return Err(format!("`{stage}` failed")),
                Some(End::Running | End::Applying) => {}
            }
            notified.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiter_wakes_when_its_node_is_marked_not_before() {
        let board = Arc::new(Board::default());
        board.schedule(&["instances"]);
        let b = board.clone();
        let waiter = tokio::spawn(async move { b.wait("instances", "n1").await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        board.mark("instances", "n2");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "another node's mark does not count");
        board.mark("instances", "n1");
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn an_unscheduled_stage_is_not_waited_for_and_a_failed_one_fails_its_waiters() {
        let board = Board::default();
        assert_eq!(board.wait("prepare-nodes", "n1").await, Ok(()));
        assert!(!board.pending("prepare-nodes"));
        board.schedule(&["prepare-nodes"]);
        assert!(board.pending("prepare-nodes"));
        board.applying("prepare-nodes");
        assert!(board.wait_probed("prepare-nodes").await);
        assert!(!board.wait_probed("instances").await, "not scheduled");
        board.mark("prepare-nodes", "n1");
        board.finish("prepare-nodes", false);
        assert_eq!(board.wait("prepare-nodes", "n1").await, Ok(()));
        assert!(
            board
                .wait("prepare-nodes", "n2")
                .await
                .unwrap_err()
                .contains("n2")
        );
        assert!(board.wait_stage("prepare-nodes").await.is_err());
    }
}
