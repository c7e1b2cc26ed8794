//! The cluster's Kubernetes API as ecoboot reaches it: the admin.conf fetched by `init-master`,
//! through an SSH tunnel to the control plane (default: port 6443 need not be open to the world)
//! or directly at the control plane's address (`spec.kubernetes.apiAccess: direct`).

pub mod admin_conf;
pub mod apply;
pub mod manifest;
pub mod tunnel;
pub mod wait;

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::config::ApiAccess;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use tunnel::Tunnel;

/// The field manager of every server-side apply ecoboot makes.
pub const FIELD_MANAGER: &str = "ecoboot";

/// A client and, for tunnelled access, the tunnel it runs through.
pub struct Access {
    /// The API client.
    pub client: kube::Client,
    _tunnel: Option<Tunnel>,
}

/// Where `init-master` keeps the cluster's admin kubeconfig (0600).
pub fn admin_conf(cx: &Ctx) -> PathBuf {
    cx.state_dir().join("admin.conf")
}

/// Opens API access for `stage`. Needs admin.conf from `init-master`.
pub async fn connect(cx: &Ctx, stage: &'static str) -> Result<Access> {
    let path = admin_conf(cx);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Prerequisite {
                stage,
                what: "the cluster's admin.conf".into(),
                needs: crate::stages::init_master::ID,
            });
        }
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let bad = |message: String| Error::Kube {
        action: "load".into(),
        target: path.display().to_string(),
        message,
        help: format!(
            "delete {} and run `ecoboot stage init-master` to fetch it again from the control plane",
            path.display()
        ),
    };
    // Never trust the file as is: it came from a node (see `admin_conf`).
    let text = admin_conf::sanitize(&text)
        .map_err(|why| bad(format!("refused: {why}; no credential plugin was run")))?;
    let kubeconfig = Kubeconfig::from_yaml(&text).map_err(|e| bad(e.to_string()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| bad(e.to_string()))?;
    let port = config.cluster_url.port_u16().unwrap_or(6443);
    let tunnel = match cx.config.cluster.spec.kubernetes.api_access {
        ApiAccess::Tunnel => {
            let (_, conn) = crate::stages::init_master::master(cx, stage).await?;
            let dir = crate::ssh::Options::from_config(&cx.config, &cx.state_dir()).control_dir;
            let tunnel = Tunnel::open(&conn, &dir, "127.0.0.1", port).await?;
            config.cluster_url = format!("https://{}", tunnel.local)
                .parse()
                .expect("loopback URL");
            Some(tunnel)
        }
        ApiAccess::Direct => {
            let out: Option<crate::stages::instances::InstancesOut> =
                cx.state().output(crate::stages::instances::ID);
            let targets = crate::ssh::targets(&cx.config, out.as_ref(), stage)?;
            if let Some(cp) = targets
                .iter()
                .find(|t| t.role == crate::config::Role::ControlPlane)
            {
                config.cluster_url = format!("https://{}:{port}", cp.host)
                    .parse()
                    .map_err(|e| bad(format!("control-plane address: {e}")))?;
            }
            None
        }
    };
    config.connect_timeout = Some(Duration::from_secs(15));
    config.read_timeout = Some(Duration::from_secs(60));
    let client = kube::Client::try_from(config).map_err(|e| bad(e.to_string()))?;
    Ok(Access {
        client,
        _tunnel: tunnel,
    })
}

/// Turns a kube error into a diagnostic about `target`.
pub fn error(action: &str, target: &str, e: kube::Error) -> Error {
    let (message, help) = match &e {
        kube::Error::Api(s) => (
            format!("{} {}: {}", s.code, s.reason, s.message),
            match s.code {
                401 | 403 => {
                    "the admin credentials were refused; delete admin.conf in the state directory and run `ecoboot stage init-master` to fetch it again"
                }
                409 if s.reason == "Conflict" => {
                    "another field manager owns these fields; see who with `kubectl get -o yaml --show-managed-fields`, then reconcile or remove its change"
                }
                422 => {
                    "the API server rejected the object; check the manifest and the settings rendered into it"
                }
                _ => "check the API server and rerun",
            },
        ),
        _ => (
            e.to_string(),
            "the API server did not answer; check the control plane (`ecoboot status`) and rerun",
        ),
    };
    Error::Kube {
        action: action.into(),
        target: target.into(),
        message,
        help: help.into(),
    }
}

/// True for a 404 from the API server.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
