//! Keeps the control plane's hardening converged (`spec.kubernetes.hardening`): the files
//! (`crate::hardening`) and the API server flags that use them. A new control plane gets both
//! before `kubeadm init`; an initialised one whose files or flags differ gets the files written
//! and its API server manifest regenerated (`kubeadm init phase control-plane apiserver`), and
//! when Secrets encryption was just turned on every existing Secret is written again so etcd
//! holds it encrypted.

use std::collections::BTreeSet;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{ID, INIT_CONFIG};
use crate::config::Config;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::event::Action;
use crate::hardening::{ADMISSION, AUDIT_POLICY, ENCRYPTION};
use crate::ssh::Conn;

const MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
/// Present from the moment encryption is turned on until every Secret was rewritten.
const REWRITE_PENDING: &str = "/etc/kubernetes/ecoboot/rewrite-secrets-pending";

/// What the control plane has: file digests, whether the key file exists, the API server's
/// flags.
#[derive(Debug, Default)]
pub struct Seen {
    digests: BTreeSet<(String, String)>,
    key: bool,
    flags: BTreeSet<String>,
    pending: bool,
}

impl Seen {
    /// The config turns Secrets encryption on where it is off (several control planes would
    /// need the key on every API server before any writes with it).
    pub fn turning_on(&self, config: &Config) -> bool {
        config.cluster.spec.kubernetes.hardening.encrypt_secrets && !self.encrypting()
    }

    /// Whether the running API server encrypts Secrets.
    pub fn encrypting(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f.starts_with("--encryption-provider-config="))
    }
}

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Reads what the control plane has.
pub async fn seen(conn: &Conn) -> Result<Seen> {
    let check = format!(
        "for f in {ADMISSION} {AUDIT_POLICY}; do [ -f \"$f\" ] && sha256sum \"$f\"; done\n[ -s {ENCRYPTION} ] && echo key\n[ -e {REWRITE_PENDING} ] && echo pending\ngrep -oE -- '--[a-z0-9-]+=[^\" ]*' {MANIFEST} 2>/dev/null\ntrue"
    );
    let out = conn
        .run("hardening", &check, Duration::from_secs(60), true)
        .await?;
    let mut seen = Seen::default();
    for line in out.stdout.lines() {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["key"] => seen.key = true,
            ["pending"] => seen.pending = true,
            [flag] if flag.starts_with("--") => {
                seen.flags.insert(flag.to_string());
            }
            [sum, path] => {
                seen.digests.insert((path.to_string(), sum.to_string()));
            }
            _ => {}
        }
    }
    Ok(seen)
}

/// What differs from the config on `node` (`None`: converged).
pub fn differs(config: &Config, seen: &Seen, node: &str) -> Result<Option<Action>> {
    let mut wanted = BTreeSet::from([(ADMISSION.to_string(), digest(&admission(config)))]);
    if let Some(policy) = audit(config)? {
        wanted.insert((AUDIT_POLICY.to_string(), digest(&policy)));
    }
    let flags: BTreeSet<String> = (crate::hardening::api_server_args(config).into_iter())
        .map(|(k, v)| format!("--{k}={v}"))
        .collect();
    let ours = [
        "--encryption-provider-config=",
        "--audit-",
        "--admission-control-config-file=",
    ];
    let have: BTreeSet<String> = (seen.flags.iter())
        .filter(|f| ours.iter().any(|o| f.starts_with(o)))
        .cloned()
        .collect();
    let key = config.cluster.spec.kubernetes.hardening.encrypt_secrets && !seen.key;
    if !wanted.is_subset(&seen.digests) || flags != have || key || seen.pending {
        let turning_on = !seen.encrypting() && flags.iter().any(|f| f.starts_with("--encryption"));
        let what = match turning_on || seen.pending {
            true => {
                "write the hardening files, regenerate the API server manifest, rewrite every Secret encrypted"
            }
            false => "write the hardening files and regenerate the API server manifest",
        };
        return Ok(Some(Action::new(node, what)));
    }
    Ok(None)
}

fn admission(config: &Config) -> String {
    crate::hardening::yaml(&crate::hardening::admission_config(
        &config.cluster.spec.kubernetes.hardening,
    ))
}

fn audit(config: &Config) -> Result<Option<String>> {
    crate::hardening::audit_policy(config).map_err(|e| Error::StageFailed {
        stage: ID.into(),
        message: format!(
            "cannot read spec.kubernetes.hardening.audit ({}): {e}",
            config.cluster.spec.kubernetes.hardening.audit.as_str()
        ),
        help: "`default`, `off`, or the path (relative to the config) of an audit Policy file"
            .into(),
    })
}

/// The node script that writes every hardening file (before `kubeadm init` too).
pub fn files_script(config: &Config) -> Result<String> {
    audit(config)?;
    crate::hardening::files_script(config).map_err(|e| Error::StageFailed {
        stage: ID.into(),
        message: format!("cannot prepare the hardening files: {e}"),
        help: "check spec.kubernetes.hardening".into(),
    })
}

/// Writes the files, regenerates the API server's manifest from `init_config` (the kubeadm
/// config text) and, when encryption is new, rewrites every Secret after `/healthz` answers.
pub async fn reconcile(
    cx: &Ctx,
    conn: &Conn,
    seen: &Seen,
    init_config: &str,
    healthy: impl AsyncFnOnce() -> Result<()>,
) -> Result<()> {
    let write = crate::ssh::script::write_file(INIT_CONFIG, init_config.as_bytes(), 0o600);
    let now_encrypting = cx.config.cluster.spec.kubernetes.hardening.encrypt_secrets;
    let rewrite = now_encrypting && (!seen.encrypting() || seen.pending);
    let mark = match rewrite {
        true => format!(
            "mkdir -p {d} && touch {REWRITE_PENDING}",
            d = crate::hardening::DIR
        ),
        false => String::new(),
    };
    let script = format!(
        "set -e\n{mark}\n{files}\n{write}\nsed -i \"s/{p}/$(kubeadm version -o short)/\" {INIT_CONFIG}\nkubeadm init phase control-plane apiserver --config {INIT_CONFIG}",
        files = files_script(&cx.config)?,
        p = crate::kubeadm::VERSION_PLACEHOLDER,
    );
    let help = "see the node log; the previous manifest is kept when kubeadm refuses";
    (conn.run_ok(
        ID,
        "regenerate the API server manifest",
        &script,
        Duration::from_secs(300),
        help,
    ))
    .await?;
    healthy().await?;
    if rewrite {
        let n = crate::api::secrets::rewrite_all(&cx.kube(ID).await?).await?;
        let done = format!("rm -f {REWRITE_PENDING}");
        conn.run("secrets rewritten", &done, Duration::from_secs(30), true)
            .await?;
        cx.events.progress(
            ID,
            Some(&conn.node),
            format!("{n} existing Secret(s) rewritten encrypted"),
        );
    }
    Ok(())
}
