//! The error type every layer returns, and the documented exit codes.

use std::path::PathBuf;

use miette::Diagnostic;
use thiserror::Error;

use crate::config::ConfigProblems;

/// Exit codes of the `ecoboot` binary. Scripts may rely on them.
pub mod exit {
    /// Everything asked for was done (or already done).
    pub const SUCCESS: i32 = 0;
    /// A stage failed; the state journal says which. Rerun `ecoboot up` to resume.
    pub const STAGE_FAILED: i32 = 1;
    /// The command line or the cluster config is wrong; nothing was changed.
    pub const USAGE: i32 = 2;
    /// Another ecoboot run holds the state lock for this cluster.
    pub const LOCKED: i32 = 3;
    /// The state file is unreadable or written by an incompatible (newer) ecoboot.
    pub const STATE: i32 = 4;
    /// `plan` could not look at everything (a node unreachable, a host key refused): the plan
    /// shown is incomplete. Nothing was changed.
    pub const INCOMPLETE_PLAN: i32 = 5;
    /// A bug in ecoboot (a panic); the message says where. Nothing is left half-written: state
    /// files are only ever replaced atomically.
    pub const INTERNAL: i32 = 70;
    /// Interrupted by Ctrl-C / SIGINT / SIGTERM; the journal records `interrupted`.
    pub const INTERRUPTED: i32 = 130;
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in ecoboot, each with a next step for the user.
#[derive(Debug, Error, Diagnostic)]
pub enum Error {
    /// The cluster config has one or more problems.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] Box<ConfigProblems>),

    /// A file could not be read or written.
    #[error("cannot {action} {}", path.display())]
    #[diagnostic(code(ecoboot::io), help("check the path and its permissions"))]
    Io {
        /// What ecoboot tried to do ("read", "write", "create directory").
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Another process holds the state lock.
    #[error("the state of cluster `{cluster}` is locked by another ecoboot run ({holder})")]
    #[diagnostic(
        code(ecoboot::state::locked),
        help(
            "wait for that run to finish; the lock is released automatically when its process exits (lock file: {})",
            path.display()
        )
    )]
    Locked {
        /// Cluster name.
        cluster: String,
        /// Who holds it, e.g. `pid 4242 on laptop`.
        holder: String,
        /// The lock file.
        path: PathBuf,
    },

