//! `ecoboot argocd password|ui`: the ArgoCD admin password, and the UI through the SSH tunnel.

use k8s_openapi::api::core::v1::Service;

use crate::cli::Global;
use crate::config::FileChecks;
use crate::error::{Error, Result};

/// `ecoboot argocd password`: prints the initial admin password (only when asked).
pub async fn password(g: &Global) -> Result<()> {
    let config = super::load_config(g, FileChecks::Skip)?;
    crate::output::init_tracing(g.verbose, None, "argocd");
    let cx = super::read_only_ctx(g, &config).await?;
    let ns = config.cluster.spec.argocd.namespace.clone();
    let client = cx.kube("argocd").await?;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, &ns);
    let target = format!("Secret {ns}/argocd-initial-admin-secret");
    let secret = secrets
        .get_opt("argocd-initial-admin-secret")
        .await
        .map_err(|e| crate::api::error("get", &target, e))?;
    cx.close_ssh().await;
    let password = secret
        .and_then(|s| s.data)
        .and_then(|d| d.get("password").cloned())
        .ok_or_else(|| Error::Kube {
            action: "read".into(),
            target,
            message: "not found (ArgoCD deletes it once the password is changed)".into(),
            help:
                "if the password was changed, use that one; else check that install-argocd finished"
                    .into(),
        })?;
    println!("{}", String::from_utf8_lossy(&password.0));
    Ok(())
}

/// `ecoboot argocd ui`: forwards a loopback port to the argocd-server Service through the
/// control plane's SSH connection (like `kubectl port-forward`, without opening any port to the
/// world) and keeps it open until Ctrl-C.
pub async fn ui(g: &Global, port: u16) -> Result<()> {
    let config = super::load_config(g, FileChecks::Skip)?;
    crate::output::init_tracing(g.verbose, None, "argocd");
    let cx = super::read_only_ctx(g, &config).await?;
    let argocd = &config.cluster.spec.argocd;
    let ns = argocd.namespace.value.clone();
    let client = cx.kube("argocd").await?;
    let services: kube::Api<Service> = kube::Api::namespaced(client, &ns);
    let target = format!("Service {ns}/argocd-server");
    let svc = services
        .get_opt("argocd-server")
        .await
        .map_err(|e| crate::api::error("get", &target, e))?
        .ok_or_else(|| Error::Kube {
            action: "get".into(),
            target: target.clone(),
            message: "not found".into(),
            help: "run `ecoboot up` (stage install-argocd) first".into(),
        })?;
    let (cluster_ip, remote_port, scheme) =
        ui_endpoint(&svc, argocd.server_insecure).ok_or_else(|| Error::Kube {
            action: "read".into(),
            target: target.clone(),
            message: "it has no cluster IP or no http/https port".into(),
            help: "check the Service (`kubectl -n argocd get svc argocd-server -o yaml`)".into(),
        })?;
    let (_, conn) = cx.control_plane("argocd").await?;
    let dir = crate::ssh::Options::from_config(&config, &cx.state_dir()).control_dir;
    let bind = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let tunnel =
        crate::api::tunnel::Tunnel::open_on(&conn, &dir, &cluster_ip, remote_port, bind).await?;
    // The handlers are in place before the URL is printed: a Ctrl-C or SIGTERM right after it
    // still closes the tunnel cleanly.
    let interrupted = Interrupt::listen();
    println!(
        "ArgoCD UI: {scheme}://{} (user admin; `ecoboot argocd password` prints the initial password). Ctrl-C closes it.",
        tunnel.local
    );
    interrupted.wait().await;
    drop(tunnel);
    cx.close_ssh().await;
    Ok(())
}

/// The Service's cluster IP, the port to forward to and the URL scheme: the `http` port when
/// argocd-server serves plain HTTP (`serverInsecure`), else `https`.
fn ui_endpoint(svc: &Service, insecure: bool) -> Option<(String, u16, &'static str)> {
    let spec = svc.spec.as_ref()?;
    let ip = spec
        .cluster_ip
        .clone()
        .filter(|ip| !ip.is_empty() && ip != "None")?;
    let (name, scheme) = if insecure {
        ("http", "http")
    } else {
        ("https", "https")
    };
    let ports = spec.ports.as_ref()?;
    let port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .or_else(|| ports.first())?;
    Some((ip, u16::try_from(port.port).ok()?, scheme))
}

/// SIGINT and SIGTERM, listened for from creation on.
struct Interrupt {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Interrupt {
    fn listen() -> Interrupt {
        use tokio::signal::unix::{SignalKind, signal};
        Interrupt {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    async fn wait(mut self) {
        async fn recv(s: Option<&mut tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = recv(self.int.as_mut()) => {}
            _ = recv(self.term.as_mut()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_port_matching_server_insecure() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "argocd-server"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [
                {"name": "http", "port": 80}, {"name": "https", "port": 443}]}
        }))
        .unwrap();
        assert_eq!(
            ui_endpoint(&svc, true),
            Some(("10.96.0.20".into(), 80, "http"))
        );
        assert_eq!(
            ui_endpoint(&svc, false),
            Some(("10.96.0.20".into(), 443, "https"))
        );
        let headless: Service = serde_json::from_value(serde_json::json!({
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}))
        .unwrap();
        assert_eq!(ui_endpoint(&headless, true), None);
    }
}
