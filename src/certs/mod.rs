//! The control plane's certificates: their expiry read over SSH (every `*.crt` under
//! `/etc/kubernetes/pki`, and the client certificates embedded in kubeadm's kubeconfigs), for
//! `status` (a warning below [`WARN_DAYS`]), and `ecoboot certs renew` ([`renew`]). Kubelet
//! client certificates rotate by themselves (`rotateCertificates` in the KubeletConfiguration
//! ecoboot generates).

pub mod renew;
pub mod rotate_ha;
pub mod secrets_key;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use renew::{RenewPlan, plan, renew};

use crate::error::{Error, Result};
use crate::ssh::Conn;

/// Event stage id of `certs renew`.
pub const ID: &str = "certs";

/// Below this many days left, `status` warns.
pub const WARN_DAYS: i64 = 30;

/// Prints `<file> <notAfter as epoch seconds>` for every certificate kubeadm manages.
const READ_EXPIRY: &str = r#"for f in /etc/kubernetes/pki/*.crt /etc/kubernetes/pki/etcd/*.crt; do
  [ -f "$f" ] || continue
  end=$(openssl x509 -enddate -noout -in "$f" 2>/dev/null | cut -d= -f2)
  [ -n "$end" ] && echo "$f $(date -u -d "$end" +%s)"
done
for f in /etc/kubernetes/admin.conf /etc/kubernetes/super-admin.conf /etc/kubernetes/controller-manager.conf /etc/kubernetes/scheduler.conf; do
  [ -f "$f" ] || continue
  data=$(sed -n 's/^ *client-certificate-data: *//p' "$f" | head -n1)
  [ -n "$data" ] || continue
  end=$(printf '%s' "$data" | base64 -d 2>/dev/null | openssl x509 -enddate -noout 2>/dev/null | cut -d= -f2)
  [ -n "$end" ] && echo "$f $(date -u -d "$end" +%s)"
done
true"#;

/// One certificate and when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiry {
    /// The file (`/etc/kubernetes/pki/apiserver.crt`, or a kubeconfig for embedded ones).
    pub file: String,
    /// notAfter, RFC 3339 (UTC).
    pub not_after: String,
    /// Whole days left (negative once expired).
    pub days_left: i64,
    /// A certificate authority (10 years; `certs renew` does not renew CAs).
    pub ca: bool,
}

impl Expiry {
    /// Whether `status` should warn about it.
    pub fn warn(&self) -> bool {
        self.days_left < WARN_DAYS
    }
}

/// Parses [`READ_EXPIRY`]'s output against `now` (seconds since the epoch); soonest first.
pub fn parse(stdout: &str, now: u64) -> Vec<Expiry> {
    let mut out: Vec<Expiry> = stdout
        .lines()
        .filter_map(|l| {
            let (file, secs) = l.trim().rsplit_once(' ')?;
            let secs: u64 = secs.parse().ok()?;
            let at = UNIX_EPOCH + Duration::from_secs(secs);
            let name = file.rsplit('/').next().unwrap_or(file);
            Some(Expiry {
                file: file.to_string(),
                not_after: humantime::format_rfc3339_seconds(at).to_string(),
                days_left: (secs as i64 - now as i64).div_euclid(86_400),
                ca: name.ends_with("ca.crt"),
            })
        })
        .collect();
    out.sort_by_key(|e| (e.days_left, e.file.clone()));
    out
}

/// Reads the expiry of every certificate on the control plane.
pub async fn read(conn: &Conn) -> Result<Vec<Expiry>> {
    let out = conn
        .run(
            "certificate expiry",
            READ_EXPIRY,
            Duration::from_secs(60),
            true,
        )
        .await?;
    if !out.ok() {
        return Err(Error::StageFailed {
            stage: ID.into(),
            message: format!(
                "{}: cannot read the certificates: {}",
                conn.node,
                out.tail(3)
            ),
            help: "check /etc/kubernetes/pki on the control plane and that openssl is installed"
                .into(),
        });
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    Ok(parse(&out.stdout, now))
}

/// The certificates worth a warning, as one line each (CAs included: an expired CA stops the
/// cluster and needs a manual rotation).
pub fn warnings(list: &[Expiry]) -> Vec<String> {
    list.iter()
        .filter(|e| e.warn())
        .map(|e| match e.days_left {
            d if d < 0 => format!("{} expired on {}", e.file, e.not_after),
            d => format!("{} expires in {d} day(s) ({})", e.file, e.not_after),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_days_left_soonest_first_and_marks_cas() {
        let now = 1_800_000_000;
        let day = 86_400;
        let text = format!(
            "/etc/kubernetes/pki/apiserver.crt {}\n/etc/kubernetes/pki/ca.crt {}\n/etc/kubernetes/pki/etcd/server.crt {}\ngarbage\n/etc/kubernetes/admin.conf {}\n",
            now + 365 * day,
            now + 3650 * day,
            now + 10 * day + 60,
            now - day
        );
        let list = parse(&text, now);
        let files: Vec<&str> = list.iter().map(|e| e.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "/etc/kubernetes/admin.conf",
                "/etc/kubernetes/pki/etcd/server.crt",
                "/etc/kubernetes/pki/apiserver.crt",
                "/etc/kubernetes/pki/ca.crt"
            ]
        );
        assert_eq!(list[0].days_left, -1);
        assert_eq!(list[1].days_left, 10);
        assert!(list[3].ca && !list[2].ca);
        let w = warnings(&list);
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("expired on") && w[1].contains("expires in 10 day(s)"));
        assert!(list[2].not_after.ends_with('Z'));
    }
}
