//! What several stages and day-2 operations know about the control plane: kubeadm's markers
//! on the node, its state in one probe, its kubeadm facts, and the admin.conf fetch.

use std::time::Duration;

use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::kubeadm;
use crate::nodes::{self, InstancesOut};
use crate::ssh::{Conn, Target};
use crate::stages::shared::ids;

/// Marker: kube-proxy was added after init.
pub const KUBE_PROXY_MARKER: &str = "/etc/kubernetes/ecoboot/kube-proxy-added";
/// Markers: `init-started` right before `kubeadm init`, `init-done` after it succeeded, and
/// `init-failed` when ecoboot saw it fail. `init-started` alone is an init that ecoboot started
/// and that was killed midway (ecoboot never saw its end): ecoboot resets and repeats it on its
/// own. A failed init is left for a human (`--force-reset`).
/// See above: `kubeadm init` started.
pub const INIT_STARTED: &str = "/etc/kubernetes/ecoboot/init-started";
/// ... and finished.
pub const INIT_DONE: &str = "/etc/kubernetes/ecoboot/init-done";
/// ... and failed.
pub const INIT_FAILED: &str = "/etc/kubernetes/ecoboot/init-failed";
/// Left by `ecoboot restore` once the backup's pki and etcd data directory are in place: the
/// next init uses them (`DirAvailable--var-lib-etcd` ignored) instead of calling them leftovers.
pub const RESTORED: &str = "/etc/kubernetes/ecoboot/restored";
/// The API server's health as the control plane's own kubectl sees it.
pub const HEALTHZ: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /healthz";

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

/// The EncryptionConfiguration of the control plane holding the cluster (None when Secrets
/// are not encrypted there); its keys are registered for redaction.
pub async fn encryption_config(conn: &Conn) -> Result<Option<String>> {
    let out = conn
        .run_secret(
            "read the encryption configuration",
            &format!(
                "[ -s {e} ] && cat {e} || true",
                e = crate::hardening::ENCRYPTION
            ),
            Duration::from_secs(60),
            true,
        )
        .await?;
    let text = out.stdout;
    for line in text.lines() {
        if let Some(secret) = line.trim().strip_prefix("secret:") {
            crate::ssh::redact::register(secret.trim());
        }
    }
    Ok((!text.trim().is_empty()).then_some(text))
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
        endpoints: endpoints(cx),
    }
}

/// With several control planes, the control-plane endpoint hosts ([`nodes::endpoints`]).
pub fn endpoints(cx: &Ctx) -> Vec<String> {
    nodes::endpoints(&cx.config, cx.state().output(nodes::LOAD_BALANCER))
}

/// [`endpoints`], or the diagnostic naming `load-balancer` when several control planes have
/// no endpoint yet.
pub fn require_endpoint(cx: &Ctx, stage: &'static str) -> Result<()> {
    if cx.config.is_ha() && endpoints(cx).is_empty() {
        return Err(Error::Prerequisite {
            stage,
            what: "the control planes' load balancer".into(),
            needs: ids::LOAD_BALANCER,
        });
    }
    Ok(())
}

/// Several control planes: waits until the load balancer has registered `target`'s instance
/// (AWS takes 3-5 minutes after `load-balancer` registered it). `kubeadm init` talks to the API
/// through the endpoint once the control plane runs, and would time out before that.
pub async fn wait_registered(cx: &Ctx, target: &Target, stage: &'static str) -> Result<()> {
    let Some(id) = target.instance_id.clone().filter(|_| cx.config.is_ha()) else {
        return Ok(());
    };
    let aws = cx.aws().await;
    let deadline = Duration::from_secs(600);
    let backoff = crate::retry::Backoff::poll(Duration::from_secs(10), deadline);
    crate::retry::retry(&backoff, |attempt| {
        let id = &id;
        async move {
            let lb = match crate::aws::nlb::find(aws).await {
                Ok(lb) => lb,
                Err(e) => return crate::retry::Try::Fail(e),
            };
            let waiting =
                (lb.and_then(|l| l.target_group)).is_some_and(|t| t.registering.contains(id));
            if !waiting {
                return crate::retry::Try::Done(());
            }
            if attempt == 1 {
                let what = format!(
                    "waiting for the load balancer to register {id} (AWS takes 3-5 minutes)"
                );
                cx.events.progress(stage, Some(&target.node), what);
            }
            crate::retry::Try::Again(Error::StageFailed {
                stage: stage.into(),
                message: format!(
                    "the load balancer did not register {id} within {} s",
                    deadline.as_secs()
                ),
                help: "look at the target group in the EC2 console (Targets tab), then rerun"
                    .into(),
            })
        }
    })
    .await
}

/// Where the fetched admin.conf lives locally (0600).
pub fn local_admin(cx: &Ctx) -> std::path::PathBuf {
    nodes::admin_conf(&cx.state_dir())
}

/// Fetches `/etc/kubernetes/admin.conf` from the control plane, refuses anything but
/// kubeadm's shape, and writes it into the state directory (0600). `stage` names the
/// operation in diagnostics (init-master, certs).
pub async fn fetch_admin(cx: &Ctx, conn: &Conn, stage: &str) -> Result<()> {
    let fail = |message: String, help: &str| Error::StageFailed {
        stage: stage.into(),
        message: format!("{}: {message}", conn.node),
        help: help.into(),
    };
    let admin = conn
        .run_secret(
            "fetch admin.conf",
            "cat /etc/kubernetes/admin.conf",
            Duration::from_secs(60),
            true,
        )
        .await?;
    if !admin.ok() || admin.stdout.is_empty() {
        return Err(fail(
            "cannot read /etc/kubernetes/admin.conf".into(),
            "check the node",
        ));
    }
    let sanitized = crate::api::admin_conf::sanitize(&admin.stdout).map_err(|why| {
        fail(
            format!("refused the node's /etc/kubernetes/admin.conf: {why}"),
            "kubeadm writes one cluster and one user with client certificate data; a node serving anything else (an exec plugin, a token file) may be compromised: inspect it before trusting it",
        )
    })?;
    crate::fsutil::write_atomic(&local_admin(cx), sanitized.as_bytes(), 0o600)
}
