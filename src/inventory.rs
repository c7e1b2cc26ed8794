//! The node inventory written after every `instances` run: an Ansible-compatible `hosts.ini`
//! (groups by role) and `inventory.yaml`, both in the cluster's state directory. Regenerated
//! from what AWS reports, so it never points at old addresses.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::config::{Config, Role};
use crate::error::Result;
use crate::fsutil::write_atomic;
use crate::nodes::{InstancesOut, ssh_address};

/// One host of the YAML inventory.
#[derive(Debug, Serialize)]
struct Host<'a> {
    role: &'a str,
    address: String,
    private_ip: &'a str,
    public_ip: &'a str,
    instance_id: &'a str,
    az: &'a str,
    instance_type: &'a str,
}

/// A value as hosts.ini may carry it: Ansible splits a host line on spaces and reads every
/// `key=value` as a variable (`ansible_ssh_common_args` runs commands), so anything but a
/// plain token (`[A-Za-z0-9._:-]`) is written as `invalid` instead.
fn ini_value(v: &str) -> &str {
    let plain = !v.is_empty()
        && !v.starts_with('-')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
    if plain { v } else { "invalid" }
}

/// Renders `hosts.ini`.
pub fn render_ini(config: &Config, out: &InstancesOut) -> String {
    let mut text = format!(
        "# written by ecoboot for cluster {}; regenerated on every run\n",
        config.name()
    );
    for (group, role) in [
        ("control_plane", Role::ControlPlane),
        ("workers", Role::Worker),
    ] {
        text.push_str(&format!("\n[{group}]\n"));
        for node in config.nodes().filter(|n| n.role == Some(role)) {
            let name = node.name.as_str();
            let Some(i) = out.nodes.get(name) else {
                continue;
            };
            text.push_str(&format!(
                "{name} ansible_host={} private_ip={} instance_id={} az={} instance_type={}\n",
                ini_value(&ssh_address(config, name, Some(out))),
                ini_value(&i.private_ip),
                ini_value(&i.instance_id),
                ini_value(&i.az),
                ini_value(&i.instance_type)
            ));
        }
    }
    text.push_str("\n[k8s_cluster:children]\ncontrol_plane\nworkers\n");
    text.push_str(&format!(
        "\n[all:vars]\nansible_user={}\n",
        config.cluster.spec.ssh.user
    ));
    text
}

/// Renders `inventory.yaml`.
pub fn render_yaml(config: &Config, out: &InstancesOut) -> String {
    let hosts: BTreeMap<&str, Host> = config
        .nodes()
        .filter_map(|n| {
            let name = n.name.as_str();
            let i = out.nodes.get(name)?;
            Some((
                name,
                Host {
                    role: n.role.map(|r| r.as_str()).unwrap_or_default(),
                    address: ssh_address(config, name, Some(out)),
                    private_ip: &i.private_ip,
                    public_ip: &i.public_ip,
                    instance_id: &i.instance_id,
                    az: &i.az,
                    instance_type: &i.instance_type,
                },
            ))
        })
        .collect();
    serde_saphyr::to_string(&hosts).unwrap_or_default()
}

/// Writes both files into `dir`.
pub fn write(config: &Config, dir: &Path, out: &InstancesOut) -> Result<()> {
    write_atomic(
        &dir.join("hosts.ini"),
        render_ini(config, out).as_bytes(),
        0o600,
    )?;
    write_atomic(
        &dir.join("inventory.yaml"),
        render_yaml(config, out).as_bytes(),
        0o600,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::NodeOut;

    #[test]
    fn ini_groups_by_role_and_prefers_static_addresses() {
        let config = crate::config::tests_support::config();
        let mut out = InstancesOut::default();
        for (i, n) in config.nodes().enumerate() {
            out.nodes.insert(
                n.name.value.clone(),
                NodeOut {
                    instance_id: format!("i-{i}"),
                    public_ip: format!("54.0.0.{i}"),
                    private_ip: format!("10.0.1.{i}"),
                    ..Default::default()
                },
            );
        }
        let ini = render_ini(&config, &out);
        let cp = ini.split("[workers]").next().unwrap();
        assert!(
            cp.contains("k8s-master ansible_host=54.0.0.0 private_ip=10.0.1.0 instance_id=i-0")
        );
        assert_eq!(ini.matches("ansible_host=").count(), 14);
        assert!(render_yaml(&config, &out).contains("k8s-monitoring:"));
        out.nodes.get_mut("k8s-master").unwrap().private_ip =
            "1.2.3.4 ansible_ssh_common_args='-o ProxyCommand=x'".into();
        let ini = render_ini(&config, &out);
        assert!(!ini.contains("ProxyCommand"), "{ini}");
        assert!(ini.contains("k8s-master ansible_host=54.0.0.0 private_ip=invalid"));
    }
}
