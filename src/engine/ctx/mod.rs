//! [`Ctx`]: the config, the journal, lazy clients (AWS, SSH pool, Kubernetes API), counters
//! and what a read-only run could not look at.

mod connect;

use crate::aws::{Aws, CallCounter};
use crate::config::{ApiAccess, Config};
use crate::error::Result;
use crate::event::Events;
use crate::ssh;
use crate::state::{State, Store};
use connect::ConnSlot;
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
    counters: Mutex<crate::stage_scope::ByStage>,
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
        crate::stage_scope::take_current(
            &mut self.counters.lock().unwrap_or_else(|p| p.into_inner()),
        )
    }
}
