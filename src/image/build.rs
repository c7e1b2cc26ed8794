//! `ecoboot image build`, probe then act: what exists is read from EC2 (the golden image for
//! this config's hash, the builder instances), the plan is the steps still missing, and a rerun
//! after a crash or Ctrl-C anywhere picks up where the world is.

use std::sync::Arc;
use std::time::Duration;

use crate::aws::images::{self, GoldenImage};
use crate::config::Role;
use crate::engine::{Ctx, RunMode, Runner};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::golden::{BUILDER, Recipe};
use crate::playbook::Playbook;
use crate::retry::{Backoff, Try, retry};
use crate::ssh::run;
use crate::stages::shared::key_pair::{self, KeyState};
use crate::stages::shared::outputs::NetworkOut;
use crate::stages::shared::{ami, ids, preflight};

use super::ID;
use super::builder::{self, Builder};

/// How long CreateImage may take to make the image available (EBS snapshots of a fresh disk
/// take minutes; AWS gives no bound).
const AVAILABLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// One step of a build, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The cluster's VPC, subnets and security group (stage `network`).
    Network,
    /// The cluster's key pair (imported).
    KeyPair,
    /// Launch the builder from the base image.
    Launch,
    /// prepare-nodes' playbook, the pre-pulls and the seal on the builder.
    Prepare,
    /// Stop the builder (a consistent disk).
    Stop,
    /// CreateImage from the stopped builder.
    Create,
    /// Wait until the image is available.
    WaitAvailable,
    /// Terminate these builders (done, or building a hash no longer wanted).
    Terminate(Vec<String>),
}

/// What `image build` found and still has to do.
pub struct BuildPlan {
    /// What goes into the image.
    pub recipe: Recipe,
    /// Its content hash.
    pub hash: String,
    /// The golden image for this hash, if one exists.
    pub image: Option<GoldenImage>,
    /// The builder for this hash, if one is live.
    pub builder: Option<Builder>,
    /// The image's AMI name.
    pub name: String,
    /// The steps left.
    pub steps: Vec<Step>,
}

impl BuildPlan {
    /// The plan as actions (what `--dry-run` shows and the consent question lists).
    pub fn actions(&self) -> Vec<Action> {
        let short = &self.hash[..12];
        let builder = self.builder.as_ref().map_or("(new)", |b| b.id.as_str());
        (self.steps.iter())
            .map(|s| match s {
                Step::Network => Action::new(
                    "network",
                    "create the cluster's VPC, subnets and security group (stage network)",
                ),
                Step::KeyPair => Action::new("key-pair", "import the configured public key"),
                Step::Launch => Action::new(
                    "image-builder",
                    format!("launch from the base image {}", self.recipe.base_ami),
                ),
                Step::Prepare => Action::new(
                    builder,
                    format!(
                        "prepare-nodes, pull kubeadm's images and {} more, seal",
                        self.recipe.images.len()
                    ),
                ),
                Step::Stop => Action::new(builder, "stop"),
                Step::Create => Action::new(&self.name, format!("create the image (hash {short})")),
                Step::WaitAvailable => Action::new(
                    self.image.as_ref().map_or("the image", |i| i.id.as_str()),
                    "wait until available",
                ),
                Step::Terminate(ids) => Action::new(ids.join(", "), "terminate the builder"),
            })
            .collect()
    }
}

/// Reads EC2 (and the journal's network) and returns what is left to do.
pub async fn plan(cx: &Ctx) -> Result<BuildPlan> {
    let aws = cx.aws().await;
    let base = ami::base_ami(aws, &cx.config, ID).await?;
    let recipe = ami::recipe(cx, &base, ID).await?;
    let hash = recipe.hash();
    let image = images::find(aws, &hash).await?;
    let (mut mine, mut stale): (Vec<Builder>, Vec<Builder>) = builder::find(aws)
        .await?
        .into_iter()
        .partition(|b| b.hash == hash);
    // Two builders of one hash (launched by hand?): the furthest along is kept.
    mine.sort_by_key(|b| match b.state.as_str() {
        "stopped" => 0,
        "stopping" => 1,
        "running" => 2,
        _ => 3,
    });
    let builder = match mine.is_empty() {
        true => None,
        false => Some(mine.remove(0)),
    };
    stale.extend(mine);
    let mut steps = Vec::new();
    let available = image.as_ref().is_some_and(GoldenImage::available);
    if image.is_none() {
        if cx.state().output::<NetworkOut>(ids::NETWORK).is_none() {
            steps.push(Step::Network);
        }
        if builder.is_none() {
            if key_pair::state(aws, &cx.config).await? == KeyState::Missing {
                steps.push(Step::KeyPair);
            }
            steps.push(Step::Launch);
        }
        if builder
            .as_ref()
            .is_none_or(|b| matches!(b.state.as_str(), "pending" | "running"))
        {
            steps.push(Step::Prepare);
        }
        steps.extend([Step::Stop, Step::Create]);
    }
    if !available {
        steps.push(Step::WaitAvailable);
    }
    let mut done: Vec<String> = stale.iter().map(|b| b.id.clone()).collect();
    if builder.is_some() || image.is_none() {
        done.extend(builder.as_ref().map(|b| b.id.clone()));
        if image.is_none() && builder.is_none() {
            done.push("(the new builder)".into());
        }
    }
    if !done.is_empty() {
        steps.push(Step::Terminate(done));
    }
    Ok(BuildPlan {
        name: images::image_name(&aws.tags.cluster, &hash),
        recipe,
        hash,
        image,
        builder,
        steps,
    })
}

