//! `down`'s IAM part: the cluster's managed policies, then each role's inline and attached
//! policies, its instance profile and the role, in the order IAM demands.

use super::{Teardown, gone};
use crate::aws::managed_policies;
use crate::aws::tags::CLUSTER;
use crate::aws::{aws_error, code_of};

impl Teardown<'_> {
    /// Deletes the customer-managed policies ecoboot made under `/ecoboot/<cluster>/`.
    pub(super) async fn managed_policies(&mut self) {
        let aws = self.aws;
        match managed_policies::list(aws, &aws.tags.cluster).await {
            Ok(found) => {
                for m in found.values() {
                    match managed_policies::delete(aws, m).await {
                        Ok(()) => self.done(&format!("policy/{}", m.arn)),
                        Err(e) => self.fail(e),
                    }
                }
            }
            Err(e) => self.fail(e),
        }
    }

    async fn inline_policies(&mut self, role: &str) {
        let aws = self.aws;
        match aws.iam.list_role_policies().role_name(role).send().await {
            Ok(out) => {
                for name in out.policy_names() {
                    if let Err(e) = managed_policies::delete_inline(aws, role, name).await {
                        self.fail(e);
                    }
                }
            }
            Err(e) => self.fail(aws_error("ListRolePolicies", role, e)),
        }
    }

    // Long by design: IAM deletes in the order IAM demands (profiles, policies, role).
    pub(super) async fn iam(&mut self, name: &str) {
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
                    self.inline_policies(name).await;
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
}
