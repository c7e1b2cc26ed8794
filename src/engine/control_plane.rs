//! Which control plane a command talks to. With one, it is that node. With several, it is a
//! reachable one that holds the cluster, healthy first, in config order; when none holds a
//! cluster yet, the first configured control plane (where `kubeadm init` runs). A replaced,
//! empty control plane is therefore never mistaken for the cluster.

use std::sync::Arc;
use std::time::Duration;

use super::Ctx;
use crate::config::Role;
use crate::error::{Error, Result};
use crate::ssh::{Conn, Target};

/// One round trip: 0 = holds the cluster and its API server answers, 1 = holds it (admin.conf
/// and the etcd manifest) but the API server does not answer, 2 = holds nothing.
fn rank_script() -> String {
    format!(
        "{} || {{ echo 2; exit 0; }}\nkubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /healthz >/dev/null 2>&1 && echo 0 || echo 1",
        crate::kubeadm::HOLDS_CLUSTER
    )
}

impl Ctx {
    /// The control plane to talk to and an open connection to it (see the module doc); a
    /// diagnostic naming `stage` when none can be reached.
    pub async fn control_plane(&self, stage: &'static str) -> Result<(Target, Arc<Conn>)> {
        let (conns, failures) = self
            .connect_nodes(stage, |t| t.role == Role::ControlPlane)
            .await?;
        let unreachable = |why: String| {
            Error::StageFailed {
            stage: stage.into(),
            message: format!("no control plane is reachable: {why}"),
            help: "a control plane must be reachable for this stage; check the nodes (`ecoboot status`) and rerun".into(),
        }
        };
        if conns.len() <= 1 && !self.config.is_ha() {
            let why = failures
                .into_iter()
                .next()
                .map(|f| f.tail)
                .unwrap_or_default();
            return conns.into_iter().next().ok_or_else(|| unreachable(why));
        }
        let order = |node: &str| {
            (self.config.control_planes())
                .position(|n| n.name.as_str() == node)
                .unwrap_or(usize::MAX)
        };
        let ranked = crate::fanout::each(conns, 0, |(target, conn)| async move {
            let rank = match conn
                .run(
                    "which control plane",
                    &rank_script(),
                    Duration::from_secs(60),
                    true,
                )
                .await
            {
                Ok(out) => out.stdout.trim().parse::<u8>().unwrap_or(2),
                Err(_) => 3,
            };
            (rank, target, conn)
        })
        .await;
        let best = (ranked.iter())
            .filter(|(rank, ..)| *rank < 2)
            .min_by_key(|(rank, target, _)| (*rank, order(&target.node)));
        if let Some((_, target, conn)) = best {
            return Ok((target.clone(), conn.clone()));
        }
        // No cluster anywhere: the first configured control plane initialises it.
        let first = self.config.control_plane().name.as_str();
        if let Some((_, target, conn)) = ranked.into_iter().find(|(_, t, _)| t.node == first) {
            return Ok((target, conn));
        }
        let why = (failures.into_iter())
            .find(|f| f.node == first)
            .map(|f| f.tail)
            .unwrap_or_else(|| "it did not answer".into());
        Err(unreachable(format!(
            "no control plane holds a cluster yet and the first one, {first}, is unreachable: {why}"
        )))
    }

    /// Every control plane, connected: the one holding the cluster first, then config order.
    /// All must be reachable (`why` says why, in the diagnostic naming the one that is not).
    pub async fn all_control_planes(
        &self,
        stage: &'static str,
        why: &str,
    ) -> Result<Vec<(Target, Arc<Conn>)>> {
        let (first, _) = self.control_plane(stage).await?;
        let (mut conns, failures) = self
            .connect_nodes(stage, |t| t.role == Role::ControlPlane)
            .await?;
        if let Some(f) = failures.into_iter().next() {
            return Err(Error::StageFailed {
                stage: stage.into(),
                message: format!("control plane {} is unreachable: {}", f.node, f.tail),
                help: format!("{why}: bring it back (or let `ecoboot up` replace it) and rerun"),
            });
        }
        let order = |n: &str| {
            self.config
                .control_planes()
                .position(|c| c.name.as_str() == n)
        };
        conns.sort_by_key(|(t, _)| (t.node != first.node, order(&t.node)));
        Ok(conns)
    }
}
