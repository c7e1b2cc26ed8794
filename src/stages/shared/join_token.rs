//! The short-lived bootstrap token both join stages use: created on a control plane for one
//! apply (15 minutes TTL), kept only in memory and redacted, deleted when the apply ends.

use std::time::Duration;

use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::ssh::{Conn, redact, script};

/// A bootstrap token and what a joining node checks the cluster against.
pub struct JoinToken {
    /// `host:port` of the API server (the load balancer with several control planes).
    pub endpoint: String,
    /// `<id>.<secret>`: never log or store it.
    pub token: String,
    /// `sha256:<hex>` of the cluster CA's public key.
    pub ca_hash: String,
}

/// The endpoint, token and CA hash from `kubeadm token create --print-join-command`.
fn parse_join_command(line: &str) -> Option<JoinToken> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string())
    };
    let endpoint = words
        .iter()
        .position(|w| *w == "join")
        .and_then(|i| words.get(i + 1))
        .map(|s| s.to_string())?;
    Some(JoinToken {
        endpoint,
        token: after("--token")?,
        ca_hash: after("--discovery-token-ca-cert-hash")?,
    })
}

/// Creates a 15-minute token on `master` (registered for redaction at once).
pub async fn create(master: &Conn, stage: &'static str) -> Result<JoinToken> {
    let created = master
        .run_secret(
            "create bootstrap token",
            "kubeadm token create --ttl 15m --print-join-command",
            Duration::from_secs(60),
            true,
        )
        .await?;
    let parsed = created.stdout.lines().find_map(parse_join_command);
    match parsed.filter(|_| created.ok()) {
        Some(t) => {
            redact::register(&t.token);
            Ok(t)
        }
        None => Err(Error::StageFailed {
            stage: stage.into(),
            message: format!("cannot create a bootstrap token: {}", created.tail(3)),
            help: "check the control plane (`ecoboot stage init-master`)".into(),
        }),
    }
}

/// Deletes the token; a warning (it expires within 15 minutes) when that fails.
pub async fn delete(cx: &Ctx, master: &Conn, token: &JoinToken, stage: &'static str) {
    let id = token.token.split('.').next().unwrap_or_default();
    let deleted = master
        .run(
            "delete bootstrap token",
            &format!("kubeadm token delete {}", script::quote(id)),
            Duration::from_secs(60),
            true,
        )
        .await;
    if !deleted.as_ref().is_ok_and(|o| o.ok()) {
        cx.events.progress(
            stage,
            None,
            "warning: could not delete the bootstrap token; it expires within 15 minutes",
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_join_command() {
        let line = "kubeadm join 10.0.1.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:00ff ";
        let t = super::parse_join_command(line).unwrap();
        assert_eq!(
            (t.endpoint.as_str(), t.token.as_str(), t.ca_hash.as_str()),
            ("10.0.1.10:6443", "abcdef.0123456789abcdef", "sha256:00ff")
        );
        assert!(super::parse_join_command("garbage").is_none());
    }
}
