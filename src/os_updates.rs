//! Unattended security upgrades on the nodes (`spec.kubernetes.hardening.securityUpdates`): the
//! apt configuration prepare-nodes writes. Reboots are never automatic: `ecoboot reboot` rolls
//! them (see `crate::upgrade::reboot`).

use crate::config::Config;

/// `/etc/apt/apt.conf.d/52ecoboot-unattended-upgrades`: security origins, the Kubernetes
/// packages never (they move with `ecoboot upgrade`), never an automatic reboot.
pub const UNATTENDED_UPGRADES: &str = "// written by ecoboot: security updates only; reboots are rolled by `ecoboot reboot`\nUnattended-Upgrade::Allowed-Origins {\n\t\"${distro_id}:${distro_codename}-security\";\n\t\"${distro_id}ESMApps:${distro_codename}-apps-security\";\n\t\"${distro_id}ESM:${distro_codename}-infra-security\";\n};\nUnattended-Upgrade::Package-Blacklist {\n\t\"kubelet\";\n\t\"kubeadm\";\n\t\"kubectl\";\n\t\"kubernetes-cni\";\n\t\"cri-tools\";\n};\nUnattended-Upgrade::Automatic-Reboot \"false\";\n";

/// `/etc/apt/apt.conf.d/20auto-upgrades`: the daily run on or off.
pub fn auto_upgrades(config: &Config) -> String {
    let on = match config.cluster.spec.kubernetes.hardening.security_updates {
        true => "1",
        false => "0",
    };
    format!(
        "APT::Periodic::Update-Package-Lists \"{on}\";\nAPT::Periodic::Unattended-Upgrade \"{on}\";\n"
    )
}
