//! Command-line interface (clap derive). These names are the interface scripts rely on.

use std::path::PathBuf;

mod subcommands;

pub use subcommands::{
    ArgocdCommand, CertsCommand, GithubCommand, ImageCommand, SecretsCommand, StateCommand,
    Topology,
};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Bootstrap a self-managed Kubernetes platform on AWS: provision, cluster, GitOps.
#[derive(Debug, Parser)]
#[command(name = "ecoboot", version, about, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by all commands.
#[derive(Debug, Args)]
pub struct Global {
    /// Cluster config file.
    #[arg(
        short,
        long,
        global = true,
        env = "ECOBOOT_CONFIG",
        default_value = "inventory/cluster.yaml"
    )]
    pub config: PathBuf,
    /// Directory for state, logs, keys and kubeconfig (one subdirectory per cluster).
    #[arg(
        long,
        global = true,
        env = "ECOBOOT_STATE_DIR",
        default_value = ".ecoboot"
    )]
    pub state_dir: PathBuf,
    /// More diagnostics on stderr (-v info, -vv debug); ECOBOOT_LOG takes a full filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only failures and the final result.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// Where the state lives, overriding spec.state: `s3://bucket/prefix` or a directory.
    #[arg(
        long,
        global = true,
        env = "ECOBOOT_STATE",
        value_name = "S3_URL_OR_DIR"
    )]
    pub state: Option<String>,
    /// Take over a remote state lock whose lease has expired (its run is gone).
    #[arg(long, global = true)]
    pub steal_expired_lock: bool,
    /// Directory whose playbooks (`<name>.yaml`) replace the embedded ones.
    #[arg(long, global = true, env = "ECOBOOT_PLAYBOOKS", value_name = "DIR")]
    pub playbooks: Option<PathBuf>,
    /// Plain line-per-event output even on a terminal.
    #[arg(long, global = true)]
    pub no_progress: bool,
}

/// `--output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Progress bars on a terminal, plain lines elsewhere.
    Human,
    /// One JSON object per line on stdout; human text on stderr.
    Json,
}

/// Flags shared by `up` and `stage`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunFlags {
    /// Go ahead without asking (required without a terminal; ECOBOOT_YES=1 does the same).
    #[arg(long, short, env = "ECOBOOT_YES", value_parser = clap::builder::FalseyValueParser::new())]
    pub yes: bool,
    /// Probe and print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Reset a half-initialised control plane (`kubeadm reset -f`) instead of stopping.
    #[arg(long)]
    pub force_reset: bool,
    /// Apply the root app without waiting for the applications to be Synced and Healthy.
    #[arg(long)]
    pub no_wait: bool,
    /// Remove nodes that left the config (drain, delete the Node, reset, terminate), after
    /// every stage converged; without it they are only reported. Same as `spec.prune: true`.
    #[arg(long)]
    pub prune: bool,
    /// Skip the validation `up` runs after its last stage (`ecoboot validate`).
    #[arg(long, env = "ECOBOOT_NO_VALIDATE", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_validate: bool,
    /// Run the stages strictly one after another. By default `up` pipelines per node: a node is
    /// prepared as soon as its instance runs, the control plane is initialised as soon as it is
    /// prepared, and each node joins as soon as its own preparation is done.
    #[arg(long, env = "ECOBOOT_NO_PIPELINE", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_pipeline: bool,
}

