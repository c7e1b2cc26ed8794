//! `ecoboot down`: deletes every resource tagged with the cluster, reported through the same
//! events as `up`.

use crate::cli::Global;
use crate::config::FileChecks;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::event::{Event, millis};
use crate::teardown;
use std::time::Instant;

use super::{confirm, events_for, finish_run, load_config};

/// Runs `ecoboot down`: the plan first (every resource it would delete, the volumes it keeps),
/// then, with consent, the deletes. `dry_run` stops after the plan.
pub(super) async fn down(
    g: &Global,
    yes: bool,
    dry_run: bool,
    delete_volumes: bool,
    images: bool,
) -> Result<()> {
    let config = load_config(g, FileChecks::Skip)?;
    let consent = match dry_run {
        true => None,
        false => Some(confirm::consent("down", yes)?),
    };
    let store = super::state_cmd::open(g, &config, !dry_run).await?;
    let log = crate::output::init_tracing(g.verbose, Some(&store.dir().join("logs")), "down");
    let state = store.load(config.name())?;
    let events = events_for(g, false);
    let cx = Ctx::new(config.clone(), events.clone(), store, state);
    let roles = crate::stages::iam::all_role_names(&config);
    events.emit(Event::RunStarted {
        command: "down".into(),
        cluster: config.name().into(),
        ecoboot: crate::build_info::BUILD,
    });
    let actions = teardown::plan(cx.aws().await, &roles, delete_volumes, images).await?;
    events.emit(Event::StagePlan {
        stage: teardown::ID.into(),
        actions,
    });
    if dry_run {
        return cx.close_state().await;
    }
    if consent == Some(confirm::Consent::Ask)
        && !confirm::ask(&format!(
            "Delete these AWS resources of cluster `{}`?",
            config.name()
        ))
    {
        let _ = cx.close_state().await;
        return Err(Error::Usage("cancelled; nothing was deleted".into()));
    }
    let started = Instant::now();
    events.emit(Event::StageStarted {
        stage: teardown::ID.into(),
        title: "Delete every resource tagged with the cluster".into(),
    });
    let result = teardown::down(cx.aws().await, &events, &roles, delete_volumes, images).await;
    let aws_calls = cx.take_aws_calls();
    match &result {
        Ok(0) => events.emit(Event::StageSkipped {
            stage: teardown::ID.into(),
            message: format!(
                "nothing is tagged ecoboot.io/cluster={}: nothing to do",
                config.name()
            ),
            aws_calls,
        }),
        Ok(n) => {
            let mut counters = std::collections::BTreeMap::new();
            counters.insert("deleted".to_string(), *n as u64);
            events.emit(Event::StageDone {
                stage: teardown::ID.into(),
                duration_ms: millis(started.elapsed()),
                counters,
                aws_calls,
            });
        }
        Err(e) => events.emit(Event::StageFailed {
            stage: teardown::ID.into(),
            duration_ms: millis(started.elapsed()),
            message: e.to_string(),
        }),
    }
    if result.is_ok() {
        cx.update_state(|s| *s = crate::state::State::new(config.name()))?;
        for file in ["hosts.ini", "inventory.yaml"] {
            let _ = std::fs::remove_file(cx.state_dir().join(file));
        }
    }
    let closed = cx.close_state().await;
    let result = result.map(drop).and(closed);
    finish_run(&events, result.is_ok(), started, log.as_deref());
    result
}
