//! Checks of `spec.aws.policyDocuments`: names, where each document comes from, and (when
//! files are checked) that a local document is an IAM policy.

use std::collections::HashSet;
use std::path::Path;

use super::syntax::{self, clip};
use super::validate::Checker;
use super::{Aws, FileChecks, policy_json};

/// Largest policy file read (IAM's own limits are far below it).
const MAX_BYTES: u64 = 256 * 1024;

pub(super) fn check_policy_documents(ck: &mut Checker, aws: &Aws, base: &Path, files: FileChecks) {
    let mut seen = HashSet::new();
    for doc in &aws.policy_documents {
        let name = &doc.name;
        if ck.required(name, "spec.aws.policyDocuments[].name") {
            ck.syntax(
                name,
                "spec.aws.policyDocuments[].name",
                syntax::iam_name,
                "an IAM policy name such as aws-load-balancer-controller",
            );
            if name.value == "ecoboot-backup" {
                ck.err(
                    name,
                    "`ecoboot-backup` is the name of the policy ecoboot generates for spec.backup.schedule".to_string(),
                    "pick another name",
                );
            }
            if !seen.insert(name.value.clone()) {
                ck.err(
                    name,
                    format!("policy document `{}` is listed twice", clip(name)),
                    "give every policy document its own name",
                );
            }
        }
        if let Some(sha) = &doc.sha256 {
            ck.sha256(sha, "spec.aws.policyDocuments[].sha256");
        }
        match (&doc.url, &doc.sha256, &doc.path) {
            (None, _, None) => ck.err(
                doc,
                format!(
                    "policy document `{}` has neither `url` nor `path`",
                    clip(name)
                ),
                "point `path:` at a JSON file, or pin `url:` with its `sha256:`",
            ),
            (Some(url), None, _) => ck.err(
                url,
                format!(
                    "policy document `{}` has a `url` but no `sha256`",
                    clip(name)
                ),
                "pin the download: add `sha256:` (sha256sum of the file)",
            ),
            (Some(url), Some(_), _) => {
                ck.syntax(
                    url,
                    "spec.aws.policyDocuments[].url",
                    syntax::https_url,
                    "a pinned https:// URL",
                );
            }
            (None, _, Some(_)) => {}
        }
        if let (Some(path), FileChecks::Check) = (&doc.path, files) {
            let resolved = super::resolve_path(base, path);
            let read = super::read_regular(&resolved, MAX_BYTES)
                .map_err(|e| format!("cannot be read: {e}"))
                .and_then(|b| String::from_utf8(b).map_err(|_| "is not UTF-8 text".to_string()))
                .and_then(|text| policy_json(&text));
            if let Err(e) = read {
                ck.err(
                    path,
                    format!("policy document {} {e}", resolved.display()),
                    "point `path:` at an IAM policy JSON file ({\"Version\": \"2012-10-17\", \"Statement\": [...]})",
                );
            }
        }
    }
}