    /// Another run holds the cluster's lock in S3.
    #[error("the state of cluster `{cluster}` is locked by another ecoboot run ({holder})")]
    #[diagnostic(
        code(ecoboot::state::locked),
        help(
            "{}",
            if *expired {
                format!("its lease has expired, so its run is probably gone: check that nothing runs (the holder above), then `ecoboot unlock --force {id}` or rerun with --steal-expired-lock (lock: {url})")
            } else {
                format!("wait for that run to finish (it renews its lease while it runs); if you are sure it is gone, `ecoboot unlock --force {id}` (lock: {url})")
            }
        )
    )]
    RemoteLocked {
        /// Cluster name.
        cluster: String,
        /// Who holds it and since when.
        holder: String,
        /// The lock's id.
        id: String,
        /// Its lease has run out.
        expired: bool,
        /// The lock object.
        url: String,
    },

    /// This run lost the remote state lock while it worked and stopped.
    #[error("this run lost the state lock and stopped: {reason}")]
    #[diagnostic(
        code(ecoboot::state::lock_lost),
        help(
            "nothing more was written after the lock was lost; another run may be working on the cluster now. Wait for it (`ecoboot state show`), then rerun: every stage probes the real world again"
        )
    )]
    LockLost {
        /// Why the lock counts as lost.
        reason: String,
    },

    /// Someone else changed the remote state since this run read it.
    #[error("the state at {url} changed since this run read it: {reason}")]
    #[diagnostic(
        code(ecoboot::state::conflict),
        help(
            "nothing was overwritten. Another writer bypassed the lock (`unlock --force` while a run was alive?); rerun: ecoboot reads the new state and probes the real world again"
        )
    )]
    StateConflict {
        /// The object.
        url: String,
        /// What happened.
        reason: String,
    },

    /// The state file cannot be used; it is left untouched.
    #[error("state file {} is unusable: {reason}", path.display())]
    #[diagnostic(
        code(ecoboot::state::unusable),
        help(
            "the file was not modified. Move it aside (ecoboot rebuilds state from probes of the real world) or use the ecoboot version that wrote it"
        )
    )]
    StateUnusable {
        /// The state file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },

    /// A stage needs the output of an earlier stage that has not run.
    #[error("stage `{stage}` needs {what}, which stage `{needs}` provides")]
    #[diagnostic(
        code(ecoboot::stage::prerequisite),
        help("run `ecoboot stage {needs}` (or `ecoboot up --to {stage}`) first")
    )]
    Prerequisite {
        /// The stage that was asked to run.
        stage: &'static str,
        /// What is missing.
        what: String,
        /// The stage that produces it.
        needs: &'static str,
    },

    /// The account's vCPU quota cannot hold the instances the config still has to launch.
    #[error(
        "not enough vCPU quota: launching {launch} instance(s) needs {needed} vCPUs, the account has {available} of its {quota} On-Demand Standard vCPUs free ({running} running); the whole config needs {total}"
    )]
    #[diagnostic(
        code(ecoboot::aws::vcpu_quota),
        help(
            "request an increase of Service Quotas code L-1216C47A (EC2, Running On-Demand Standard instances) to at least {wanted} vCPUs (`aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-1216C47A --desired-value {wanted}`), or use smaller instance types; nothing was created"
        )
    )]
    VcpuQuota {
        /// Instances still to launch.
        launch: usize,
        /// Their vCPUs.
        needed: i64,
        /// Quota minus what is running.
        available: i64,
        /// The quota.
        quota: i64,
        /// Standard vCPUs running in the account and region.
        running: i64,
        /// vCPUs of every node in the config.
        total: i64,
        /// The quota that would fit (running + needed).
        wanted: i64,
    },

    /// A stage ran but failed.
    #[error("stage `{stage}` failed: {message}")]
    #[diagnostic(code(ecoboot::stage::failed), help("{help}"))]
    StageFailed {
        /// The stage id.
        stage: String,
        /// What went wrong, naming the node or resource.
        message: String,
        /// What to do next.
        help: String,
    },

    /// An AWS call failed (after the SDK's retries).
    #[error("AWS {operation} on {target} failed: {code}: {message}")]
    #[diagnostic(code(ecoboot::aws), help("{help}"))]
    Aws {
        /// The API operation, e.g. `RunInstances`.
        operation: String,
        /// The node or resource it was for.
        target: String,
        /// The AWS error code.
        code: String,
        /// The AWS error message.
        message: String,
        /// What to do next.
        help: String,
    },

    /// SSH to a node failed.
    #[error("node {node}: {message}")]
    #[diagnostic(code(ecoboot::ssh), help("{help}"))]
    Ssh {
        /// Node name.
        node: String,
        /// What failed.
        message: String,
        /// What to do next.
        help: String,
    },

    /// A Kubernetes API request failed.
    #[error("Kubernetes API: {action} {target}: {message}")]
    #[diagnostic(code(ecoboot::kube), help("{help}"))]
    Kube {
        /// What ecoboot tried ("apply", "get", "connect to").
        action: String,
        /// The object or endpoint, e.g. `Deployment argocd/argocd-server`.
        target: String,
        /// The API server's message (Status reason and message).
        message: String,
        /// What to do next.
        help: String,
    },
    /// A stage's apply returned but its probe still sees work to do.
    #[error("stage `{stage}` finished but its check still finds work: {remaining}")]
    #[diagnostic(
        code(ecoboot::stage::unverified),
        help(
            "something changed underneath ecoboot or the stage is not idempotent; rerun with -v and report it"
        )
    )]
    Unverified {
        /// The stage id.
        stage: String,
        /// The actions the probe still lists.
        remaining: String,
    },

    /// `plan` could not see part of the real world.
    #[error("the plan is incomplete: ecoboot could not look at {}", blind.join("; "))]
    #[diagnostic(
        code(ecoboot::plan::incomplete),
        help(
            "nothing was changed; make the named nodes reachable (or fix their host keys) and run `ecoboot plan` again"
        )
    )]
    PlanIncomplete {
        /// What could not be looked at, one entry per node or resource.
        blind: Vec<String>,
    },

    /// The user or the environment stopped the run.
    #[error("interrupted")]
    #[diagnostic(
        code(ecoboot::interrupted),
        help("rerun `ecoboot up` to resume where it stopped")
    )]
    Interrupted,

    /// The command line asks for something impossible.
    #[error("{0}")]
    #[diagnostic(code(ecoboot::usage))]
    Usage(String),
}

impl Error {
    /// The process exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage(_) => exit::USAGE,
            Error::Locked { .. } | Error::RemoteLocked { .. } | Error::LockLost { .. } => {
                exit::LOCKED
            }
            Error::StateUnusable { .. } | Error::StateConflict { .. } => exit::STATE,
            Error::Interrupted => exit::INTERRUPTED,
            Error::PlanIncomplete { .. } => exit::INCOMPLETE_PLAN,
            Error::Io { .. }
            | Error::Prerequisite { .. }
            | Error::VcpuQuota { .. }
            | Error::StageFailed { .. }
            | Error::Aws { .. }
            | Error::Ssh { .. }
            | Error::Kube { .. }
            | Error::Unverified { .. } => exit::STAGE_FAILED,
        }
    }

    /// Shorthand for an [`Error::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_documented_ones() {
        assert_eq!(Error::Interrupted.exit_code(), 130);
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        let locked = Error::Locked {
            cluster: "c".into(),
            holder: "pid 1".into(),
            path: "/x".into(),
        };
        assert_eq!(locked.exit_code(), 3);
        let state = Error::StateUnusable {
            path: "/x".into(),
            reason: "r".into(),
        };
        assert_eq!(state.exit_code(), 4);
    }
}
