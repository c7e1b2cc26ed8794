//! The steps of init-master's apply on the control-plane node: reset, init between markers,
//! wait for `/healthz`, the kube-proxy addon, fetch admin.conf, delete the init token.

use std::time::Duration;

use super::{
    HEALTHZ, HEALTHZ_TIMEOUT, ID, INIT_CONFIG, INIT_DONE, INIT_FAILED, INIT_STARTED,
    KUBE_PROXY_MARKER, RESTORED, facts,
};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::kubeadm::{self, VERSION_PLACEHOLDER};
use crate::retry::{Backoff, Try, retry};
use crate::ssh::{Conn, Target, script};

/// Deletes the bootstrap token `kubeadm init` created (found by its description): joins use
/// their own short-lived tokens, so nothing should be able to join with it. Its TTL is 15
/// minutes, so a run killed before this point leaves it valid no longer than that.
pub(super) async fn delete_init_tokens(conn: &Conn) -> Result<()> {
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

/// The steps of init-master's apply, on the control-plane node.
pub(super) struct Steps<'a> {
    pub(super) cx: &'a Ctx,
    pub(super) conn: &'a Conn,
    pub(super) node: &'a str,
}

impl Steps<'_> {
    pub(super) fn fail(&self, message: String, help: &str) -> Error {
        Error::StageFailed {
            stage: ID.into(),
            message: format!("{}: {message}", self.node),
            help: help.into(),
        }
    }

    async fn run(&self, label: &str, script: &str, secs: u64) -> Result<crate::ssh::Output> {
        self.conn
            .run(label, script, Duration::from_secs(secs), true)
            .await
    }

    /// `kubeadm reset -f` and the markers, after an interrupted init or with `--force-reset`.
    pub(super) async fn reset(&self, interrupted: bool) -> Result<()> {
        let why = if interrupted {
            "kubeadm reset -f (an earlier run was stopped during kubeadm init)"
        } else {
            "kubeadm reset -f (--force-reset)"
        };
        self.cx.events.progress(ID, Some(self.node), why);
        let script = format!(
            "kubeadm reset -f && rm -f {INIT_STARTED} {INIT_DONE} {INIT_FAILED} {KUBE_PROXY_MARKER}"
        );
        let out = self.run("kubeadm reset", &script, 300).await?;
        if !out.ok() {
            return Err(self.fail(
                format!("kubeadm reset failed: {}", out.tail(5)),
                "inspect the node log",
            ));
        }
        Ok(())
    }

    /// `kubeadm init` from the generated config, between the started/done markers.
    pub(super) async fn init(&self, target: &Target) -> Result<()> {
        let cx = self.cx;
        let config = kubeadm::init_config(
            &cx.config,
            cx.config
                .node(&target.node)
                .expect("configured control plane"),
            &facts(cx, target),
        );
        let script = format!(
            "mkdir -p /etc/kubernetes/ecoboot\n{hardening}\n{write}\nsed -i \"s/{VERSION_PLACEHOLDER}/$(kubeadm version -o short)/\" {INIT_CONFIG}\ntouch {INIT_STARTED}\nignore=''\n[ -e {RESTORED} ] && ignore=--ignore-preflight-errors=DirAvailable--var-lib-etcd\nkubeadm init --config {INIT_CONFIG} $ignore && touch {INIT_DONE} && rm -f {RESTORED}",
            write = script::write_file(INIT_CONFIG, config.as_bytes(), 0o600),
            hardening = super::hardening::files_script(&cx.config)?,
        );
        cx.events.progress(ID, Some(self.node), "kubeadm init");
        let out = self.run("kubeadm init", &script, 900).await?;
        if !out.ok() {
            // Seen failing (not killed): leave the node for a human to look at.
            let _ = self
                .run("mark init failed", &format!("touch {INIT_FAILED}"), 30)
                .await;
            return Err(self.fail(
                format!("kubeadm init failed (exit {:?}): {}", out.code, out.tail(5)),
                "see the node log; after fixing the cause rerun (a half-initialised node needs --force-reset)",
            ));
        }
        Ok(())
    }

    /// Polls `/healthz` until it answers, bounded by [`HEALTHZ_TIMEOUT`].
    pub(super) async fn wait_healthy(&self) -> Result<()> {
        let healthy = retry(
            &Backoff::poll(Duration::from_secs(2), HEALTHZ_TIMEOUT),
            |n| async move {
                if n > 1 {
                    (self.cx.events).progress(ID, Some(self.node), "waiting for /healthz");
                }
                match self
                    .run("healthz", &format!("{HEALTHZ} >/dev/null"), 30)
                    .await
                {
                    Ok(out) if out.ok() => Try::Done(()),
                    Ok(_) => Try::Again(None),
                    Err(e) => Try::Fail(Some(e)),
                }
            },
        )
        .await;
        match healthy {
            Ok(()) => Ok(()),
            Err(Some(e)) => Err(e),
            Err(None) => Err(self.fail(
                format!(
                    "the API server did not answer /healthz within {}s",
                    HEALTHZ_TIMEOUT.as_secs()
                ),
                "check `crictl ps` and the kubelet log on the node",
            )),
        }
    }

    /// The kube-proxy addon, once the API answers.
    pub(super) async fn add_kube_proxy(&self) -> Result<()> {
        let script = format!(
            "kubeadm init phase addon kube-proxy --config {INIT_CONFIG} && touch {KUBE_PROXY_MARKER}"
        );
        let out = self.run("kube-proxy addon", &script, 300).await?;
        if !out.ok() {
            return Err(self.fail(
                format!("adding kube-proxy failed: {}", out.tail(5)),
                "rerun `ecoboot stage init-master`",
            ));
        }
        Ok(())
    }

    /// Fetches `/etc/kubernetes/admin.conf` into the state directory (see [`super::fetch_admin`]).
    pub(super) async fn fetch_admin(&self) -> Result<()> {
        super::fetch_admin(self.cx, self.conn, ID).await
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
