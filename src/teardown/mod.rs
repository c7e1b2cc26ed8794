//! `ecoboot down`: deletes every resource tagged with the cluster, in dependency order.
//! It reads nothing from the state file, so it works after a crash or with no state at all,
//! and a second run finds nothing and says so.

mod controllers;
mod iam;
mod network;
mod plan;

pub use plan::plan;

use network::NETWORK_ORDER;
use std::future::Future;
use std::time::Duration;

use aws_sdk_ec2::client::Waiters;

use crate::aws::{Aws, aws_error, code_of};
use crate::error::{Error, Result};
use crate::event::Events;
use crate::retry::{Backoff, Try, retry};

/// Events of `down` are reported under this name.
pub const ID: &str = "down";
/// How long a delete is retried while AWS still reports a dependency.
const DEPENDENCY_WAIT: Duration = Duration::from_secs(300);
const TERMINATE_WAIT: Duration = Duration::from_secs(900);

/// Instance states `down` terminates (and lists in its plan).
const NOT_TERMINATED: [&str; 5] = ["pending", "running", "stopping", "stopped", "shutting-down"];

type Failure = (Option<String>, Error);

/// Deletes everything (`role_names`: the IAM roles and same-named instance profiles ecoboot
/// may have made for the cluster), including what in-cluster controllers left in the VPC;
/// volumes those made only with `delete_volumes`. Returns how many resources were deleted.
pub async fn down(
    aws: &Aws,
    events: &Events,
    role_names: &[String],
    delete_volumes: bool,
    images: bool,
) -> Result<usize> {
    let mut td = Teardown {
        aws,
        events,
        deleted: 0,
        failures: Vec::new(),
    };
    td.instances().await;
    td.controllers(delete_volumes).await;
    td.ec2_network().await;
    td.managed_policies().await;
    for name in role_names {
        td.iam(name).await;
    }
    td.key_pairs().await;
    if images {
        td.golden_images().await;
    }
    match td.failures.len() {
        0 => Ok(td.deleted),
        _ => Err(Error::StageFailed {
            stage: ID.into(),
            message: format!("could not delete {} resource(s):\n  {}", td.failures.len(), td.failures.join("\n  ")),
            help: "fix the cause named above (or delete the resource by hand) and rerun `ecoboot down --yes`; what was deleted stays deleted".into(),
        }),
    }
}

struct Teardown<'a> {
    aws: &'a Aws,
    events: &'a Events,
    deleted: usize,
    failures: Vec<String>,
}

fn gone(code: &Option<String>) -> bool {
    code.as_deref().is_some_and(|c| {
        c.ends_with("NotFound") || c == "NoSuchEntity" || c.ends_with(".Malformed")
    })
}

impl Teardown<'_> {
    fn done(&mut self, what: &str) {
        self.deleted += 1;
        self.events.progress(ID, Some(what), "deleted");
    }

    /// Runs one delete; retries while AWS says `DependencyViolation`; "not found" counts as done.
    async fn delete<F, Fut>(&mut self, what: &str, mut call: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let (aws, events) = (self.aws, self.events);
        let backoff = Backoff::exponential(
            Duration::from_secs(2),
            Duration::from_secs(15),
            DEPENDENCY_WAIT,
        );
        let outcome = retry(&backoff, |n| {
            let fut = call();
            async move {
                if n > 1 {
                    events.progress(ID, Some(what), "still in use; retrying");
                }
                aws.pace().await;
                match fut.await {
                    Ok(()) => Try::Done(()),
                    Err((code, _)) if gone(&code) => Try::Done(()),
                    Err((code, err)) if code.as_deref() == Some("DependencyViolation") => {
                        Try::Again(err)
                    }
                    Err((_, err)) => Try::Fail(err),
                }
            }
        })
        .await;
        match outcome {
            Ok(()) => self.done(what),
            Err(err) => self.failures.push(format!("{what}: {err}")),
        }
    }

    /// The cluster's golden images and their snapshots.
    async fn golden_images(&mut self) {
        let list = match crate::aws::images::golden_images(self.aws).await {
            Ok(list) => list,
            Err(e) => return self.fail(e),
        };
        for image in list {
            match crate::aws::images::deregister(self.aws, &image).await {
                Ok(()) => self.done(&image.id),
                Err(e) => self.fail(e),
            }
        }
    }

    fn fail(&mut self, err: Error) {
        self.failures.push(err.to_string());
    }

    async fn instances(&mut self) {
        let aws = self.aws;
        let ids: Vec<String> = match aws.instances(&NOT_TERMINATED).await {
            Ok(list) => list
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect(),
            Err(e) => return self.fail(e),
        };
        if ids.is_empty() {
            return;
        }
        self.events
            .progress(ID, None, format!("terminating {} instance(s)", ids.len()));
        aws.pace().await;
        if let Err(e) = aws
            .ec2
            .terminate_instances()
            .set_instance_ids(Some(ids.clone()))
            .send()
            .await
        {
            return self.fail(aws_error("TerminateInstances", &ids.join(","), e));
        }
        let waited = aws
            .ec2
            .wait_until_instance_terminated()
            .set_instance_ids(Some(ids.clone()))
            .wait(TERMINATE_WAIT)
            .await;
        if let Err(e) = waited {
            return self.fail(Error::StageFailed {
                stage: ID.into(),
                message: format!("instances did not terminate: {e}"),
                help: String::new(),
            });
        }
        for id in ids {
            self.done(&id);
        }
    }

    /// The cluster's network resources, in dependency order ([`NETWORK_ORDER`]).
    async fn ec2_network(&mut self) {
        for kind in NETWORK_ORDER {
            let found = match kind.find(self.aws).await {
                Ok(found) => found,
                Err(e) => {
                    self.fail(e);
                    continue;
                }
            };
            for (id, dependents) in found {
                for dependent in dependents {
                    self.aws.pace().await;
                    if let Err((code, err)) = kind.release(self.aws, &id, &dependent).await
                        && !gone(&code)
                    {
                        self.fail(err);
                    }
                }
                let aws = self.aws;
                self.delete(&id, || kind.delete(aws, &id)).await;
            }
        }
    }

    async fn key_pairs(&mut self) {
        let aws = self.aws;
        match aws
            .ec2
            .describe_key_pairs()
            .filters(aws.tags.filter())
            .send()
            .await
        {
            Ok(out) => {
                for pair in out.key_pairs() {
                    let Some(name) = pair.key_name() else {
                        continue;
                    };
                    let what = format!("key-pair/{name}");
                    self.delete(&what, || async {
                        aws.ec2
                            .delete_key_pair()
                            .key_name(name)
                            .send()
                            .await
                            .map(drop)
                            .map_err(|e| (code_of(&e), aws_error("DeleteKeyPair", name, e)))
                    })
                    .await;
                }
            }
            Err(e) => self.fail(aws_error("DescribeKeyPairs", "key pairs", e)),
        }
    }
}
