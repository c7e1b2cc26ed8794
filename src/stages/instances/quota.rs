//! The vCPU quota preflight `plan` and `up` run before the first stage that creates anything
//! (after [`super::guard`], on the same instance listing):
//! the vCPUs of the nodes still to launch (DescribeInstanceTypes) against the account's
//! On-Demand Standard quota (L-1216C47A) minus what already runs in the region. A shortfall
//! stops the run before the VPC exists; a quota that cannot be read is a warning.

use std::collections::{BTreeMap, BTreeSet};

use crate::aws::quota::{self, QuotaRead, VCPU_QUOTA_CODE};
use crate::aws::{ec2_tag_value, tags::NODE};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::event::Event;

/// The figures the check compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// Nodes without an instance yet.
    pub launch: usize,
    /// Their vCPUs.
    pub needed: i64,
    /// vCPUs of every configured node.
    pub total: i64,
    /// Standard on-demand vCPUs pending or running in the region.
    pub running: i64,
}

impl Demand {
    /// The error for `quota` when the launch does not fit, else `None`.
    pub fn shortfall(&self, quota: f64) -> Option<Error> {
        let quota = quota.floor() as i64;
        let available = quota - self.running;
        (self.needed > available).then(|| Error::VcpuQuota {
            launch: self.launch,
            needed: self.needed,
            available: available.max(0),
            quota,
            running: self.running,
            total: self.total,
            wanted: self.running + self.needed,
        })
    }
}

/// Runs the check: nothing to launch means nothing to check (one DescribeInstances).
pub async fn preflight(cx: &Ctx) -> Result<()> {
    let aws = cx.aws().await;
    let listed = aws
        .instances(&["pending", "running", "stopping", "stopped"])
        .await?;
    // The same listing tells whether the config still names the cluster's control plane.
    if let Some(e) = super::guard::moved(&cx.config, &listed) {
        return Err(e);
    }
    let present: BTreeSet<String> = listed
        .iter()
        .filter_map(|i| ec2_tag_value(i.tags(), NODE).map(str::to_string))
        .collect();
    let launch: Vec<&str> = cx
        .config
        .nodes()
        .filter(|n| !present.contains(&n.name.value))
        .map(|n| n.instance_type.value.as_str())
        .collect();
    if launch.is_empty() {
        return Ok(());
    }
    let running = quota::running_standard(aws).await?;
    let types: BTreeSet<String> = cx
        .config
        .nodes()
        .map(|n| n.instance_type.value.clone())
        .chain(running.iter().cloned())
        .collect();
    let vcpus = quota::vcpus_of(aws, &types).await?;
    let sum = |list: &mut dyn Iterator<Item = &str>| -> i64 {
        list.map(|t| i64::from(vcpus.get(t).copied().unwrap_or(0)))
            .sum()
    };
    let demand = Demand {
        launch: launch.len(),
        needed: sum(&mut launch.iter().copied()),
        total: sum(&mut cx.config.nodes().map(|n| n.instance_type.value.as_str())),
        running: sum(&mut running.iter().map(String::as_str)),
    };
    unknown_types(cx, &vcpus)?;
    match quota::vcpu_quota(aws).await {
        QuotaRead::Value(q) => match demand.shortfall(q) {
            Some(e) => Err(e),
            None => {
                tracing::info!(?demand, quota = q, "vCPU quota preflight passed");
                Ok(())
            }
        },
        QuotaRead::Unreadable(why) => {
            cx.events.emit(Event::Warning {
                subject: format!("vCPU quota {VCPU_QUOTA_CODE}"),
                message: format!(
                    "could not read the quota ({why}); the {} instance(s) to launch need {} vCPUs ({} running)",
                    demand.launch, demand.needed, demand.running
                ),
                help: "allow servicequotas:GetServiceQuota to have this checked before anything is created".into(),
            });
            Ok(())
        }
    }
}

/// A configured type EC2 does not know would otherwise count as 0 vCPUs.
fn unknown_types(cx: &Ctx, vcpus: &BTreeMap<String, i32>) -> Result<()> {
    let unknown: BTreeSet<&str> = cx
        .config
        .nodes()
        .map(|n| n.instance_type.value.as_str())
        .filter(|t| !vcpus.contains_key(*t))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Error::StageFailed {
        stage: "instances".into(),
        message: format!(
            "EC2 does not offer instance type(s) {} in this region",
            unknown.into_iter().collect::<Vec<_>>().join(", ")
        ),
        help:
            "pick instance types from `aws ec2 describe-instance-types` for the configured region"
                .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(needed: i64, running: i64) -> Demand {
        Demand {
            launch: 14,
            needed,
            total: 30,
            running,
        }
    }

    #[test]
    fn shortfall_counts_what_runs_and_fits_exactly() {
        assert!(demand(30, 0).shortfall(32.0).is_none());
        assert!(demand(30, 2).shortfall(32.0).is_none(), "exactly full fits");
        let e = demand(30, 4).shortfall(32.0).expect("2 short");
        let text = e.to_string();
        assert!(
            text.contains("needs 30 vCPUs") && text.contains("28 of its 32"),
            "{text}"
        );
        assert_eq!(e.exit_code(), 1);
        let e = demand(30, 0).shortfall(16.0).unwrap();
        assert!(format!("{:?}", miette::Report::new(e)).contains("L-1216C47A"));
    }
}
