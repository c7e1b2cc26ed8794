//! `ecoboot secrets rotate-key`: a new Secrets encryption key, made on the control plane (it
//! never crosses SSH), put first in the EncryptionConfiguration (so new writes use it while
//! the old key still decrypts), the API server restarted, every Secret rewritten with the new
//! key, the old key dropped, the API server restarted again. The file itself says where a
//! killed rotation stopped (two keys: the new one is in; continue from the restart), so every
//! step is safe to repeat.

use std::time::Duration;

use super::renew::{restart_script, wait_ready};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::event::Action;
use crate::hardening::ENCRYPTION;
use crate::ssh::Conn;

/// Event stage name.
pub const ID: &str = "secrets-rotate-key";

/// The secretbox key names in the file, in order (never the keys).
pub async fn key_names(conn: &Conn) -> Result<Vec<String>> {
    let read =
        format!("[ -f {ENCRYPTION} ] && sed -n 's/^            - name: //p' {ENCRYPTION}; true");
    let out = conn
        .run("encryption key names", &read, Duration::from_secs(30), true)
        .await?;
    let valid =
        |n: &&str| n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    Ok(out
        .stdout
        .lines()
        .map(str::trim)
        .filter(valid)
        .map(str::to_string)
        .collect())
}

/// What the rotation will do, from the keys the control plane has now.
pub fn actions(node: &str, keys: &[String]) -> Result<Vec<Action>> {
    let mut out = Vec::new();
    match keys.len() {
        0 => {
            return Err(Error::Usage(
                "Secrets are not encrypted at rest on this cluster (spec.kubernetes.hardening.encryptSecrets): nothing to rotate".into(),
            ));
        }
        1 => out.push(Action::new(
            node,
            format!("make a new key on the node and put it before {}", keys[0]),
        )),
        _ => out.push(Action::new(
            node,
            format!(
                "continue the rotation to {} (an earlier run stopped)",
                keys[0]
            ),
        )),
    }
    out.push(Action::new(
        node,
        "restart kube-apiserver and wait for /readyz",
    ));
    out.push(Action::new(node, "rewrite every Secret with the new key"));
    let old: Vec<&str> = keys
        .iter()
        .skip(usize::from(keys.len() > 1))
        .map(String::as_str)
        .collect();
    out.push(Action::new(
        node,
        format!(
            "drop the old key(s) {}, restart kube-apiserver again",
            old.join(", ")
        ),
    ));
    Ok(out)
}

/// A node script that rewrites the EncryptionConfiguration through `awk ARGS` (after `setup`
/// shell lines), atomically and 0600.
pub(super) fn edit(setup: &str, args: &str) -> String {
    format!(
        "set -e\nf={ENCRYPTION}\numask 077\n{setup}\nawk {args} \"$f\" >\"$f.ecoboot-tmp\"\nchmod 600 \"$f.ecoboot-tmp\"\nmv -f \"$f.ecoboot-tmp\" \"$f\""
    )
}

pub(super) async fn run(conn: &Conn, label: &str, script: &str) -> Result<()> {
    let help = "rerun `ecoboot secrets rotate-key`: it continues where it stopped";
    conn.run_ok(ID, label, script, Duration::from_secs(400), help)
        .await
        .map(drop)
}

/// Restarts kube-apiserver on `conn`'s control plane and waits until it is ready.
pub(super) async fn restart_api_server(conn: &Conn) -> Result<()> {
    run(
        conn,
        "restart kube-apiserver",
        &restart_script("kube-apiserver"),
    )
    .await?;
    wait_ready(conn).await
}

/// Rotates the key (see the module docs).
pub async fn rotate(cx: &Ctx) -> Result<()> {
    let (target, conn) = cx.control_plane(ID).await?;
    let say = |m: String| cx.events.progress(ID, Some(&target.node), m);
    let keys = key_names(&conn).await?;
    actions(&target.node, &keys)?;
    if keys.len() == 1 {
        let add = edit(
            "name=\"key-$(date -u +%Y%m%dT%H%M%SZ)\"\nkey=\"$(head -c 32 /dev/urandom | base64 -w0)\"",
            "-v n=\"$name\" -v k=\"$key\" '/^            - name: / && !done {print \"            - name: \" n; print \"              secret: \" k; done=1} {print}'",
        );
        run(&conn, "add a new encryption key", &add).await?;
        say("new key added first (made on the node)".into());
    }
    restart_api_server(&conn).await?;
    let n = crate::api::secrets::rewrite_all(&cx.kube(ID).await?).await?;
    say(format!("{n} Secret(s) rewritten with the new key"));
    let drop_old = edit(
        "",
        "'/^            - name: /{n++} n>1 && (/^            - name: / || /^              secret: /){next} {print}'",
    );
    run(&conn, "drop the old encryption key", &drop_old).await?;
    restart_api_server(&conn).await?;
    let now = key_names(&conn).await?;
    say(format!(
        "rotated: the only key is now {}",
        now.first().cloned().unwrap_or_default()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_without_encryption_has_nothing_to_rotate() {
        assert!(actions("cp", &[]).is_err());
        let one = actions("cp", &["key-a".into()]).unwrap();
        assert!(one[0].what.contains("put it before key-a"), "{one:?}");
        let two = actions("cp", &["key-b".into(), "key-a".into()]).unwrap();
        assert!(two[0].what.contains("continue the rotation to key-b"));
        assert!(two[3].what.contains("drop the old key(s) key-a"), "{two:?}");
    }
}
