//! `spec.kubernetes.hardening`: what the control plane enforces. Everything is on by default;
//! each default can be turned off here.

use serde::Deserialize;

use super::Located;

/// `spec.kubernetes.hardening`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct Hardening {
    /// Secrets encrypted at rest in etcd (secretbox; the key is made on the control plane,
    /// 0600, and never leaves it except inside the encrypted backup archive). Default true.
    pub encrypt_secrets: bool,
    /// The API server's audit log (/var/log/kubernetes/audit, 30 days, 10 files of 100 MB):
    /// `default` (ecoboot's policy: metadata for most requests, Secrets without bodies, none
    /// for events, leases and health checks), `off`, or the path of an audit Policy file.
    pub audit: Located<String>,
    /// Pod Security Admission, cluster-wide defaults.
    pub pod_security: PodSecurity,
    /// Unattended security upgrades on every node (Ubuntu's security origins only, never an
    /// automatic reboot: `ecoboot reboot --only-needed` rolls them). Default true.
    pub security_updates: bool,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            encrypt_secrets: true,
            audit: plain("default"),
            pod_security: PodSecurity::default(),
            security_updates: true,
        }
    }
}

/// `spec.kubernetes.hardening.podSecurity`: the levels (`privileged`, `baseline`,
/// `restricted`) for namespaces without their own `pod-security.kubernetes.io/*` labels.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct PodSecurity {
    /// Pods violating this level are refused (default `baseline`).
    pub enforce: Located<String>,
    /// Violations of this level are recorded in the audit log (default `restricted`).
    pub audit: Located<String>,
    /// Violations of this level are returned as warnings to the client (default `restricted`).
    pub warn: Located<String>,
    /// Namespaces exempt from every level (default `kube-system`, where Calico and kube-proxy
    /// run privileged).
    pub exempt_namespaces: Vec<Located<String>>,
}

impl Default for PodSecurity {
    fn default() -> Self {
        PodSecurity {
            enforce: plain("baseline"),
            audit: plain("restricted"),
            warn: plain("restricted"),
            exempt_namespaces: vec![plain("kube-system")],
        }
    }
}

/// The Pod Security levels.
pub const LEVELS: [&str; 3] = ["privileged", "baseline", "restricted"];

fn plain(s: &str) -> Located<String> {
    Located {
        value: s.to_string(),
        span: None,
    }
}

/// Checks the levels and the namespace names (each problem with its span).
pub(super) fn check(ck: &mut super::validate::Checker, h: &Hardening) {
    let p = &h.pod_security;
    for (key, level) in [
        ("enforce", &p.enforce),
        ("audit", &p.audit),
        ("warn", &p.warn),
    ] {
        if !LEVELS.contains(&level.as_str()) {
            ck.err(
                level,
                format!("`spec.kubernetes.hardening.podSecurity.{key}`: `{}` is not a Pod Security level", level.as_str()),
                "one of privileged, baseline, restricted",
            );
        }
    }
    for ns in &p.exempt_namespaces {
        if !super::syntax::is_dns_label(ns) {
            ck.err(
                ns,
                format!("`spec.kubernetes.hardening.podSecurity.exemptNamespaces`: `{}` is not a namespace name", super::syntax::clip(ns)),
                "a DNS-1123 label: lowercase letters, digits and `-`",
            );
        }
    }
    if h.audit.as_str().trim().is_empty() {
        ck.err(
            &h.audit,
            "`spec.kubernetes.hardening.audit` is empty",
            "`default`, `off`, or the path of an audit Policy file",
        );
    }
}
