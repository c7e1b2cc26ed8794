//! Stage `init-master`: `kubeadm init` from a generated config on the control-plane node, wait
//! for `/healthz`, add kube-proxy once the API answers, and fetch admin.conf (0600).

use std::time::Duration;

use async_trait::async_trait;

mod hardening;
mod peers;
mod steps;

use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::stages::shared::control_plane::{
    HEALTHZ, INIT_DONE, INIT_FAILED, INIT_STARTED, KUBE_PROXY_MARKER, MasterState, RESTORED,
    encryption_config, facts, fetch_admin, inspect, local_admin, require_endpoint, wait_registered,
};
use crate::stages::shared::{backup_timer, ids};
use steps::{Steps, delete_init_tokens};

/// Stage id.
pub const ID: &str = ids::INIT_MASTER;
/// The kubeadm config written on the control-plane node.
pub const INIT_CONFIG: &str = "/etc/kubernetes/ecoboot/kubeadm-init.yaml";
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(300);

/// The `init-master` stage.
pub struct InitMaster;

/// What init-master found: the control plane's state (none when it could not be reached at
/// probe time; apply then looks again) and whether the local admin.conf is missing.
pub struct InitPlan {
    node: String,
    unreachable: Option<String>,
    master: Option<MasterState>,
    fetch_admin: bool,
    /// What the scheduled-backup timer still needs ([`backup_timer`]).
    timer: Option<Action>,
    /// What the hardening of an initialised control plane still needs ([`hardening`]).
    hardening: Option<Action>,
    /// What the other control planes holding the cluster still need ([`peers`]).
    peers: Vec<Action>,
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
        todo.extend(self.hardening.clone());
        todo.extend(self.timer.clone());
        todo.extend(self.peers.clone());
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

    /// In a pipelined `up`: as soon as the control planes are prepared (the board), while the
    /// other nodes still prepare.
    fn after(&self) -> Option<&'static [&'static str]> {
        Some(&[ids::NETWORK, ids::IAM, ids::INSTANCES, ids::LOAD_BALANCER])
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<InitPlan>> {
        // Pipelined `up`: the control planes' own preparation, not every node's.
        for cp in cx.config.control_planes() {
            if let Err(tail) = cx.board.wait(ids::PREPARE_NODES, cp.name.as_str()).await {
                return Err(Error::StageFailed {
                    stage: ID.into(),
                    message: tail,
                    help: "fix what stopped prepare-nodes on it (reported above), then rerun"
                        .into(),
                });
            }
        }
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
                    hardening: None,
                    peers: Vec::new(),
                }));
            }
            Err(e) => return Err(e),
        };
        let m = inspect(&conn).await?;
        let fetch_admin = !local_admin(cx).exists();
        let timer = backup_timer::probe(&cx.config, &conn, &target.node).await?;
        let hard = match m.initialised() && !m.interrupted() {
            true => hardening::differs(&cx.config, &hardening::seen(&conn).await?, &target.node)?,
            false => None,
        };
        let mut peers = Vec::new();
        if m.initialised() {
            for (t, c) in peers::others(cx, &target).await? {
                peers.extend(peers::pending(cx, &t.node, &c).await?);
            }
        }
        let done = hard.is_none()
            && peers.is_empty()
            && !m.interrupted()
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
                hardening: hard,
                peers,
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
            require_endpoint(cx, ID)?;
            wait_registered(cx, &target, ID).await?;
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
        peers::converge(cx, &target, &conn, None).await?;
        let others = peers::others(cx, &target).await?;
        if !others.is_empty() {
            let key = encryption_config(&conn).await?;
            for (t, c) in others {
                peers::converge(cx, &t, &c, key.as_deref()).await?;
            }
        }
        cx.events.progress(
            ID,
            Some(&target.node),
            "control plane ready; admin.conf fetched",
        );
        Ok(())
    }
}
