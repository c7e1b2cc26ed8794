//! The policy documents of the ecoboot roles (`spec.aws.policyDocuments`): loaded from their
//! file or pinned URL, placed inline while a role's inline total fits IAM's limit and as
//! customer-managed policies beyond it, probed and converged exactly (a document dropped from
//! the config is removed). The managed policies live under `/ecoboot/<cluster>/`.

use std::collections::{BTreeMap, BTreeSet};

use crate::aws::{Aws, aws_error};
use crate::config::policy_json;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::event::Action;

use super::{ID, RoleSpec};
use crate::aws::managed_policies::{self as managed, Managed};

/// IAM's limit on the total size of a role's inline policies (characters, no whitespace).
pub const INLINE_LIMIT: usize = 10_240;
/// IAM's limit on one customer-managed policy document (characters, no whitespace).
pub const MANAGED_LIMIT: usize = 6_144;

/// A loaded, validated and minified policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// The config's name for it.
    pub name: String,
    /// Minified JSON.
    pub json: String,
    /// Only the controller role gets it.
    pub controller_only: bool,
    /// Only for the control plane's own role (the scheduled backup's add-only access).
    pub control_plane_only: bool,
}

/// Where one role's documents go.
#[derive(Debug, Default, PartialEq)]
pub struct Placement {
    /// Inline policies: name → minified JSON.
    pub inline: BTreeMap<String, String>,
    /// Documents that did not fit inline, by config name.
    pub managed: BTreeSet<String>,
}

/// Loads every configured document: pinned ones through the fetch cache (sha256 verified),
/// path-only ones from their file; each must be an IAM policy.
pub async fn load(cx: &Ctx) -> Result<Vec<Doc>> {
    let mut out = Vec::new();
    for doc in &cx.config.cluster.spec.aws.policy_documents {
        let what = format!("policy document {}", doc.name.value);
        let text = match (doc.pinned(), &doc.path) {
            (Some(pinned), _) => cx.manifest(&pinned, &what, ID).await?,
            (None, Some(path)) => {
                let file = cx.config.resolve_path(path);
                std::fs::read_to_string(&file).map_err(|e| Error::io("read", &file, e))?
            }
            (None, None) => unreachable!("validation requires url or path"),
        };
        let json = policy_json(&text).map_err(|e| Error::StageFailed {
            stage: ID.into(),
            message: format!("{what} {e}"),
            help: "pin an IAM policy JSON document".into(),
        })?;
        out.push(Doc {
            name: doc.name.value.clone(),
            json,
            controller_only: doc.controller_only,
            control_plane_only: false,
        });
    }
    out.extend(super::backup_policy::backup_policy(&cx.config));
    Ok(out)
}

/// Places `docs` for one role: inline while the role's total stays within [`INLINE_LIMIT`],
/// managed beyond; a document too large even for a managed policy is an error. Documents the
/// role already has inline are placed first (then config order), so adding a document never
/// moves an existing one out of its place.
pub fn place(role: &str, docs: &[&Doc], inline_now: &BTreeSet<&str>) -> Result<Placement> {
    let mut placement = Placement::default();
    let mut total = 0;
    let mut ordered: Vec<&&Doc> = docs.iter().collect();
    ordered.sort_by_key(|d| !inline_now.contains(d.name.as_str()));
    for doc in ordered {
        let size = doc.json.chars().count();
        if total + size <= INLINE_LIMIT {
            total += size;
            placement.inline.insert(doc.name.clone(), doc.json.clone());
        } else if size <= MANAGED_LIMIT {
            placement.managed.insert(doc.name.clone());
        } else {
            return Err(Error::StageFailed {
                stage: ID.into(),
                message: format!(
                    "policy document {} has {size} characters: it fits neither inline on role {role} ({} of {INLINE_LIMIT} left) nor in a managed policy (at most {MANAGED_LIMIT})",
                    doc.name,
                    INLINE_LIMIT - total
                ),
                help: "split the document into smaller ones (each under 6,144 characters without whitespace)".into(),
            });
        }
    }
    Ok(placement)
}

