//! Stage `join-workers`: every non-control-plane node joins with a fresh bootstrap token that
//! lives only in memory (15 minutes TTL, deleted after the stage), through a generated
//! JoinConfiguration. A half-joined node (pki present, no kubelet.conf) is reset first.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::Role;
use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::kubeadm;
use crate::ssh::run::{NodeFailure, SKIPPED};
use crate::ssh::{Conn, Target, script};
use crate::stages::shared::control_plane::{facts, inspect};
use crate::stages::shared::ids;
use crate::stages::shared::join_token::{self, JoinToken};

/// Stage id.
pub const ID: &str = ids::JOIN_WORKERS;
const JOIN_CONFIG: &str = "/etc/kubernetes/ecoboot/kubeadm-join.yaml";
const STATE_CHECK: &str = "if [ -e /etc/kubernetes/kubelet.conf ]; then echo \"joined $(sed -n 's/^ *server: *//p' /etc/kubernetes/kubelet.conf | head -n1)\"; elif [ -e /etc/kubernetes/pki/ca.crt ]; then echo half; else echo new; fi";
/// The API server the control plane's own kubeconfig names (where kubelets must point).
const SERVER_CHECK: &str = "sed -n 's/^ *server: *//p' /etc/kubernetes/admin.conf | head -n1";

/// The `join-workers` stage.
pub struct JoinWorkers;

async fn workers(
    cx: &Ctx,
    keep: impl Fn(&str) -> bool,
) -> Result<(Vec<(Target, Arc<Conn>)>, Vec<NodeFailure>)> {
    cx.connect_nodes(ID, |t| t.role == Role::Worker && keep(&t.node))
        .await
}

/// Why a node is in the join plan.
pub enum JoinState {
    /// It could not be reached at probe time (apply tries again).
    Unreachable(String),
    /// Never joined.
    New,
    /// pki present, no kubelet.conf: reset, then join.
    HalfJoined,
    /// Joined to another API server than the control plane's (a control plane restored onto a
    /// new address): reset, then join.
    Elsewhere(String),
}

/// The nodes that have not joined, by name.
pub struct JoinPlan {
    nodes: Vec<(String, JoinState)>,
}

impl StagePlan for JoinPlan {
    fn actions(&self) -> Vec<Action> {
        (self.nodes.iter())
            .map(|(node, state)| match state {
                JoinState::Unreachable(tail) => Action::new(node, format!("unreachable: {tail}")),
                JoinState::New => Action::new(node, "kubeadm join"),
                JoinState::HalfJoined => Action::new(
                    node,
                    "half-joined (pki present, no kubelet.conf): kubeadm reset -f, then join",
                ),
                JoinState::Elsewhere(server) => Action::new(
                    node,
                    format!(
                        "joined to {server}, not to this control plane: kubeadm reset -f, then join"
                    ),
                ),
            })
            .collect()
    }
}

#[async_trait]
impl Stage for JoinWorkers {
    type Plan = JoinPlan;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Join the other nodes with a fresh bootstrap token"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<JoinPlan>> {
        let (conns, unreachable) = workers(cx, |_| true).await?;
        let mut nodes: Vec<(String, JoinState)> = unreachable
            .into_iter()
            .map(|f| (f.node, JoinState::Unreachable(f.tail)))
            .collect();
        let joined = conns.len();
        let server = control_plane_server(cx).await;
        let states = crate::ssh::run::each_node(conns, "check join state", STATE_CHECK).await;
        for (target, out) in states {
            let node = target.node;
            match out?.stdout.trim() {
                "half" => nodes.push((node, JoinState::HalfJoined)),
                joined if joined.starts_with("joined") => {
                    let at = joined.trim_start_matches("joined").trim();
                    if server.as_deref().is_some_and(|s| !at.is_empty() && s != at) {
                        nodes.push((node, JoinState::Elsewhere(at.to_string())));
                    }
                }
                _ => nodes.push((node, JoinState::New)),
            }
        }
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(if nodes.is_empty() {
            Found::done(format!("{joined} node(s) joined"))
        } else {
            Found::Todo(JoinPlan { nodes })
        })
    }

    /// Joins the planned nodes only, with one token created for this apply.
    async fn apply(&self, cx: &Ctx, plan: JoinPlan) -> Result<()> {
        let (_, master) = cx.control_plane(ID).await?;
        if !inspect(&master).await?.admin {
            return Err(Error::Prerequisite {
                stage: ID,
                what: "an initialised control plane".into(),
                needs: ids::INIT_MASTER,
            });
        }
        // The token is made when the first node is ready to join (none: no token at all).
        let token = tokio::sync::OnceCell::new();
        let (conns, mut failures) =
            workers(cx, |node| plan.nodes.iter().any(|(n, _)| n == node)).await?;
        let joined = crate::fanout::each(conns, 0, |(target, conn)| {
            let (token, master) = (&token, &master);
            async move {
                // Pipelined `up`: each node joins as soon as its own preparation is done.
                if let Err(tail) = cx.board.wait(ids::PREPARE_NODES, &target.node).await {
                    let (node, step, code) = (target.node, "prepare-nodes".into(), None);
                    return Some(NodeFailure {
                        node,
                        step,
                        code,
                        tail,
                    });
                }
                let joining = match token
                    .get_or_try_init(|| join_token::create(master, ID))
                    .await
                {
                    Ok(t) => t,
                    Err(e) => {
                        let (node, step, code) = (target.node, "token".into(), None);
                        return Some(NodeFailure {
                            node,
                            step,
                            code,
                            tail: e.to_string(),
                        });
                    }
                };
                join_one(cx, joining, target, conn).await
            }
        })
        .await;
        failures.extend(joined.into_iter().flatten());
        if let Some(token) = token.get() {
            join_token::delete(cx, &master, token, ID).await;
        }
        if failures.is_empty() {
            return Ok(());
        }
        failures.sort_by(|a, b| a.node.cmp(&b.node));
        let lines: Vec<String> = failures.iter().map(|f| format!("  {f}")).collect();
        Err(Error::StageFailed {
            stage: ID.into(),
            message: format!("{} node(s) did not join:\n{}", failures.len(), lines.join("\n")),
            help: "the other nodes joined; fix the cause and rerun `ecoboot stage join-workers`: only the missing nodes join, with a new token".into(),
        })
    }

    fn after(&self) -> Option<&'static [&'static str]> {
        Some(AFTER)
    }
}

