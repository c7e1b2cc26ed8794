//! The journal is hostile input: it comes back from S3, which anyone able to write the state
//! bucket controls. Before any command uses it, every stage output is parsed value by value:
//! node names by the config's grammar, instance ids, zones, IP addresses, SSH addresses and
//! AWS resource ids each by their own grammar, every other string a plain token (no spaces,
//! quotes, shell or option syntax, control characters). A journal with one value outside its
//! grammar is refused whole (exit 4) and nothing is touched.

use std::net::IpAddr;

use serde_json::Value;

use crate::config::syntax;

/// What one value of the journal must be, chosen by the key that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An EC2 instance id `i-` + 8 or 17 hex digits.
    InstanceId,
    /// An availability zone (`ap-northeast-2a`, `us-west-2-lax-1a`).
    Zone,
    /// An IP address, or empty.
    Ip,
    /// `host[:port]` as the config's `address` grammar, or empty.
    SshAddress,
    /// An AWS resource id (`vpc-…`, `subnet-…`, `sg-…`, `igw-…`, `rtb-…`, `ami-…`, `eipalloc-…`).
    ResourceId,
    /// A DNS name (the API load balancer's), or empty.
    DnsName,
    /// Anything else: a plain token.
    Plain,
}

fn kind_of(key: &str) -> Kind {
    match key {
        "instance_id" => Kind::InstanceId,
        "az" => Kind::Zone,
        "private_ip" | "public_ip" => Kind::Ip,
        "ssh" | "address" => Kind::SshAddress,
        k if k.ends_with("_id") => Kind::ResourceId,
        "dns_name" => Kind::DnsName,
        _ => Kind::Plain,
    }
}

/// Keys whose object maps node names to values.
const BY_NODE: &[&str] = &["nodes", "generations", "tokens", "drains"];

fn hex(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// An EC2 instance id.
pub fn instance_id(s: &str) -> Result<(), String> {
    match s.strip_prefix("i-") {
        Some(h) if (h.len() == 8 || h.len() == 17) && hex(h) => Ok(()),
        _ => Err(format!("`{}` is not an EC2 instance id", syntax::clip(s))),
    }
}

/// An availability zone name.
pub fn zone(s: &str) -> Result<(), String> {
    let ok = s.len() <= 32
        && s.split('-').count() >= 3
        && s.split('-').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && s.ends_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(format!("`{}` is not an availability zone", syntax::clip(s)))
    }
}

/// An AWS resource id: a lowercase prefix, `-`, hex.
pub fn resource_id(s: &str) -> Result<(), String> {
    let ok = s.len() <= 64
        && s.split_once('-').is_some_and(|(p, h)| {
            !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()) && hex(h)
        });
    if ok {
        Ok(())
    } else {
        Err(format!("`{}` is not an AWS resource id", syntax::clip(s)))
    }
}

