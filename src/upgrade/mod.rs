//! `ecoboot upgrade`: one Kubernetes minor (or patch) at a time, control plane first, then the
//! other nodes in batches, each cordoned, drained through the Eviction API, upgraded, uncordoned
//! and waited for (Ready at the new kubelet version). Every phase of every node is journaled, so
//! a crash anywhere resumes at the node in progress. Kubelets never run newer than the API
//! server: the control plane's `kubeadm upgrade apply` comes before any kubelet moves.

pub mod drain;
mod journal;
mod node;
pub mod plan;
mod preflight;
pub mod reboot;
mod rolling;
pub mod runtime;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::api::Api;

pub use journal::{Phase, Record};
pub use plan::{UpgradePlan, Version};

use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::retry::{Backoff, Try, retry};

/// Event stage name of the upgrade.
pub const ID: &str = "upgrade";

/// `ecoboot upgrade` options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Target `1.MINOR[.PATCH]`; default: the config's version.
    pub to: Option<String>,
    /// Non-control-plane nodes drained at once.
    pub max_unavailable: usize,
    /// Bound on one node's drain.
    pub drain_timeout: Duration,
}

/// The API server's version.
pub async fn server_version(client: &kube::Client) -> Result<Version> {
    let info = client
        .apiserver_version()
        .await
        .map_err(|e| crate::api::error("get", "/version", e))?;
    Version::parse(&info.git_version).ok_or_else(|| Error::StageFailed {
        stage: ID.into(),
        message: format!("the API server reports version `{}`", info.git_version),
        help: "check the control plane".into(),
    })
}

/// Probes the cluster and returns the plan, or every reason it cannot start.
pub async fn prepare(cx: &Ctx, opts: &Options) -> Result<(UpgradePlan, Record)> {
    let client = cx.kube(ID).await?;
    let now = server_version(&client).await?;
    let wanted = opts
        .to
        .clone()
        .unwrap_or_else(|| cx.config.cluster.spec.kubernetes.version.value.clone());
    let to = Version::parse(&wanted).ok_or_else(|| {
        Error::Usage(format!(
            "`{wanted}` is not a Kubernetes version (1.MINOR[.PATCH])"
        ))
    })?;
    let previous: Option<Record> = cx.state().output(journal::KEY);
    let resuming = previous
        .as_ref()
        .filter(|r| !r.finished() && Version::parse(&r.to).is_some_and(|v| v.minor == to.minor));
    let (from, record) = match resuming {
        Some(r) => (Version::parse(&r.from).unwrap_or(now), r.clone()),
        None => {
            if now.minor == to.minor && to.patch.is_none_or(|p| Some(p) == now.patch) {
                // Already there: nothing to do (the same command twice is not an error).
                let mut plan = UpgradePlan::new(&cx.config, now, now, opts.max_unavailable);
                plan.batches.clear();
                plan.done = true;
                return Ok((plan, previous.unwrap_or_default()));
            }
            if let Some(why) = plan::step_problem(now, to) {
                return Err(Error::Usage(why));
            }
            let mut r = Record {
                from: now.to_string(),
                to: to.to_string(),
                ..Default::default()
            };
            for n in cx.config.nodes() {
                r.nodes.insert(n.name.value.clone(), Phase::Pending);
            }
            (now, r)
        }
    };
    let to = Version::parse(&record.to).unwrap_or(to);
    let plan = UpgradePlan::new(&cx.config, from, to, opts.max_unavailable);
    preflight::check(cx, &client, &plan, &record, opts).await?;
    Ok((plan, record))
}

/// The journal record, shared by the nodes of a batch; every change is saved at once.
struct Journal<'a> {
    cx: &'a Ctx,
    record: std::sync::Mutex<Record>,
    key: &'static str,
}

impl<'a> Journal<'a> {
    fn new(cx: &'a Ctx, record: Record, key: &'static str) -> Self {
        Journal {
            cx,
            record: std::sync::Mutex::new(record),
            key,
        }
    }

    fn phase(&self, node: &str) -> Phase {
        self.lock().phase(node)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Record)) -> Result<()> {
        let mut r = self.lock();
        f(&mut r);
        let key = self.key;
        self.cx.update_state(|s| s.set_output(key, &*r))
    }

    fn set(&self, node: &str, phase: Phase) -> Result<()> {
        self.update(|r| {
            r.nodes.insert(node.into(), phase);
        })
    }

    fn drained(&self, node: &str) -> Result<()> {
        self.update(|r| *r.drains.entry(node.into()).or_default() += 1)
    }
}

/// Runs the plan from where `record` stands.
pub async fn run(cx: &Ctx, plan: &UpgradePlan, record: Record, opts: &Options) -> Result<()> {
    let client = cx.kube(ID).await?;
    let journal = Journal::new(cx, record, journal::KEY);
    journal.update(|_| {})?;
    let cp = plan.control_plane.clone();
    let mut to = Version::parse(&journal.lock().to).unwrap_or(plan.to);
    if journal.phase(&cp) < Phase::Upgraded {
        let (_, conn) = connect(cx, &cp).await?;
        to = node::upgrade_kubeadm(&conn, to).await?;
        journal.update(|r| r.to = to.to_string())?;
        if server_version(&client).await? != to {
            cx.events
                .progress(ID, Some(&cp), format!("kubeadm upgrade apply v{to}"));
            node::apply_control_plane(&conn, to).await?;
        }
    }
    if journal.phase(&cp) < Phase::Done {
        upgrade_one(&journal, &client, &cp, to, true, opts).await?;
    }
    for batch in &plan.batches {
        let todo: Vec<String> = (batch.nodes.iter())
            .filter(|n| journal.phase(n) < Phase::Done)
            .cloned()
            .collect();
        let results = crate::fanout::each(todo, 0, |n| {
            let (journal, client) = (&journal, &client);
            async move { upgrade_one(journal, client, &n, to, false, opts).await }
        })
        .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
    }
    Ok(())
}

