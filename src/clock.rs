//! Wall-clock time as ecoboot writes it (journal records, lock holders, log and backup names).
//! Never used to judge whether someone else's lease expired (see `lock_health.rs`).

use std::time::SystemTime;

/// Current time as RFC 3339 (UTC, seconds).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
