//! One function per CLI command; each loads what it needs and hands work to the engine.

mod argocd;
mod backup;
mod confirm;
mod down;
mod github;
mod github_preflight;
mod iam_policy;
mod image;
mod info;
mod init;
mod operation;
mod prune;
mod state_cmd;
mod status;
mod upgrade;
mod validate;
mod version_guard;
mod warnings;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{ArgocdCommand, Cli, Command, Global, Output, RunFlags};
use crate::config::{Config, FileChecks};
use crate::engine::{self, Ctx, RunMode, Runner};
use crate::error::{Error, Result};
use crate::event::{Event, Events, millis};
use crate::report::{self, Env};

/// Runs the parsed command line.
pub async fn dispatch(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Stages => {
            list_stages();
            Ok(())
        }
        Command::Up { from, to, flags } => {
            let mode = RunMode::from_dry_run(flags.dry_run);
            run_stages(g, "up", from.as_deref(), to.as_deref(), mode, flags, false).await
        }
        Command::Stage { id, flags } => {
            let mode = RunMode::from_dry_run(flags.dry_run);
            run_stages(g, "stage", Some(id), Some(id), mode, flags, false).await
        }
        Command::Plan { from, to, detail } => {
            let (from, to) = (from.as_deref(), to.as_deref());
            let flags = RunFlags::default();
            run_stages(g, "plan", from, to, RunMode::Plan, &flags, *detail).await
        }
        Command::Status => status::status(g).await,
        Command::Validate { wait } => validate::validate(g, *wait).await,
        Command::Init {
            topology,
            region,
            name,
        } => init::init(g, *topology, region, name),
        Command::Upgrade { to, rolling } => {
            upgrade::upgrade(g, options(to.clone(), rolling), rolling).await
        }
        Command::Reboot {
            only_needed,
            rolling,
        } => upgrade::reboot(g, options(None, rolling), rolling, *only_needed).await,
        Command::MigrateRuntime { rolling } => {
            upgrade::migrate(g, options(None, rolling), rolling).await
        }
        Command::Certs {
            command: crate::cli::CertsCommand::Renew { dry_run, yes },
        } => upgrade::certs_renew(g, *dry_run, *yes).await,
        Command::Secrets {
            command: crate::cli::SecretsCommand::RotateKey { dry_run, yes },
        } => upgrade::rotate_key(g, *dry_run, *yes).await,
        Command::Backup { to, dry_run } => backup::backup(g, to.clone(), *dry_run).await,
        Command::Restore { from, dry_run, yes } => {
            backup::restore(g, from.clone(), *dry_run, *yes).await
        }
        Command::Unlock { force } => state_cmd::unlock(g, force).await,
        Command::ForgetHost { node } => state_cmd::forget_host(g, node).await,
        Command::State {
            command: crate::cli::StateCommand::Init,
        } => state_cmd::init(g).await,
        Command::State {
            command: crate::cli::StateCommand::Show,
        } => state_cmd::show(g).await,
        Command::State {
            command: crate::cli::StateCommand::Pull,
        } => state_cmd::pull(g).await,
        Command::State {
            command: crate::cli::StateCommand::Push { yes },
        } => state_cmd::push(g, *yes).await,
        Command::IamPolicy { account, part } => {
            iam_policy::iam_policy(g, account.as_deref(), *part).await
        }
        Command::Github {
            command:
                crate::cli::GithubCommand::Setup {
                    repo,
                    environment,
                    dry_run,
                    yes,
                },
        } => github::setup(g, repo, environment, *dry_run, *yes).await,
        Command::Github {
            command: crate::cli::GithubCommand::Preflight,
        } => github_preflight::preflight(g),
        Command::Schema => info::schema(),
        Command::Version => info::version(g),
        Command::Completions { shell } => info::completions(*shell),
        Command::Man => info::man(),
        Command::Down {
            yes,
            dry_run,
            delete_volumes,
            images,
        } => down::down(g, *yes, *dry_run, *delete_volumes, *images).await,
        Command::Image { command } => image::image(g, command).await,
        Command::Inventory => inventory(g).await,
        Command::Kubeconfig { file } => kubeconfig(g, file.as_deref()).await,
        Command::Argocd {
            command: ArgocdCommand::Password,
        } => argocd::password(g).await,
        Command::Argocd {
            command: ArgocdCommand::Ui { port },
        } => argocd::ui(g, *port).await,
    }
}

