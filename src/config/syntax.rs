//! Pure syntax predicates for config values that reach nodes, AWS or generated files: the
//! Kubernetes grammar for keys and values, POSIX user names, hosts, AWS regions, zones and tags,
//! strict versions and git references. Each returns `Err(reason)` naming what is wrong.

pub use super::syntax_aws::{
    ami_owner, aws_tag, bucket_name, iam_name, image_name_filter, on_calendar, policy_arn, region,
    s3_url, zone,
};
use std::fmt;
use std::str::FromStr;

/// `Ok` when `ok`, else "`value` is not {what}" (the value clipped).
pub(super) fn verdict(ok: bool, value: &str, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("`{}` is not {what}", clip(value)))
    }
}

/// 1 to `max` characters, each an ASCII letter or digit or one of `extra`.
pub(super) fn ascii_charset(value: &str, max: usize, extra: &str) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// RFC 1123 label: lower-case alphanumerics and '-', 1-63 chars, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// The name part of a qualified name (and a non-empty label value): at most 63 characters of
/// `[A-Za-z0-9_.-]`, alphanumeric at both ends.
pub fn is_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A Kubernetes qualified name (label, annotation, taint key): `[prefix/]name`, the prefix a
/// DNS subdomain of at most 253 characters.
pub fn qualified_name(key: &str) -> Result<(), String> {
    match key.split_once('/') {
        Some((prefix, name)) => {
            if !is_dns_subdomain(prefix) {
                return Err(format!(
                    "the prefix of `{}` is not a DNS subdomain",
                    clip(key)
                ));
            }
            if !is_name_part(name) {
                return Err(format!("the name part of `{}` is invalid", clip(key)));
            }
            Ok(())
        }
        None if is_name_part(key) => Ok(()),
        None => Err(format!("`{}` is not a qualified name", clip(key))),
    }
}

/// A label value: empty, or a name part.
pub fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_name_part(value) {
        Ok(())
    } else {
        Err(format!("`{}` is not a valid label value", clip(value)))
    }
}

/// A taint's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `NoSchedule`.
    NoSchedule,
    /// `PreferNoSchedule`.
    PreferNoSchedule,
    /// `NoExecute`.
    NoExecute,
}

impl Effect {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::NoSchedule => "NoSchedule",
            Effect::PreferNoSchedule => "PreferNoSchedule",
            Effect::NoExecute => "NoExecute",
        }
    }
}

/// A taint (or a toleration of one) in the config's `key[=value]:Effect` form, parsed with the
/// full Kubernetes grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// Qualified name.
    pub key: String,
    /// Label value; empty when absent.
    pub value: String,
    /// The effect.
    pub effect: Effect,
}

impl FromStr for Taint {
    type Err = String;

    fn from_str(text: &str) -> Result<Taint, String> {
        let (kv, effect) = text.rsplit_once(':').ok_or("missing `:Effect`")?;
        let effect = match effect {
            "NoSchedule" => Effect::NoSchedule,
            "PreferNoSchedule" => Effect::PreferNoSchedule,
            "NoExecute" => Effect::NoExecute,
            other => return Err(format!("unknown effect `{}`", clip(other))),
        };
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        qualified_name(key).map_err(|e| format!("invalid key: {e}"))?;
        label_value(value).map_err(|e| format!("invalid value: {e}"))?;
        Ok(Taint {
            key: key.into(),
            value: value.into(),
            effect,
        })
    }
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.key, self.effect.as_str())
        } else {
            write!(f, "{}={}:{}", self.key, self.value, self.effect.as_str())
        }
    }
}

/// A POSIX portable user name as `useradd` accepts it: `[a-z_][a-z0-9_-]*`, at most 32.
pub fn posix_user(user: &str) -> Result<(), String> {
    let ok = !user.is_empty()
        && user.len() <= 32
        && user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("`{}` is not a POSIX user name", clip(user)))
    }
}

/// A host name or IPv4 address (never starting with '-', so never an ssh option).
pub fn host(host: &str) -> Result<(), String> {
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a host name or IPv4 address",
            clip(host)
        ))
    }
}

/// `host[:port]` with a port in 1-65535.
pub fn host_port(addr: &str) -> Result<(), String> {
    let (h, port) = match addr.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (addr, None),
    };
    host(h)?;
    match port {
        Some(p) if !p.parse::<u16>().is_ok_and(|p| p > 0) => {
            Err(format!("`{}` is not a port", clip(p)))
        }
        _ => Ok(()),
    }
}

