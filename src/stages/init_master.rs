//! Stage `init-master`: `kubeadm init` from a generated config on the control-plane node, wait
//! for `/healthz`, add kube-proxy once the API answers, and fetch admin.conf (0600).

use std::time::Duration;

use async_trait::async_trait;

use crate::engine::{Ctx, Found, Stage};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::kubeadm::{self, VERSION_PLACEHOLDER};
use crate::nodes::{self, InstancesOut};
use crate::retry::{Backoff, Try, retry};
use crate::ssh::{Conn, Target, script};

/// Stage id.
pub const ID: &str = "init-master";
/// The kubeadm config written on the control-plane node.
pub const INIT_CONFIG: &str = "/etc/kubernetes/ecoboot/kubeadm-init.yaml";
const KUBE_PROXY_MARKER: &str = "/etc/kubernetes/ecoboot/kube-proxy-added";
/// Markers: `init-started` right before `kubeadm init`, `init-done` after it succeeded, and
/// `init-failed` when ecoboot saw it fail. `init-started` alone is an init that ecoboot started
/// and that was killed midway (ecoboot never saw its end): ecoboot resets and repeats it on its
/// own. A failed init is left for a human (`--force-reset`).
const INIT_STARTED: &str = "/etc/kubernetes/ecoboot/init-started";
const INIT_DONE: &str = "/etc/kubernetes/ecoboot/init-done";
const INIT_FAILED: &str = "/etc/kubernetes/ecoboot/init-failed";
const HEALTHZ: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /healthz";
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(300);

/// The `init-master` stage.
pub struct InitMaster;

/// What the control-plane node looks like.
#[derive(Debug, Default)]
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
}

impl MasterState {
    /// An init ecoboot started that never finished: reset and repeat it.
    pub fn interrupted(&self) -> bool {
        self.started && !self.done && !self.failed
    }

    /// A failed init, or leftovers of someone else's: a human decides (`--force-reset`).
    pub fn half_initialised(&self) -> bool {
        self.failed || (!self.started && !self.done && self.pki && !self.admin)
    }

    /// The control plane was initialised (by ecoboot, or before ecoboot managed it).
    pub fn initialised(&self) -> bool {
        self.admin && (self.done || (!self.started && !self.failed))
    }
}

/// Probes the control-plane node in one round trip.
pub async fn inspect(conn: &Conn) -> Result<MasterState> {
    let script = format!(
        "[ -e /etc/kubernetes/admin.conf ] && echo admin\n[ -e /etc/kubernetes/pki/ca.crt ] && echo pki\n[ -e {KUBE_PROXY_MARKER} ] && echo kube-proxy\n[ -e {INIT_STARTED} ] && echo started\n[ -e {INIT_DONE} ] && echo done\n[ -e {INIT_FAILED} ] && echo failed\n{HEALTHZ} >/dev/null 2>&1 && echo healthy\ntrue"
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
        provider_id: node
            .filter(|n| !n.instance_id.is_empty())
            .map(|n| format!("aws:///{}/{}", n.az, n.instance_id)),
    }
}

fn local_admin(cx: &Ctx) -> std::path::PathBuf {
    nodes::admin_conf(&cx.state_dir())
}

/// Deletes the bootstrap token `kubeadm init` created (found by its description): joins use
/// their own short-lived tokens, so nothing should be able to join with it. Its TTL is 15
/// minutes, so a run killed before this point leaves it valid no longer than that.
async fn delete_init_tokens(conn: &Conn) -> Result<()> {
    let listed = conn
        .run_secret(
            "list bootstrap tokens",
            "kubeadm token list -o json",
            Duration::from_secs(60),
            true,
        )
        .await?;
    for id in init_token_ids(&listed.stdout) {
        let out = conn
            .run(
                "delete the kubeadm init token",
                &format!("kubeadm token delete {}", script::quote(&id)),
                Duration::from_secs(60),
                true,
            )
            .await?;
        if !out.ok() {
            tracing::warn!(node = %conn.node, "could not delete the init bootstrap token {id}: {}", out.tail(2));
        }
    }
    Ok(())
}

