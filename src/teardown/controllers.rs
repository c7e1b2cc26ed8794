//! What in-cluster controllers leave in the cluster's VPC, which `down` must remove before the
//! VPC can go: load balancers and target groups (AWS Load Balancer Controller), the security
//! groups those controllers tagged, and network interfaces left `available`. EBS volumes the
//! CSI driver created (tag `kubernetes.io/cluster/<cluster>` or `KubernetesCluster`) hold data:
//! they are listed always and deleted only when asked (`down --delete-volumes`).

use aws_sdk_ec2::types::{Filter, IpPermission, UserIdGroupPair};

use std::time::Duration;

use super::{DEPENDENCY_WAIT, ID};
use crate::aws::tags::CLUSTER;
use crate::aws::{Aws, aws_error, code_of, ec2_filter, ec2_tag_value};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::retry::{Backoff, Try, retry};

/// One leftover: its id (an ARN for ELBv2) and a short description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Leftover {
    pub(super) id: String,
    pub(super) what: String,
}

/// Everything controllers left behind, by kind, in deletion order.
#[derive(Debug, Default)]
pub(super) struct Leftovers {
    pub(super) load_balancers: Vec<Leftover>,
    pub(super) target_groups: Vec<Leftover>,
    pub(super) security_groups: Vec<Leftover>,
    pub(super) interfaces: Vec<Leftover>,
    pub(super) volumes: Vec<Leftover>,
}

impl Leftovers {
    /// The plan lines of `down`: what it will delete, and the volumes it keeps unless asked.
    pub(super) fn actions(&self, delete_volumes: bool) -> Vec<Action> {
        let mut out = Vec::new();
        for (list, verb) in [
            (&self.load_balancers, "delete load balancer"),
            (&self.target_groups, "delete target group"),
            (&self.security_groups, "delete controller security group"),
            (&self.interfaces, "delete detached network interface"),
        ] {
            out.extend(
                list.iter()
                    .map(|l| Action::new(&l.id, format!("{verb} {}", l.what))),
            );
        }
        let verb = match delete_volumes {
            true => "delete volume",
            false => "keep volume (pass --delete-volumes to delete it)",
        };
        out.extend((self.volumes.iter()).map(|v| Action::new(&v.id, format!("{verb} {}", v.what))));
        out
    }
}

/// The cluster's VPCs (by ecoboot's tag).
pub(super) async fn vpcs(aws: &Aws) -> Result<Vec<String>> {
    let out = (aws
        .ec2
        .describe_vpcs()
        .filters(aws.tags.filter())
        .send()
        .await)
        .map_err(|e| aws_error("DescribeVpcs", "vpc", e))?;
    Ok(out
        .vpcs()
        .iter()
        .filter_map(|v| v.vpc_id())
        .map(str::to_string)
        .collect())
}

fn in_vpcs(vpcs: &[String]) -> Filter {
    Filter::builder()
        .name("vpc-id")
        .set_values(Some(vpcs.to_vec()))
        .build()
}

/// Finds what controllers left in `vpcs`.
pub(super) async fn find(aws: &Aws, vpcs: &[String]) -> Result<Leftovers> {
    let mut found = Leftovers {
        volumes: volumes(aws).await?,
        ..Leftovers::default()
    };
    if vpcs.is_empty() {
        return Ok(found);
    }
    let in_ours = |vpc: Option<&str>| vpc.is_some_and(|v| vpcs.iter().any(|o| o == v));
    let lbs = (aws.elb.describe_load_balancers().send().await)
        .map_err(|e| aws_error("DescribeLoadBalancers", "load balancers", e))?;
    found.load_balancers = (lbs.load_balancers().iter())
        .filter(|lb| in_ours(lb.vpc_id()))
        .map(|lb| Leftover {
            id: lb.load_balancer_arn().unwrap_or_default().to_string(),
            what: lb.load_balancer_name().unwrap_or_default().to_string(),
        })
        .collect();
    let tgs = (aws.elb.describe_target_groups().send().await)
        .map_err(|e| aws_error("DescribeTargetGroups", "target groups", e))?;
    found.target_groups = (tgs.target_groups().iter())
        .filter(|tg| in_ours(tg.vpc_id()))
        .map(|tg| Leftover {
            id: tg.target_group_arn().unwrap_or_default().to_string(),
            what: tg.target_group_name().unwrap_or_default().to_string(),
        })
        .collect();
    let k8s = aws.tags.kubernetes_cluster_key();
    let groups = (aws
        .ec2
        .describe_security_groups()
        .filters(in_vpcs(vpcs))
        .send()
        .await)
        .map_err(|e| aws_error("DescribeSecurityGroups", "controller security groups", e))?;
    found.security_groups = (groups.security_groups().iter())
        .filter(|g| ec2_tag_value(g.tags(), CLUSTER).is_none())
        .filter(|g| {
            ec2_tag_value(g.tags(), "elbv2.k8s.aws/cluster") == Some(aws.tags.cluster.as_str())
                || ec2_tag_value(g.tags(), &k8s).is_some()
        })
        .map(|g| Leftover {
            id: g.group_id().unwrap_or_default().to_string(),
            what: g.group_name().unwrap_or_default().to_string(),
        })
        .collect();
    let enis = aws
        .ec2
        .describe_network_interfaces()
        .filters(in_vpcs(vpcs))
        .filters(ec2_filter("status", "available"))
        .send()
        .await
        .map_err(|e| aws_error("DescribeNetworkInterfaces", "network interfaces", e))?;
    found.interfaces = (enis.network_interfaces().iter())
        .map(|n| Leftover {
            id: n.network_interface_id().unwrap_or_default().to_string(),
            what: n.description().unwrap_or("(no description)").to_string(),
        })
        .collect();
    Ok(found)
}