/// `[user@]host[:port]` (a ProxyJump).
pub fn jump_host(jump: &str) -> Result<(), String> {
    let rest = match jump.split_once('@') {
        Some((user, rest)) => {
            posix_user(user)?;
            rest
        }
        None => jump,
    };
    host_port(rest)
}

/// A strict Kubernetes version: `1.MINOR` or `1.MINOR.PATCH`, an optional leading `v`.
pub fn kubernetes_version(version: &str) -> Result<(), String> {
    let v = version.strip_prefix('v').unwrap_or(version);
    let parts: Vec<&str> = v.split('.').collect();
    let number = |p: &&str| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit());
    if parts.first() == Some(&"1") && (2..=3).contains(&parts.len()) && parts.iter().all(number) {
        Ok(())
    } else {
        Err(format!("`{}` is not a Kubernetes version", clip(version)))
    }
}

/// A plain release version: `MAJOR.MINOR.PATCH`, digits only (e.g. containerd `2.3.4`).
pub fn release_version(version: &str) -> Result<(), String> {
    let parts: Vec<&str> = version.split('.').collect();
    let number = |p: &&str| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit());
    if parts.len() == 3 && parts.iter().all(number) {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a MAJOR.MINOR.PATCH version",
            clip(version)
        ))
    }
}

/// A git URL ArgoCD can clone: `https://`, `ssh://` or `git@host:path`, no spaces or quotes.
pub fn git_url(url: &str) -> Result<(), String> {
    let scheme = ["https://", "ssh://", "git@"]
        .iter()
        .any(|p| url.starts_with(p));
    verdict(
        scheme && ascii_charset(url, 2048, "-._~:/@%+") && no_credentials(url),
        url,
        "a git URL (https://, ssh:// or git@host:path) without credentials in it",
    )
}

/// No password and no userinfo hiding the real host: `https://` URLs carry no `user@` at
/// all (`https://github.com@evil.example/` goes to evil.example), `ssh://` at most a user name
/// without a password.
fn no_credentials(url: &str) -> bool {
    let authority = |rest: &str| rest.split('/').next().unwrap_or_default().to_string();
    if let Some(rest) = url.strip_prefix("https://") {
        return !authority(rest).contains('@') && !authority(rest).contains('%');
    }
    if let Some(rest) = url.strip_prefix("ssh://") {
        let a = authority(rest);
        return match a.rsplit_once('@') {
            Some((user, _)) => !user.contains(':') && !user.contains('@'),
            None => true,
        };
    }
    true
}

/// A relative repository path or a git revision: `[A-Za-z0-9._/-]`, not starting with '-' or
/// '/', no `..` segment.
pub fn repo_path(path: &str) -> Result<(), String> {
    let ok = ascii_charset(path, 1024, "-._/")
        && !path.starts_with(['-', '/'])
        && !path.split('/').any(|s| s == "..");
    verdict(ok, path, "a safe relative path or revision")
}

/// An HTTPS download URL without spaces, quotes or shell characters.
pub fn https_url(url: &str) -> Result<(), String> {
    verdict(
        url.starts_with("https://")
            && ascii_charset(url, 2048, "-._~:/@%+?=&")
            && no_credentials(url),
        url,
        "an https:// URL without credentials in it",
    )
}

/// A token of plain characters `[A-Za-z0-9._-]` (versions, instance types, names).
pub fn plain_token(value: &str, max: usize) -> Result<(), String> {
    verdict(
        ascii_charset(value, max, "-._") && !value.starts_with('-'),
        value,
        &format!("1-{max} characters of [A-Za-z0-9._-]"),
    )
}

/// At most 60 characters of `s` for an error message (values echoed in errors are truncated).
pub fn clip(s: &str) -> String {
    const MAX: usize = 60;
    let escaped: String = s.chars().flat_map(char::escape_default).collect();
    if escaped.chars().count() <= MAX {
        escaped
    } else {
        let head: String = escaped.chars().take(MAX).collect();
        format!("{head}… ({} characters)", s.chars().count())
    }
}

#[cfg(test)]
#[path = "syntax_tests.rs"]
mod tests;
