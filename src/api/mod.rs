//! The cluster's Kubernetes API as ecoboot reaches it: the admin.conf fetched by `init-master`,
//! through an SSH tunnel to the control plane (default: port 6443 need not be open to the world)
//! or directly at the control plane's address (`spec.kubernetes.apiAccess: direct`).

pub mod admin_conf;
pub mod apply;
pub mod manifest;
pub mod secrets;
pub mod tunnel;
pub mod wait;

use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Error, Result};
use crate::ssh::Conn;
use tunnel::Tunnel;

/// The field manager of every server-side apply ecoboot makes.
pub const FIELD_MANAGER: &str = "ecoboot";

/// A client and, for tunnelled access, the tunnel it runs through.
pub struct Access {
    /// The API client.
    pub client: kube::Client,
    _tunnel: Option<Tunnel>,
}

/// How ecoboot reaches the API server.
pub enum Route<'a> {
    /// An SSH local forward over the control plane's connection to 127.0.0.1 on the node
    /// (control sockets in `control_dir`): port 6443 need not be open to the world.
    Tunnel {
        /// The control plane's SSH connection.
        conn: &'a Conn,
        /// Where the forward's Unix socket goes.
        control_dir: &'a Path,
    },
    /// The control plane's address directly (`apiAccess: direct`).
    Direct {
        /// Host name or IP of the control plane.
        host: String,
    },
}

/// A loaded admin kubeconfig: the client settings, and where the file is (for messages).
pub struct AdminConf {
    config: kube::Config,
    path: std::path::PathBuf,
}

/// Loads the admin kubeconfig at `path` (fetched by `init-master`; `stage` is named when it
/// is missing), sanitised: a node could have served it with a credential plugin.
pub async fn load_admin_conf(path: &Path, stage: &'static str) -> Result<AdminConf> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Prerequisite {
                stage,
                what: "the cluster's admin.conf".into(),
                needs: "init-master",
            });
        }
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let text = admin_conf::sanitize(&text).map_err(|why| {
        bad_admin(
            path,
            format!("refused: {why}; no credential plugin was run"),
        )
    })?;
    let kubeconfig = Kubeconfig::from_yaml(&text).map_err(|e| bad_admin(path, e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| bad_admin(path, e.to_string()))?;
    Ok(AdminConf {
        config,
        path: path.to_path_buf(),
    })
}

fn bad_admin(path: &Path, message: String) -> Error {
    Error::Kube {
        action: "load".into(),
        target: path.display().to_string(),
        message,
        help: format!(
            "delete {} and run `ecoboot stage init-master` to fetch it again from the control plane",
            path.display()
        ),
    }
}

/// Opens API access with `admin` over `route`.
pub async fn connect(admin: AdminConf, route: Route<'_>) -> Result<Access> {
    let AdminConf { mut config, path } = admin;
    let port = config.cluster_url.port_u16().unwrap_or(6443);
    let tunnel = match route {
        Route::Tunnel { conn, control_dir } => {
            let tunnel = Tunnel::open(conn, control_dir, "127.0.0.1", port).await?;
            config.cluster_url = format!("https://{}", tunnel.local)
                .parse()
                .expect("loopback URL");
            Some(tunnel)
        }
        Route::Direct { host } => {
            config.cluster_url = format!("https://{host}:{port}")
                .parse()
                .map_err(|e| bad_admin(&path, format!("control-plane address: {e}")))?;
            None
        }
    };
    config.connect_timeout = Some(Duration::from_secs(15));
    config.read_timeout = Some(Duration::from_secs(60));
    // No hidden retries (kube's default retries a 429 up to 15 times with backoff up to
    // 1000 s): every wait in ecoboot is bounded by its own poll, and an eviction refused by a
    // PodDisruptionBudget must come back at once so the drain can name it.
    config.default_retry = false;
    let client = kube::Client::try_from(config).map_err(|e| bad_admin(&path, e.to_string()))?;
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
