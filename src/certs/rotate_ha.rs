//! `ecoboot secrets rotate-key` with several control planes: no API server may write with the
//! new key before every API server can read it. So: (1) the new key is made on the control
//! plane holding the cluster and added *second* (read-only) there, the file copied to the
//! others, each API server restarted in turn; (2) the new key moved first on every control
//! plane, each restarted in turn; (3) every Secret rewritten; (4) the old key dropped
//! everywhere, each restarted in turn. Key names carry their creation time
//! (`key-YYYYmmddTHHMMSSZ`), so the files say where a killed rotation stopped: two keys with
//! the older first is step 1 done, the newer first is step 2 done. Every step is safe to
//! repeat. The file crosses SSH inside ecoboot's memory only (read with output never logged,
//! its secrets redacted), as at join.

use std::sync::Arc;

use super::secrets_key::{ID, edit, key_names, restart_api_server, run};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::event::Action;
use crate::hardening::ENCRYPTION;
use crate::ssh::{Conn, Target, script};

/// Where the rotation stands, from the key names of the first control plane.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// One key: make a new one.
    Start,
    /// Two keys, the older first: the new one is readable everywhere; make it first.
    Added,
    /// Two keys, the newer first: rewrite every Secret, then drop the old key.
    Switched,
}

/// The step `keys` (in file order) show.
pub fn step(keys: &[String]) -> Result<Step> {
    match keys {
        [] => Err(Error::Usage(
            "Secrets are not encrypted at rest on this cluster (spec.kubernetes.hardening.encryptSecrets): nothing to rotate".into(),
        )),
        [_] => Ok(Step::Start),
        [first, second, ..] if first < second => Ok(Step::Added),
        _ => Ok(Step::Switched),
    }
}

/// The plan, for the control planes in config order.
pub fn actions(nodes: &[String], keys: &[String]) -> Result<Vec<Action>> {
    let all = nodes.join(", ");
    let at = step(keys)?;
    let mut out = Vec::new();
    if at == Step::Start {
        let first = nodes.first().map(String::as_str).unwrap_or_default();
        out.push(Action::new(
            first,
            format!("make a new key on the node, after {} (read-only)", keys[0]),
        ));
        out.push(Action::new(
            &all,
            "the same file on every control plane; restart each kube-apiserver in turn",
        ));
    }
    if at != Step::Switched {
        out.push(Action::new(
            &all,
            "put the new key first; restart each kube-apiserver in turn",
        ));
    }
    out.push(Action::new(&all, "rewrite every Secret with the new key"));
    out.push(Action::new(
        &all,
        "drop the old key(s); restart each kube-apiserver in turn",
    ));
    Ok(out)
}

/// Every control plane, the one holding the cluster first; all must be reachable.
pub async fn control_planes(cx: &Ctx) -> Result<Vec<(Target, Arc<Conn>)>> {
    cx.all_control_planes(ID, "every API server must hold the keys")
        .await
}

async fn restart_each(cx: &Ctx, conns: &[(Target, Arc<Conn>)], why: &str) -> Result<()> {
    for (t, conn) in conns {
        restart_api_server(conn).await?;
        cx.events.progress(
            ID,
            Some(&t.node),
            format!("kube-apiserver restarted ({why})"),
        );
    }
    Ok(())
}

/// Runs the rotation from where the files stand.
pub async fn rotate(cx: &Ctx) -> Result<()> {
    let conns = control_planes(cx).await?;
    let (first, conn) = conns.first().cloned().expect("at least one control plane");
    let mut at = step(&key_names(&conn).await?)?;
    if at == Step::Start {
        let add = edit(
            "name=\"key-$(date -u +%Y%m%dT%H%M%SZ)\"\nkey=\"$(head -c 32 /dev/urandom | base64 -w0)\"",
            "-v n=\"$name\" -v k=\"$key\" '{print} /^              secret: / && !done {print \"            - name: \" n; print \"              secret: \" k; done=1}'",
        );
        run(&conn, "add a new encryption key second", &add).await?;
        cx.events.progress(
            ID,
            Some(&first.node),
            "new key added after the old one (made on the node)",
        );
        at = Step::Added;
        copy_everywhere(&conns).await?;
        restart_each(cx, &conns, "it reads the new key").await?;
    }
    if at == Step::Added {
        // A killed run may have left the others without the file: the first's goes everywhere.
        copy_everywhere(&conns).await?;
        let swap = edit(
            "",
            "'/^            - name: /{n++} n==1 && (/^            - name: / || /^              secret: /){held = held $0 \"\\n\"; next} n==2 && /^              secret: /{print; printf \"%s\", held; next} {print}'",
        );
        for (_, c) in &conns {
            run(c, "put the new key first", &swap).await?;
        }
        restart_each(cx, &conns, "it writes with the new key").await?;
    }
    let n = crate::api::secrets::rewrite_all(&cx.kube(ID).await?).await?;
    cx.events.progress(
        ID,
        None,
        format!("{n} Secret(s) rewritten with the new key"),
    );
    let drop_old = edit(
        "",
        "'/^            - name: /{n++} n>1 && (/^            - name: / || /^              secret: /){next} {print}'",
    );
    for (_, c) in &conns {
        run(c, "drop the old encryption key", &drop_old).await?;
    }
    restart_each(cx, &conns, "the old key is gone").await?;
    let now = key_names(&conn).await?;
    let line = format!(
        "rotated on {} control planes: the only key is now {}",
        conns.len(),
        now.first().cloned().unwrap_or_default()
    );
    cx.events.progress(ID, None, line);
    Ok(())
}

/// The first control plane's EncryptionConfiguration written on the others (0600, atomically).
async fn copy_everywhere(conns: &[(Target, Arc<Conn>)]) -> Result<()> {
    let (_, first) = &conns[0];
    let text = crate::stages::shared::control_plane::encryption_config(first)
        .await?
        .ok_or_else(|| Error::StageFailed {
            stage: ID.into(),
            message: format!("{}: {ENCRYPTION} is missing", first.node),
            help: "run `ecoboot up` (init-master puts the hardening files back), then rerun".into(),
        })?;
    for (_, c) in &conns[1..] {
        let write = script::write_file(ENCRYPTION, text.as_bytes(), 0o600);
        c.run_ok(
            ID,
            "the encryption configuration",
            &write,
            std::time::Duration::from_secs(60),
            "rerun `ecoboot secrets rotate-key`",
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_say_where_a_rotation_stopped() {
        let k = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(step(&[]).is_err());
        assert_eq!(step(&k(&["key-20261201T000000Z"])).unwrap(), Step::Start);
        assert_eq!(
            step(&k(&["key-20261201T000000Z", "key-20261206T000000Z"])).unwrap(),
            Step::Added
        );
        assert_eq!(
            step(&k(&["key-20261206T000000Z", "key-20261201T000000Z"])).unwrap(),
            Step::Switched
        );
        let nodes = k(&["a", "b", "c"]);
        assert_eq!(actions(&nodes, &k(&["key-1"])).unwrap().len(), 5);
        assert_eq!(actions(&nodes, &k(&["key-1", "key-2"])).unwrap().len(), 3);
        assert_eq!(actions(&nodes, &k(&["key-2", "key-1"])).unwrap().len(), 2);
    }
}