/// Does `plan`'s steps; returns the available golden image.
pub async fn apply(cx: &Ctx, plan: BuildPlan) -> Result<GoldenImage> {
    let aws = cx.aws().await;
    let mut builder = plan.builder.clone();
    let mut image = plan.image.clone();
    for step in &plan.steps {
        match step {
            Step::Network => {
                let stages = crate::stages::all();
                let network =
                    crate::engine::select(&stages, Some(ids::NETWORK), Some(ids::NETWORK))?;
                Runner::new(network, cx).run(RunMode::Apply).await?;
            }
            Step::KeyPair => key_pair::import(cx, aws, ID).await?,
            Step::Launch => {
                let net: NetworkOut =
                    cx.state()
                        .output(ids::NETWORK)
                        .ok_or_else(|| Error::Prerequisite {
                            stage: ID,
                            what: "the cluster's subnets and security group".into(),
                            needs: ids::NETWORK,
                        })?;
                let b = &cx.config.cluster.spec.aws.ami.builder;
                let subnet = (b.subnet.as_ref().map(|s| s.value.clone()))
                    .or_else(|| {
                        cx.config
                            .cluster
                            .spec
                            .aws
                            .subnets
                            .first()
                            .map(|s| s.name.value.clone())
                    })
                    .unwrap_or_default();
                let subnet = net
                    .subnets
                    .get(&subnet)
                    .map(|s| s.id.clone())
                    .ok_or_else(|| Error::Prerequisite {
                        stage: ID,
                        what: format!("subnet `{subnet}`"),
                        needs: ids::NETWORK,
                    })?;
                let launch = builder::Launch {
                    ami: &plan.recipe.base_ami,
                    hash: &plan.hash,
                    subnet: &subnet,
                    security_group: &net.security_group_id,
                };
                let b = builder::launch(aws, &cx.config, &launch).await?;
                cx.events
                    .progress(ID, Some(BUILDER), format!("launched {}", b.id));
                builder = Some(b);
            }
            Step::Prepare => {
                let id = builder_id(&builder)?;
                cx.events
                    .progress(ID, Some(BUILDER), format!("waiting for {id} to be running"));
                let running = builder::wait_for(aws, &id, "running").await?;
                prepare(cx, &plan.recipe, &running).await?;
                builder = Some(running);
            }
            Step::Stop => {
                let id = builder_id(&builder)?;
                builder::stop(aws, &id).await?;
                cx.events
                    .progress(ID, Some(BUILDER), format!("stopping {id}"));
                builder = Some(builder::wait_for(aws, &id, "stopped").await?);
            }
            Step::Create => {
                let id = builder_id(&builder)?;
                let k8s = &plan.recipe.kubernetes;
                let made = images::create(aws, &id, &plan.hash, &plan.recipe.base_ami, k8s).await?;
                cx.events
                    .progress(ID, Some(&made), format!("creating {} from {id}", plan.name));
            }
            Step::WaitAvailable => image = Some(wait_available(cx, &plan.hash).await?),
            Step::Terminate(_) => {
                let mut ids: Vec<String> = builder::find(aws)
                    .await?
                    .into_iter()
                    .map(|b| b.id)
                    .collect();
                ids.sort();
                builder::terminate(aws, &ids).await?;
                forget_builder_keys(cx, builder.as_ref())?;
                if !ids.is_empty() {
                    cx.events
                        .progress(ID, Some(BUILDER), format!("terminated {}", ids.join(", ")));
                }
            }
        }
    }
    image.ok_or_else(|| Error::StageFailed {
        stage: ID.into(),
        message: format!(
            "no golden image with hash {} after the build",
            &plan.hash[..12]
        ),
        help: "rerun `ecoboot image build`".into(),
    })
}

