//! The container runtime files ecoboot writes on every node: containerd's `config.toml` in
//! config version 3 (containerd 2.x: systemd cgroup driver, the pause image kubeadm expects for
//! the cluster's minor) and the systemd unit for the binaries the release tarball puts under
//! `/usr/local` (the `containerd.service` the containerd repository ships).

use crate::config::Config;
use crate::config::support;

/// Where the release tarball's binaries go.
pub const PREFIX: &str = "/usr/local";

/// `/etc/containerd/config.toml` for `config`.
pub fn config_toml(config: &Config) -> String {
    let pause = support::pause_image(&config.cluster.spec.kubernetes.version);
    format!(
        r#"# Written by ecoboot: containerd 2.x, config version 3.
version = 3

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = '{pause}'

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = 'runc'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = '{PREFIX}/bin/runc'
  SystemdCgroup = true

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ['/opt/cni/bin']
  conf_dir = '/etc/cni/net.d'
"#
    )
}

/// `/etc/systemd/system/containerd.service` (upstream's unit).
pub fn systemd_unit() -> String {
    format!(
        r#"# Written by ecoboot: containerd's upstream unit (containerd.service in its repository).
[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target dbus.service

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart={PREFIX}/bin/containerd

Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5

# Having non-zero Limit*s causes performance problems due to accounting overhead
# in the kernel. We recommend using cgroups to do container-local accounting.
LimitNPROC=infinity
LimitCORE=infinity

# Comment TasksMax if your systemd version does not support it.
# Only systemd 226 and above support this version.
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Located;

    fn config(version: &str) -> Config {
        let mut c = crate::config::tests_support::config();
        c.cluster.spec.kubernetes.version = Located {
            value: version.into(),
            span: None,
        };
        c
    }

    #[test]
    fn config_toml_snapshot() {
        crate::testutil::snapshot("containerd-config-1.36.toml", &config_toml(&config("1.36")));
    }

    #[test]
    fn the_pause_image_follows_the_minor() {
        assert!(
            config_toml(&config("1.35.2")).contains("sandbox = 'registry.k8s.io/pause:3.10.1'")
        );
        assert!(config_toml(&config("1.37")).contains("sandbox = 'registry.k8s.io/pause:3.10.2'"));
    }

    #[test]
    fn unit_snapshot() {
        crate::testutil::snapshot("containerd.service", &systemd_unit());
    }
}
