//! Stage `iam`: the node role (EC2 trust, configured managed policies) and its instance profile.
//! IAM names are unique per account, so they are found by name and then checked for the
//! cluster tag: a same-named entity of someone else is never adopted.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::aws::tags::CLUSTER;
use crate::aws::{Aws, aws_error, code_of};
use crate::config::Config;
use crate::engine::{Ctx, Probe, Stage};
use crate::error::{Error, Result};
use crate::event::Action;

/// Stage id.
pub const ID: &str = "iam";

const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// What the stage records in state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IamOut {
    /// Role name.
    pub role: String,
    /// Instance profile name (what `RunInstances` takes).
    pub instance_profile: String,
}

/// Role and instance profile name for a cluster.
pub fn node_role_name(config: &Config) -> String {
    format!("ecoboot-{}-node", config.name())
}

#[derive(Debug, Default)]
struct Found {
    role: bool,
    policies: BTreeSet<String>,
    profile: bool,
    profile_has_role: bool,
}

/// The `iam` stage. Keeps what its probe found so the apply right after does not ask again.
#[derive(Default)]
pub struct Iam {
    last: std::sync::Mutex<Option<Found>>,
}

fn foreign(what: &str, name: &str, cluster: &str) -> Error {
    Error::Aws {
        operation: "Get".to_string() + what,
        target: name.into(),
        code: "EntityAlreadyExists".into(),
        message: format!("{what} `{name}` exists but is not tagged {CLUSTER}={cluster}"),
        help: "ecoboot does not adopt IAM entities it did not create: delete or rename it, or rename the cluster".into(),
    }
}

async fn discover(aws: &Aws, name: &str) -> Result<Found> {
    let mut found = Found::default();
    let cluster = &aws.tags.cluster;
    let ours = |tags: &[aws_sdk_iam::types::Tag]| {
        tags.iter()
            .any(|t| t.key() == CLUSTER && t.value() == cluster)
    };
    match aws.iam.get_role().role_name(name).send().await {
        Ok(out) => {
            let role = out.role().ok_or_else(|| foreign("Role", name, cluster))?;
            if !ours(role.tags()) {
                return Err(foreign("Role", name, cluster));
            }
            found.role = true;
            let attached = aws
                .iam
                .list_attached_role_policies()
                .role_name(name)
                .send()
                .await
                .map_err(|e| aws_error("ListAttachedRolePolicies", name, e))?;
            found.policies = attached
                .attached_policies()
                .iter()
                .filter_map(|p| p.policy_arn().map(str::to_string))
                .collect();
        }
        Err(e) if code_of(&e).as_deref() == Some("NoSuchEntity") => {}
        Err(e) => return Err(aws_error("GetRole", name, e)),
    }
    match aws
        .iam
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
    {
        Ok(out) => {
            let profile = out
                .instance_profile()
                .ok_or_else(|| foreign("InstanceProfile", name, cluster))?;
            if !ours(profile.tags()) {
                return Err(foreign("InstanceProfile", name, cluster));
            }
            found.profile = true;
            found.profile_has_role = profile.roles().iter().any(|r| r.role_name() == name);
        }
        Err(e) if code_of(&e).as_deref() == Some("NoSuchEntity") => {}
        Err(e) => return Err(aws_error("GetInstanceProfile", name, e)),
    }
    Ok(found)
}

fn plan(config: &Config, name: &str, f: &Found) -> Vec<Action> {
    let mut out = Vec::new();
    if !f.role {
        out.push(Action::new(
            format!("role/{name}"),
            "create node role trusted by EC2",
        ));
    }
    for policy in missing_policies(config, f) {
        out.push(Action::new(
            format!("role/{name}"),
            format!("attach {policy}"),
        ));
    }
    for policy in extra_policies(config, f) {
        out.push(Action::new(
            format!("role/{name}"),
            format!("detach {policy} (no longer in spec.aws.iamPolicies)"),
        ));
    }
    if !f.profile {
        out.push(Action::new(
            format!("instance-profile/{name}"),
            "create instance profile",
        ));
    }
    if !f.profile_has_role {
        out.push(Action::new(
            format!("instance-profile/{name}"),
            "add the node role",
        ));
    }
    out
}

