//! The steps of join-control-plane's apply: the certificate key, the certificates uploaded
//! with it, the encryption key read from the control plane holding the cluster, one join, and
//! the uploaded certificates deleted afterwards.

use std::io::Read;
use std::time::Duration;

use super::{ID, JOIN_CONFIG, UPLOAD_CONFIG, failed};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::hardening::ENCRYPTION;
use crate::ssh::run::SKIPPED;
use crate::ssh::{Conn, Target, script};
use crate::stages::shared::control_plane::{KUBE_PROXY_MARKER, facts};
use crate::stages::shared::{backup_timer, join_token};

/// 32 random bytes, hex: the key kubeadm encrypts the uploaded certificates with.
pub(super) fn certificate_key() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("read", "/dev/urandom", e))?;
    Ok(hex::encode(bytes))
}

/// `kubeadm init phase upload-certs --upload-certs` on the control plane holding the cluster,
/// with the key in a 0600 file removed right after (never on a command line).
pub(super) async fn upload_certs(cx: &Ctx, master: &Target, conn: &Conn, key: &str) -> Result<()> {
    let text = crate::kubeadm::upload_certs_config(
        &cx.config,
        cx.config.control_plane(),
        &facts(cx, master),
        key,
    );
    let script = format!(
        "mkdir -p /etc/kubernetes/ecoboot\n{cleanup}\n{write}\nkubeadm init phase upload-certs --upload-certs --config {UPLOAD_CONFIG}\nrc=$?\nrm -f {UPLOAD_CONFIG}\nexit $rc",
        write = script::write_file(UPLOAD_CONFIG, text.as_bytes(), 0o600),
        cleanup = script::remove_on_exit(UPLOAD_CONFIG),
    );
    let out = conn
        .run_secret(
            "kubeadm upload-certs",
            &script,
            Duration::from_secs(300),
            true,
        )
        .await?;
    if !out.ok() {
        return Err(failed(
            &master.node,
            format!("kubeadm init phase upload-certs: {}", out.tail(3)),
        ));
    }
    cx.events.progress(
        ID,
        Some(&master.node),
        "control-plane certificates uploaded (fresh key)",
    );
    Ok(())
}

/// Joins one control plane: reset leftovers, the hardening files (the copied encryption key
/// first), the join configuration (0600, removed after), `kubeadm join`.
pub(super) async fn join_one(
    cx: &Ctx,
    target: &Target,
    conn: &Conn,
    token: &join_token::JoinToken,
    key: &str,
    encryption: Option<&str>,
) -> Result<()> {
    let node = (cx.config.nodes())
        .find(|n| n.name.as_str() == target.node)
        .expect("configured node");
    let join = crate::kubeadm::join_control_plane_config(
        node,
        &facts(cx, target),
        &token.endpoint,
        &token.token,
        &token.ca_hash,
        key,
    );
    let hardening = crate::hardening::files_script(&cx.config)
        .map_err(|e| failed(&target.node, format!("hardening files: {e}")))?;
    let script = format!(
        "if {holds}; then exit {SKIPPED}; fi\nif [ -e /etc/kubernetes/kubelet.conf ] || [ -e /etc/kubernetes/pki/ca.crt ]; then kubeadm reset -f; fi\nmkdir -p /etc/kubernetes/ecoboot\n{cleanup}\n{encryption}\n{hardening}\n{write}\nkubeadm join --config {JOIN_CONFIG}\nrc=$?\nrm -f {JOIN_CONFIG}\n[ $rc -eq 0 ] && touch {KUBE_PROXY_MARKER}\nexit $rc",
        encryption = encryption
            .map(|text| script::write_file(ENCRYPTION, text.as_bytes(), 0o600))
            .unwrap_or_default(),
        write = script::write_file(JOIN_CONFIG, join.as_bytes(), 0o600),
        cleanup = script::remove_on_exit(JOIN_CONFIG),
        holds = crate::kubeadm::HOLDS_CLUSTER,
    );
    cx.events
        .progress(ID, Some(&target.node), "kubeadm join --control-plane");
    let out = conn
        .run_secret(
            "kubeadm join --control-plane",
            &script,
            Duration::from_secs(900),
            true,
        )
        .await?;
    if out.ok() || out.code == Some(SKIPPED) {
        cx.events
            .progress(ID, Some(&target.node), "joined (etcd member added)");
        // The scheduled backup runs on every control plane (the etcd leader's run takes it).
        if let Some(todo) = backup_timer::probe(&cx.config, conn, &target.node).await? {
            backup_timer::apply(&cx.config, conn, ID).await?;
            cx.events.progress(ID, Some(&target.node), todo.what);
        }
        return Ok(());
    }
    Err(failed(
        &target.node,
        format!("kubeadm join --control-plane: {}", out.tail(5)),
    ))
}

/// Deletes Secret kube-system/kubeadm-certs (kubeadm would keep it for two hours).
pub(super) async fn delete_uploaded_certs(cx: &Ctx) {
    let deleted = match cx.kube(ID).await {
        Ok(client) => crate::api::secrets::delete(&client, "kube-system", "kubeadm-certs").await,
        Err(e) => Err(e),
    };
    if let Err(e) = deleted {
        let line = format!(
            "warning: could not delete Secret kube-system/kubeadm-certs ({e}); kubeadm deletes it within two hours"
        );
        cx.events.progress(ID, None, line);
    }
}