/// A plain token: `[A-Za-z0-9._:/@=+,-]`, at most 1 MiB, not starting with `-`.
pub fn plain(s: &str) -> Result<(), String> {
    let ok = s.len() <= 1 << 20
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:/@=+,-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` holds characters a journal value never has",
            syntax::clip(s)
        ))
    }
}

fn check_string(kind: Kind, s: &str) -> Result<(), String> {
    match kind {
        Kind::InstanceId => instance_id(s),
        Kind::Zone => zone(s),
        Kind::Ip if s.is_empty() => Ok(()),
        Kind::Ip => s
            .parse::<IpAddr>()
            .map(drop)
            .map_err(|_| format!("`{}` is not an IP address", syntax::clip(s))),
        Kind::SshAddress if s.is_empty() => Ok(()),
        Kind::SshAddress => syntax::host_port(s),
        Kind::ResourceId if s.is_empty() => Ok(()),
        Kind::ResourceId => resource_id(s),
        Kind::DnsName if s.is_empty() || syntax::is_dns_subdomain(s) => Ok(()),
        Kind::DnsName => Err(format!("`{}` is not a DNS name", syntax::clip(s))),
        Kind::Plain if s.is_empty() => Ok(()),
        Kind::Plain => plain(s),
    }
}

fn walk(path: &str, kind: Kind, node_keys: bool, v: &Value, problems: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Err(why) = check_string(kind, s) {
                problems.push(format!("{path}: {why}"));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(&format!("{path}[{i}]"), kind, false, item, problems);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let here = format!("{path}.{k}");
                let key_ok = if node_keys {
                    syntax::is_dns_label(k)
                } else {
                    plain(k).is_ok()
                };
                if !key_ok {
                    problems.push(format!(
                        "{path}: the key `{}` is not {}",
                        syntax::clip(k),
                        if node_keys {
                            "a node name"
                        } else {
                            "a plain name"
                        }
                    ));
                    continue;
                }
                let (kind, nodes) = if node_keys {
                    (kind, false)
                } else {
                    (kind_of(k), BY_NODE.contains(&k.as_str()))
                };
                walk(&here, kind, nodes, item, problems);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Every value of the journal's stage outputs outside its grammar, as `outputs.<path>: why`.
pub fn problems(outputs: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    for (stage, v) in outputs {
        if plain(stage).is_err() {
            problems.push(format!(
                "outputs: the stage key `{}` is not a stage id",
                syntax::clip(stage)
            ));
            continue;
        }
        walk(
            &format!("outputs.{stage}"),
            Kind::Plain,
            false,
            v,
            &mut problems,
        );
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(json).unwrap();
        problems(v.as_object().unwrap())
    }

    #[test]
    fn a_real_journal_passes() {
        let ok = r#"{"instances":{"ami_id":"ami-0123456789abcdef0","generations":{"cp-1":1},
            "tokens":{"cp-1":"ecoboot-demo-cp-1-0a1b"},"nodes":{"cp-1":{"instance_id":"i-0123456789abcdef0",
            "az":"ap-northeast-2a","private_ip":"10.0.1.10","public_ip":"","instance_type":"t3.large",
            "state":"running","ssh":"127.0.1.1:2222"}}},
            "network":{"vpc_id":"vpc-1a2b3c4d","subnets":{"public-a":{"id":"subnet-12345678","az":"us-west-2-lax-1a"}}},
            "iam":{"role":"ecoboot-demo-node","instance_profile":"ecoboot-demo-node","controller_instance_profile":null}}"#;
        assert_eq!(check(ok), Vec::<String>::new());
    }

    #[test]
    fn hostile_values_are_named() {
        let cases = [
            (
                r#"{"instances":{"nodes":{"cp-1":{"private_ip":"10.0.1.10:2380 ; touch /tmp/x ; #"}}}}"#,
                "not an IP address",
            ),
            (
                r#"{"instances":{"nodes":{"cp-1":{"ssh":"1.2.3.4 ansible_ssh_common_args='-o ProxyCommand=x'"}}}}"#,
                "outputs.instances.nodes.cp-1.ssh",
            ),
            (
                r#"{"instances":{"nodes":{"cp-1":{"instance_id":"i-0abc; rm"}}}}"#,
                "not an EC2 instance id",
            ),
            (
                r#"{"instances":{"nodes":{"Evil Node":{}}}}"#,
                "not a node name",
            ),
            (
                r#"{"network":{"vpc_id":"vpc-$(id)"}}"#,
                "not an AWS resource id",
            ),
            (
                r#"{"load-balancer":{"dns_name":"evil.example.com:6443/x"}}"#,
                "not a DNS name",
            ),
            (
                r#"{"instances":{"nodes":{"cp-1":{"az":"a\u001b]0;x\u0007"}}}}"#,
                "not an availability zone",
            ),
            (r#"{"iam":{"role":"--help"}}"#, "characters"),
        ];
        for (json, want) in cases {
            let got = check(json);
            assert!(got.iter().any(|p| p.contains(want)), "{json}: {got:?}");
        }
    }
}
