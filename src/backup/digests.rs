//! The sha256 of every backup `ecoboot backup` took, kept in the journal (the state prefix),
//! not only in the object's own metadata: whoever can only write the backups prefix (a pod
//! holding the scheduled backup's add-only credentials, a too-wide bucket policy) can replace
//! an object and its metadata together, but not this record. `restore` checks a backup against
//! it when it has one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::Ctx;
use crate::error::Result;

/// The journal key.
pub const KEY: &str = "backup";

/// What the journal keeps about backups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// sha256 (hex) by object key, for the backups this cluster's runs took and still keeps.
    #[serde(default)]
    pub digests: BTreeMap<String, String>,
}

/// Records `key`'s digest and forgets the ones of `pruned`.
pub fn record(cx: &Ctx, key: &str, sha256: &str, pruned: &[String]) -> Result<()> {
    cx.update_state(|s| {
        let mut r: Record = s.output(KEY).unwrap_or_default();
        r.digests.insert(key.to_string(), sha256.to_string());
        for gone in pruned {
            r.digests.remove(gone);
        }
        s.set_output(KEY, &r);
    })
}

/// The digest recorded for `key`, if a run of `ecoboot backup` took it.
pub fn recorded(cx: &Ctx, key: &str) -> Option<String> {
    let r: Record = cx.state().output(KEY)?;
    r.digests.get(key).cloned()
}
