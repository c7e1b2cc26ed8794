//! `ecoboot down`: deletes every resource tagged with the cluster, in dependency order.
//! It reads nothing from the state file, so it works after a crash or with no state at all,
//! and a second run finds nothing and says so.

mod controllers;
mod network;

use network::NETWORK_ORDER;
use std::future::Future;
use std::time::Duration;

use aws_sdk_ec2::client::Waiters;

use crate::aws::tags::CLUSTER;
use crate::aws::{Aws, aws_error, code_of};
use crate::error::{Error, Result};
use crate::event::{Action, Events};
use crate::retry::{Backoff, Try, retry};

/// Events of `down` are reported under this name.
pub const ID: &str = "down";
/// How long a delete is retried while AWS still reports a dependency.
const DEPENDENCY_WAIT: Duration = Duration::from_secs(300);
const TERMINATE_WAIT: Duration = Duration::from_secs(900);

type Failure = (Option<String>, Error);

/// Read-only: what [`down`] would delete (and the controller-made volumes it keeps unless
/// `delete_volumes`), as plan actions.
pub async fn plan(aws: &Aws, role_names: &[String], delete_volumes: bool) -> Result<Vec<Action>> {
    let mut out = Vec::new();
    let live = ["pending", "running", "stopping", "stopped", "shutting-down"];
    for i in aws.instances(&live).await? {
        let node = crate::aws::ec2_tag_value(i.tags(), crate::aws::tags::NODE).unwrap_or("?");
        out.push(Action::new(
            i.instance_id().unwrap_or_default(),
            format!("terminate instance of {node}"),
        ));
    }
    let vpcs = controllers::vpcs(aws).await?;
    out.extend(controllers::find(aws, &vpcs).await?.actions(delete_volumes));
    for kind in NETWORK_ORDER {
        for (id, _) in kind.find(aws).await? {
            out.push(Action::new(&id, "delete"));
        }
    }
    for name in role_names {
        if aws.iam.get_role().role_name(name).send().await.is_ok() {
            out.push(Action::new(
                format!("role/{name}"),
                "delete with its instance profile",
            ));
        }
    }
    let pairs = (aws
        .ec2
        .describe_key_pairs()
        .filters(aws.tags.filter())
        .send()
        .await)
        .map_err(|e| aws_error("DescribeKeyPairs", "key pairs", e))?;
    for p in pairs.key_pairs() {
        out.push(Action::new(
            format!("key-pair/{}", p.key_name().unwrap_or_default()),
            "delete",
        ));
    }
    Ok(out)
}

