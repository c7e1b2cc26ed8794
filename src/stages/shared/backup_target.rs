//! Where scheduled backups go: read by init-master (the timer's arguments) and by iam (the
//! backup policy's resources).

use crate::config::Config;
use crate::remote_state::Location;

/// The key prefix the backups of `config` go under (`<prefix>/<cluster>/backups/`), and the
/// bucket, when a schedule is configured.
pub fn target(config: &Config) -> Option<(String, String)> {
    let b = &config.cluster.spec.backup;
    b.schedule.as_ref()?;
    let location = Location::parse(&b.to.as_ref()?.value)?;
    let prefix = match location.prefix.as_str() {
        "" => format!("{}/backups/", config.name()),
        p => format!("{p}/{}/backups/", config.name()),
    };
    Some((location.bucket, prefix))
}