/// What one role has of the documents today.
#[derive(Debug, Default)]
pub struct RoleDocsFound {
    /// Inline policies: name → parsed document.
    pub inline: BTreeMap<String, serde_json::Value>,
    /// Attached ecoboot-managed policies: config name → ARN.
    pub attached: BTreeMap<String, String>,
}

/// Reads a role's inline policies (the role exists); `attached` comes from the caller's
/// ListAttachedRolePolicies, filtered by [`managed::config_name`].
pub async fn discover_inline(aws: &Aws, role: &str) -> Result<BTreeMap<String, serde_json::Value>> {
    let names = aws
        .iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| aws_error("ListRolePolicies", role, e))?;
    let mut out = BTreeMap::new();
    for name in names.policy_names() {
        let got = aws
            .iam
            .get_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
            .map_err(|e| aws_error("GetRolePolicy", name, e))?;
        out.insert(name.clone(), managed::decode(got.policy_document()));
    }
    Ok(out)
}

/// The converging steps for one role's documents.
#[derive(Debug, Default)]
pub struct RoleDocsPlan {
    /// Role name.
    pub role: String,
    /// Inline policies to put (new or changed): name → JSON.
    pub put_inline: Vec<(String, String)>,
    /// Inline policies to delete.
    pub delete_inline: Vec<String>,
    /// Managed documents to attach, by config name.
    pub attach: Vec<String>,
    /// Attached managed policies to detach: ARN.
    pub detach: Vec<String>,
}

/// Every step the documents need, across roles and managed policies.
#[derive(Debug, Default)]
pub struct DocsPlan {
    /// Managed policies to create or give a new default version: config name → JSON.
    pub put_managed: Vec<(String, String)>,
    /// Per role.
    pub roles: Vec<RoleDocsPlan>,
    /// ecoboot-managed policies no role needs any more.
    pub delete_managed: Vec<Managed>,
    actions: Vec<Action>,
}

impl DocsPlan {
    /// The plan's actions, for the stage's plan.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }
}

fn same(json: &str, have: Option<&serde_json::Value>) -> bool {
    have.is_some_and(|v| {
        serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .as_ref()
            == Some(v)
    })
}

/// Probes and plans the documents of `roles` (`found` in the same order).
pub async fn plan(cx: &Ctx, roles: &[RoleSpec], found: &[&RoleDocsFound]) -> Result<DocsPlan> {
    let docs = load(cx).await?;
    let aws = cx.aws().await;
    let existing = managed::list(aws, cx.config.name()).await?;
    let mut plan = DocsPlan::default();
    let mut needed: BTreeMap<String, String> = BTreeMap::new();
    for (spec, have) in roles.iter().zip(found) {
        let mine: Vec<&Doc> = docs
            .iter()
            .filter(|d| {
                (spec.controller || !d.controller_only)
                    && (spec.control_plane || !d.control_plane_only)
            })
            .collect();
        let inline_now = have.inline.keys().map(String::as_str).collect();
        let placement = place(&spec.name, &mine, &inline_now)?;
        let target = format!("role/{}", spec.name);
        let mut steps = RoleDocsPlan {
            role: spec.name.clone(),
            ..Default::default()
        };
        for (name, json) in &placement.inline {
            if !same(json, have.inline.get(name)) {
                let verb = if have.inline.contains_key(name) {
                    "update"
                } else {
                    "put"
                };
                plan.actions
                    .push(Action::new(&target, format!("{verb} inline policy {name}")));
                steps.put_inline.push((name.clone(), json.clone()));
            }
        }
        for name in have
            .inline
            .keys()
            .filter(|n| !placement.inline.contains_key(*n))
        {
            plan.actions.push(Action::new(
                &target,
                format!("delete inline policy {name} (no longer in the config, or now managed)"),
            ));
            steps.delete_inline.push(name.clone());
        }
        for name in &placement.managed {
            let doc = mine
                .iter()
                .find(|d| &d.name == name)
                .expect("placed from mine");
            needed.insert(name.clone(), doc.json.clone());
            if !have.attached.contains_key(name) {
                plan.actions.push(Action::new(
                    &target,
                    format!("attach managed policy {name}"),
                ));
                steps.attach.push(name.clone());
            }
        }
        for (name, arn) in &have.attached {
            if !placement.managed.contains(name) {
                plan.actions.push(Action::new(
                    &target,
                    format!("detach managed policy {name}"),
                ));
                steps.detach.push(arn.clone());
            }
        }
        plan.roles.push(steps);
    }
    let path = managed::path(cx.config.name());
    for (name, json) in &needed {
        let have = existing.get(name);
        if !same(json, have.map(|m| &m.document)) {
            let verb = if have.is_some() {
                "new default version of"
            } else {
                "create"
            };
            plan.actions.push(Action::new(
                format!(
                    "policy{path}{}",
                    managed::policy_name(cx.config.name(), name)
                ),
                format!(
                    "{verb} managed policy ({} characters)",
                    json.chars().count()
                ),
            ));
            plan.put_managed.push((name.clone(), json.clone()));
        }
    }
    for (name, m) in existing {
        if !needed.contains_key(&name) {
            plan.actions.push(Action::new(
                format!(
                    "policy{path}{}",
                    managed::policy_name(cx.config.name(), &name)
                ),
                "delete managed policy (no role needs it)",
            ));
            plan.delete_managed.push(m);
        }
    }
    Ok(plan)
}