/// The policy ARNs the config lists for the node role.
fn wanted_policies(config: &Config) -> std::collections::BTreeSet<&str> {
    config
        .cluster
        .spec
        .aws
        .iam_policies
        .iter()
        .map(|p| p.as_str())
        .collect()
}

fn missing_policies<'a>(config: &'a Config, f: &Found) -> Vec<&'a str> {
    wanted_policies(config)
        .into_iter()
        .filter(|p| !f.policies.contains(*p))
        .collect()
}

/// Attached policies the config no longer lists (the role is ecoboot's own, tagged with the
/// cluster, so everything attached to it was attached by ecoboot).
fn extra_policies(config: &Config, f: &Found) -> Vec<String> {
    let wanted = wanted_policies(config);
    f.policies
        .iter()
        .filter(|p| !wanted.contains(p.as_str()))
        .cloned()
        .collect()
}

#[async_trait]
impl Stage for Iam {
    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Create node IAM role and instance profile"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Probe> {
        let name = node_role_name(&cx.config);
        let found = discover(cx.aws().await, &name).await?;
        let todo = plan(&cx.config, &name, &found);
        let policies = found.policies.len();
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(found);
        if !todo.is_empty() {
            return Ok(Probe::Todo(todo));
        }
        let out = IamOut {
            role: name.clone(),
            instance_profile: name.clone(),
        };
        cx.update_state(|s| s.set_output(ID, &out))?;
        Ok(Probe::Done(format!(
            "role and instance profile {name} with {policies} policies"
        )))
    }

    async fn apply(&self, cx: &Ctx, _todo: &[Action]) -> Result<()> {
        let aws = cx.aws().await;
        let name = node_role_name(&cx.config);
        let cached = self.last.lock().unwrap_or_else(|p| p.into_inner()).take();
        let found = match cached {
            Some(found) => found,
            None => discover(aws, &name).await?,
        };
        if !found.role {
            aws.pace().await;
            aws.iam
                .create_role()
                .role_name(&name)
                .assume_role_policy_document(TRUST_POLICY)
                .description(format!("ecoboot nodes of cluster {}", cx.config.name()))
                .set_tags(Some(aws.tags.iam(&name)))
                .send()
                .await
                .map_err(|e| aws_error("CreateRole", &name, e))?;
            cx.events
                .progress(ID, Some(&format!("role/{name}")), "created");
        }
        for policy in missing_policies(&cx.config, &found) {
            aws.pace().await;
            aws.iam
                .attach_role_policy()
                .role_name(&name)
                .policy_arn(policy)
                .send()
                .await
                .map_err(|e| aws_error("AttachRolePolicy", policy, e))?;
        }
        for policy in extra_policies(&cx.config, &found) {
            aws.pace().await;
            aws.iam
                .detach_role_policy()
                .role_name(&name)
                .policy_arn(&policy)
                .send()
                .await
                .map_err(|e| aws_error("DetachRolePolicy", &policy, e))?;
            cx.events.progress(
                ID,
                Some(&format!("role/{name}")),
                format!("detached {policy}"),
            );
        }
        if !found.profile {
            aws.pace().await;
            aws.iam
                .create_instance_profile()
                .instance_profile_name(&name)
                .set_tags(Some(aws.tags.iam(&name)))
                .send()
                .await
                .map_err(|e| aws_error("CreateInstanceProfile", &name, e))?;
            cx.events
                .progress(ID, Some(&format!("instance-profile/{name}")), "created");
        }
        if !found.profile_has_role {
            aws.pace().await;
            aws.iam
                .add_role_to_instance_profile()
                .instance_profile_name(&name)
                .role_name(&name)
                .send()
                .await
                .map_err(|e| aws_error("AddRoleToInstanceProfile", &name, e))?;
        }
        Ok(())
    }
}