/// Volumes the CSI driver made for this cluster (never ecoboot's own root volumes, which go
/// with their instances).
async fn volumes(aws: &Aws) -> Result<Vec<Leftover>> {
    let mut out = Vec::new();
    for filter in [
        ec2_filter("tag-key", &aws.tags.kubernetes_cluster_key()),
        ec2_filter("tag:KubernetesCluster", &aws.tags.cluster),
    ] {
        let vols = (aws.ec2.describe_volumes().filters(filter).send().await)
            .map_err(|e| aws_error("DescribeVolumes", "volumes", e))?;
        for v in vols.volumes() {
            let id = v.volume_id().unwrap_or_default().to_string();
            if ec2_tag_value(v.tags(), CLUSTER).is_some()
                || out.iter().any(|l: &Leftover| l.id == id)
            {
                continue;
            }
            let claim =
                ec2_tag_value(v.tags(), "kubernetes.io/created-for/pvc/name").unwrap_or("-");
            let what = format!(
                "{} GiB, {}, claim {claim}",
                v.size().unwrap_or(0),
                v.state().map_or("?", |s| s.as_str())
            );
            out.push(Leftover { id, what });
        }
    }
    Ok(out)
}

impl super::Teardown<'_> {
    /// What controllers left in the VPC: load balancers (waited until gone), target groups,
    /// their security groups, detached interfaces; volumes only with `delete_volumes`, else
    /// each is named as kept.
    pub(super) async fn controllers(&mut self, delete_volumes: bool) {
        let aws = self.aws;
        let found = match vpcs(aws).await {
            Ok(vpcs) => find(aws, &vpcs).await,
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
            // AWS refuses to delete a group another group's rule points at (the LB controller
            // lets its load balancers' group into the nodes' group): revoke those rules first.
            match release_references(aws, &sg.id).await {
                Ok(0) => {}
                Ok(n) => {
                    let line = format!("revoked {n} rule(s) of other groups that referenced it");
                    self.events.progress(ID, Some(&sg.id), line);
                }
                Err(e) => self.fail(e),
            }
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
    async fn wait_load_balancers_gone(&mut self, lbs: &[Leftover]) {
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
}

/// Revokes the ingress and egress rules of other security groups that name `group` as their
/// source or destination; returns how many rules were revoked.
async fn release_references(aws: &Aws, group: &str) -> Result<usize> {
    let mut revoked = 0;
    for egress in [false, true] {
        let filter = match egress {
            false => "ip-permission.group-id",
            true => "egress.ip-permission.group-id",
        };
        let out = (aws.ec2.describe_security_groups())
            .filters(ec2_filter(filter, group))
            .send()
            .await
            .map_err(|e| aws_error("DescribeSecurityGroups", group, e))?;
        for g in out.security_groups() {
            let id = g.group_id().unwrap_or_default();
            if id == group {
                continue; // its own rules go with it
            }
            let rules = if egress {
                g.ip_permissions_egress()
            } else {
                g.ip_permissions()
            };
            let pointing: Vec<IpPermission> = rules
                .iter()
                .filter_map(|p| only_pairs_to(p, group))
                .collect();
            if pointing.is_empty() {
                continue;
            }
            revoked += pointing.len();
            aws.pace().await;
            if egress {
                let call = aws.ec2.revoke_security_group_egress().group_id(id);
                let sent = call.set_ip_permissions(Some(pointing)).send().await;
                sent.map_err(|e| aws_error("RevokeSecurityGroupEgress", id, e))?;
            } else {
                let call = aws.ec2.revoke_security_group_ingress().group_id(id);
                let sent = call.set_ip_permissions(Some(pointing)).send().await;
                sent.map_err(|e| aws_error("RevokeSecurityGroupIngress", id, e))?;
            }
        }
    }
    Ok(revoked)
}

/// `rule` narrowed to its group pairs that name `group` (None if it names none).
fn only_pairs_to(rule: &IpPermission, group: &str) -> Option<IpPermission> {
    let pairs: Vec<UserIdGroupPair> = (rule.user_id_group_pairs().iter())
        .filter(|p| p.group_id() == Some(group))
        .map(|p| {
            UserIdGroupPair::builder()
                .group_id(group)
                .set_user_id(p.user_id().map(str::to_string))
                .build()
        })
        .collect();
    if pairs.is_empty() {
        return None;
    }
    Some(
        IpPermission::builder()
            .set_ip_protocol(rule.ip_protocol().map(str::to_string))
            .set_from_port(rule.from_port())
            .set_to_port(rule.to_port())
            .set_user_id_group_pairs(Some(pairs))
            .build(),
    )
}
