//! What this binary is: version, git commit, build date, target and compiler (from `build.rs`).

use serde::Serialize;

/// Build facts, as `ecoboot version` prints them and every run's first event carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BuildInfo {
    /// Crate version.
    pub version: &'static str,
    /// Git commit (`-dirty` when built from a modified tree).
    pub commit: &'static str,
    /// Build date (UTC, or `SOURCE_DATE_EPOCH`).
    pub build_date: &'static str,
    /// Target triple.
    pub target: &'static str,
    /// `rustc -V`.
    pub rustc: &'static str,
}

/// This binary's build facts.
pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("ECOBOOT_GIT_COMMIT"),
    build_date: env!("ECOBOOT_BUILD_DATE"),
    target: env!("ECOBOOT_TARGET"),
    rustc: env!("ECOBOOT_RUSTC"),
};

impl std::fmt::Display for BuildInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ecoboot {} ({} {}, {}, {})",
            self.version, self.commit, self.build_date, self.target, self.rustc
        )
    }
}
