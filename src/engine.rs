//! The stage engine: probe → skip if done → plan → apply → re-probe → record.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use async_trait::async_trait;

use crate::aws::{Aws, CallCounter, is_mutating};
use crate::config::{ApiAccess, Config};
use crate::error::{Error, Result};
use crate::event::{Action, Event, Events, millis};
use crate::retry::{Backoff, Try, retry};
use crate::ssh::run::NodeFailure;
use crate::ssh::{self, Conn, Target};
use crate::state::{StageStatus, State, Store, now};

/// What a read-only probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Nothing to do; the string summarises what exists.
    Done(String),
    /// These actions are needed.
    Todo(Vec<Action>),
}

/// One step of the pipeline. Probes never change anything; applies must be safe to re-run
/// after a crash at any point.
#[async_trait]
pub trait Stage: Send + Sync {
    /// Stable id: state key and `--from/--to/stage` value.
    fn id(&self) -> &'static str;
    /// Human title for logs and plans.
    fn title(&self) -> &'static str;
    /// Looks at the real world and says what is left to do.
    async fn probe(&self, cx: &Ctx) -> Result<Probe>;
    /// Does the work the probe listed.
    async fn apply(&self, cx: &Ctx, todo: &[Action]) -> Result<()>;
}

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
        }
    }

    /// SSH connections to `targets`, opened in parallel (at most `spec.ssh.concurrency` at a
    /// time, 0 = all) and kept for the rest of the run. A node that cannot be reached gets
    /// its error instead; the others are unaffected.
    pub async fn connect(&self, targets: &[Target]) -> Vec<(Target, Result<Arc<Conn>, String>)> {
        let mut cache = self.ssh.lock().await;
        let mut opts = ssh::Options::from_config(&self.config, &self.state_dir());
        if !self.writable() {
            // `plan`/`status`/dry runs write nothing into the state directory: host keys seen
            // for the first time and node logs go to a scratch copy beside the control sockets.
            let scratch = opts
                .control_dir
                .join(format!("readonly-{}", std::process::id()));
            let known = scratch.join("known_hosts");
            if crate::fsutil::ensure_private_dir(&scratch).is_ok() && !known.exists() {
                let _ = std::fs::copy(&opts.known_hosts, &known);
            }
            opts.known_hosts = known;
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
                    Some(aws) => console_pins(aws, &target, &mut opts).await,
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

    /// What this read-only run could not look at, in the order found.
    pub fn blind_spots(&self) -> Vec<String> {
        self.lock_blind().clone()
    }

    fn lock_blind(&self) -> MutexGuard<'_, Vec<String>> {
        self.blind.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes every SSH master connection of this run.
    pub async fn close_ssh(&self) {
        let conns = std::mem::take(&mut *self.ssh.lock().await);
        for conn in conns.into_values().flatten() {
            if let Ok(conn) = Arc::try_unwrap(conn) {
                conn.close().await;
            }
        }
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
                        let cp = self.config.control_plane().name.value.clone();
                        let out: Option<crate::nodes::InstancesOut> =
                            self.state().output(crate::nodes::INSTANCES);
                        let address = crate::nodes::ssh_address(&self.config, &cp, out.as_ref());
                        let (host, _) = crate::nodes::host_port(&address, 22);
                        crate::api::connect(admin, crate::api::Route::Direct { host }).await
                    }
                }
            })
            .await?;
        Ok(access.client.clone())
    }

    /// Connects to the nodes `keep` selects (addresses from config or the `instances` record);
    /// unreachable nodes come back as failures, the others as open connections.
    pub async fn connect_nodes(
        &self,
        stage: &'static str,
        keep: impl Fn(&Target) -> bool,
    ) -> Result<(Vec<(Target, Arc<Conn>)>, Vec<NodeFailure>)> {
        let out: Option<crate::nodes::InstancesOut> = self.state().output(crate::nodes::INSTANCES);
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

    /// The control-plane node and an open connection to it; a diagnostic naming `stage` when
    /// it cannot be reached.
    pub async fn control_plane(&self, stage: &'static str) -> Result<(Target, Arc<Conn>)> {
        let (mut conns, failures) = self
            .connect_nodes(stage, |t| t.role == crate::config::Role::ControlPlane)
            .await?;
        match (conns.pop(), failures.into_iter().next()) {
            (Some(found), _) => Ok(found),
            (None, failure) => Err(Error::StageFailed {
                stage: stage.into(),
                message: format!(
                    "the control-plane node is unreachable: {}",
                    failure.map(|f| f.tail).unwrap_or_default()
                ),
                help:
                    "the control plane must be reachable for this stage; check the node and rerun"
                        .into(),
            }),
        }
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

    fn take_counters(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counters.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// How far the runner goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Probe and apply.
    Apply,
    /// Probe only and report the plan (`plan`, `--dry-run`).
    Plan,
}

impl RunMode {
    /// `Plan` for `--dry-run`, else `Apply`.
    pub fn from_dry_run(dry_run: bool) -> RunMode {
        if dry_run {
            RunMode::Plan
        } else {
            RunMode::Apply
        }
    }
}

/// Runs an ordered list of stages against one context.
pub struct Runner<'a> {
    stages: &'a [Box<dyn Stage>],
    cx: &'a Ctx,
}

impl<'a> Runner<'a> {
    /// A runner over `stages` (already narrowed by `--from/--to`).
    pub fn new(stages: &'a [Box<dyn Stage>], cx: &'a Ctx) -> Self {
        Runner { stages, cx }
    }

    /// Runs every stage in order, stopping at the first failure. Ctrl-C or SIGTERM stops the
    /// current stage, records it as `interrupted` and returns [`Error::Interrupted`].
    pub async fn run(&self, mode: RunMode) -> Result<()> {
        let mut interrupt = std::pin::pin!(shutdown_signal());
        for stage in self.stages {
            tokio::select! {
                result = self.run_stage(stage.as_ref(), mode) => result?,
                () = &mut interrupt => {
                    self.record(stage.id(), |r| {
                        if r.status == StageStatus::Running {
                            r.status = StageStatus::Interrupted;
                            r.finished = Some(now());
                        }
                    })?;
                    self.cx.events.emit(Event::StageFailed {
                        stage: stage.id().into(),
                        duration_ms: 0,
                        message: "interrupted".into(),
                    });
                    return Err(Error::Interrupted);
                }
            }
        }
        Ok(())
    }

    fn record(&self, id: &str, f: impl FnOnce(&mut crate::state::StageRecord)) -> Result<()> {
        self.cx.update_state(|s| f(s.record_mut(id)))
    }

    async fn run_stage(&self, stage: &dyn Stage, mode: RunMode) -> Result<()> {
        let id = stage.id();
        let events = &self.cx.events;
        events.emit(Event::StageStarted {
            stage: id.into(),
            title: stage.title().into(),
        });
        let started = Instant::now();
        self.cx.take_aws_calls();
        let fail = |err: Error| -> Error {
            events.emit(Event::StageFailed {
                stage: id.into(),
                duration_ms: millis(started.elapsed()),
                message: err.to_string(),
            });
            err
        };
        let todo = match stage.probe(self.cx).await {
            Ok(Probe::Done(summary)) => {
                if mode == RunMode::Apply && self.cx.state().record(id).status != StageStatus::Done
                {
                    self.record(id, |r| {
                        r.status = StageStatus::Done;
                        r.finished.get_or_insert_with(now);
                    })?;
                }
                events.emit(Event::StageSkipped {
                    stage: id.into(),
                    message: summary,
                    aws_calls: self.cx.take_aws_calls(),
                });
                return Ok(());
            }
            Ok(Probe::Todo(todo)) => todo,
            Err(Error::Prerequisite { needs, what, .. }) if mode == RunMode::Plan => {
                events.emit(Event::StagePlan {
                    stage: id.into(),
                    actions: vec![Action::new(
                        id,
                        format!("run after `{needs}` provides {what}"),
                    )],
                });
                return Ok(());
            }
            Err(err) => {
                if mode == RunMode::Apply {
                    let message = err.to_string();
                    self.record(id, |r| {
                        r.status = StageStatus::Failed;
                        r.attempts += 1;
                        r.finished = Some(now());
                        r.last_error = Some(message);
                    })?;
                }
                return Err(fail(err));
            }
        };
        events.emit(Event::StagePlan {
            stage: id.into(),
            actions: todo.clone(),
        });
        if mode == RunMode::Plan {
            return Ok(());
        }
        self.record(id, |r| {
            r.status = StageStatus::Running;
            r.started = Some(now());
            r.finished = None;
            r.attempts += 1;
        })?;
        self.cx.take_counters();
        let probe_calls = self.cx.take_aws_calls();
        let result = match stage.apply(self.cx, &todo).await {
            Ok(()) => match stage.probe(self.cx).await {
                Ok(Probe::Done(_)) => Ok(()),
                Ok(Probe::Todo(left)) => Err(Error::Unverified {
                    stage: id.into(),
                    remaining: left
                        .iter()
                        .map(|a| format!("{}: {}", a.target, a.what))
                        .collect::<Vec<_>>()
                        .join("; "),
                }),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.record(id, |r| {
                    r.status = StageStatus::Done;
                    r.finished = Some(now());
                    r.last_error = None;
                })?;
                let mut aws_calls = probe_calls;
                for (op, n) in self.cx.take_aws_calls() {
                    *aws_calls.entry(op).or_default() += n;
                }
                let mut counters = self.cx.take_counters();
                if !aws_calls.is_empty() {
                    let mutating: u64 = aws_calls
                        .iter()
                        .filter(|(op, _)| is_mutating(op))
                        .map(|(_, n)| n)
                        .sum();
                    let total: u64 = aws_calls.values().sum();
                    counters.insert("aws_calls.mutating".into(), mutating);
                    counters.insert("aws_calls.read".into(), total - mutating);
                }
                events.emit(Event::StageDone {
                    stage: id.into(),
                    duration_ms: millis(started.elapsed()),
                    counters,
                    aws_calls,
                });
                Ok(())
            }
            Err(err) => {
                let message = err.to_string();
                self.record(id, |r| {
                    r.status = StageStatus::Failed;
                    r.finished = Some(now());
                    r.last_error = Some(message);
                })?;
                Err(fail(err))
            }
        }
    }
}

/// Resolves when the process receives SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Narrows `stages` to the inclusive range `from..=to` (ids); unknown ids are usage errors.
pub fn select<'s>(
    stages: &'s [Box<dyn Stage>],
    from: Option<&str>,
    to: Option<&str>,
) -> Result<&'s [Box<dyn Stage>]> {
    let index = |id: &str| {
        stages.iter().position(|s| s.id() == id).ok_or_else(|| {
            let ids: Vec<&str> = stages.iter().map(|s| s.id()).collect();
            Error::Usage(format!(
                "unknown stage `{id}`; stages are: {}",
                ids.join(", ")
            ))
        })
    };
    let start = from.map(index).transpose()?.unwrap_or(0);
    let end = to
        .map(index)
        .transpose()?
        .unwrap_or(stages.len().saturating_sub(1));
    if start > end {
        return Err(Error::Usage(format!(
            "--from {} comes after --to {}",
            from.unwrap_or_default(),
            to.unwrap_or_default()
        )));
    }
    Ok(&stages[start..=end])
}

