//! Stage `iam`: the node role (EC2 trust, `iamPolicies`) and, when a node runs AWS-facing
//! controllers, a controller role (`iamPolicies` + `controllerIamPolicies`), each with its
//! instance profile.
//! IAM names are unique per account, so they are found by name and then checked for the
//! cluster tag: a same-named entity of someone else is never adopted.

use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::aws::tags::CLUSTER;
use crate::aws::{Aws, aws_error, code_of};
use crate::config::Config;
use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::{Error, Result};
use crate::event::Action;

mod backup_policy;
mod documents;

use crate::aws::managed_policies as iam_managed;
use crate::stages::shared::ids;
use crate::stages::shared::outputs::IamOut;
use documents::{DocsPlan, RoleDocsFound};

/// Stage id.
pub const ID: &str = ids::IAM;

const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// Role and instance profile name of every node.
pub fn node_role_name(config: &Config) -> String {
    format!("ecoboot-{}-node", config.name())
}

/// Role and instance profile name of the nodes that run AWS-facing controllers.
pub fn controller_role_name(config: &Config) -> String {
    format!("ecoboot-{}-controller", config.name())
}

/// Role and instance profile name of the control plane alone, made when scheduled backups
/// need credentials that no other node (and no pod: hop limit 1) may hold.
pub fn control_plane_role_name(config: &Config) -> String {
    format!("ecoboot-{}-control-plane", config.name())
}

/// Every role name ecoboot may have made for `config`'s cluster (what `down` deletes).
pub fn all_role_names(config: &Config) -> Vec<String> {
    vec![
        node_role_name(config),
        controller_role_name(config),
        control_plane_role_name(config),
    ]
}

/// One role ecoboot manages (with its same-named instance profile) and the managed policies
/// it must have, exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleSpec {
    /// Role and instance profile name.
    pub name: String,
    /// The attached managed policy ARNs it must have, no more (besides the ecoboot-managed
    /// policies of [`super::iam_documents`]).
    pub policies: BTreeSet<String>,
    /// Whether this is the controller role (it also gets `controllerOnly` documents).
    pub controller: bool,
    /// Whether this role is worn by the control plane alone (it gets the backup document).
    pub control_plane: bool,
}

/// The roles the config asks for: the node role, plus the controller role when a node has
/// `awsControllers: true`. Controller nodes still need what every node needs.
pub fn roles(config: &Config) -> Vec<RoleSpec> {
    let aws = &config.cluster.spec.aws;
    let base: BTreeSet<String> = aws.iam_policies.iter().map(|p| p.value.clone()).collect();
    let controller_policies = || {
        let mut policies = base.clone();
        policies.extend(aws.controller_iam_policies.iter().map(|p| p.value.clone()));
        policies
    };
    let mut out = vec![RoleSpec {
        name: node_role_name(config),
        policies: base.clone(),
        controller: false,
        control_plane: false,
    }];
    if config.nodes().any(|n| n.aws_controllers) {
        out.push(RoleSpec {
            name: controller_role_name(config),
            policies: controller_policies(),
            controller: true,
            control_plane: false,
        });
    }
    if config.cluster.spec.backup.schedule.is_some() {
        let cp = config.control_plane().aws_controllers;
        out.push(RoleSpec {
            name: control_plane_role_name(config),
            policies: if cp {
                controller_policies()
            } else {
                base.clone()
            },
            controller: cp,
            control_plane: true,
        });
    }
    out
}

#[derive(Debug, Default)]
struct Existing {
    role: bool,
    policies: BTreeSet<String>,
    profile: bool,
    profile_has_role: bool,
    documents: RoleDocsFound,
}

/// The `iam` stage.
#[derive(Default)]
pub struct Iam;

/// What the IAM probe hands to apply: each role the config asks for with what exists of it.
pub struct IamPlan {
    actions: Vec<Action>,
    roles: Vec<(RoleSpec, Existing)>,
    documents: DocsPlan,
}

