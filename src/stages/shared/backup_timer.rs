//! The scheduled etcd backup (`spec.backup.schedule`) on every control plane (only the etcd
//! leader's run takes the backup): a systemd timer
//! running `templates/ecoboot-backup.py` (standard-library Python: snapshot, check, tar.gz, SigV4
//! upload with the instance profile's credentials through IMDSv2, keep the newest N). init-master
//! keeps it converged: written when missing or different, removed when the schedule is dropped.
//! The role the control plane wears gets exactly the permission it needs ([`backup_policy`]).

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::Result;
use crate::event::Action;
use crate::ssh::{Conn, script};
use crate::stages::shared::backup_target::target;

const SCRIPT: &str = include_str!("../../../templates/ecoboot-backup.py");
const SCRIPT_PATH: &str = "/usr/local/sbin/ecoboot-backup";
const SERVICE_PATH: &str = "/etc/systemd/system/ecoboot-backup.service";
const TIMER_PATH: &str = "/etc/systemd/system/ecoboot-backup.timer";

/// The three files the timer needs, with their modes, when a schedule is configured.
pub fn files(config: &Config) -> Option<Vec<(&'static str, String, u32)>> {
    let (bucket, prefix) = target(config)?;
    let schedule = &config.cluster.spec.backup.schedule.as_ref()?.value;
    let keep = config.cluster.spec.backup.keep.value.max(1);
    let args = [
        bucket.as_str(),
        prefix.as_str(),
        config.name(),
        &keep.to_string(),
    ]
    .map(script::quote)
    .join(" ");
    let service = format!(
        "[Unit]\nDescription=ecoboot etcd backup to s3://{bucket}/{prefix}\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/python3 {SCRIPT_PATH} {args}\n"
    );
    let timer = format!(
        "[Unit]\nDescription=ecoboot etcd backup ({schedule})\n\n[Timer]\nOnCalendar={schedule}\nPersistent=true\nRandomizedDelaySec=300\n\n[Install]\nWantedBy=timers.target\n"
    );
    Some(vec![
        (SCRIPT_PATH, SCRIPT.to_string(), 0o700),
        (SERVICE_PATH, service, 0o644),
        (TIMER_PATH, timer, 0o644),
    ])
}

fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// What the timer still needs on the control plane `node` (`None`: as configured).
pub async fn probe(config: &Config, conn: &Conn, node: &str) -> Result<Option<Action>> {
    let check = format!(
        "for f in {SCRIPT_PATH} {SERVICE_PATH} {TIMER_PATH}; do [ -f \"$f\" ] && sha256sum \"$f\"; done\nsystemctl is-enabled --quiet ecoboot-backup.timer && echo enabled\ntrue"
    );
    let out = conn
        .run("backup timer", &check, Duration::from_secs(60), true)
        .await?;
    let have: Vec<(String, String)> = (out.stdout.lines())
        .filter_map(|l| l.split_once("  "))
        .map(|(sum, path)| (path.to_string(), sum.to_string()))
        .collect();
    let enabled = out.stdout.lines().any(|l| l == "enabled");
    Ok(match files(config) {
        None if have.is_empty() && !enabled => None,
        None => Some(Action::new(
            node,
            "remove the backup timer (no spec.backup.schedule)",
        )),
        Some(want) => {
            let same = want.iter().all(|(path, text, _)| {
                have.iter()
                    .any(|(p, sum)| p == path && *sum == digest(text))
            });
            (!same || !enabled).then(|| {
                let schedule = &config
                    .cluster
                    .spec
                    .backup
                    .schedule
                    .as_ref()
                    .expect("files")
                    .value;
                Action::new(node, format!("install the etcd backup timer ({schedule})"))
            })
        }
    })
}

/// Writes and enables the timer, or removes it when no schedule is configured.
pub async fn apply(config: &Config, conn: &Conn, stage: &str) -> Result<()> {
    let help = "see the node log; rerun `ecoboot up`";
    let script = match files(config) {
        Some(want) => {
            let mut s = String::from("set -e\n");
            for (path, text, mode) in &want {
                s.push_str(&script::write_file(path, text.as_bytes(), *mode));
                s.push('\n');
            }
            s.push_str("systemctl daemon-reload\nsystemctl enable --now ecoboot-backup.timer");
            s
        }
        None => format!(
            "systemctl disable --now ecoboot-backup.timer >/dev/null 2>&1 || true\nrm -f {SCRIPT_PATH} {SERVICE_PATH} {TIMER_PATH}\nsystemctl daemon-reload"
        ),
    };
    conn.run_ok(
        stage,
        "backup timer",
        &script,
        Duration::from_secs(120),
        help,
    )
    .await
    .map(drop)
}
