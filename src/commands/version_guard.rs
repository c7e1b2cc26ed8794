//! The version guard of `up`/`stage`: on an initialised cluster the config's Kubernetes minor
//! must be the one the cluster runs (minor changes go through `ecoboot upgrade`), and the patch
//! the cluster runs is pinned for nodes prepared later.

use crate::config::Config;
use crate::engine::Ctx;
use crate::error::{Error, Result};

/// On an initialised cluster (admin.conf fetched), refuses a config whose Kubernetes minor
/// differs from what the API server runs: prepare-nodes would otherwise move every kubelet at
/// once, past the API server. Minor changes go through `ecoboot upgrade`.
pub(super) async fn version_guard(cx: &Ctx) -> Result<Option<crate::upgrade::Version>> {
    if !crate::nodes::admin_conf(&cx.state_dir()).exists() {
        return Ok(None);
    }
    let k = &cx.config.cluster.spec.kubernetes;
    let running = match running_version(cx).await {
        Ok(v) => v,
        Err(e) => {
            return Err(Error::StageFailed {
                stage: crate::stages::prepare_nodes::ID.into(),
                message: format!("cannot check which Kubernetes version the cluster runs: {e}"),
                help: "the control plane must answer before prepare-nodes touches packages on an initialised cluster; check it (`ecoboot status`) and rerun".into(),
            });
        }
    };
    let configured = crate::upgrade::Version::parse(&k.version);
    if configured.is_some_and(|c| c.minor != running.minor) {
        return Err(Error::Config(cx.config.problem_at(
            &k.version,
            format!(
                "the cluster runs Kubernetes {running}, the config asks for {}: moving every node at once would break the version-skew policy",
                k.version.value
            ),
            format!(
                "run `ecoboot upgrade --to {}` (one minor at a time, control plane first, nodes drained), or set the version back to \"{}\"",
                k.version.value,
                running.minor_str()
            ),
        )));
    }
    Ok(Some(running))
}

/// The config with its Kubernetes version pinned to the patch the cluster runs (`1.36` →
/// `1.36.2`), so nodes prepared later (scale-out, replacements) get exactly that patch.
pub(super) fn pin_patch(config: &Config, running: crate::upgrade::Version) -> Config {
    let mut pinned = config.clone();
    if running.patch.is_some() {
        pinned.cluster.spec.kubernetes.version.value = running.to_string();
    }
    pinned
}

/// What the cluster runs: the API server's `/version`, else the control plane's kubelet package
/// (when the API cannot be reached, e.g. a control plane whose admin.conf no client can use).
async fn running_version(cx: &Ctx) -> Result<crate::upgrade::Version> {
    let api = match cx.kube("prepare-nodes").await {
        Ok(client) => crate::upgrade::server_version(&client).await,
        Err(e) => Err(e),
    };
    let api_err = match api {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let (_, conn) = cx.control_plane("prepare-nodes").await?;
    let out = conn
        .run(
            "kubelet version",
            "dpkg-query -W -f='${Version}' kubelet",
            std::time::Duration::from_secs(60),
            true,
        )
        .await?;
    match (out.ok(), crate::upgrade::Version::parse(out.stdout.trim())) {
        (true, Some(v)) => Ok(v),
        _ => Err(api_err),
    }
}
