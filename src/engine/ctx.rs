//! [`Ctx`]: the config, the journal, lazy clients (AWS, SSH pool, Kubernetes API), counters
//! and what a read-only run could not look at.

use crate::aws::{Aws, CallCounter};
use crate::config::{ApiAccess, Config};
use crate::error::Result;
use crate::event::Events;
use crate::ssh::run::NodeFailure;
use crate::ssh::{self, Conn, Target};
use crate::state::{State, Store};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

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
        Some(aws) => super::console_pins::console_pins(aws, &target, &mut opts).await,
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
type ConnSlot = Arc<tokio::sync::OnceCell<Result<Arc<Conn>, String>>>;

/// Everything a stage may use: config, journal, event sink, counters.
pub struct Ctx {
    /// The validated config.
    pub config: Arc<Config>,
    /// Where events go.
    pub events: Events,
    store: Store,
    state: Mutex<State>,
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    calls: CallCounter,
    aws: tokio::sync::OnceCell<Aws>,
    ssh: Mutex<BTreeMap<String, ConnSlot>>,
    api: tokio::sync::OnceCell<crate::api::Access>,
    /// `--playbooks DIR`: playbooks found there replace the embedded ones.
    pub playbooks: Option<PathBuf>,
    /// `--force-reset`: reset a half-initialised control plane instead of stopping.
    pub force_reset: bool,
    /// `--no-wait`: apply the root app without waiting for application health.
    pub no_wait: bool,
    /// `up` overlaps stages per node (off with `--no-pipeline`).
    pub pipeline: bool,
    /// Per-node milestones of overlapping stages.
    pub board: super::board::Board,
    /// What a read-only run could not look at (unreachable nodes, refused host keys).
    blind: Mutex<Vec<String>>,
    /// The SSH rule opened for this machine (`allowedSshCidrs: self`), revoked at the end.
    runner_rule: tokio::sync::Mutex<Option<super::runner_access::Opened>>,
}

impl Ctx {
    /// Builds a context over a loaded state.
    pub fn new(config: Arc<Config>, events: Events, store: Store, state: State) -> Self {
        Ctx {
            config,
            events,
            store,
            state: Mutex::new(state),
            counters: Mutex::new(BTreeMap::new()),
            calls: CallCounter::default(),
            aws: tokio::sync::OnceCell::new(),
            ssh: Mutex::new(BTreeMap::new()),
            api: tokio::sync::OnceCell::new(),
            playbooks: None,
            force_reset: false,
            no_wait: false,
            pipeline: false,
            board: super::board::Board::default(),
            blind: Mutex::new(Vec::new()),
            runner_rule: tokio::sync::Mutex::new(None),
        }
    }

    /// With `allowedSshCidrs: self`, opens port 22 to this machine once per run (before the
    /// first SSH connection, once the security group exists).
    async fn open_runner_access(&self) -> Result<()> {
        if !super::runner_access::wanted(&self.config) {
            return Ok(());
        }
        let mut rule = self.runner_rule.lock().await;
        if rule.is_some() {
            return Ok(());
        }
        let aws = self.aws().await;
        let run = self.store.run_id();
        *rule = super::runner_access::open(aws, &self.config, &run, self.writable()).await?;
        if let Some(r) = rule.as_ref() {
            let what = format!("port 22 open to this machine ({}) for this run", r.cidr);
            self.events.progress("ssh", None, what);
        }
        Ok(())
    }

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

    fn lock_ssh(&self) -> MutexGuard<'_, BTreeMap<String, ConnSlot>> {
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

    /// What this read-only run could not look at, in the order found.
    pub fn blind_spots(&self) -> Vec<String> {
        self.lock_blind().clone()
    }

    fn lock_blind(&self) -> MutexGuard<'_, Vec<String>> {
        self.blind.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes every SSH master connection of this run, then revokes the SSH rule opened for
    /// this machine (`allowedSshCidrs: self`); a failure to revoke is a warning (the next run
    /// revokes it).
    pub async fn close_ssh(&self) {
        let slots = std::mem::take(&mut *self.lock_ssh());
        for slot in slots.into_values() {
            if let Ok(slot) = Arc::try_unwrap(slot)
                && let Some(Ok(conn)) = slot.into_inner()
                && let Ok(conn) = Arc::try_unwrap(conn)
            {
                conn.close().await;
            }
        }
        let Some(rule) = self.runner_rule.lock().await.take() else {
            return;
        };
        match super::runner_access::close(self.aws().await, &rule).await {
            Ok(()) => self
                .events
                .progress("ssh", None, format!("port 22 closed to {}", rule.cidr)),
            Err(e) => tracing::warn!(
                "could not revoke the SSH rule {} for {} ({e}); the next run revokes it",
                rule.rule,
                rule.cidr
            ),
        }
    }

