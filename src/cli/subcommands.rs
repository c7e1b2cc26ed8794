//! The second level of the command line: `certs`, `github`, `secrets`, `state`, `argocd`
//! subcommands and `init --topology`.

use clap::{Subcommand, ValueEnum};

/// `ecoboot certs ...`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// `kubeadm certs renew all`, then etcd, kube-apiserver, kube-controller-manager and
    /// kube-scheduler restarted one at a time, `/readyz` waited for, admin.conf fetched again.
    Renew {
        /// Show the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Go ahead without asking (required without a terminal; ECOBOOT_YES=1 does the same).
        #[arg(long, short, env = "ECOBOOT_YES", value_parser = clap::builder::FalseyValueParser::new())]
        yes: bool,
    },
}

/// `ecoboot github ...`.
#[derive(Debug, Subcommand)]
pub enum GithubCommand {
    /// The bootstrap workflow's first step: checks the dispatch inputs (COMMAND, DRY_RUN,
    /// CONFIRM, LOCK_ID) and the repository's settings (AWS_ROLE_ARN, ECOBOOT_STATE,
    /// SSH_PRIVATE_KEY, SSH_PUBLIC_KEY, AWS_REGION_OVERRIDE) from the environment, names every
    /// missing one, and writes cluster, region and key paths to $GITHUB_OUTPUT.
    Preflight,
    /// GitHub's OIDC provider in the account, a deployer role only `repo:OWNER/REPO` in the
    /// given environment may assume (holding `ecoboot iam-policy`), the state bucket; then the
    /// `gh` lines that set the repository's variables, secrets and environment.
    Setup {
        /// `OWNER/REPO` of the repository whose workflow deploys.
        #[arg(long, value_name = "OWNER/REPO")]
        repo: String,
        /// The GitHub environment the workflow's job runs in (its secrets and protection rules).
        #[arg(long, default_value = "production", value_name = "NAME")]
        environment: String,
        /// Show the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Go ahead without asking, and run the `gh` lines when `gh` is installed (required
        /// without a terminal; ECOBOOT_YES=1 does the same).
        #[arg(long, short, env = "ECOBOOT_YES", value_parser = clap::builder::FalseyValueParser::new())]
        yes: bool,
    },
}

/// `ecoboot secrets ...`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// A new encryption key made on the control plane and put first, kube-apiserver restarted,
    /// every Secret rewritten, the old key dropped, kube-apiserver restarted again.
    RotateKey {
        /// Show the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Go ahead without asking (required without a terminal; ECOBOOT_YES=1 does the same).
        #[arg(long, short, env = "ECOBOOT_YES", value_parser = clap::builder::FalseyValueParser::new())]
        yes: bool,
    },
}

/// `ecoboot state ...`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Create the state bucket (once per account): versioning on, public access blocked,
    /// default encryption, tagged.
    Init,
    /// Where the state is, its journal summary and the lock holder.
    Show,
    /// Copy the remote journal and known_hosts into the local state directory (a local file
    /// that differs is kept as `<name>.before-pull`), e.g. before going back to local state.
    Pull,
    /// Replace the remote journal and known_hosts with the local ones, under the remote lock
    /// (the bucket's versioning keeps what was replaced).
    Push {
        /// Go ahead without asking (required without a terminal; ECOBOOT_YES=1 does the same).
        #[arg(long, short, env = "ECOBOOT_YES", value_parser = clap::builder::FalseyValueParser::new())]
        yes: bool,
    },
}

/// `ecoboot init --topology`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Topology {
    /// The reference system's 14 nodes (1 control plane, 7 API nodes, 2 workers, 4 infra).
    Reference,
    /// One control plane and two workers.
    Minimal,
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

/// `ecoboot image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the golden image for this config: a builder instance from the base AMI runs
    /// prepare-nodes and pre-pulls kubeadm's, Calico's and ArgoCD's images; it is stopped,
    /// imaged (tagged with the content hash) and terminated. Resumable; a no-op when the image
    /// for this config exists.
    Build {
        /// Show the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Go ahead without asking (required without a terminal; ECOBOOT_YES=1 does the same).
        #[arg(long, short, env = "ECOBOOT_YES", value_parser = clap::builder::FalseyValueParser::new())]
        yes: bool,
    },
    /// The cluster's golden images: state, hash, whether this config wants it, who runs it.
    List,
    /// Deregister golden images this config no longer wants and no instance runs (with their
    /// snapshots).
    Prune {
        /// Show the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Go ahead without asking (required without a terminal; ECOBOOT_YES=1 does the same).
        #[arg(long, short, env = "ECOBOOT_YES", value_parser = clap::builder::FalseyValueParser::new())]
        yes: bool,
    },
}
