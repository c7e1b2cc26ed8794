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

/// Everything a stage may use: config, journal, event sink, counters.
pub struct Ctx {
    /// The validated config.
    pub config: Arc<Config>,
    /// Where events go.
    pub events: Events,
    store: Store,
    state: Mutex<State>,
    counters: Mutex<BTreeMap<String, u64>>,
    calls: CallCounter,
    aws: tokio::sync::OnceCell<Aws>,
    ssh: tokio::sync::Mutex<BTreeMap<String, Result<Arc<Conn>, String>>>,
    api: tokio::sync::OnceCell<crate::api::Access>,
    /// `--playbooks DIR`: playbooks found there replace the embedded ones.
    pub playbooks: Option<PathBuf>,
    /// `--force-reset`: reset a half-initialised control plane instead of stopping.
    pub force_reset: bool,
    /// `--no-wait`: apply the root app without waiting for application health.
    pub no_wait: bool,
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
            ssh: tokio::sync::Mutex::new(BTreeMap::new()),
            api: tokio::sync::OnceCell::new(),
            playbooks: None,
            force_reset: false,
            no_wait: false,
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
    /// its error instead; the others are unaffected.
    pub async fn connect(&self, targets: &[Target]) -> Vec<(Target, Result<Arc<Conn>, String>)> {
        if targets
            .iter()
            .any(|t| !self.ssh.try_lock().is_ok_and(|c| c.contains_key(&t.node)))
            && let Err(e) = self.open_runner_access().await
        {
            let why = e.to_string();
            return (targets.iter())
                .map(|t| (t.clone(), Err(why.clone())))
                .collect();
        }
        let mut cache = self.ssh.lock().await;
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
        let gate = Arc::new(tokio::sync::Semaphore::new(cap));
        let mut set = tokio::task::JoinSet::new();
        for target in targets.iter().filter(|t| !cache.contains_key(&t.node)) {
            let (target, opts, gate, events) = (
                target.clone(),
                opts.clone(),
                gate.clone(),
                self.events.clone(),
            );
            let aws = aws.clone();
            set.spawn(async move {
                let _permit = gate.acquire().await.expect("open");
                events.progress(
                    "ssh",
                    Some(&target.node),
                    format!("connecting to {}:{}", target.host, target.port),
                );
                let mut opts = opts;
                let result = match &aws {
                    Some(aws) => super::console_pins::console_pins(aws, &target, &mut opts).await,
                    None => Ok(()),
                };
                let result = match result {
                    Ok(()) => Conn::connect(&target, &opts).await,
                    Err(e) => Err(e),
                };
                let result = result.map(Arc::new).map_err(|e| {
                    let help = miette::Diagnostic::help(&e)
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default();
                    format!("{e}{help}")
                });
                (target.node.clone(), result)
            });
        }
        while let Some(joined) = set.join_next().await {
            let (node, result) = joined.expect("connect task");
            if let Err(e) = &result
                && !self.writable()
            {
                let first = e.lines().next().unwrap_or_default();
                self.lock_blind().push(format!("node {node} ({first})"));
            }
            cache.insert(node, result);
        }
        targets
            .iter()
            .map(|t| {
                (
                    t.clone(),
                    cache.get(&t.node).cloned().expect("connected above"),
                )
            })
            .collect()
    }

    /// Forgets (and closes) the SSH connection to `node`, e.g. after it rebooted: the next
    /// use connects again.
    pub async fn disconnect(&self, node: &str) {
        let gone = self.ssh.lock().await.remove(node);
        if let Some(Ok(conn)) = gone
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
        let conns = std::mem::take(&mut *self.ssh.lock().await);
        for conn in conns.into_values().flatten() {
            if let Ok(conn) = Arc::try_unwrap(conn) {
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
        let targets: Vec<_> = ssh::targets(&self.config, out.as_ref(), stage)?
            .into_iter()
            .filter(|t| keep(t))
            .collect();
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

    /// Adds `n` to a named counter reported with the stage (e.g. `aws_calls.mutating`).
    pub fn count(&self, name: &str, n: u64) {
        *self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default() += n;
    }

    pub(super) fn take_counters(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counters.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
