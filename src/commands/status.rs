//! `ecoboot status`: each stage's journal record plus a live probe, and the cluster's nodes
//! and applications when the API answers.

use crate::cli::{Global, Output};
use crate::config::FileChecks;
use crate::engine::{Ctx, Probe};
use crate::error::Result;
use crate::state::StageStatus;
use serde::Serialize;

use super::{load_config, read_only_ctx};

/// How long `status` waits for one stage's probe.
const STATUS_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One row of `ecoboot status`.
#[derive(Debug, Serialize)]
struct StageRow {
    id: &'static str,
    title: &'static str,
    status: StageStatus,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    probe: String,
}

/// A node as `ecoboot status` shows it.
#[derive(Serialize)]
struct NodeRow {
    name: String,
    ready: bool,
    /// The kubelet version the node reports.
    version: String,
    roles: Vec<String>,
    labels: String,
}

async fn cluster_view(cx: &Ctx) -> Result<(Vec<NodeRow>, Vec<crate::stages::root_app::AppStatus>)> {
    let client = cx.kube("status").await?;
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let nodes = api
        .list(&Default::default())
        .await
        .map_err(|e| crate::api::error("list", "nodes", e))?;
    let rows = nodes
        .items
        .iter()
        .map(|n| {
            let labels = n.metadata.labels.clone().unwrap_or_default();
            NodeRow {
                name: n.metadata.name.clone().unwrap_or_default(),
                ready: crate::stages::shared::node_labels::not_ready(n).is_none(),
                version: (n.status.as_ref())
                    .and_then(|s| s.node_info.as_ref())
                    .map(|i| i.kubelet_version.clone())
                    .unwrap_or_default(),
                roles: labels
                    .keys()
                    .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                    .map(String::from)
                    .collect(),
                labels: ["role", "domain", "tier", "phase"]
                    .iter()
                    .filter_map(|k| labels.get(*k).map(|v| format!("{k}={v}")))
                    .collect::<Vec<_>>()
                    .join(","),
            }
        })
        .collect();
    let ns = &cx.config.cluster.spec.argocd.namespace;
    let apps = crate::stages::root_app::app_statuses(&client, ns)
        .await
        .unwrap_or_default();
    Ok((rows, apps))
}

