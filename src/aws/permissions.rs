//! Every AWS operation ecoboot calls, the IAM actions it needs and how they are scoped: the one
//! table the deployer policy (`ecoboot iam-policy`) is derived from. [`Permitted`], an SDK
//! interceptor on every client, refuses an operation that is not in it, so a new call cannot
//! reach AWS (or a test) without its permission being in the policy.

use aws_sdk_ec2::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// An AWS service, as the SDK names it in an operation's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    /// EC2 (`ec2:`).
    Ec2,
    /// IAM (`iam:`).
    Iam,
    /// Elastic Load Balancing v2 (`elasticloadbalancing:`).
    Elb,
    /// Service Quotas (`servicequotas:`).
    Quotas,
    /// S3 (`s3:`).
    S3,
    /// STS (`sts:`).
    Sts,
}

impl Service {
    /// The service name in the SDK's operation metadata.
    pub fn sdk_name(self) -> &'static str {
        match self {
            Service::Ec2 => "EC2",
            Service::Iam => "IAM",
            Service::Elb => "Elastic Load Balancing v2",
            Service::Quotas => "Service Quotas",
            Service::S3 => "S3",
            Service::Sts => "STS",
        }
    }
}

/// How the deployer policy limits an operation's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Read-only calls these services do not scope by resource (`Resource: *`).
    Read,
    /// Creates an EC2 resource tagged at creation: the request must carry the cluster tag
    /// (`aws:RequestTag`), and tags may be written only by these creations.
    TagOnCreate,
    /// Changes or deletes an EC2 resource that carries the cluster tag (`aws:ResourceTag`).
    Tagged,
    /// `RunInstances`: the instance, its volumes and interfaces tagged at creation; the
    /// subnet, security group and key pair the cluster's; any image.
    Launch,
    /// Deletes what the AWS Load Balancer Controller made for this cluster (tag
    /// `elbv2.k8s.aws/cluster`), or an EC2 resource of the cluster's.
    ControllerTagged,
    /// Deletes an EBS volume the CSI driver made for this cluster (`kubernetes.io/cluster/<c>`
    /// or `KubernetesCluster`).
    CsiVolume,
    /// Deletes network interfaces AWS services left detached; they carry no tags, so only the
    /// region and account limit it.
    Interface,
    /// `CreateImage`: from an instance that carries the cluster tag, the image and its
    /// snapshot tagged at creation (never an image of another instance's disk).
    Image,
    /// An IAM role named `ecoboot-<cluster>-*`.
    Role,
    /// Attaches a managed policy to such a role: only the config's policies and the cluster's
    /// own (`iam:PolicyARN`).
    AttachPolicy,
    /// An instance profile named `ecoboot-<cluster>-*` (handing it a role passes the role).
    Profile,
    /// A customer-managed policy under the path `/ecoboot/<cluster>/`.
    ManagedPolicy,
    /// Passes an `ecoboot-<cluster>-*` role to EC2 and to nothing else.
    PassRole,
    /// The state or backup bucket itself.
    Bucket,
    /// Objects under the state and backup prefixes.
    Objects,
    /// Needs no permission (`sts:GetCallerIdentity`).
    Free,
    /// Not for the deployer: `ecoboot github setup`, run once by an administrator.
    Setup,
}

/// One operation ecoboot calls.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// The service.
    pub service: Service,
    /// The operation, as in the API reference (`CreateVpc`).
    pub operation: &'static str,
    /// The IAM actions it needs (with the service prefix).
    pub actions: &'static [&'static str],
    /// How those actions are limited.
    pub scope: Scope,
}

const fn c(
    service: Service,
    operation: &'static str,
    actions: &'static [&'static str],
    scope: Scope,
) -> Call {
    Call {
        service,
        operation,
        actions,
        scope,
    }
}

use Scope::*;
use Service::*;