/// `knownHosts: console`: for a node whose key is not known yet, reads the fingerprints its
/// instance's console printed (waiting while the console has not printed them, up to the
/// connect timeout) into `opts.pins`, so the first contact is verified out of band.
async fn console_pins(aws: &Aws, target: &Target, opts: &mut ssh::Options) -> Result<()> {
    if ssh::hostkeys::known(target, &opts.known_hosts).await {
        return Ok(());
    }
    let Some(id) = &target.instance_id else {
        return Err(Error::Ssh {
            node: target.node.clone(),
            message: "no EC2 instance is recorded for this node, so its host key cannot be checked against the instance console".into(),
            help: "run the `instances` stage first; for nodes ecoboot did not launch (bring-your-own addresses) set `spec.ssh.knownHosts: accept-new` or add their keys to known_hosts".into(),
        });
    };
    let polled = retry(
        &Backoff::poll(std::time::Duration::from_secs(5), opts.connect_timeout),
        |_| async {
            match crate::aws::console::host_key_fingerprints(aws, id).await {
                Ok(found) if !found.is_empty() => Try::Done(found),
                Ok(_) => Try::Again(None),
                Err(e) => Try::Fail(Some(e)),
            }
        },
    )
    .await;
    match polled {
        Ok(found) => {
            opts.pins.insert(target.node.clone(), found);
            Ok(())
        }
        Err(Some(e)) => Err(e),
        Err(None) => Err(Error::Ssh {
            node: target.node.clone(),
            message: format!(
                "the console of {id} printed no SSH host key fingerprints within {}s",
                opts.connect_timeout.as_secs()
            ),
            help: "cloud-init prints them at first boot (check `aws ec2 get-console-output`); raise spec.ssh.connectTimeoutSeconds, or set `knownHosts: accept-new` to trust the first key seen".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Reporter;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// The "real world" fake stages look at: which stages have taken effect.
    #[derive(Default)]
    struct World {
        done: [AtomicBool; 4],
        fail_stage: AtomicUsize,
        applies: [AtomicUsize; 4],
    }

    struct Fake {
        n: usize,
        world: Arc<World>,
    }

    const IDS: [&str; 4] = ["one", "two", "three", "four"];

    #[async_trait]
    impl Stage for Fake {
        fn id(&self) -> &'static str {
            IDS[self.n]
        }
        fn title(&self) -> &'static str {
            "fake"
        }
        async fn probe(&self, _: &Ctx) -> Result<Probe> {
            Ok(if self.world.done[self.n].load(Ordering::SeqCst) {
                Probe::Done("exists".into())
            } else {
                Probe::Todo(vec![Action::new(self.id(), "create")])
            })
        }
        async fn apply(&self, _: &Ctx, _: &[Action]) -> Result<()> {
            self.world.applies[self.n].fetch_add(1, Ordering::SeqCst);
            if self.world.fail_stage.load(Ordering::SeqCst) == self.n + 1 {
                return Err(Error::StageFailed {
                    stage: self.id().into(),
                    message: "injected".into(),
                    help: "rerun".into(),
                });
            }
            self.world.done[self.n].store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    struct Sink(Mutex<Vec<Event>>);
    impl Reporter for Sink {
        fn event(&self, e: &Event) {
            self.0.lock().unwrap().push(e.clone());
        }
    }

    fn setup(world: &Arc<World>) -> (Vec<Box<dyn Stage>>, tempfile::TempDir) {
        let stages = (0..4)
            .map(|n| {
                Box::new(Fake {
                    n,
                    world: world.clone(),
                }) as Box<dyn Stage>
            })
            .collect();
        (stages, tempfile::tempdir().unwrap())
    }

    fn ctx(dir: &std::path::Path) -> (Ctx, Arc<Sink>) {
        let sink = Arc::new(Sink(Mutex::new(Vec::new())));
        let store = Store::lock(dir, "test").unwrap();
        let state = store.load("test").unwrap();
        let config = crate::config::tests_support::config();
        (
            Ctx::new(Arc::new(config), Events::new(sink.clone()), store, state),
            sink,
        )
    }

    #[tokio::test]
    async fn failure_then_rerun_resumes_at_the_failed_stage() {
        let world = Arc::new(World::default());
        world.fail_stage.store(3, Ordering::SeqCst);
        let (stages, dir) = setup(&world);
        {
            let (cx, _) = ctx(dir.path());
            let err = Runner::new(&stages, &cx)
                .run(RunMode::Apply)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("injected"));
            let st = cx.state();
            assert_eq!(st.record("two").status, StageStatus::Done);
            assert_eq!(st.record("three").status, StageStatus::Failed);
            assert_eq!(st.record("four").status, StageStatus::Pending);
        }
        world.fail_stage.store(0, Ordering::SeqCst);
        let (cx, sink) = ctx(dir.path());
        Runner::new(&stages, &cx).run(RunMode::Apply).await.unwrap();
        let applies: Vec<usize> = world
            .applies
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .collect();
        assert_eq!(applies, vec![1, 1, 2, 1], "stages 1-2 skipped on the rerun");
        let skipped: Vec<String> = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::StageSkipped { stage, .. } => Some(stage.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(skipped, vec!["one", "two"]);
        assert_eq!(cx.state().record("three").attempts, 2);
    }

    #[tokio::test]
    async fn plan_mode_never_applies_and_from_to_narrow() {
        let world = Arc::new(World::default());
        let (stages, dir) = setup(&world);
        let (cx, sink) = ctx(dir.path());
        let range = select(&stages, Some("two"), Some("three")).unwrap();
        Runner::new(range, &cx).run(RunMode::Plan).await.unwrap();
        assert!(world.applies.iter().all(|a| a.load(Ordering::SeqCst) == 0));
        let planned: Vec<String> = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::StagePlan { stage, .. } => Some(stage.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(planned, vec!["two", "three"]);
        Runner::new(range, &cx).run(RunMode::Apply).await.unwrap();
        assert_eq!(world.applies[0].load(Ordering::SeqCst), 0);
        assert_eq!(world.applies[3].load(Ordering::SeqCst), 0);
        assert!(select(&stages, Some("four"), Some("one")).is_err());
        assert!(select(&stages, Some("nope"), None).is_err());
    }
}
