//! The run's SSH connection pool on [`Ctx`]: one connection per node, made once (a slot per
//! node, never locked while connecting) on a task of its own, and the node records the
//! addresses come from.

use std::collections::BTreeMap;
use std::sync::{Arc, MutexGuard};

use super::Ctx;
use crate::aws::Aws;
use crate::error::Result;
use crate::event::Events;
use crate::ssh::run::NodeFailure;
use crate::ssh::{self, Conn, Target};

/// One connection: host keys pinned from the console when configured, then SSH. Reported with
/// `stage`, the stage that connects (held with its events while stages overlap).
async fn connect_one(
    target: Target,
    mut opts: ssh::Options,
    aws: Option<Aws>,
    events: Events,
    stage: &'static str,
) -> Result<Arc<Conn>, String> {
    let stage = if stage.is_empty() { "ssh" } else { stage };
    events.progress(
        stage,
        Some(&target.node),
        format!("connecting to {}:{}", target.host, target.port),
    );
    let result = match &aws {
        Some(aws) => crate::engine::console_pins::console_pins(aws, &target, &mut opts).await,
        None => Ok(()),
    };
    let result = match result {
        Ok(()) => Conn::connect(&target, &opts).await,
        Err(e) => Err(e),
    };
    result.map(Arc::new).map_err(|e| {
        let help = miette::Diagnostic::help(&e)
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        format!("{e}{help}")
    })
}

/// One node's SSH connection (or why there is none), made once per run.
pub(super) type ConnSlot = Arc<tokio::sync::OnceCell<Result<Arc<Conn>, String>>>;

impl Ctx {
    /// SSH connections to `targets`, opened in parallel (at most `spec.ssh.concurrency` at a
    /// time, 0 = all) and kept for the rest of the run. A node that cannot be reached gets
    /// its error instead; the others are unaffected. The cache is locked only to find a node's
    /// slot, never while connecting: overlapping stages connect to different nodes at once,
    /// and two asking for one node share its connection.
    pub async fn connect(&self, targets: &[Target]) -> Vec<(Target, Result<Arc<Conn>, String>)> {
        let slots: Vec<ConnSlot> = {
            let mut cache = self.lock_ssh();
            (targets.iter())
                .map(|t| cache.entry(t.node.clone()).or_default().clone())
                .collect()
        };
        if slots.iter().any(|s| !s.initialized())
            && let Err(e) = self.open_runner_access().await
        {
            let why = e.to_string();
            return (targets.iter())
                .map(|t| (t.clone(), Err(why.clone())))
                .collect();
        }
        let mut opts = ssh::Options::from_config(&self.config, &self.state_dir());
        if !self.writable() {
            // `plan`/`status`/dry runs write nothing into the state directory: host keys seen
            // for the first time and node logs go to a scratch copy beside the control sockets.
            let scratch = opts
                .control_dir
                .join(format!("readonly-{}", std::process::id()));
            let known = scratch.join("known_hosts");
            let verified = scratch.join("known_hosts.verified");
            if crate::fsutil::ensure_private_dir(&scratch).is_ok() && !known.exists() {
                let _ = std::fs::copy(&opts.known_hosts, &known);
                let _ = std::fs::copy(&opts.verified, &verified);
            }
            opts.known_hosts = known;
            opts.verified = verified;
            opts.log_dir = scratch.join("logs");
        }
        let cap = match self.config.cluster.spec.ssh.concurrency {
            0 => targets.len().max(1),
            n => n,
        };
        let aws = if self.config.cluster.spec.ssh.known_hosts.as_str() == "console" {
            Some(self.aws().await.clone())
        } else {
            None
        };
        let pairs: Vec<(Target, ConnSlot)> = targets.iter().cloned().zip(slots).collect();
        crate::fanout::each(pairs, cap, |(target, slot)| {
            self.connect_slot(target, slot, &opts, aws.as_ref())
        })
        .await
    }

    /// `target`'s connection: made once in `slot`, shared by everyone asking for it.
    async fn connect_slot(
        &self,
        target: Target,
        slot: ConnSlot,
        opts: &ssh::Options,
        aws: Option<&Aws>,
    ) -> (Target, Result<Arc<Conn>, String>) {
        let result = slot
            .get_or_init(|| {
                // On a task of its own, as the ssh and ssh-keyscan children it waits for need.
                let work = connect_one(
                    target.clone(),
                    opts.clone(),
                    aws.cloned(),
                    self.events.clone(),
                    crate::stage_scope::current(),
                );
                async move {
                    match tokio::spawn(work).await {
                        Ok(result) => result,
                        Err(e) => Err(format!("the connection task ended: {e}")),
                    }
                }
            })
            .await
            .clone();
        if let Err(e) = &result
            && !self.writable()
        {
            let first = e.lines().next().unwrap_or_default();
            let line = format!("node {} ({first})", target.node);
            let mut blind = self.lock_blind();
            if !blind.contains(&line) {
                blind.push(line);
            }
        }
        (target, result)
    }

    pub(super) fn lock_ssh(&self) -> MutexGuard<'_, BTreeMap<String, ConnSlot>> {
        self.ssh.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets (and closes) the SSH connection to `node`, e.g. after it rebooted: the next
    /// use connects again.
    pub async fn disconnect(&self, node: &str) {
        let gone = self.lock_ssh().remove(node);
        if let Some(slot) = gone
            && let Ok(slot) = Arc::try_unwrap(slot)
            && let Some(Ok(conn)) = slot.into_inner()
            && let Ok(conn) = Arc::try_unwrap(conn)
        {
            conn.close().await;
        }
    }

    /// The nodes' instances and addresses to connect to: the journal's record when every node
    /// has a configured `address` (nothing is read from it but instance ids), else what EC2
    /// answers for the cluster's tags now (the journal may have come from S3; see
    /// [`crate::aws::live`]).
    pub async fn node_records(&self) -> Result<Option<crate::nodes::InstancesOut>> {
        let journal: Option<crate::nodes::InstancesOut> =
            self.state().output(crate::nodes::INSTANCES);
        // Nothing launched yet (no record): the stages name `instances` as their prerequisite.
        if journal.is_none() || self.config.nodes().all(|n| n.address.is_some()) {
            return Ok(journal);
        }
        let aws = self.aws().await;
        crate::aws::live::nodes(aws, journal.as_ref())
            .await
            .map(Some)
    }

    /// Connects to the nodes `keep` selects (addresses from config or the `instances` record);
    /// unreachable nodes come back as failures, the others as open connections.
    pub async fn connect_nodes(
        &self,
        stage: &'static str,
        keep: impl Fn(&Target) -> bool,
    ) -> Result<(Vec<(Target, Arc<Conn>)>, Vec<NodeFailure>)> {
        let out = self.node_records().await?;
        let keep_named = |node: &str, role| {
            keep(&Target {
                node: node.to_string(),
                role,
                host: String::new(),
                port: 0,
                instance_id: None,
            })
        };
        let targets = ssh::targets_of(&self.config, out.as_ref(), stage, keep_named)?;
        let mut conns = Vec::new();
        let mut failures = Vec::new();
        for (target, result) in self.connect(&targets).await {
            match result {
                Ok(conn) => conns.push((target, conn)),
                Err(message) => failures.push(NodeFailure {
                    node: target.node,
                    step: "connect".into(),
                    code: None,
                    tail: message,
                }),
            }
        }
        Ok((conns, failures))
    }
}
