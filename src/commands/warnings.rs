//! The warnings every run repeats about the config itself: versions near the end of their
//! support window, ports open to the world, backup credentials pods can reach.

use crate::event::{Event, Events};

/// Warns about every version at or near the end of its support window (one event each).
pub(super) fn warn_support(
    events: &Events,
    versions: &[(crate::config::support::Component, String)],
) {
    let today = crate::config::support::Day::today();
    for n in crate::config::support::notices(versions, today) {
        events.emit(Event::Warning {
            subject: n.subject,
            message: n.message,
            help: n.help,
        });
    }
}

/// With `allowWorld: true`, every run says which ports are open to the whole internet; with
/// scheduled backups on a control plane that also runs the AWS controllers (IMDS hop limit 2),
/// that pods there can reach the backup role's add-only credentials.
pub(super) fn warn_world(events: &Events, config: &crate::config::Config) {
    if config.cluster.spec.backup.schedule.is_some() && config.control_plane().aws_controllers {
        events.emit(Event::Warning {
            subject: "spec.backup.schedule".into(),
            message: "the control plane runs the AWS controllers (`awsControllers: true`, IMDS hop limit 2), so pods on it can use the scheduled backup's credentials (add-only: no read, list or delete)".into(),
            help: "move `awsControllers: true` to another node to keep the control plane at hop limit 1".into(),
        });
    }
    for port in crate::config::world_open(&config.cluster) {
        events.emit(Event::Warning {
            subject: "spec.aws.allowWorld".into(),
            message: format!("{port} is open to the whole internet (`allowWorld: true`)"),
            help: "list the addresses that need it in spec.aws and remove `allowWorld`".into(),
        });
    }
}

/// `AWS_REGION` wins over `spec.aws.region`; when they differ, every run says so.
pub(super) fn warn_region(events: &Events, config: &crate::config::Config) {
    let configured = config.cluster.spec.aws.region.as_str();
    if let Ok(env) = std::env::var("AWS_REGION")
        && !env.is_empty()
        && env != configured
    {
        events.emit(Event::Warning {
            subject: "AWS_REGION".into(),
            message: format!(
                "AWS_REGION={env} overrides spec.aws.region ({configured}): this run works in {env}"
            ),
            help: "unset AWS_REGION to use the config's region, or set spec.aws.region to it"
                .into(),
        });
    }
}
