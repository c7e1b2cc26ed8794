//! Stage `init-master`: `kubeadm init` from a generated config on the control-plane node, wait
//! for `/healthz`, add kube-proxy once the API answers, and fetch admin.conf (0600).

use std::time::Duration;

use async_trait::async_trait;

pub use super::init_master_steps::fetch_admin;
use super::init_master_steps::{Steps, delete_init_tokens};
use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::kubeadm;
use crate::nodes::{self, InstancesOut};
use crate::ssh::{Conn, Target};

/// Stage id.
pub const ID: &str = "init-master";
/// The kubeadm config written on the control-plane node.
pub const INIT_CONFIG: &str = "/etc/kubernetes/ecoboot/kubeadm-init.yaml";
pub(super) const KUBE_PROXY_MARKER: &str = "/etc/kubernetes/ecoboot/kube-proxy-added";
/// Markers: `init-started` right before `kubeadm init`, `init-done` after it succeeded, and
/// `init-failed` when ecoboot saw it fail. `init-started` alone is an init that ecoboot started
/// and that was killed midway (ecoboot never saw its end): ecoboot resets and repeats it on its
/// own. A failed init is left for a human (`--force-reset`).
pub(super) const INIT_STARTED: &str = "/etc/kubernetes/ecoboot/init-started";
pub(super) const INIT_DONE: &str = "/etc/kubernetes/ecoboot/init-done";
pub(super) const INIT_FAILED: &str = "/etc/kubernetes/ecoboot/init-failed";
/// Left by `ecoboot restore` once the backup's pki and etcd data directory are in place: the
/// next init uses them (`DirAvailable--var-lib-etcd` ignored) instead of calling them leftovers.
pub const RESTORED: &str = "/etc/kubernetes/ecoboot/restored";
/// The API server's health as the control plane's own kubectl sees it.
pub const HEALTHZ: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /healthz";
pub(super) const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(300);

/// The `init-master` stage.
pub struct InitMaster;

/// What the control-plane node looks like.
#[derive(Debug, Default, Clone)]
pub struct MasterState {
    /// `/etc/kubernetes/admin.conf` exists.
    pub admin: bool,
    /// `/etc/kubernetes/pki/ca.crt` exists.
    pub pki: bool,
    /// `/healthz` answers ok.
    pub healthy: bool,
    /// kube-proxy was added after init.
    pub kube_proxy: bool,
    /// ecoboot started `kubeadm init` here.
    pub started: bool,
    /// ... and it finished.
    pub done: bool,
    /// ... and ecoboot saw it fail.
    pub failed: bool,
    /// `ecoboot restore` put a backup's pki and etcd data in place for the next init.
    pub restored: bool,
}

impl MasterState {
    /// An init ecoboot started that never finished: reset and repeat it.
    pub fn interrupted(&self) -> bool {
        self.started && !self.done && !self.failed
    }

    /// A failed init, or leftovers of someone else's: a human decides (`--force-reset`).
    pub fn half_initialised(&self) -> bool {
        self.failed || (!self.started && !self.done && self.pki && !self.admin && !self.restored)
    }

    /// The control plane was initialised (by ecoboot, or before ecoboot managed it).
    pub fn initialised(&self) -> bool {
        self.admin && (self.done || (!self.started && !self.failed))
    }
}

/// Probes the control-plane node in one round trip.
pub async fn inspect(conn: &Conn) -> Result<MasterState> {
    let script = format!(
        "[ -e /etc/kubernetes/admin.conf ] && echo admin\n[ -e /etc/kubernetes/pki/ca.crt ] && echo pki\n[ -e {KUBE_PROXY_MARKER} ] && echo kube-proxy\n[ -e {INIT_STARTED} ] && echo started\n[ -e {INIT_DONE} ] && echo done\n[ -e {INIT_FAILED} ] && echo failed\n[ -e {RESTORED} ] && echo restored\n{HEALTHZ} >/dev/null 2>&1 && echo healthy\ntrue"
    );
    let out = conn
        .run(
            "inspect control plane",
            &script,
            Duration::from_secs(60),
            true,
        )
        .await?;
    let has = |w: &str| out.stdout.lines().any(|l| l == w);
    Ok(MasterState {
        admin: has("admin"),
        pki: has("pki"),
        healthy: has("healthy"),
        kube_proxy: has("kube-proxy"),
        started: has("started"),
        done: has("done"),
        failed: has("failed"),
        restored: has("restored"),
    })
}

/// kubeadm facts of a node: private IP and provider ID from `instances`, else its address.
pub fn facts(cx: &Ctx, target: &Target) -> kubeadm::NodeFacts {
    let out: Option<InstancesOut> = cx.state().output(nodes::INSTANCES);
    let node = out.as_ref().and_then(|o| o.nodes.get(&target.node));
    kubeadm::NodeFacts {
        private_ip: node
            .map(|n| n.private_ip.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| target.host.clone()),
        public_address: target.host.clone(),
        public_ip: node.map(|n| n.public_ip.clone()).unwrap_or_default(),
        provider_id: node
            .filter(|n| !n.instance_id.is_empty())
            .map(|n| format!("aws:///{}/{}", n.az, n.instance_id)),
    }
}