/// Runs `ecoboot status`.
// Long by design: gathers the journal, live probes, nodes, apps and warnings for one view.
pub(super) async fn status(g: &Global) -> Result<()> {
    let config = load_config(g, FileChecks::Skip)?;
    crate::output::init_tracing(g.verbose, None, "status");
    let cx = read_only_ctx(g, &config).await?;
    let state = cx.state().clone();
    let stages = crate::stages::all();
    let mut rows = Vec::new();
    for stage in &stages {
        let record = state.record(stage.id());
        let probe = match tokio::time::timeout(STATUS_PROBE_TIMEOUT, stage.probe(&cx)).await {
            Ok(Ok(Probe::Done { summary, .. })) => format!("done: {summary}"),
            Ok(Ok(Probe::Todo { actions, .. })) => format!("{} action(s) pending", actions.len()),
            Ok(Err(e)) => format!("cannot probe: {e}"),
            Err(_) => format!(
                "cannot probe: no answer within {}s",
                STATUS_PROBE_TIMEOUT.as_secs()
            ),
        };
        rows.push(StageRow {
            id: stage.id(),
            title: stage.title(),
            status: record.status,
            attempts: record.attempts,
            finished: record.finished,
            last_error: record.last_error,
            probe,
        });
    }
    let view = match crate::nodes::admin_conf(&cx.state_dir()).exists() {
        false => Err("no admin.conf yet (stage init-master)".to_string()),
        true => match tokio::time::timeout(STATUS_PROBE_TIMEOUT, cluster_view(&cx)).await {
            Ok(Ok(view)) => Ok(view),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer".into()),
        },
    };
    let certs = control_plane_certs(&cx).await;
    let hard = hardening(&cx).await;
    let reboot = match tokio::time::timeout(
        STATUS_PROBE_TIMEOUT,
        crate::upgrade::reboot::pending(&cx),
    )
    .await
    {
        Ok(Ok((needing, _))) => needing,
        _ => Vec::new(),
    };
    cx.close_ssh().await;
    let cert_warnings = match &certs {
        Some(Ok(list)) => crate::certs::warnings(list),
        _ => Vec::new(),
    };
    github_cert_warnings(&cert_warnings, g.output != Output::Json);
    let notices = support_notices(&config, view.as_ref().ok().map(|(n, _)| n.as_slice()));
    if g.output == Output::Json {
        let (nodes, apps, api) = match &view {
            Ok((n, a)) => (
                serde_json::json!(n),
                serde_json::json!(a),
                serde_json::json!("reachable"),
            ),
            Err(e) => (
                serde_json::json!([]),
                serde_json::json!([]),
                serde_json::json!(format!("unreachable: {e}")),
            ),
        };
        let certificates = match &certs {
            Some(Ok(list)) => serde_json::json!(list),
            Some(Err(e)) => serde_json::json!({ "error": e }),
            None => serde_json::json!([]),
        };
        let doc = serde_json::json!({ "cluster": config.name(), "stages": rows, "api": api, "nodes": nodes, "apps": apps, "support": notices, "certificates": certificates, "certificate_warnings": cert_warnings, "reboot_required": reboot, "hardening": hard });
        crate::say!("{doc}");
        return Ok(());
    }
    crate::say!("cluster {}", config.name());
    crate::say!("{:<15} {:<12} {:>8}  probe", "STAGE", "STATUS", "ATTEMPTS");
    for r in &rows {
        crate::say!(
            "{:<15} {:<12} {:>8}  {}",
            r.id,
            r.status.as_str(),
            r.attempts,
            r.probe
        );
        if let Some(err) = &r.last_error {
            crate::say!(
                "{:<15} last error: {}",
                "",
                err.lines().next().unwrap_or_default()
            );
        }
    }
    match view {
        Err(e) => crate::say!("\nKubernetes API: {e}"),
        Ok((nodes, apps)) => {
            let ready = nodes.iter().filter(|n| n.ready).count();
            crate::say!("\nNODES ({ready}/{} Ready)", nodes.len());
            let width = nodes.iter().map(|n| n.name.len()).max().unwrap_or(4);
            for n in &nodes {
                crate::say!(
                    "{:<width$}  {:<9} {:<9} {:<22} {}",
                    n.name,
                    if n.ready { "Ready" } else { "NotReady" },
                    n.version,
                    n.roles.join(","),
                    n.labels
                );
            }
            crate::say!("\nAPPLICATIONS ({})", apps.len());
            if !apps.is_empty() {
                crate::say!("{}", crate::stages::root_app::table(&apps));
            }
        }
    }
    if let Some(h) = &hard {
        let enc = match h["encryption_key"].as_str() {
            Some(k) => format!("Secrets encrypted at rest (key {k})"),
            None => "Secrets NOT encrypted at rest".to_string(),
        };
        crate::say!(
            "\nHARDENING: {enc}; audit log {}; Pod Security enforce={} audit={} warn={}",
            h["audit"].as_str().unwrap_or_default(),
            h["pod_security"]["enforce"].as_str().unwrap_or_default(),
            h["pod_security"]["audit"].as_str().unwrap_or_default(),
            h["pod_security"]["warn"].as_str().unwrap_or_default()
        );
    }
    if !reboot.is_empty() {
        crate::say!(
            "\nREBOOT REQUIRED ({}): {} (`ecoboot reboot --only-needed`)",
            reboot.len(),
            reboot.join(", ")
        );
    }
    match &certs {
        None => {}
        Some(Err(e)) => crate::say!("\nCERTIFICATES: cannot read them: {e}"),
        Some(Ok(list)) => {
            crate::say!("\nCERTIFICATES (control plane, {} files)", list.len());
            if let Some(e) = list.iter().find(|e| !e.ca) {
                crate::say!(
                    "soonest: {} expires in {} day(s) ({})",
                    e.file,
                    e.days_left,
                    e.not_after
                );
            }
            for w in &cert_warnings {
                crate::say!("warning: {w}; renew with `ecoboot certs renew`");
            }
        }
    }
    if !notices.is_empty() {
        crate::say!("\nSUPPORT");
        let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
        for n in &notices {
            crate::say!("warning: {}; {}", n.message, n.help);
            if github {
                // ecoboot's own workflow command (its text is ecoboot's): not fenced.
                println!(
                    "::warning title=ecoboot support window::{}",
                    crate::report::gh_escape(&crate::report::sanitize(&n.message))
                );
            }
        }
    }
    Ok(())
}

