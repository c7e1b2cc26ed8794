//! `knownHosts: console`: host keys are checked against what the instance's console printed
//! (cloud-init writes the fingerprints at first boot). A node seen for the first time gets its
//! console's fingerprints as pins for the first contact; a key known_hosts already holds but
//! that this machine never checked (it came through the state store, which a bucket writer
//! controls) is checked against the console again before it is trusted.

use crate::aws::Aws;
use crate::error::{Error, Result};
use crate::retry::{Backoff, Try, retry};
use crate::ssh::{self, Target};

/// Fills `opts.pins` for a node whose key is not known yet, or verifies a known key that this
/// machine has not verified; refuses a known key its console never printed.
pub(super) async fn console_pins(
    aws: &Aws,
    target: &Target,
    opts: &mut ssh::Options,
) -> Result<()> {
    let known = ssh::hostkeys::fingerprints_known(target, &opts.known_hosts).await;
    let entry = ssh::hostkeys::entry_name(&target.host, target.port);
    if !known.is_empty() && ssh::verified::all(&opts.verified, &entry, &known) {
        return Ok(());
    }
    let console = console_fingerprints(aws, target, opts).await?;
    if known.is_empty() {
        opts.pins.insert(target.node.clone(), console);
        return Ok(());
    }
    if known.iter().all(|k| console.contains(k)) {
        return ssh::verified::record(&opts.verified, &entry, &known);
    }
    Err(Error::Ssh {
        node: target.node.clone(),
        message: format!(
            "the host key known_hosts holds for {entry} ({}) is not one its instance's console printed ({}); known_hosts comes from the state store, which someone else may have written",
            known.join(", "),
            console.join(", ")
        ),
        help: format!(
            "refusing to connect. If the instance was replaced on purpose, `ecoboot forget-host {}` removes the old key and the next run checks the new one against the console",
            target.node
        ),
    })
}

/// The fingerprints the console of `target`'s instance printed, polled until it printed some
/// (up to the connect timeout).
async fn console_fingerprints(
    aws: &Aws,
    target: &Target,
    opts: &ssh::Options,
) -> Result<Vec<String>> {
    let Some(id) = &target.instance_id else {
        return Err(Error::Ssh {
            node: target.node.clone(),
            message: "no EC2 instance is recorded for this node, so its host key cannot be checked against the instance console".into(),
            help: "run the `instances` stage first; for nodes ecoboot did not launch (bring-your-own addresses) set `spec.ssh.knownHosts: accept-new` or add their keys to known_hosts".into(),
        });
    };
    let polled = retry(
        &Backoff::poll(std::time::Duration::from_secs(5), opts.connect_timeout),
        |_| async {
            match crate::aws::console::host_key_fingerprints(aws, id).await {
                Ok(found) if !found.is_empty() => Try::Done(found),
                Ok(_) => Try::Again(None),
                Err(e) => Try::Fail(Some(e)),
            }
        },
    )
    .await;
    match polled {
        Ok(found) => Ok(found),
        Err(Some(e)) => Err(e),
        Err(None) => Err(Error::Ssh {
            node: target.node.clone(),
            message: format!(
                "the console of {id} printed no SSH host key fingerprints within {}s",
                opts.connect_timeout.as_secs()
            ),
            help: "cloud-init prints them at first boot (check `aws ec2 get-console-output`); raise spec.ssh.connectTimeoutSeconds, or set `knownHosts: accept-new` to trust the first key seen".into(),
        }),
    }
}
