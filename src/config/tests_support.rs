//! A config for unit tests: the shipped `inventory/cluster.yaml`, on a fixed day.

use super::*;

/// The day the unit tests run on (never the clock).
pub const TODAY: support::Day = support::Day::ymd(2026, 11, 23);

/// The shipped config, parsed without file checks, on [`TODAY`].
pub fn config() -> Config {
    support::pin_today(TODAY);
    let text = include_str!("../../inventory/cluster.yaml").to_string();
    Config::parse(
        Path::new("inventory/cluster.yaml"),
        text,
        FileChecks::Skip,
        "test",
    )
    .expect("shipped config is valid")
}

/// The shipped config with two API nodes (k8s-api-my, k8s-api-scan) made control planes.
pub fn ha_config() -> Config {
    support::pin_today(TODAY);
    let text = include_str!("../../inventory/cluster.yaml")
        .replace(
            "name: k8s-api-my\n      role: worker",
            "name: k8s-api-my\n      role: control-plane",
        )
        .replace(
            "name: k8s-api-scan\n      role: worker",
            "name: k8s-api-scan\n      role: control-plane",
        );
    Config::parse(
        Path::new("inventory/cluster.yaml"),
        text,
        FileChecks::Skip,
        "test",
    )
    .expect("three control planes are valid")
}