/// The ids (never the secrets) of the tokens in `kubeadm token list -o json` output (one JSON
/// object per token) that `kubeadm init` created for ecoboot.
fn init_token_ids(listing: &str) -> Vec<String> {
    serde_json::Deserializer::from_str(listing)
        .into_iter::<serde_json::Value>()
        .map_while(|v| v.ok())
        .filter(|t| t["description"] == kubeadm::INIT_TOKEN_DESCRIPTION)
        .filter_map(|t| {
            t["token"]
                .as_str()
                .and_then(|s| s.split('.').next())
                .map(String::from)
        })
        .filter(|id| {
            id.len() == 6
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        .collect()
}

#[async_trait]
impl Stage for InitMaster {
    type Plan = Vec<Action>;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Initialise the control plane with kubeadm"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<Vec<Action>>> {
        let (target, conn) = match cx.control_plane(ID).await {
            Ok(found) => found,
            Err(Error::StageFailed { message, .. }) => {
                let cp = cx.config.control_plane().name.value.clone();
                return Ok(Found::Todo(vec![Action::new(cp, message)]));
            }
            Err(e) => return Err(e),
        };
        let m = inspect(&conn).await?;
        let node = &target.node;
        let mut todo = Vec::new();
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
        if !local_admin(cx).exists() {
            todo.push(Action::new(
                node,
                "fetch admin.conf into the state directory (0600)",
            ));
        }
        Ok(if todo.is_empty() {
            Found::done(format!("control plane {node} initialised and healthy"))
        } else {
            Found::Todo(todo)
        })
    }

    async fn apply(&self, cx: &Ctx, _plan: Vec<Action>) -> Result<()> {
        let (target, conn) = cx.control_plane(ID).await?;
        let node = target.node.clone();
        let m = inspect(&conn).await?;
        let fail = |message: String, help: &str| Error::StageFailed {
            stage: ID.into(),
            message: format!("{node}: {message}"),
            help: help.into(),
        };
        let run = |label: &'static str, script: String, secs: u64| {
            let conn = conn.clone();
            async move {
                conn.run(label, &script, Duration::from_secs(secs), true)
                    .await
            }
        };
        if m.half_initialised() && !cx.force_reset {
            return Err(fail(
                "half-initialised control plane: an earlier kubeadm init failed or was left unfinished by someone else".into(),
                "recover with `sudo kubeadm reset -f` on the node, or rerun with `--force-reset` to let ecoboot do it",
            ));
        }
        if m.interrupted() || (m.half_initialised() && cx.force_reset) {
            let why = if m.interrupted() {
                "kubeadm reset -f (an earlier run was stopped during kubeadm init)"
            } else {
                "kubeadm reset -f (--force-reset)"
            };
            cx.events.progress(ID, Some(&node), why);
            let out = run(
                "kubeadm reset",
                format!(
                    "kubeadm reset -f && rm -f {INIT_STARTED} {INIT_DONE} {INIT_FAILED} {KUBE_PROXY_MARKER}"
                ),
                300,
            )
            .await?;
            if !out.ok() {
                return Err(fail(
                    format!("kubeadm reset failed: {}", out.tail(5)),
                    "inspect the node log",
                ));
            }
        }
        if !m.initialised() {
            let config =
                kubeadm::init_config(&cx.config, cx.config.control_plane(), &facts(cx, &target));
            let script = format!(
                "mkdir -p /etc/kubernetes/ecoboot\n{write}\nsed -i \"s/{VERSION_PLACEHOLDER}/$(kubeadm version -o short)/\" {INIT_CONFIG}\ntouch {INIT_STARTED}\nkubeadm init --config {INIT_CONFIG} && touch {INIT_DONE}",
                write = script::write_file(INIT_CONFIG, config.as_bytes(), 0o600)
            );
            cx.events.progress(ID, Some(&node), "kubeadm init");
            let out = run("kubeadm init", script, 900).await?;
            if !out.ok() {
                // Seen failing (not killed): leave the node for a human to look at.
                let _ = run("mark init failed", format!("touch {INIT_FAILED}"), 30).await;
                return Err(fail(
                    format!("kubeadm init failed (exit {:?}): {}", out.code, out.tail(5)),
                    "see the node log; after fixing the cause rerun (a half-initialised node needs --force-reset)",
                ));
            }
        }
        let healthy = retry(
            &Backoff::poll(Duration::from_secs(2), HEALTHZ_TIMEOUT),
            |n| {
                let probe = run("healthz", format!("{HEALTHZ} >/dev/null"), 30);
                let events = &cx.events;
                let node = &node;
                async move {
                    if n > 1 {
                        events.progress(ID, Some(node), "waiting for /healthz");
                    }
                    match probe.await {
                        Ok(out) if out.ok() => Try::Done(()),
                        Ok(_) => Try::Again(None),
                        Err(e) => Try::Fail(Some(e)),
                    }
                }
            },
        )
        .await;
        match healthy {
            Ok(()) => {}
            Err(Some(e)) => return Err(e),
            Err(None) => {
                return Err(fail(
                    format!(
                        "the API server did not answer /healthz within {}s",
                        HEALTHZ_TIMEOUT.as_secs()
                    ),
                    "check `crictl ps` and the kubelet log on the node",
                ));
            }
        }
        if !m.kube_proxy {
            let script = format!(
                "kubeadm init phase addon kube-proxy --config {INIT_CONFIG} && touch {KUBE_PROXY_MARKER}"
            );
            let out = run("kube-proxy addon", script, 300).await?;
            if !out.ok() {
                return Err(fail(
                    format!("adding kube-proxy failed: {}", out.tail(5)),
                    "rerun `ecoboot stage init-master`",
                ));
            }
        }
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
        crate::fsutil::write_atomic(&local_admin(cx), sanitized.as_bytes(), 0o600)?;
        if !m.initialised() {
            // This run ran `kubeadm init`; a run killed before here leaves the token to its TTL.
            delete_init_tokens(&conn).await?;
        }
        cx.events
            .progress(ID, Some(&node), "control plane ready; admin.conf fetched");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_only_the_init_token_ids() {
        let listing = format!(
            "{{\n  \"token\": \"abc123.0123456789abcdef\",\n  \"description\": \"{}\"\n}}\n{{\"token\":\"zzz999.0123456789abcdef\",\"description\":\"other\"}}\n",
            crate::kubeadm::INIT_TOKEN_DESCRIPTION
        );
        assert_eq!(super::init_token_ids(&listing), vec!["abc123".to_string()]);
        assert!(super::init_token_ids("garbage").is_empty());
    }
}