/// Deletes everything (`role_names`: the IAM roles and same-named instance profiles ecoboot
/// may have made for the cluster), including what in-cluster controllers left in the VPC;
/// volumes those made only with `delete_volumes`. Returns how many resources were deleted.
pub async fn down(
    aws: &Aws,
    events: &Events,
    role_names: &[String],
    delete_volumes: bool,
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
    for name in role_names {
        td.iam(name).await;
    }
    td.key_pairs().await;
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

    fn fail(&mut self, err: Error) {
        self.failures.push(err.to_string());
    }

    async fn instances(&mut self) {
        let aws = self.aws;
        let ids: Vec<String> = match aws
            .instances(&["pending", "running", "stopping", "stopped", "shutting-down"])
            .await
        {
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

    /// What controllers left in the VPC: load balancers (waited until gone), target groups,
    /// their security groups, detached interfaces; volumes only with `delete_volumes`, else
    /// each is named as kept.
    async fn controllers(&mut self, delete_volumes: bool) {
        let aws = self.aws;
        let found = match controllers::vpcs(aws).await {
            Ok(vpcs) => controllers::find(aws, &vpcs).await,
            Err(e) => Err(e),
        };
        let found = match found {
            Ok(found) => found,
            Err(e) => return self.fail(e),
        };
        for lb in &found.load_balancers {
            let what = format!("load-balancer/{}", lb.what);
            self.delete(&what, || async {
                let sent = aws
                    .elb
                    .delete_load_balancer()
                    .load_balancer_arn(&lb.id)
                    .send()
                    .await;
                sent.map(drop)
                    .map_err(|e| (code_of(&e), aws_error("DeleteLoadBalancer", &lb.id, e)))
            })
            .await;
        }
        if !found.load_balancers.is_empty() {
            self.wait_load_balancers_gone(&found.load_balancers).await;
        }
        for tg in &found.target_groups {
            let what = format!("target-group/{}", tg.what);
            self.delete(&what, || async {
                let sent = aws
                    .elb
                    .delete_target_group()
                    .target_group_arn(&tg.id)
                    .send()
                    .await;
                sent.map(drop)
                    .map_err(|e| (code_of(&e), aws_error("DeleteTargetGroup", &tg.id, e)))
            })
            .await;
        }
        for eni in &found.interfaces {
            self.delete(&eni.id, || async {
                let sent = aws
                    .ec2
                    .delete_network_interface()
                    .network_interface_id(&eni.id)
                    .send()
                    .await;
                sent.map(drop)
                    .map_err(|e| (code_of(&e), aws_error("DeleteNetworkInterface", &eni.id, e)))
            })
            .await;
        }
        for sg in &found.security_groups {
            self.delete(&sg.id, || async {
                let sent = aws
                    .ec2
                    .delete_security_group()
                    .group_id(&sg.id)
                    .send()
                    .await;
                sent.map(drop)
                    .map_err(|e| (code_of(&e), aws_error("DeleteSecurityGroup", &sg.id, e)))
            })
            .await;
        }
        for v in &found.volumes {
            if !delete_volumes {
                let line = format!(
                    "kept ({}); `ecoboot down --delete-volumes` deletes it",
                    v.what
                );
                self.events.progress(ID, Some(&v.id), line);
                continue;
            }
            self.delete(&v.id, || async {
                let sent = aws.ec2.delete_volume().volume_id(&v.id).send().await;
                sent.map(drop)
                    .map_err(|e| (code_of(&e), aws_error("DeleteVolume", &v.id, e)))
            })
            .await;
        }
    }

    /// Polls until the deleted load balancers are gone (AWS deletes them asynchronously, and
    /// their interfaces hold the subnets until then).
    async fn wait_load_balancers_gone(&mut self, lbs: &[controllers::Leftover]) {
        let arns: Vec<String> = lbs.iter().map(|l| l.id.clone()).collect();
        let backoff = Backoff::exponential(
            Duration::from_secs(2),
            Duration::from_secs(10),
            DEPENDENCY_WAIT,
        );
        let elb = &self.aws.elb;
        let waited = retry(&backoff, |_| async {
            match elb
                .describe_load_balancers()
                .set_load_balancer_arns(Some(arns.clone()))
                .send()
                .await
            {
                Ok(out) if out.load_balancers().is_empty() => Try::Done(()),
                Ok(out) => Try::Again(Error::StageFailed {
                    stage: ID.into(),
                    message: format!(
                        "{} load balancer(s) still deleting",
                        out.load_balancers().len()
                    ),
                    help: "rerun `ecoboot down --yes` in a few minutes".into(),
                }),
                Err(e) if code_of(&e).is_some_and(|c| c.contains("LoadBalancerNotFound")) => {
                    Try::Done(())
                }
                Err(e) => Try::Fail(aws_error("DescribeLoadBalancers", "load balancers", e)),
            }
        })
        .await;
        if let Err(e) = waited {
            self.fail(e);
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

    // Long by design: IAM deletes in the order IAM demands (profiles, policies, role).
    async fn iam(&mut self, name: &str) {
        let aws = self.aws;
        let iam = &aws.iam;
        let cluster = aws.tags.cluster.clone();
        let ours = |tags: &[aws_sdk_iam::types::Tag]| {
            tags.iter()
                .any(|t| t.key() == CLUSTER && t.value() == cluster)
        };
        match iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
        {
            Ok(out) => {
                if let Some(profile) = out.instance_profile().filter(|p| ours(p.tags())) {
                    for role in profile.roles() {
                        self.aws.pace().await;
                        if let Err(e) = iam
                            .remove_role_from_instance_profile()
                            .instance_profile_name(name)
                            .role_name(role.role_name())
                            .send()
                            .await
                            && !gone(&code_of(&e))
                        {
                            self.fail(aws_error("RemoveRoleFromInstanceProfile", name, e));
                        }
                    }
                    let what = format!("instance-profile/{name}");
                    self.delete(&what, || async {
                        iam.delete_instance_profile()
                            .instance_profile_name(name)
                            .send()
                            .await
                            .map(drop)
                            .map_err(|e| (code_of(&e), aws_error("DeleteInstanceProfile", name, e)))
                    })
                    .await;
                }
            }
            Err(e) if gone(&code_of(&e)) => {}
            Err(e) => self.fail(aws_error("GetInstanceProfile", name, e)),
        }
        match iam.get_role().role_name(name).send().await {
            Ok(out) => {
                if out.role().is_some_and(|r| ours(r.tags())) {
                    match iam
                        .list_attached_role_policies()
                        .role_name(name)
                        .send()
                        .await
                    {
                        Ok(attached) => {
                            for arn in attached
                                .attached_policies()
                                .iter()
                                .filter_map(|p| p.policy_arn())
                            {
                                self.aws.pace().await;
                                if let Err(e) = iam
                                    .detach_role_policy()
                                    .role_name(name)
                                    .policy_arn(arn)
                                    .send()
                                    .await
                                    && !gone(&code_of(&e))
                                {
                                    self.fail(aws_error("DetachRolePolicy", arn, e));
                                }
                            }
                        }
                        Err(e) => self.fail(aws_error("ListAttachedRolePolicies", name, e)),
                    }
                    let what = format!("role/{name}");
                    self.delete(&what, || async {
                        iam.delete_role()
                            .role_name(name)
                            .send()
                            .await
                            .map(drop)
                            .map_err(|e| (code_of(&e), aws_error("DeleteRole", name, e)))
                    })
                    .await;
                }
            }
            Err(e) if gone(&code_of(&e)) => {}
            Err(e) => self.fail(aws_error("GetRole", name, e)),
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