impl StagePlan for IamPlan {
    fn actions(&self) -> Vec<Action> {
        let mut out = self.actions.clone();
        out.extend_from_slice(self.documents.actions());
        out
    }
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

async fn discover(aws: &Aws, name: &str) -> Result<Existing> {
    let mut found = Existing::default();
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
            for arn in attached
                .attached_policies()
                .iter()
                .filter_map(|p| p.policy_arn())
            {
                match iam_managed::config_name(cluster, arn) {
                    Some(doc) => {
                        found.documents.attached.insert(doc, arn.to_string());
                    }
                    None => {
                        found.policies.insert(arn.to_string());
                    }
                }
            }
            found.documents.inline = documents::discover_inline(aws, name).await?;
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

async fn discover_all(cx: &Ctx, specs: &[RoleSpec]) -> Result<Vec<Existing>> {
    let mut found = Vec::new();
    for spec in specs {
        found.push(discover(cx.aws().await, &spec.name).await?);
    }
    Ok(found)
}

fn plan(spec: &RoleSpec, f: &Existing) -> Vec<Action> {
    let name = &spec.name;
    let mut out = Vec::new();
    if !f.role {
        out.push(Action::new(
            format!("role/{name}"),
            "create role trusted by EC2",
        ));
    }
    for policy in spec.policies.difference(&f.policies) {
        out.push(Action::new(
            format!("role/{name}"),
            format!("attach {policy}"),
        ));
    }
    for policy in f.policies.difference(&spec.policies) {
        out.push(Action::new(
            format!("role/{name}"),
            format!("detach {policy} (no longer in the config)"),
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
            "add the role",
        ));
    }
    out
}

/// Creates what `spec` lacks and detaches policies it no longer lists (the role is ecoboot's
/// own, tagged with the cluster, so everything attached to it was attached by ecoboot).
async fn converge(cx: &Ctx, spec: &RoleSpec, found: &Existing) -> Result<()> {
    let aws = cx.aws().await;
    let name = &spec.name;
    if !found.role {
        aws.pace().await;
        aws.iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(TRUST_POLICY)
            .description(format!("ecoboot nodes of cluster {}", cx.config.name()))
            .set_tags(Some(aws.tags.iam(name)))
            .send()
            .await
            .map_err(|e| aws_error("CreateRole", name, e))?;
        cx.events
            .progress(ID, Some(&format!("role/{name}")), "created");
    }
    for policy in spec.policies.difference(&found.policies) {
        aws.pace().await;
        aws.iam
            .attach_role_policy()
            .role_name(name)
            .policy_arn(policy)
            .send()
            .await
            .map_err(|e| aws_error("AttachRolePolicy", policy, e))?;
    }
    for policy in found.policies.difference(&spec.policies) {
        aws.pace().await;
        aws.iam
            .detach_role_policy()
            .role_name(name)
            .policy_arn(policy)
            .send()
            .await
            .map_err(|e| aws_error("DetachRolePolicy", policy, e))?;
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
            .instance_profile_name(name)
            .set_tags(Some(aws.tags.iam(name)))
            .send()
            .await
            .map_err(|e| aws_error("CreateInstanceProfile", name, e))?;
        cx.events
            .progress(ID, Some(&format!("instance-profile/{name}")), "created");
    }
    if !found.profile_has_role {
        aws.pace().await;
        aws.iam
            .add_role_to_instance_profile()
            .instance_profile_name(name)
            .role_name(name)
            .send()
            .await
            .map_err(|e| aws_error("AddRoleToInstanceProfile", name, e))?;
    }
    Ok(())
}

#[async_trait]
impl Stage for Iam {
    type Plan = IamPlan;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Create node IAM roles and instance profiles"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<IamPlan>> {
        let specs = roles(&cx.config);
        let existing = discover_all(cx, &specs).await?;
        let actions: Vec<Action> = specs
            .iter()
            .zip(&existing)
            .flat_map(|(s, f)| plan(s, f))
            .collect();
        let found: Vec<&RoleDocsFound> = existing.iter().map(|f| &f.documents).collect();
        let documents = documents::plan(cx, &specs, &found).await?;
        if !actions.is_empty() || !documents.actions().is_empty() {
            return Ok(Found::Todo(IamPlan {
                actions,
                roles: specs.into_iter().zip(existing).collect(),
                documents,
            }));
        }
        let policies: usize = existing
            .iter()
            .map(|f| f.policies.len() + f.documents.inline.len() + f.documents.attached.len())
            .sum();
        let out = IamOut {
            role: specs[0].name.clone(),
            instance_profile: specs[0].name.clone(),
            controller_instance_profile: specs
                .iter()
                .find(|s| s.controller && !s.control_plane)
                .map(|s| s.name.clone()),
            control_plane_instance_profile: specs
                .iter()
                .find(|s| s.control_plane)
                .map(|s| s.name.clone()),
        };
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        Ok(Found::Done {
            summary: format!(
                "roles and instance profiles {} with {policies} policies",
                names.join(", ")
            ),
            commit: Some(Box::new(move |cx: &Ctx| {
                cx.update_state(|s| s.set_output(ID, &out))
            })),
        })
    }

    async fn apply(&self, cx: &Ctx, plan: IamPlan) -> Result<()> {
        for (spec, existing) in &plan.roles {
            converge(cx, spec, existing).await?;
        }
        documents::apply(cx, &plan.documents).await
    }
}