/// Every AWS operation ecoboot makes.
#[rustfmt::skip]
pub const CALLS: &[Call] = &[
    // EC2, reads.
    c(Ec2, "DescribeVpcs", &["ec2:DescribeVpcs"], Read),
    c(Ec2, "DescribeVpcAttribute", &["ec2:DescribeVpcAttribute"], Read),
    c(Ec2, "DescribeSubnets", &["ec2:DescribeSubnets"], Read),
    c(Ec2, "DescribeInternetGateways", &["ec2:DescribeInternetGateways"], Read),
    c(Ec2, "DescribeRouteTables", &["ec2:DescribeRouteTables"], Read),
    c(Ec2, "DescribeSecurityGroups", &["ec2:DescribeSecurityGroups"], Read),
    c(Ec2, "DescribeSecurityGroupRules", &["ec2:DescribeSecurityGroupRules"], Read),
    c(Ec2, "DescribeKeyPairs", &["ec2:DescribeKeyPairs"], Read),
    c(Ec2, "DescribeImages", &["ec2:DescribeImages"], Read),
    c(Ec2, "DescribeInstanceTypes", &["ec2:DescribeInstanceTypes"], Read),
    c(Ec2, "DescribeInstances", &["ec2:DescribeInstances"], Read),
    c(Ec2, "DescribeAddresses", &["ec2:DescribeAddresses"], Read),
    c(Ec2, "DescribeNetworkInterfaces", &["ec2:DescribeNetworkInterfaces"], Read),
    c(Ec2, "DescribeVolumes", &["ec2:DescribeVolumes"], Read),
    c(Ec2, "DescribeIamInstanceProfileAssociations", &["ec2:DescribeIamInstanceProfileAssociations"], Read),
    // EC2, creations (tagged in the same call).
    c(Ec2, "CreateVpc", &["ec2:CreateVpc"], TagOnCreate),
    c(Ec2, "CreateSubnet", &["ec2:CreateSubnet"], TagOnCreate),
    c(Ec2, "CreateInternetGateway", &["ec2:CreateInternetGateway"], TagOnCreate),
    c(Ec2, "CreateRouteTable", &["ec2:CreateRouteTable"], TagOnCreate),
    c(Ec2, "CreateSecurityGroup", &["ec2:CreateSecurityGroup"], TagOnCreate),
    c(Ec2, "ImportKeyPair", &["ec2:ImportKeyPair"], TagOnCreate),
    c(Ec2, "AllocateAddress", &["ec2:AllocateAddress"], TagOnCreate),
    c(Ec2, "RunInstances", &["ec2:RunInstances"], Launch),
    c(Ec2, "CreateImage", &["ec2:CreateImage"], Image),
    // EC2, changes to the cluster's own resources.
    c(Ec2, "CreateTags", &["ec2:CreateTags"], Tagged),
    c(Ec2, "ModifyVpcAttribute", &["ec2:ModifyVpcAttribute"], Tagged),
    c(Ec2, "ModifySubnetAttribute", &["ec2:ModifySubnetAttribute"], Tagged),
    c(Ec2, "AttachInternetGateway", &["ec2:AttachInternetGateway"], Tagged),
    c(Ec2, "DetachInternetGateway", &["ec2:DetachInternetGateway"], Tagged),
    c(Ec2, "CreateRoute", &["ec2:CreateRoute"], Tagged),
    c(Ec2, "AssociateRouteTable", &["ec2:AssociateRouteTable"], Tagged),
    c(Ec2, "DisassociateRouteTable", &["ec2:DisassociateRouteTable"], Tagged),
    c(Ec2, "AuthorizeSecurityGroupIngress", &["ec2:AuthorizeSecurityGroupIngress"], Tagged),
    c(Ec2, "AssociateAddress", &["ec2:AssociateAddress"], Tagged),
    c(Ec2, "DisassociateAddress", &["ec2:DisassociateAddress"], Tagged),
    c(Ec2, "ReleaseAddress", &["ec2:ReleaseAddress"], Tagged),
    c(Ec2, "GetConsoleOutput", &["ec2:GetConsoleOutput"], Tagged),
    c(Ec2, "TerminateInstances", &["ec2:TerminateInstances"], Tagged),
    c(Ec2, "StopInstances", &["ec2:StopInstances"], Tagged),
    c(Ec2, "DeregisterImage", &["ec2:DeregisterImage"], Tagged),
    c(Ec2, "DeleteSnapshot", &["ec2:DeleteSnapshot"], Tagged),
    c(Ec2, "ModifyInstanceMetadataOptions", &["ec2:ModifyInstanceMetadataOptions"], Tagged),
    c(Ec2, "AssociateIamInstanceProfile", &["ec2:AssociateIamInstanceProfile"], Tagged),
    c(Ec2, "ReplaceIamInstanceProfileAssociation", &["ec2:ReplaceIamInstanceProfileAssociation"], Tagged),
    c(Ec2, "DeleteKeyPair", &["ec2:DeleteKeyPair"], Tagged),
    c(Ec2, "DeleteRouteTable", &["ec2:DeleteRouteTable"], Tagged),
    c(Ec2, "DeleteInternetGateway", &["ec2:DeleteInternetGateway"], Tagged),
    c(Ec2, "DeleteSubnet", &["ec2:DeleteSubnet"], Tagged),
    c(Ec2, "DeleteVpc", &["ec2:DeleteVpc"], Tagged),
    // EC2, what `down` removes that controllers made.
    c(Ec2, "RevokeSecurityGroupIngress", &["ec2:RevokeSecurityGroupIngress"], ControllerTagged),
    c(Ec2, "RevokeSecurityGroupEgress", &["ec2:RevokeSecurityGroupEgress"], ControllerTagged),
    c(Ec2, "DeleteSecurityGroup", &["ec2:DeleteSecurityGroup"], ControllerTagged),
    c(Ec2, "DeleteVolume", &["ec2:DeleteVolume"], CsiVolume),
    c(Ec2, "DeleteNetworkInterface", &["ec2:DeleteNetworkInterface"], Interface),
    // ELBv2: reads (the API load balancer; what `down` finds the controller made).
    c(Elb, "DescribeLoadBalancers", &["elasticloadbalancing:DescribeLoadBalancers"], Read),
    c(Elb, "DescribeTargetGroups", &["elasticloadbalancing:DescribeTargetGroups"], Read),
    c(Elb, "DescribeTags", &["elasticloadbalancing:DescribeTags"], Read),
    c(Elb, "DescribeListeners", &["elasticloadbalancing:DescribeListeners"], Read),
    c(Elb, "DescribeTargetHealth", &["elasticloadbalancing:DescribeTargetHealth"], Read),
    c(Elb, "DescribeTargetGroupAttributes", &["elasticloadbalancing:DescribeTargetGroupAttributes"], Read),
    // ELBv2: the control planes' own load balancer (several control planes).
    c(Elb, "CreateLoadBalancer", &["elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:AddTags"], TagOnCreate),
    c(Elb, "CreateTargetGroup", &["elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:AddTags"], TagOnCreate),
    c(Elb, "CreateListener", &["elasticloadbalancing:CreateListener"], Tagged),
    c(Elb, "ModifyTargetGroupAttributes", &["elasticloadbalancing:ModifyTargetGroupAttributes"], Tagged),
    c(Elb, "RegisterTargets", &["elasticloadbalancing:RegisterTargets"], Tagged),
    c(Elb, "DeregisterTargets", &["elasticloadbalancing:DeregisterTargets"], Tagged),
    c(Elb, "DeleteLoadBalancer", &["elasticloadbalancing:DeleteLoadBalancer"], ControllerTagged),
    c(Elb, "DeleteTargetGroup", &["elasticloadbalancing:DeleteTargetGroup"], ControllerTagged),
    // Service Quotas: the vCPU preflight.
    c(Quotas, "GetServiceQuota", &["servicequotas:GetServiceQuota"], Read),
    c(Quotas, "GetAWSDefaultServiceQuota", &["servicequotas:GetAWSDefaultServiceQuota"], Read),
    // IAM: the cluster's roles, instance profiles and managed policies.
    c(Iam, "GetRole", &["iam:GetRole"], Role),
    c(Iam, "CreateRole", &["iam:CreateRole", "iam:TagRole"], Role),
    c(Iam, "DeleteRole", &["iam:DeleteRole"], Role),
    c(Iam, "ListAttachedRolePolicies", &["iam:ListAttachedRolePolicies"], Role),
    c(Iam, "ListRolePolicies", &["iam:ListRolePolicies"], Role),
    c(Iam, "GetRolePolicy", &["iam:GetRolePolicy"], Role),
    c(Iam, "PutRolePolicy", &["iam:PutRolePolicy"], Role),
    c(Iam, "DeleteRolePolicy", &["iam:DeleteRolePolicy"], Role),
    c(Iam, "AttachRolePolicy", &["iam:AttachRolePolicy"], AttachPolicy),
    c(Iam, "DetachRolePolicy", &["iam:DetachRolePolicy"], Role),
    c(Iam, "GetInstanceProfile", &["iam:GetInstanceProfile"], Profile),
    c(Iam, "CreateInstanceProfile", &["iam:CreateInstanceProfile", "iam:TagInstanceProfile"], Profile),
    c(Iam, "DeleteInstanceProfile", &["iam:DeleteInstanceProfile"], Profile),
    c(Iam, "AddRoleToInstanceProfile", &["iam:AddRoleToInstanceProfile"], Profile),
    c(Iam, "RemoveRoleFromInstanceProfile", &["iam:RemoveRoleFromInstanceProfile"], Profile),
    c(Iam, "ListPolicies", &["iam:ListPolicies"], Read),
    c(Iam, "CreatePolicy", &["iam:CreatePolicy", "iam:TagPolicy"], ManagedPolicy),
    c(Iam, "DeletePolicy", &["iam:DeletePolicy"], ManagedPolicy),
    c(Iam, "CreatePolicyVersion", &["iam:CreatePolicyVersion"], ManagedPolicy),
    c(Iam, "DeletePolicyVersion", &["iam:DeletePolicyVersion"], ManagedPolicy),
    c(Iam, "GetPolicyVersion", &["iam:GetPolicyVersion"], ManagedPolicy),
    c(Iam, "ListPolicyVersions", &["iam:ListPolicyVersions"], ManagedPolicy),
    c(Iam, "ListEntitiesForPolicy", &["iam:ListEntitiesForPolicy"], ManagedPolicy),
    // Not an operation: what RunInstances, the instance-profile association calls and
    // AddRoleToInstanceProfile need on the role they hand to EC2.
    c(Iam, "(PassRole)", &["iam:PassRole"], PassRole),
    // IAM: `ecoboot github setup` (an administrator, once).
    c(Iam, "ListOpenIDConnectProviders", &["iam:ListOpenIDConnectProviders"], Setup),
    c(Iam, "CreateOpenIDConnectProvider", &["iam:CreateOpenIDConnectProvider"], Setup),
    c(Iam, "UpdateRole", &["iam:UpdateRole"], Setup),
    c(Iam, "UpdateAssumeRolePolicy", &["iam:UpdateAssumeRolePolicy"], Setup),
    c(Iam, "GetPolicy", &["iam:GetPolicy"], Setup),
    // S3: the state and backup buckets.
    c(S3, "CreateBucket", &["s3:CreateBucket"], Bucket),
    c(S3, "PutBucketVersioning", &["s3:PutBucketVersioning"], Bucket),
    c(S3, "PutPublicAccessBlock", &["s3:PutBucketPublicAccessBlock"], Bucket),
    c(S3, "PutBucketEncryption", &["s3:PutEncryptionConfiguration"], Bucket),
    c(S3, "PutBucketTagging", &["s3:PutBucketTagging"], Bucket),
    c(S3, "PutBucketPolicy", &["s3:PutBucketPolicy"], Bucket),
    c(S3, "ListObjectsV2", &["s3:ListBucket"], Bucket),
    c(S3, "GetObject", &["s3:GetObject"], Objects),
    c(S3, "PutObject", &["s3:PutObject", "s3:PutObjectTagging"], Objects),
    c(S3, "DeleteObject", &["s3:DeleteObject"], Objects),
    // STS.
    c(Sts, "GetCallerIdentity", &["sts:GetCallerIdentity"], Free),
];