/// In a pipelined `up`: once the control plane is initialised, not after every node is
/// prepared (each node waits for its own preparation on the board).
const AFTER: &[&str] = &[
    ids::NETWORK,
    ids::IAM,
    ids::INSTANCES,
    ids::LOAD_BALANCER,
    ids::INIT_MASTER,
];

/// The control plane's API server URL from its admin.conf (None when it cannot be read: the
/// workers' own servers are then not compared).
async fn control_plane_server(cx: &Ctx) -> Option<String> {
    let (_, conn) = cx.control_plane(ID).await.ok()?;
    let out = conn
        .run(
            "control plane server",
            SERVER_CHECK,
            Duration::from_secs(60),
            true,
        )
        .await
        .ok()?;
    let server = out.stdout.trim().trim_matches('"').to_string();
    (out.ok() && !server.is_empty()).then_some(server)
}

/// Joins one node (reset first when half-joined or joined elsewhere; nothing when it joined
/// this control plane meanwhile).
async fn join_one(
    cx: &Ctx,
    joining: &JoinToken,
    target: Target,
    conn: Arc<Conn>,
) -> Option<NodeFailure> {
    let node = (cx.config.nodes())
        .find(|n| n.name.as_str() == target.node)
        .expect("configured node");
    let join = kubeadm::join_config(
        node,
        &facts(cx, &target),
        &joining.endpoint,
        &joining.token,
        &joining.ca_hash,
    );
    let script = format!(
        "if [ -e /etc/kubernetes/kubelet.conf ] && grep -Eq {here} /etc/kubernetes/kubelet.conf; then exit {SKIPPED}; fi\nif [ -e /etc/kubernetes/kubelet.conf ] || [ -e /etc/kubernetes/pki/ca.crt ]; then kubeadm reset -f; fi\nmkdir -p /etc/kubernetes/ecoboot\n{cleanup}\n{write}\nkubeadm join --config {JOIN_CONFIG}\nrc=$?\nrm -f {JOIN_CONFIG}\nexit $rc",
        here = script::quote(&format!(
            "^ *server: *\"?https://{}\"?$",
            joining.endpoint.replace('.', "\\.")
        )),
        write = script::write_file(JOIN_CONFIG, join.as_bytes(), 0o600),
        cleanup = script::remove_on_exit(JOIN_CONFIG),
    );
    cx.events.progress(ID, Some(&target.node), "kubeadm join");
    let out = conn
        .run("kubeadm join", &script, Duration::from_secs(600), true)
        .await;
    let (code, tail) = match out {
        Ok(o) if o.ok() || o.code == Some(SKIPPED) => {
            cx.events.progress(ID, Some(&target.node), "joined");
            return None;
        }
        Ok(o) => (o.code, o.tail(5)),
        Err(e) => (None, e.to_string()),
    };
    Some(NodeFailure {
        node: target.node,
        step: "kubeadm join".into(),
        code,
        tail,
    })
}