/// Applies `plan`: managed policies first (so they can be attached), then each role's inline
/// and attached policies, then the managed policies nobody needs.
pub async fn apply(cx: &Ctx, plan: &DocsPlan) -> Result<()> {
    let aws = cx.aws().await;
    let cluster = cx.config.name();
    let mut arns = managed::list(aws, cluster).await?;
    for (name, json) in &plan.put_managed {
        let arn = managed::put(aws, cluster, name, json, arns.get(name)).await?;
        cx.events.progress(
            ID,
            Some(&format!("policy/{name}")),
            "managed policy written",
        );
        arns.insert(
            name.clone(),
            Managed {
                arn,
                ..Default::default()
            },
        );
    }
    for r in &plan.roles {
        let role = &r.role;
        for (name, json) in &r.put_inline {
            aws.pace().await;
            aws.iam
                .put_role_policy()
                .role_name(role)
                .policy_name(name)
                .policy_document(json)
                .send()
                .await
                .map_err(|e| aws_error("PutRolePolicy", name, e))?;
            cx.events.progress(
                ID,
                Some(&format!("role/{role}")),
                format!("inline policy {name}"),
            );
        }
        for name in &r.delete_inline {
            managed::delete_inline(aws, role, name).await?;
        }
        for name in &r.attach {
            let arn = &arns.get(name).expect("put above or existing").arn;
            aws.pace().await;
            aws.iam
                .attach_role_policy()
                .role_name(role)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| aws_error("AttachRolePolicy", arn, e))?;
        }
        for arn in &r.detach {
            managed::detach(aws, role, arn).await?;
        }
    }
    for m in &plan.delete_managed {
        managed::delete(aws, m).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, size: usize) -> Doc {
        Doc {
            name: name.into(),
            json: "x".repeat(size),
            controller_only: false,
            control_plane_only: false,
        }
    }

    #[test]
    fn place_keeps_inline_documents_inline_and_spills_the_rest() {
        let (big, lb) = (doc("big", 6_000), doc("lb", 5_196));
        let fresh = place("r", &[&big, &lb], &BTreeSet::new()).unwrap();
        assert_eq!(fresh.inline.keys().collect::<Vec<_>>(), ["big"]);
        assert_eq!(fresh.managed.iter().collect::<Vec<_>>(), ["lb"]);
        let stable = place("r", &[&big, &lb], &BTreeSet::from(["lb"])).unwrap();
        assert_eq!(stable.inline.keys().collect::<Vec<_>>(), ["lb"]);
        assert_eq!(stable.managed.iter().collect::<Vec<_>>(), ["big"]);
        let both = place("r", &[&doc("a", 5_000), &doc("b", 5_240)], &BTreeSet::new()).unwrap();
        assert_eq!(both.inline.len(), 2, "exactly 10,240 fits");
        let err = place("r", &[&big, &doc("huge", 6_145)], &BTreeSet::new()).unwrap_err();
        assert!(err.to_string().contains("huge") || format!("{err:?}").contains("huge"));
    }
}
