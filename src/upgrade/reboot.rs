//! `ecoboot reboot [--only-needed]`: rolling reboots, e.g. after unattended security upgrades
//! installed a kernel. The upgrade machinery per node: cordon, drain through the Eviction API
//! (PodDisruptionBudgets honoured), reboot, wait for a new boot id over SSH, uncordon, wait
//! Ready. Workers in batches of `--max-unavailable`, infrastructure nodes alone, the control
//! plane last and alone. Journaled per node, so a crash resumes at the node in progress.

use std::time::Duration;

use super::journal::{Phase, Record};
use super::{Options, drain};
use crate::config::Role;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::retry::{Backoff, Try, retry};

/// The journal key of a rolling reboot.
pub const KEY: &str = "reboot";
/// Event stage name.
pub const ID: &str = "reboot";
/// What Ubuntu's packages leave when a reboot is needed.
pub const REBOOT_REQUIRED: &str = "/var/run/reboot-required";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// How long a node may take to come back.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The reachable nodes that need a reboot (`/var/run/reboot-required`), and the unreachable.
pub async fn pending(cx: &Ctx) -> Result<(Vec<String>, Vec<String>)> {
    let (conns, unreachable) = cx.connect_nodes(ID, |_| true).await?;
    let check = format!("[ -e {REBOOT_REQUIRED} ] && echo yes || echo no");
    let found = crate::fanout::each(conns, 0, |(t, conn)| {
        let check = check.clone();
        async move {
            let out = conn
                .run("reboot required?", &check, Duration::from_secs(30), false)
                .await;
            (
                t.node,
                out.map(|o| o.stdout.trim() == "yes").unwrap_or(false),
            )
        }
    })
    .await;
    let needing = found
        .into_iter()
        .filter(|(_, yes)| *yes)
        .map(|(n, _)| n)
        .collect();
    Ok((needing, unreachable.into_iter().map(|f| f.node).collect()))
}

/// The nodes that need a reboot; every node must answer.
pub async fn needing(cx: &Ctx) -> Result<Vec<String>> {
    let (needing, unreachable) = pending(cx).await?;
    match unreachable.first() {
        Some(n) => Err(Error::StageFailed {
            stage: ID.into(),
            message: format!("{n} is unreachable"),
            help: "every node must answer before a rolling reboot starts".into(),
        }),
        None => Ok(needing),
    }
}

/// The batches: workers (infrastructure nodes alone) at most `max_unavailable` at a time, then
/// the control plane alone; only nodes in `only` when given, plus any an unfinished reboot left.
pub async fn plan(cx: &Ctx, opts: &Options, only_needed: bool) -> Result<Vec<Vec<String>>> {
    let previous: Option<Record> = cx.state().output(KEY);
    let need = match only_needed {
        true => Some(needing(cx).await?),
        false => None,
    };
    let unfinished = |n: &str| {
        previous
            .as_ref()
            .is_some_and(|r| !r.finished() && r.nodes.contains_key(n) && r.phase(n) != Phase::Done)
    };
    let wanted =
        |n: &str| need.as_ref().is_none_or(|need| need.iter().any(|x| x == n)) || unfinished(n);
    let max = opts.max_unavailable.max(1);
    let mut batches: Vec<Vec<String>> = Vec::new();
    let mut open = Vec::new();
    for node in cx
        .config
        .nodes()
        .filter(|n| n.role != Some(Role::ControlPlane))
    {
        let name = node.name.value.clone();
        if !wanted(&name) {
            continue;
        }
        if super::plan::infrastructure(node) {
            batches.push(vec![name]);
            continue;
        }
        open.push(name);
        if open.len() == max {
            batches.push(std::mem::take(&mut open));
        }
    }
    if !open.is_empty() {
        batches.push(open);
    }
    let cp = cx.config.control_plane().name.value.clone();
    if wanted(&cp) {
        batches.push(vec![cp]);
    }
    Ok(batches)
}

async fn boot_id(cx: &Ctx, name: &str) -> Result<String> {
    let (_, conn) = super::connect(cx, name).await?;
    let out = conn
        .run(
            "boot id",
            &format!("cat {BOOT_ID}"),
            Duration::from_secs(30),
            false,
        )
        .await?;
    Ok(out.stdout.trim().to_string())
}

/// Reboots `name` and waits until it answers SSH with a new boot id.
async fn reboot_one(cx: &Ctx, name: &str) -> Result<()> {
    let before = boot_id(cx, name).await?;
    let (_, conn) = super::connect(cx, name).await?;
    // Detached, so the command returns before sshd goes down.
    let go = "nohup sh -c 'sleep 2; systemctl reboot' >/dev/null 2>&1 &";
    conn.run("reboot", go, Duration::from_secs(30), true)
        .await?;
    cx.events.progress(ID, Some(name), "rebooting");
    drop(conn);
    let back = retry(
        &Backoff::poll(Duration::from_secs(3), BOOT_TIMEOUT),
        |_| async {
            cx.disconnect(name).await;
            match boot_id(cx, name).await {
                Ok(id) if !id.is_empty() && id != before => Try::Done(()),
                _ => Try::Again(()),
            }
        },
    )
    .await;
    back.map_err(|()| Error::StageFailed {
        stage: ID.into(),
        message: format!("{name} did not come back with a new boot within {}s", BOOT_TIMEOUT.as_secs()),
        help: "check the instance's console (`aws ec2 get-console-output`); rerun `ecoboot reboot` to continue at this node".into(),
    })
}

/// Reboots the planned nodes inside the rolling frame ([`super::rolling`]).
pub async fn run(cx: &Ctx, batches: &[Vec<String>], opts: &Options) -> Result<()> {
    let rolling = super::rolling::Rolling {
        key: KEY,
        id: ID,
        op: drain::Op {
            stage: ID,
            rerun: "ecoboot reboot",
        },
        reason: "reboot",
        done: "rebooted; node Ready",
    };
    rolling
        .run(cx, batches, opts, |name| async move {
            reboot_one(cx, &name).await
        })
        .await
}
