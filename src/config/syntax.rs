//! Pure syntax predicates for config values that reach nodes, AWS or generated files: the
//! Kubernetes grammar for keys and values, POSIX user names, hosts, AWS regions, zones and tags,
//! strict versions and git references. Each returns `Err(reason)` naming what is wrong.

use std::fmt;
use std::str::FromStr;

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

/// An AWS region such as `ap-northeast-2` or `us-gov-west-1`.
pub fn region(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && region.len() <= 32
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if ok {
        Ok(())
    } else {
        Err(format!("`{}` is not an AWS region", clip(region)))
    }
}

/// An availability zone of `region`: the region followed by a zone letter (or a local zone
/// suffix such as `-lax-1a`).
pub fn zone(az: &str, region: &str) -> Result<(), String> {
    let ok = az.len() <= 48
        && az.starts_with(region)
        && az.len() > region.len()
        && az.ends_with(|c: char| c.is_ascii_lowercase())
        && az
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an availability zone of {}",
            clip(az),
            clip(region)
        ))
    }
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

/// An AWS tag key and value as EC2 and IAM accept them; `aws:` keys and the keys ecoboot sets
/// itself are refused.
pub fn aws_tag(key: &str, value: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c);
    if key.is_empty() || key.chars().count() > 128 || !key.chars().all(allowed) {
        return Err(format!(
            "tag key `{}` must be 1-128 letters, digits, spaces or _.:/=+-@",
            clip(key)
        ));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(format!(
            "tag key `{}` uses the reserved `aws:` prefix",
            clip(key)
        ));
    }
    if key == "Name" || key.starts_with("ecoboot.io/") || key.starts_with("kubernetes.io/cluster/")
    {
        return Err(format!("tag key `{}` is set by ecoboot itself", clip(key)));
    }
    if value.chars().count() > 256 || !value.chars().all(allowed) {
        return Err(format!(
            "tag value `{}` of `{}` must be at most 256 letters, digits, spaces or _.:/=+-@",
            clip(value),
            clip(key)
        ));
    }
    Ok(())
}

/// A git URL ArgoCD can clone: `https://`, `ssh://` or `git@host:path`, no spaces or quotes.
pub fn git_url(url: &str) -> Result<(), String> {
    let scheme = ["https://", "ssh://", "git@"]
        .iter()
        .any(|p| url.starts_with(p));
    let chars = url
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~:/@%+".contains(c));
    if scheme && chars && url.len() <= 2048 {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a git URL (https://, ssh:// or git@host:path)",
            clip(url)
        ))
    }
}

/// A relative repository path or a git revision: `[A-Za-z0-9._/-]`, not starting with '-' or
/// '/', no `..` segment.
pub fn repo_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && path.len() <= 1024
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/".contains(c))
        && !path.starts_with(['-', '/'])
        && !path.split('/').any(|s| s == "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a safe relative path or revision",
            clip(path)
        ))
    }
}

/// An HTTPS download URL without spaces, quotes or shell characters.
pub fn https_url(url: &str) -> Result<(), String> {
    let ok = url.starts_with("https://")
        && url.len() <= 2048
        && url
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~:/@%+?=&".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("`{}` is not an https:// URL", clip(url)))
    }
}

/// A token of plain characters `[A-Za-z0-9._-]` (versions, instance types, names).
pub fn plain_token(value: &str, max: usize) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        && !value.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` must be 1-{max} characters of [A-Za-z0-9._-]",
            clip(value)
        ))
    }
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
mod tests {
    use super::*;

    #[test]
    fn taints_use_the_full_grammar() {
        assert!("domain=data:NoSchedule".parse::<Taint>().is_ok());
        assert!("dedicated:NoExecute".parse::<Taint>().is_ok());
        assert!("example.com/x=y:PreferNoSchedule".parse::<Taint>().is_ok());
        assert!("domain=data".parse::<Taint>().is_err());
        assert!("domain=data:Never".parse::<Taint>().is_err());
        assert!("=x:NoSchedule".parse::<Taint>().is_err());
        assert!(
            "a\nECOBOOT_EOF\ntouch /x/b=c:NoSchedule"
                .parse::<Taint>()
                .is_err()
        );
        assert!("Bad_Prefix/b=c:NoSchedule".parse::<Taint>().is_err());
        let t: Taint = "example.com/x=y:NoExecute".parse().unwrap();
        assert_eq!(t.to_string(), "example.com/x=y:NoExecute");
    }

    #[test]
    fn hosts_users_regions_versions() {
        assert!(host_port("127.0.1.3:2222").is_ok());
        assert!(host_port("127.0.1.3:0").is_err());
        assert!(host_port("-V").is_err());
        assert!(host_port("a b").is_err());
        assert!(jump_host("ops@bastion.example.com:22").is_ok());
        assert!(jump_host("-oProxyCommand=x").is_err());
        assert!(posix_user("ubuntu").is_ok());
        assert!(posix_user("ubuntu\nx").is_err());
        assert!(region("ap-northeast-2").is_ok());
        assert!(region("us-gov-west-1").is_ok());
        assert!(region("ap-northeast-2;id").is_err());
        assert!(zone("ap-northeast-2a", "ap-northeast-2").is_ok());
        assert!(zone("us-west-2-lax-1a", "us-west-2").is_ok());
        assert!(zone("eu-west-1a", "ap-northeast-2").is_err());
        assert!(kubernetes_version("1.34").is_ok());
        assert!(kubernetes_version("v1.34.2").is_ok());
        assert!(kubernetes_version("vvv+1.+34").is_err());
        assert!(kubernetes_version("1.34.1-rc.0").is_err());
    }

    #[test]
    fn tags_urls_paths() {
        assert!(aws_tag("Project", "SeSACTHON").is_ok());
        assert!(aws_tag("aws:cloudformation", "x").is_err());
        assert!(aws_tag("AWS:x", "x").is_err());
        assert!(aws_tag("Team", "a;b").is_err());
        assert!(git_url("https://github.com/SeSACTHON/backend").is_ok());
        assert!(git_url("https://x\"y").is_err());
        assert!(repo_path("argocd/components").is_ok());
        assert!(repo_path("../etc").is_err());
        assert!(repo_path("-rf").is_err());
        assert_eq!(clip("a\nb"), "a\\nb");
        assert!(clip(&"x".repeat(100)).ends_with("(100 characters)"));
    }
}
