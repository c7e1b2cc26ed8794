//! `ecoboot upgrade`: preflight and plan, consent, then the rolling upgrade through the same
//! events as `up`.

use std::time::Instant;

use super::{confirm, events_for, finish_run, load_config};
use crate::cli::Global;
use crate::config::FileChecks;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::event::{Event, millis};
use crate::state::Store;
use crate::upgrade::{self, ID};

/// Runs `ecoboot upgrade`.
pub(super) async fn upgrade(
    g: &Global,
    opts: upgrade::Options,
    dry_run: bool,
    yes: bool,
) -> Result<()> {
    let config = load_config(g, FileChecks::Skip)?;
    let consent = match dry_run {
        true => None,
        false => Some(confirm::consent("upgrade", yes)?),
    };
    let store = match dry_run {
        true => Store::read_only(&g.state_dir, config.name()),
        false => Store::lock(&g.state_dir, config.name())?,
    };
    let log_dir = (!dry_run).then(|| store.dir().join("logs"));
    let log = crate::output::init_tracing(g.verbose, log_dir.as_deref(), "upgrade");
    let state = store.load(config.name())?;
    let events = events_for(g, true);
    let cx = Ctx::new(config.clone(), events.clone(), store, state);
    events.emit(Event::RunStarted {
        command: "upgrade".into(),
        cluster: config.name().into(),
        ecoboot: crate::build_info::BUILD,
    });
    let started = Instant::now();
    events.emit(Event::StageStarted {
        stage: ID.into(),
        title: "Upgrade Kubernetes: control plane first, then the nodes in batches".into(),
    });
    let result = async {
        let (plan, record) = upgrade::prepare(&cx, &opts).await?;
        events.emit(Event::StagePlan {
            stage: ID.into(),
            actions: plan.actions(),
        });
        if dry_run {
            return Ok(plan);
        }
        if consent == Some(confirm::Consent::Ask)
            && !confirm::ask(&format!("Upgrade the cluster to Kubernetes {}?", plan.to))
        {
            return Err(Error::Usage("cancelled; nothing was changed".into()));
        }
        upgrade::run(&cx, &plan, record, &opts).await?;
        Ok(plan)
    }
    .await;
    match &result {
        Ok(plan) => {
            if !dry_run {
                let mut counters = std::collections::BTreeMap::new();
                counters.insert("nodes".into(), config.nodes().count() as u64);
                events.emit(Event::StageDone {
                    stage: ID.into(),
                    duration_ms: millis(started.elapsed()),
                    counters,
                    aws_calls: Default::default(),
                });
            }
            let configured = crate::config::support::minor(&config.cluster.spec.kubernetes.version);
            if configured != plan.to.minor_str() {
                events.progress(
                    ID,
                    None,
                    format!(
                        "set spec.kubernetes.version to \"{}\" in {} so that `up` matches the cluster",
                        plan.to.minor_str(),
                        config.path.display()
                    ),
                );
            }
        }
        Err(e) => events.emit(Event::StageFailed {
            stage: ID.into(),
            duration_ms: millis(started.elapsed()),
            message: e.to_string(),
        }),
    }
    cx.close_ssh().await;
    finish_run(&events, result.is_ok(), started, log.as_deref());
    result.map(|_| ())
}