/// The options of a rolling operation.
fn options(to: Option<String>, f: &crate::cli::RollingFlags) -> crate::upgrade::Options {
    crate::upgrade::Options {
        to,
        max_unavailable: f.max_unavailable,
        drain_timeout: std::time::Duration::from_secs(f.drain_timeout),
    }
}

fn list_stages() {
    let stages = crate::stages::all();
    let width = stages.iter().map(|s| s.id().len()).max().unwrap_or(0);
    for s in &stages {
        println!("{:<width$}  {}", s.id(), s.title());
    }
}

fn load_config(g: &Global, files: FileChecks) -> Result<Arc<Config>> {
    Ok(Arc::new(Config::load(&g.config, files)?))
}

/// The reporter for `g`; `detail` (or `-v`) prints plans one line per action.
fn events_for(g: &Global, detail: bool) -> Events {
    let mode = report::resolve(Env::detect(g.output == Output::Json, g.no_progress));
    Events::new(report::build(mode, g.quiet, detail || g.verbose > 0))
}

/// `up`, `stage` and `plan`: the engine over a range of stages.
// Long by design: the one place where config, state, guards, consent and runner meet.
async fn run_stages(
    g: &Global,
    command: &str,
    from: Option<&str>,
    to: Option<&str>,
    mode: RunMode,
    flags: &RunFlags,
    detail: bool,
) -> Result<()> {
    let stages = crate::stages::all();
    let selected = engine::select(&stages, from, to)?;
    // Only the `instances` stage reads the public key; other runs need not have it.
    let imports_key = selected
        .iter()
        .any(|s| s.id() == crate::stages::instances::ID);
    let files = if mode == RunMode::Apply && imports_key {
        FileChecks::Check
    } else {
        FileChecks::Skip
    };
    let config = load_config(g, files)?;
    let consent = match mode {
        RunMode::Apply => Some(confirm::consent(command, flags.yes)?),
        _ => None,
    };
    let store = state_cmd::open(g, &config, mode == RunMode::Apply).await?;
    let log_dir = (mode == RunMode::Apply).then(|| store.dir().join("logs"));
    let log = crate::output::init_tracing(g.verbose, log_dir.as_deref(), command);
    let mut state = store.load(config.name())?;
    state.config_digest = config.digest.clone();
    let events = events_for(g, detail);
    let mut cx = Ctx::new(config.clone(), events.clone(), store, state);
    cx.playbooks = g.playbooks.clone();
    cx.force_reset = flags.force_reset;
    cx.no_wait = flags.no_wait;
    cx.pipeline = command == "up" && !flags.no_pipeline;
    if let Some(log) = &log {
        tracing::info!(log = %log.display(), config = %config.path.display(), ecoboot = %crate::build_info::BUILD, "run started");
    }
    events.emit(Event::RunStarted {
        command: command.into(),
        cluster: config.name().into(),
        ecoboot: crate::build_info::BUILD,
    });
    warnings::warn_support(&events, &config.versions());
    warnings::warn_world(&events, &config);
    warnings::warn_region(&events, &config);
    if selected
        .iter()
        .any(|s| s.id() == crate::stages::prepare_nodes::ID)
    {
        match version_guard::version_guard(&cx).await {
            Ok(Some(running)) => {
                cx.config = Arc::new(version_guard::pin_patch(&cx.config, running))
            }
            Ok(None) => {}
            Err(e) => {
                cx.close_ssh().await;
                finish_run(&events, false, Instant::now(), log.as_deref());
                return Err(e);
            }
        }
    }
    if selected
        .iter()
        .any(|s| s.id() == crate::stages::instances::ID)
        && let Err(e) = crate::stages::instances::quota::preflight(&cx).await
    {
        cx.close_ssh().await;
        finish_run(&events, false, Instant::now(), log.as_deref());
        return Err(e);
    }
    let started = Instant::now();
    let mut result = Ok(());
    if consent == Some(confirm::Consent::Ask) {
        result = Runner::new(selected, &cx).run(RunMode::Plan).await;
        if result.is_ok() && !confirm::ask("Apply these changes?") {
            result = Err(Error::Usage("cancelled; nothing was changed".into()));
        }
    }
    if result.is_ok() {
        result = Runner::new(selected, &cx).run(mode).await;
    }
    if result.is_ok()
        && selected
            .iter()
            .any(|s| s.id() == crate::stages::instances::ID)
    {
        result = prune::orphans(&cx, mode, flags).await;
    }
    let last = crate::stages::all().last().map(|s| s.id());
    if result.is_ok()
        && command == "up"
        && mode == RunMode::Apply
        && !flags.no_validate
        && selected.last().map(|s| s.id()) == last
    {
        let wait = Duration::from_secs(cx.config.cluster.spec.kubernetes.wait_seconds);
        result = match validate::until(&cx, Some(wait), true).await {
            Ok(report) => validate::finish(g, &report),
            Err(e) => Err(e),
        };
    }
    if result.is_ok() && command == "plan" {
        let blind = cx.blind_spots();
        if !blind.is_empty() {
            result = Err(Error::PlanIncomplete { blind });
        }
    }
    cx.close_ssh().await;
    let closed = cx.close_state().await;
    if result.is_ok() {
        result = closed;
    }
    finish_run(&events, result.is_ok(), started, log.as_deref());
    result
}