fn builder_id(b: &Option<Builder>) -> Result<String> {
    b.as_ref()
        .map(|b| b.id.clone())
        .ok_or_else(|| Error::StageFailed {
            stage: ID.into(),
            message: "the image builder instance is gone".into(),
            help: "rerun `ecoboot image build`: it launches a new one".into(),
        })
}

/// The builder's SSH address: `spec.aws.ami.builder.address`, else its public IP.
fn address(cx: &Ctx, b: &Builder) -> (String, u16) {
    let port = cx.config.cluster.spec.ssh.port;
    match &cx.config.cluster.spec.aws.ami.builder.address {
        Some(a) => crate::nodes::host_port(a, port),
        None => (b.public_ip.clone(), port),
    }
}

/// prepare-nodes' preflight and playbook, the pre-pulls and the seal, on the builder.
async fn prepare(cx: &Ctx, recipe: &Recipe, b: &Builder) -> Result<()> {
    let (host, port) = address(cx, b);
    let target = crate::ssh::Target {
        node: BUILDER.into(),
        role: Role::Worker,
        host,
        port,
        instance_id: Some(b.id.clone()),
    };
    let conn = match cx.connect(&[target]).await.pop() {
        Some((_, Ok(conn))) => conn,
        Some((_, Err(why))) => {
            return Err(Error::StageFailed {
                stage: ID.into(),
                message: format!("{BUILDER} ({}): cannot connect: {why}", b.id),
                help: "check spec.aws.allowedSshCidrs and the key pair, then rerun `ecoboot image build`".into(),
            });
        }
        None => unreachable!("one target, one answer"),
    };
    let version = cx.config.cluster.spec.kubernetes.version.as_str();
    let problems = preflight::check(&conn, version)
        .await
        .map_err(|tail| Error::StageFailed {
            stage: ID.into(),
            message: format!("{BUILDER}: preflight could not run: {tail}"),
            help: "rerun `ecoboot image build`".into(),
        })?;
    if !problems.is_empty() {
        return Err(Error::StageFailed {
            stage: ID.into(),
            message: format!(
                "{BUILDER}: the base image cannot run Kubernetes {version}: {}",
                problems.join("; ")
            ),
            help: "pick another base image (spec.aws.ami.nameFilter)".into(),
        });
    }
    let conns = [Arc::clone(&conn)];
    let books = [
        Playbook::load(ids::PREPARE_NODES, cx.playbooks.as_deref())?,
        super::prepull::playbook(recipe),
    ];
    for book in &books {
        let summary = run::apply(&cx.config, &cx.events, ID, book, &conns).await;
        cx.count("steps.executed", summary.executed);
        if let Some(f) = summary.failures.first() {
            return Err(Error::StageFailed {
                stage: ID.into(),
                message: format!("{BUILDER} ({}): {f}", b.id),
                help: "fix the cause (the builder's log is in <state-dir>/<cluster>/logs/nodes/), then rerun `ecoboot image build`: finished steps are skipped".into(),
            });
        }
    }
    let seal = Duration::from_secs(300);
    conn.run_ok(
        ID,
        "seal for imaging",
        super::prepull::SEAL,
        seal,
        "rerun `ecoboot image build`",
    )
    .await?;
    cx.close_ssh().await;
    Ok(())
}

/// Polls until the image of `hash` is available.
async fn wait_available(cx: &Ctx, hash: &str) -> Result<GoldenImage> {
    let aws = cx.aws().await;
    cx.events.progress(
        ID,
        None,
        "waiting for the image to be available (EBS snapshot)",
    );
    let backoff = Backoff::poll(Duration::from_secs(10), AVAILABLE_TIMEOUT);
    retry(&backoff, |_| async {
        match images::find(aws, hash).await {
            Ok(Some(i)) if i.available() => Try::Done(i),
            Ok(found) => Try::Again(Error::StageFailed {
                stage: ID.into(),
                message: format!(
                    "the golden image is {} after {} min",
                    found.map_or("not listed".into(), |i| format!("{} {}", i.id, i.state)),
                    AVAILABLE_TIMEOUT.as_secs() / 60
                ),
                help: "look at the image and its snapshot in the EC2 console, then rerun `ecoboot image build`".into(),
            }),
            Err(e) => Try::Fail(e),
        }
    })
    .await
}

/// Forgets the terminated builder's host key (its address goes back to AWS's pool).
fn forget_builder_keys(cx: &Ctx, b: Option<&Builder>) -> Result<()> {
    if let Some(b) = b {
        let (host, port) = address(cx, b);
        if !host.is_empty() {
            crate::ssh::hostkeys::forget(&crate::nodes::known_hosts(&cx.state_dir()), &host, port)?;
        }
    }
    Ok(())
}
