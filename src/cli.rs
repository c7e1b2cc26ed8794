//! Command-line interface (clap derive). These names are the interface scripts rely on.

use std::path::PathBuf;

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
    /// Probe and print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Reset a half-initialised control plane (`kubeadm reset -f`) instead of stopping.
    #[arg(long)]
    pub force_reset: bool,
    /// Apply the root app without waiting for the applications to be Synced and Healthy.
    #[arg(long)]
    pub no_wait: bool,
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
        /// Do not ask for confirmation on a terminal.
        #[arg(long, short)]
        yes: bool,
        /// --dry-run, --force-reset, --no-wait.
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Run exactly one stage (e.g. `ecoboot stage join-workers`).
    Stage {
        /// Stage id (see `ecoboot stages`).
        id: String,
        /// --dry-run, --force-reset, --no-wait.
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
    },
    /// List the stage ids in order, with their titles.
    Stages,
    /// Each stage's recorded status and what a live probe finds.
    Status,
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
    /// Delete every resource tagged with this cluster.
    Down {
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

/// `ecoboot argocd ...`.
#[derive(Debug, Subcommand)]
pub enum ArgocdCommand {
    /// Print the initial admin password (from Secret argocd-initial-admin-secret).
    Password,
    /// Open the ArgoCD UI on a local port through the SSH tunnel (no port open to the world);
    /// runs until Ctrl-C.
    Ui {
        /// Local port on 127.0.0.1 (0 = any free port).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
}