    /// Pushes the state to its remote store (if any) and releases the remote lock.
    pub async fn close_state(&self) -> Result<()> {
        self.store.close().await
    }

    /// A Kubernetes API client (tunnel opened on first use, kept for the run).
    pub async fn kube(&self, stage: &'static str) -> Result<kube::Client> {
        let access = self
            .api
            .get_or_try_init(|| async {
                let path = crate::nodes::admin_conf(&self.state_dir());
                let admin = crate::api::load_admin_conf(&path, stage).await?;
                match self.config.cluster.spec.kubernetes.api_access {
                    ApiAccess::Tunnel => {
                        let (_, conn) = self.control_plane(stage).await?;
                        let dir =
                            ssh::Options::from_config(&self.config, &self.state_dir()).control_dir;
                        let route = crate::api::Route::Tunnel {
                            conn: &conn,
                            control_dir: &dir,
                        };
                        crate::api::connect(admin, route).await
                    }
                    ApiAccess::Direct => {
                        let out = self.node_records().await?;
                        let lb = self.state().output(crate::nodes::LOAD_BALANCER);
                        let host = crate::nodes::api_host(&self.config, out.as_ref(), lb);
                        crate::api::connect(admin, crate::api::Route::Direct { host }).await
                    }
                }
            })
            .await?;
        Ok(access.client.clone())
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

    /// AWS clients, built on first use (commands that never touch AWS never build them).
    pub async fn aws(&self) -> &Aws {
        self.aws
            .get_or_init(|| Aws::connect(&self.config, self.calls.clone()))
            .await
    }

    /// AWS calls made since the last call, by operation.
    pub fn take_aws_calls(&self) -> BTreeMap<String, u64> {
        self.calls.take()
    }

    /// The journal (locked for the duration of the guard; do not hold across awaits).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the journal and writes it atomically (no-op for read-only stores).
    pub fn update_state(&self, f: impl FnOnce(&mut State)) -> Result<()> {
        let mut state = self.state();
        f(&mut state);
        if self.writable() {
            self.store.save(&state)?;
        }
        Ok(())
    }

    /// The cluster's state directory (logs, keys, caches).
    pub fn state_dir(&self) -> PathBuf {
        self.store.dir().to_path_buf()
    }

    /// True when this run holds the lock and writes state and caches (not plan/status).
    pub fn writable(&self) -> bool {
        self.store.is_locked()
    }

    /// Adds every `(name, n)` to the stage's counters.
    pub fn count_all(&self, counters: impl IntoIterator<Item = (&'static str, u64)>) {
        for (name, n) in counters {
            self.count(name, n);
        }
    }

    /// The pinned manifest `m` (from `path:` or its URL), checked against its sha256 and cached
    /// in the state directory (the cache is only written by runs that hold the lock).
    pub async fn manifest(
        &self,
        m: &crate::config::Manifest,
        what: &str,
        stage: &str,
    ) -> Result<String> {
        let cache = crate::fetch::Cache {
            dir: self.state_dir().join("cache"),
            writable: self.writable(),
        };
        let local = m.path.as_ref().map(|p| self.config.resolve_path(p));
        crate::fetch::manifest(&cache, m, local.as_deref(), what, stage).await
    }

    /// Adds `n` to a named counter reported with the current stage (e.g. `steps.executed`).
    pub fn count(&self, name: &str, n: u64) {
        *self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((crate::stage_scope::current(), name.to_string()))
            .or_default() += n;
    }

    /// Returns and resets the current stage's counters (and those counted outside any stage).
    pub(super) fn take_counters(&self) -> BTreeMap<String, u64> {
        let stage = crate::stage_scope::current();
        let mut all = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BTreeMap::new();
        all.retain(|(s, name), n| {
            let mine = *s == stage || s.is_empty();
            if mine {
                *out.entry(name.clone()).or_default() += *n;
            }
            !mine
        });
        out
    }
}
