//! ecoboot: one binary that bootstraps a Kubernetes platform on AWS end to end.
//!
//! `run` is the whole program; `main.rs` only calls it.

#![warn(missing_docs)]
pub mod api;
pub mod aws;
pub mod backup;
pub mod build_info;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod containerd;
pub mod csr;
pub mod engine;
pub mod error;
pub mod etcd;
pub mod event;
pub mod fanout;
pub mod fetch;
pub mod fsutil;
pub mod golden;
pub mod hardening;
pub mod image;
pub mod inventory;
pub mod journal_check;
pub mod kubeadm;
pub mod lock_health;
pub mod nodes;
pub mod os_updates;
pub mod output;
pub mod playbook;
pub mod prune;
pub mod remote_state;
pub mod report;
pub mod retry;
pub mod ssh;
pub mod stage_scope;
pub mod stages;
pub mod state;
mod state_bucket;
pub mod state_sync;
pub mod teardown;
#[cfg(test)]
mod testutil;
pub mod upgrade;
pub mod validate;

use std::ffi::OsString;

use clap::Parser;

use crate::error::exit;

/// Parses `args`, runs the command and returns the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
        }
    };
    output::install_error_renderer();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ecoboot: cannot start the async runtime: {e}");
            return exit::STAGE_FAILED;
        }
    };
    // A panic anywhere (a bug) becomes a short diagnostic and exit 70, never Rust's 101.
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let what = crate::config::syntax::clip(&what);
        eprintln!(
            "ecoboot::internal\n\n  × ecoboot hit a bug{place}: {what}\n  help: rerun `ecoboot up` to resume (state is written atomically); please report this with the debug log"
        );
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async {
            // Losing the remote state lock cancels the command where it stands: its future
            // is dropped (SSH channels, API and AWS calls with it) and the run exits 3.
            tokio::select! {
                result = commands::dispatch(cli) => result,
                reason = lock_health::wait_lost() => Err(error::Error::LockLost { reason }),
            }
        })
    }));
    match result {
        Ok(Ok(())) => exit::SUCCESS,
        Ok(Err(err)) => {
            let code = err.exit_code();
            // The one output point for the final error: its text may quote node output or
            // journal values, so it is cleaned like every other line (colours kept).
            let rendered = format!("{:?}", miette::Report::new(err));
            eprintln!("{}", report::sanitize::clean_with(&rendered, true));
            code
        }
        Err(_) => exit::INTERNAL,
    }
}
