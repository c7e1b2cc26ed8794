//! `ecoboot validate`: the cluster proves itself. Every check reads the API (nodes with the
//! config's labels and taints, the control plane's static pods, system-critical pods, ArgoCD's
//! Applications) or runs short-lived probe pods (DNS from every node; pod-to-pod over the pod
//! network, each node as client of the next), and names the node or pod and the likely cause
//! when it fails.

mod cluster;
pub mod control_planes;
mod probes;

use serde::Serialize;

use crate::config::Config;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`nodes`, `static pods`, `critical pods`, `dns`, `pod network`,
    /// `applications`).
    pub check: &'static str,
    /// The node, pod or object it is about.
    pub subject: String,
    /// Passed.
    pub ok: bool,
    /// What was seen and, on failure, the likely cause.
    pub detail: String,
}

impl Check {
    fn pass(check: &'static str, subject: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            check,
            subject: subject.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    fn fail(check: &'static str, subject: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            check,
            subject: subject.into(),
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Every check of one validation round.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// In the order run.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether everything passed.
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// The failed checks.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }

    /// A plain table: one line per check (passed checks of the same kind folded into one).
    pub fn table(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut kinds: Vec<&'static str> = self.checks.iter().map(|c| c.check).collect();
        kinds.dedup();
        for kind in kinds {
            let of: Vec<&Check> = self.checks.iter().filter(|c| c.check == kind).collect();
            let failed: Vec<&&Check> = of.iter().filter(|c| !c.ok).collect();
            if failed.is_empty() {
                out.push(format!("ok    {kind:<14} {} passed", of.len()));
            }
            for c in failed {
                out.push(format!("FAIL  {kind:<14} {}: {}", c.subject, c.detail));
            }
        }
        out
    }

    /// The Markdown table for the GitHub step summary.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "### ecoboot validate\n\n| check | subject | result | detail |\n|---|---|---|---|\n",
        );
        for c in &self.checks {
            let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                c.check,
                cell(&c.subject),
                if c.ok { "ok" } else { "**FAIL**" },
                cell(&c.detail)
            ));
        }
        out
    }
}

/// Runs every check once against `client`. With `extra_nodes_ok`, Nodes that are not in the
/// config pass the count check (they are reported, not failed: `up` leaves them unless
/// `--prune`).
pub async fn run(client: &kube::Client, config: &Config, extra_nodes_ok: bool) -> Report {
    let mut checks = Vec::new();
    checks.extend(cluster::nodes(client, config, extra_nodes_ok).await);
    checks.extend(cluster::static_pods(client, config).await);
    checks.extend(cluster::critical_pods(client).await);
    checks.extend(probes::run(client, config).await);
    checks.extend(cluster::applications(client, config).await);
    Report { checks }
}