/// Flags of the rolling operations (`upgrade`, `migrate-runtime`).
#[derive(Debug, Clone, clap::Args)]
pub struct RollingFlags {
    /// Worker nodes drained at once (infrastructure nodes always go alone).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub max_unavailable: usize,
    /// How long one node's drain may take before the operation stops, naming what blocks it.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub drain_timeout: u64,
    /// Show the preflight result and the order of the nodes; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Go ahead without asking (required without a terminal; ECOBOOT_YES=1 does the same).
    #[arg(long, short, env = "ECOBOOT_YES", value_parser = clap::builder::FalseyValueParser::new())]
    pub yes: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the stages in order, skipping those already done (resumes after any failure).
    Up {
        /// First stage to consider.
        #[arg(long, value_name = "ID")]
        from: Option<String>,
        /// Last stage to run.
        #[arg(long, value_name = "ID")]
        to: Option<String>,
        /// --yes, --dry-run, --force-reset, --no-wait.
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Run exactly one stage (e.g. `ecoboot stage join-workers`).
    Stage {
        /// Stage id (see `ecoboot stages`).
        id: String,
        /// --yes, --dry-run, --force-reset, --no-wait.
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Show what `up` would do, per stage and per node or resource; changes nothing.
    Plan {
        /// First stage to consider.
        #[arg(long, value_name = "ID")]
        from: Option<String>,
        /// Last stage to consider.
        #[arg(long, value_name = "ID")]
        to: Option<String>,
        /// One line per action (the default groups identical node plans and sums objects).
        #[arg(long)]
        detail: bool,
    },
    /// List the stage ids in order, with their titles.
    Stages,
    /// Each stage's recorded status and what a live probe finds.
    Status,
    /// Check that the cluster works: nodes Ready with the config's labels and taints, the
    /// control plane's static pods, system-critical pods, DNS and pod-to-pod traffic from every
    /// node (short-lived probe pods), ArgoCD's Applications. Exit 0 only when all pass.
    Validate {
        /// Keep checking until everything passes or this long has passed (e.g. `10m`).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        wait: Option<std::time::Duration>,
    },
    /// Write a kubeconfig for you that points at the control plane's public endpoint (0600).
    Kubeconfig {
        /// Where to write it (default `<state-dir>/<cluster>/kubeconfig`).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Print the node inventory (Ansible-compatible hosts.ini) from the last `instances` run.
    Inventory,
    /// ArgoCD helpers.
    Argocd {
        /// What to do.
        #[command(subcommand)]
        command: ArgocdCommand,
    },
    /// Upgrade Kubernetes one minor (or patch) at a time: control plane first, then the other
    /// nodes in batches, each drained through the Eviction API; resumable at any node.
    Upgrade {
        /// Target `1.MINOR[.PATCH]` (default: spec.kubernetes.version).
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        /// --max-unavailable, --drain-timeout, --dry-run, --yes.
        #[command(flatten)]
        rolling: RollingFlags,
    },
    /// Move nodes still on containerd 1.x to the pinned containerd 2.x, drained batch by batch
    /// (needed before Kubernetes 1.36); resumable at any node.
    MigrateRuntime {
        /// --max-unavailable, --drain-timeout, --dry-run, --yes.
        #[command(flatten)]
        rolling: RollingFlags,
    },
    /// Reboot nodes batch by batch (cordon, drain through the Eviction API, reboot, wait for the
    /// new boot, uncordon, Ready): after unattended security upgrades installed a kernel.
    /// Infrastructure nodes alone, the control plane last; resumable at any node.
    Reboot {
        /// Only the nodes that say they need it (`/var/run/reboot-required`).
        #[arg(long)]
        only_needed: bool,
        /// --max-unavailable, --drain-timeout, --dry-run, --yes.
        #[command(flatten)]
        rolling: RollingFlags,
    },
    /// Write a commented starter config to the --config path (never overwrites).
    Init {
        /// Which topology to start from.
        #[arg(long, value_enum, default_value_t = Topology::Reference)]
        topology: Topology,
        /// AWS region (availability zones follow it: <region>a, <region>b, <region>c).
        #[arg(long, default_value = "ap-northeast-2")]
        region: String,
        /// Cluster name (DNS label; tags, state directory and key names derive from it).
        #[arg(long, default_value = "my-cluster")]
        name: String,
    },
    /// Forget a node's pinned SSH host key after a deliberate replacement (the next contact
    /// verifies the new key by the configured policy). Without it, a changed key stays an error.
    ForgetHost {
        /// Node name.
        node: String,
    },
    /// Remove a remote state lock left by a run that is gone (`--force LOCK_ID`, the id the
    /// lock error names).
    Unlock {
        /// The lock id to remove (it is removed only if it still is this one).
        #[arg(long, value_name = "LOCK_ID")]
        force: String,
    },
    /// etcd snapshot plus /etc/kubernetes/pki to S3 (encrypted, tagged), keeping the newest
    /// spec.backup.keep; no lock on the cluster's nodes is needed.
    Backup {
        /// `s3://bucket[/prefix]` (default: spec.backup.to).
        #[arg(long, value_name = "S3_URL")]
        to: Option<String>,
        /// Show the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Restore a backup onto a fresh control-plane instance (the old one lost): pki and etcd
    /// data put back, kubeadm init on them, the workers registered again.
    Restore {
        /// `s3://bucket/key` of one backup (`ecoboot backup` prints it).
        #[arg(long, value_name = "S3_URL")]
        from: String,
        /// Show the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Go ahead without asking (required without a terminal; ECOBOOT_YES=1 does the same).
        #[arg(long, short, env = "ECOBOOT_YES", value_parser = clap::builder::FalseyValueParser::new())]
        yes: bool,
    },
    /// Control-plane certificates: `renew` renews them all (kubeadm), restarts the static pods
    /// one at a time and fetches the renewed admin.conf. `status` shows their expiry.
    Certs {
        /// What to do.
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Secrets encryption at rest: `rotate-key` makes a new key on the control plane, rewrites
    /// every Secret with it and drops the old one (resumable).
    Secrets {
        /// What to do.
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Remote state: `init` creates the bucket (versioning, no public access, encryption,
    /// tags); `show` prints where the state is and who holds the lock.
    State {
        /// What to do.
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Print the least-privilege IAM policy the deployer needs for this config (JSON): every
    /// AWS call ecoboot makes, scoped to the cluster's tags, names and S3 prefixes.
    IamPolicy {
        /// AWS account id for the ARNs (default: the caller's, from STS; `*` when unknown).
        #[arg(long, value_name = "ID")]
        account: Option<String>,
        /// Print only part N (from 1) of the policy split to fit IAM's 6,144-character limit
        /// for one managed policy (`ecoboot github setup` attaches every part).
        #[arg(long, value_name = "N")]
        part: Option<usize>,
    },
    /// Golden images: `build` makes the AMI `up` launches from with `spec.aws.ami.golden: true`
    /// (nodes come up prepared, every image pre-pulled); `list` shows them; `prune` removes
    /// those no longer wanted.
    Image {
        /// What to do.
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// GitHub Actions: `setup` makes what a repository's workflow needs to run ecoboot.
    Github {
        /// What to do.
        #[command(subcommand)]
        command: GithubCommand,
    },
    /// Print the config's JSON Schema (for editors: yaml-language-server, VS Code).
    Schema,
    /// Print version, git commit, build date, target and compiler (`--output json` too).
    Version,
    /// Print shell completions (e.g. `source <(ecoboot completions bash)`).
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout (e.g. `ecoboot man > ecoboot.1`).
    Man,
    /// Delete every resource tagged with this cluster, and what in-cluster controllers left in
    /// its VPC (load balancers, target groups, their security groups, detached interfaces).
    Down {
        /// Go ahead without asking (required without a terminal; ECOBOOT_YES=1 does the same).
        #[arg(long, short, env = "ECOBOOT_YES", value_parser = clap::builder::FalseyValueParser::new())]
        yes: bool,
        /// List what would be deleted (and the volumes kept); delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also delete the EBS volumes the CSI driver created for the cluster (their data is lost).
        #[arg(long)]
        delete_volumes: bool,
        /// Also deregister the cluster's golden images and delete their snapshots (kept by
        /// default: the next `up` reuses them).
        #[arg(long)]
        images: bool,
    },
}