/// Ends a run's output: the final event, reporter cleanup, and where the full log is on failure.
fn finish_run(events: &Events, ok: bool, started: Instant, log: Option<&std::path::Path>) {
    events.emit(Event::RunFinished {
        ok,
        duration_ms: millis(started.elapsed()),
    });
    events.finish();
    if let (false, Some(log)) = (ok, log) {
        eprintln!("full log: {}", log.display());
    }
}

/// A reporter that drops everything (status probes run silently).
pub(super) struct Silent;

impl crate::event::Reporter for Silent {
    fn event(&self, _: &Event) {}
}

/// A context over the journal, read-only and silent (status, argocd password).
async fn read_only_ctx(g: &Global, config: &Arc<Config>) -> Result<Ctx> {
    let store = state_cmd::open(g, config, false).await?;
    let state = store.load(config.name())?;
    Ok(Ctx::new(
        config.clone(),
        Events::new(Arc::new(Silent)),
        store,
        state,
    ))
}

async fn inventory(g: &Global) -> Result<()> {
    let config = load_config(g, FileChecks::Skip)?;
    let cx = read_only_ctx(g, &config).await?;
    let out: crate::nodes::InstancesOut = cx
        .node_records()
        .await?
        .filter(|o| !o.nodes.is_empty())
        .ok_or(Error::Prerequisite {
            stage: "inventory",
            what: "the instance addresses".into(),
            needs: crate::stages::instances::ID,
        })?;
    if g.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out.nodes).expect("serializes")
        );
    } else {
        print!("{}", crate::inventory::render_ini(&config, &out));
    }
    Ok(())
}

/// Writes a user kubeconfig: the fetched admin.conf with its server set to the public endpoint
/// (the load balancer's, or the configured name, with several control planes).
async fn kubeconfig(g: &Global, file: Option<&std::path::Path>) -> Result<()> {
    let config = load_config(g, FileChecks::Skip)?;
    let store = state_cmd::open(g, &config, false).await?;
    let admin_path = crate::nodes::admin_conf(store.dir());
    let admin = std::fs::read_to_string(&admin_path).map_err(|_| Error::Prerequisite {
        stage: "kubeconfig",
        what: "the cluster's admin.conf".into(),
        needs: crate::stages::init_master::ID,
    })?;
    let state = store.load(config.name())?;
    let cx = Ctx::new(config.clone(), Events::new(Arc::new(Silent)), store, state);
    let instances = cx.node_records().await?;
    let lb = cx.state().output(crate::nodes::LOAD_BALANCER);
    let host = crate::nodes::api_host(&config, instances.as_ref(), lb);
    let text = crate::api::admin_conf::with_server(&admin, &format!("https://{host}:6443"))
        .map_err(|why| Error::Kube {
            action: "load".into(),
            target: admin_path.display().to_string(),
            message: format!("refused: {why}"),
            help: "delete it and run `ecoboot stage init-master` to fetch it again".into(),
        })?;
    let path = file
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| crate::nodes::kubeconfig(&cx.state_dir()));
    crate::fsutil::write_atomic(&path, text.as_bytes(), 0o600)?;
    println!("{}", path.display());
    Ok(())
}