pub(super) fn local_admin(cx: &Ctx) -> std::path::PathBuf {
    nodes::admin_conf(&cx.state_dir())
}

/// What init-master found: the control plane's state (none when it could not be reached at
/// probe time; apply then looks again) and whether the local admin.conf is missing.
pub struct InitPlan {
    node: String,
    unreachable: Option<String>,
    master: Option<MasterState>,
    fetch_admin: bool,
    /// What the scheduled-backup timer still needs ([`super::backup_timer`]).
    timer: Option<Action>,
}

impl StagePlan for InitPlan {
    fn actions(&self) -> Vec<Action> {
        let node = self.node.as_str();
        let mut todo = Vec::new();
        if let Some(why) = &self.unreachable {
            todo.push(Action::new(node, why.clone()));
        }
        let Some(m) = &self.master else {
            return todo;
        };
        if m.interrupted() {
            todo.push(Action::new(
                node,
                "an earlier ecoboot run was stopped during kubeadm init: kubeadm reset -f, then init again",
            ));
        } else if m.half_initialised() {
            todo.push(Action::new(node, "half-initialised control plane (an earlier kubeadm init failed or was left unfinished): `kubeadm reset -f` needed (--force-reset)"));
        }
        if !m.initialised() {
            todo.push(Action::new(
                node,
                format!("kubeadm init --config {INIT_CONFIG}"),
            ));
        } else if !m.healthy {
            todo.push(Action::new(node, "wait for the API server's /healthz"));
        }
        if !m.kube_proxy {
            todo.push(Action::new(node, "add the kube-proxy addon"));
        }
        if self.fetch_admin {
            todo.push(Action::new(
                node,
                "fetch admin.conf into the state directory (0600)",
            ));
        }
        todo.extend(self.timer.clone());
        todo
    }
}

#[async_trait]
impl Stage for InitMaster {
    type Plan = InitPlan;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Initialise the control plane with kubeadm"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<InitPlan>> {
        let node = cx.config.control_plane().name.value.clone();
        let (target, conn) = match cx.control_plane(ID).await {
            Ok(found) => found,
            Err(Error::StageFailed { message, .. }) => {
                return Ok(Found::Todo(InitPlan {
                    node,
                    unreachable: Some(message),
                    master: None,
                    fetch_admin: true,
                    timer: None,
                }));
            }
            Err(e) => return Err(e),
        };
        let m = inspect(&conn).await?;
        let fetch_admin = !local_admin(cx).exists();
        let timer = super::backup_timer::probe(&cx.config, &conn).await?;
        let done = !m.interrupted()
            && !m.half_initialised()
            && m.initialised()
            && m.healthy
            && m.kube_proxy
            && !fetch_admin
            && timer.is_none();
        Ok(if done {
            Found::done(format!(
                "control plane {} initialised and healthy",
                target.node
            ))
        } else {
            Found::Todo(InitPlan {
                node,
                unreachable: None,
                master: Some(m),
                fetch_admin,
                timer,
            })
        })
    }

    async fn apply(&self, cx: &Ctx, plan: InitPlan) -> Result<()> {
        let (target, conn) = cx.control_plane(ID).await?;
        let m = match plan.master {
            Some(m) => m,
            None => inspect(&conn).await?,
        };
        let steps = Steps {
            cx,
            conn: &conn,
            node: &target.node,
        };
        if m.half_initialised() && !cx.force_reset {
            return Err(steps.fail(
                "half-initialised control plane: an earlier kubeadm init failed or was left unfinished by someone else".into(),
                "recover with `sudo kubeadm reset -f` on the node, or rerun with `--force-reset` to let ecoboot do it",
            ));
        }
        if m.interrupted() && m.restored {
            // A reset would delete the restored etcd data: the restore itself must run again.
            return Err(steps.fail(
                "the kubeadm init of a restore was interrupted".into(),
                "run the same `ecoboot restore --from s3://...` again: it puts the backup back in place and initialises the control plane from it",
            ));
        }
        if m.interrupted() || (m.half_initialised() && cx.force_reset) {
            steps.reset(m.interrupted()).await?;
        }
        if !m.initialised() {
            steps.init(&target).await?;
        }
        steps.wait_healthy().await?;
        if !m.kube_proxy {
            steps.add_kube_proxy().await?;
        }
        steps.fetch_admin().await?;
        if !m.initialised() {
            // This run ran `kubeadm init`; a run killed before here leaves the token to its TTL.
            delete_init_tokens(&conn).await?;
        }
        if let Some(todo) = super::backup_timer::probe(&cx.config, &conn).await? {
            super::backup_timer::apply(&cx.config, &conn, ID).await?;
            cx.events.progress(ID, Some(&target.node), todo.what);
        }
        cx.events.progress(
            ID,
            Some(&target.node),
            "control plane ready; admin.conf fetched",
        );
        Ok(())
    }
}
