//! The frame every rolling node operation shares (`migrate-runtime`, `reboot`): batch by batch,
//! each batch's nodes at once, per node cordon, drain through the Eviction API, the operation's
//! own work, then uncordon and wait until Ready; every phase journaled under the operation's key,
//! so a crash resumes at the node in progress and never drains a finished node again.

use std::future::Future;

use super::journal::{Phase, Record};
use super::{Options, drain, wait_ready};
use crate::engine::Ctx;
use crate::error::Result;

/// What one rolling operation is.
pub(super) struct Rolling<'a> {
    /// Journal key (`runtime-migration`, `reboot`).
    pub key: &'static str,
    /// Event stage name.
    pub id: &'static str,
    /// How a drain failure names the operation and the command that continues it.
    pub op: drain::Op,
    /// Why the node is cordoned (shown in the cordon annotation).
    pub reason: &'static str,
    /// The progress line once a node is done.
    pub done: &'a str,
}

impl Rolling<'_> {
    /// Runs `work(node)` on every node of `batches`, between drain and uncordon.
    pub(super) async fn run<F, Fut>(
        &self,
        cx: &Ctx,
        batches: &[Vec<String>],
        opts: &Options,
        work: F,
    ) -> Result<()>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let client = cx.kube(self.id).await?;
        let mut record: Record = (cx.state().output(self.key))
            .filter(|r: &Record| !r.finished())
            .unwrap_or_default();
        for n in batches.iter().flatten() {
            record.nodes.entry(n.clone()).or_insert(Phase::Pending);
        }
        let journal = super::Journal::new(cx, record, self.key);
        journal.update(|_| {})?;
        for batch in batches {
            let results = crate::fanout::each(batch.clone(), 0, |name| {
                let (journal, client, work) = (&journal, &client, &work);
                async move {
                    if journal.phase(&name) < Phase::Upgraded {
                        journal.set(&name, Phase::Draining)?;
                        drain::cordon(client, &name, Some(self.reason)).await?;
                        let say = |m: String| cx.events.progress(self.id, Some(&name), m);
                        drain::drain(client, &name, opts.drain_timeout, self.op, &say).await?;
                        journal.drained(&name)?;
                        work(name.clone()).await?;
                        journal.set(&name, Phase::Upgraded)?;
                    }
                    drain::cordon(client, &name, None).await?;
                    wait_ready(cx, client, &name, None).await?;
                    journal.set(&name, Phase::Done)?;
                    cx.events.progress(self.id, Some(&name), self.done);
                    Ok(())
                }
            })
            .await;
            results.into_iter().collect::<Result<Vec<()>>>()?;
        }
        Ok(())
    }
}