/// Support-window notices for what the config asks for and, when the API answered, for the
/// oldest kubelet minor the cluster actually runs.
fn support_notices(
    config: &crate::config::Config,
    nodes: Option<&[NodeRow]>,
) -> Vec<crate::config::support::Notice> {
    use crate::config::support::{self, Component};
    let mut versions = config.versions();
    let oldest = (nodes.into_iter().flatten())
        .map(|n| support::minor(&n.version))
        .filter(|m| !m.is_empty())
        .min_by_key(|m| m.split('.').nth(1).and_then(|p| p.parse::<u32>().ok()));
    if let Some(live) = oldest
        && live != support::minor(&config.cluster.spec.kubernetes.version)
    {
        versions.push((Component::Kubernetes, live));
    }
    support::notices(&versions, support::Day::today())
}

/// The control plane's certificate expiry, once the cluster has an admin.conf (None before).
/// The hardening the control plane runs: the Secrets encryption key in use (its name, never the
/// key), the audit log and the Pod Security defaults as configured.
async fn hardening(cx: &Ctx) -> Option<serde_json::Value> {
    if !crate::nodes::admin_conf(&cx.state_dir()).exists() {
        return None;
    }
    let keys = async {
        let (_, conn) = cx.control_plane("status").await?;
        crate::certs::secrets_key::key_names(&conn).await
    };
    let keys = match tokio::time::timeout(STATUS_PROBE_TIMEOUT, keys).await {
        Ok(Ok(k)) => k,
        _ => return None,
    };
    let h = &cx.config.cluster.spec.kubernetes.hardening;
    let p = &h.pod_security;
    Some(serde_json::json!({
        "secrets_encrypted": !keys.is_empty(),
        "encryption_key": keys.first(),
        "rotation_in_progress": keys.len() > 1,
        "audit": h.audit.as_str(),
        "pod_security": {"enforce": p.enforce.as_str(), "audit": p.audit.as_str(), "warn": p.warn.as_str()},
        "security_updates": h.security_updates,
    }))
}

async fn control_plane_certs(cx: &Ctx) -> Option<Result<Vec<crate::certs::Expiry>, String>> {
    if !crate::nodes::admin_conf(&cx.state_dir()).exists() {
        return None;
    }
    let read = async {
        let (_, conn) = cx.control_plane("status").await?;
        crate::certs::read(&conn).await
    };
    Some(
        match tokio::time::timeout(STATUS_PROBE_TIMEOUT, read).await {
            Ok(Ok(list)) => Ok(list),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer".into()),
        },
    )
}

/// In GitHub Actions: one warning annotation per certificate close to expiry (`annotate`: not
/// with `--output json`, whose stdout is one JSON document), and a section in the step summary.
fn github_cert_warnings(warnings: &[String], annotate: bool) {
    if warnings.is_empty() || std::env::var("GITHUB_ACTIONS").map_or(true, |v| v != "true") {
        return;
    }
    for w in warnings.iter().filter(|_| annotate) {
        // ecoboot's own annotation: its message is escaped, so it cannot start another command.
        println!(
            "::warning title=ecoboot certificate expiry::{}",
            crate::report::gh_escape(&crate::report::sanitize(w))
        );
    }
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else {
        return;
    };
    let mut md = String::from("\n### Certificates close to expiry\n\n");
    for w in warnings {
        md.push_str(&format!(
            "- :warning: {w} (renew with `ecoboot certs renew`)\n"
        ));
    }
    let written = crate::fsutil::append_nofollow()
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, md.as_bytes()));
    if let Err(e) = written {
        eprintln!("warning: cannot write the step summary: {e}");
    }
}