/// The table row of `operation` of the service the SDK calls `sdk_service`.
pub fn lookup(sdk_service: &str, operation: &str) -> Option<&'static Call> {
    CALLS
        .iter()
        .find(|c| c.operation == operation && c.service.sdk_name() == sdk_service)
}

/// An SDK interceptor that refuses, before anything is sent, an operation not in [`CALLS`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Permitted;

impl Intercept for Permitted {
    fn name(&self) -> &'static str {
        "ecoboot::Permitted"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        match lookup(meta.service(), meta.name()) {
            Some(_) => Ok(()),
            None => Err(format!(
                "internal: {} {} is not in src/aws/permissions.rs, so the deployer policy \
                 (`ecoboot iam-policy`) would not allow it; add it there",
                meta.service(),
                meta.name()
            )
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_listed_once_and_prefixed_by_its_service() {
        let mut seen = std::collections::BTreeSet::new();
        for call in CALLS {
            assert!(
                seen.insert((call.service, call.operation)),
                "{} twice",
                call.operation
            );
            let prefix = match call.service {
                Ec2 => "ec2:",
                Iam => "iam:",
                Elb => "elasticloadbalancing:",
                Quotas => "servicequotas:",
                S3 => "s3:",
                Sts => "sts:",
            };
            assert!(
                call.actions.iter().all(|a| a.starts_with(prefix)),
                "{call:?}"
            );
        }
        assert!(lookup("EC2", "RunInstances").is_some());
        assert!(lookup("IAM", "RunInstances").is_none());
        assert!(lookup("EC2", "CreateNatGateway").is_none());
    }

    #[tokio::test]
    async fn a_call_missing_from_the_table_never_leaves_the_process() {
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("eu-west-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(aws_sdk_ec2::config::Credentials::for_tests())
            .interceptor(Permitted)
            .build();
        let ec2 = aws_sdk_ec2::Client::from_conf(conf);
        let err = ec2.describe_regions().send().await.unwrap_err();
        let text = format!("{err:?}");
        assert!(text.contains("not in src/aws/permissions.rs"), "{text}");
        assert!(text.contains("DescribeRegions"), "{text}");
        // A listed call passes the interceptor (and then fails on the closed port instead).
        let err = ec2.describe_vpcs().send().await.unwrap_err();
        assert!(!format!("{err:?}").contains("permissions.rs"));
    }
}