/// One node: cordon, drain (once), packages, kubelet restart, uncordon, Ready at `to`.
async fn upgrade_one(
    journal: &Journal<'_>,
    client: &kube::Client,
    name: &str,
    to: Version,
    control_plane: bool,
    opts: &Options,
) -> Result<()> {
    let cx = journal.cx;
    let started = Instant::now();
    let say = |m: String| cx.events.progress(ID, Some(name), m);
    let target = to.to_string();
    if journal.phase(name) < Phase::Upgraded && kubelet_at(client, name, to).await? {
        // A crash after the kubelet restart, before the journal write: the node is upgraded.
        journal.set(name, Phase::Upgraded)?;
    }
    if journal.phase(name) < Phase::Upgraded {
        journal.set(name, Phase::Draining)?;
        drain::cordon(client, name, Some(&target)).await?;
        say("cordoned; draining".into());
        let op = drain::Op {
            stage: ID,
            rerun: "ecoboot upgrade",
        };
        let evicted = drain::drain(client, name, opts.drain_timeout, op, &say).await?;
        journal.drained(name)?;
        say(format!("drained ({evicted} pod(s) evicted)"));
        let (_, conn) = connect(cx, name).await?;
        if !control_plane {
            node::upgrade_kubeadm(&conn, to).await?;
            node::upgrade_node_config(&conn).await?;
        }
        node::upgrade_kubelet(&conn, to).await?;
        journal.set(name, Phase::Upgraded)?;
        say(format!("kubelet {to} installed and restarted"));
    }
    drain::cordon(client, name, None).await?;
    say("uncordoned; waiting until Ready".into());
    wait_ready(cx, client, name, Some(to)).await?;
    journal.set(name, Phase::Done)?;
    say(format!(
        "upgraded to {to} in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

async fn connect(
    cx: &Ctx,
    name: &str,
) -> Result<(crate::ssh::Target, std::sync::Arc<crate::ssh::Conn>)> {
    let (mut conns, failures) = cx.connect_nodes(ID, |t| t.node == name).await?;
    match (conns.pop(), failures.into_iter().next()) {
        (Some(c), _) => Ok(c),
        (None, f) => Err(Error::StageFailed {
            stage: ID.into(),
            message: format!(
                "{name} is unreachable: {}",
                f.map(|f| f.tail).unwrap_or_default()
            ),
            help: "bring the node back and rerun `ecoboot upgrade`; it continues at this node"
                .into(),
        }),
    }
}

/// `name` reports kubelet `to`.
async fn kubelet_at(client: &kube::Client, name: &str, to: Version) -> Result<bool> {
    let nodes: Api<KubeNode> = Api::all(client.clone());
    let n = nodes
        .get(name)
        .await
        .map_err(|e| crate::api::error("get", &format!("node {name}"), e))?;
    let version = (n.status.as_ref())
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.kubelet_version.clone())
        .unwrap_or_default();
    Ok(Version::parse(&version) == Some(to))
}

/// Waits until `name` is Ready (and reports kubelet `to`, when given).
async fn wait_ready(
    cx: &Ctx,
    client: &kube::Client,
    name: &str,
    to: Option<Version>,
) -> Result<()> {
    let nodes: Api<KubeNode> = Api::all(client.clone());
    let timeout = Duration::from_secs(cx.config.cluster.spec.kubernetes.wait_seconds);
    let polled = retry(&Backoff::poll(Duration::from_secs(1), timeout), |_| {
        let nodes = &nodes;
        async move {
            let n = match nodes.get(name).await {
                Ok(n) => n,
                Err(e) => {
                    return Try::Fail(Some(crate::api::error("get", &format!("node {name}"), e)));
                }
            };
            let version = (n.status.as_ref())
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.kubelet_version.clone())
                .unwrap_or_default();
            let ready = crate::stages::shared::node_labels::not_ready(&n).is_none();
            match (ready, to.is_none() || Version::parse(&version) == to) {
                (true, true) => Try::Done(()),
                _ => Try::Again(None),
            }
        }
    })
    .await;
    match polled {
        Ok(()) => Ok(()),
        Err(Some(e)) => Err(e),
        Err(None) => Err(Error::StageFailed {
            stage: ID.into(),
            message: match to {
                Some(to) => format!("{name} is not Ready at kubelet v{to} after {}s", timeout.as_secs()),
                None => format!("{name} is not Ready after {}s", timeout.as_secs()),
            },
            help: "check the kubelet on the node (`journalctl -u kubelet`); rerun `ecoboot upgrade` to continue".into(),
        }),
    }
}
