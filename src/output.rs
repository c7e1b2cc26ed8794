//! Process-wide output setup: the miette error renderer and tracing (stderr + per-run log file).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the miette hook: colours and unicode on a terminal, plain ASCII elsewhere.
pub fn install_error_renderer() {
    let fancy = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = miette::set_hook(Box::new(move |_| {
        let theme = if fancy {
            miette::GraphicalTheme::unicode()
        } else {
            miette::GraphicalTheme::unicode_nocolor()
        };
        let opts = miette::MietteHandlerOpts::new()
            .graphical_theme(theme)
            .terminal_links(false);
        // Logs and CI output are not wrapped: a message stays on one line, greppable.
        let opts = if fancy { opts } else { opts.width(1000) };
        Box::new(opts.build())
    }));
}

/// Sets up tracing: stderr at a level from `-v`/`ECOBOOT_LOG`, and, when `log_dir` is given,
/// a debug-level log file of this run (returned).
pub fn init_tracing(verbose: u8, log_dir: Option<&Path>, command: &str) -> Option<PathBuf> {
    let stderr_filter = match std::env::var("ECOBOOT_LOG") {
        Ok(filter) if !filter.is_empty() => EnvFilter::new(filter),
        _ => EnvFilter::new(match verbose {
            0 => "warn",
            1 => "ecoboot=info,warn",
            _ => "ecoboot=debug,info",
        }),
    };
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(stderr_filter);
    let (file_layer, path) = match log_dir.and_then(|dir| open_log(dir, command)) {
        Some((file, path)) => {
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(Mutex::new(file))
                .with_ansi(false)
                .with_filter(EnvFilter::new("ecoboot=debug,info"));
            (Some(layer), Some(path))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
    path
}

fn open_log(dir: &Path, command: &str) -> Option<(std::fs::File, PathBuf)> {
    crate::fsutil::ensure_private_dir(dir).ok()?;
    let stamp = crate::clock::now().replace(':', "");
    let path = dir.join(format!("{stamp}-{command}-{}.log", std::process::id()));
    let file = crate::fsutil::append_nofollow().open(&path).ok()?;
    Some((file, path))
}

use tracing_subscriber::Layer as _;
