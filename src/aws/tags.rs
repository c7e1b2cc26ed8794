//! The tags that make every resource findable: the real world is searched by them.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use crate::config::Config;

/// Tag key naming the cluster a resource belongs to.
pub const CLUSTER: &str = "ecoboot.io/cluster";
/// Tag key naming the node an instance or volume belongs to.
pub const NODE: &str = "ecoboot.io/node";
/// Tag key naming an instance's role (`control-plane` or `worker`): how a control plane that
/// left the config is still recognised (never pruned, never silently replaced).
pub const ROLE: &str = "ecoboot.io/role";
/// Tag key naming the config subnet a subnet stands for.
pub const SUBNET: &str = "ecoboot.io/subnet";

/// Tag key marking public subnets the AWS Load Balancer Controller may place internet-facing
/// load balancers in.
pub const ROLE_ELB: &str = "kubernetes.io/role/elb";

/// Tags for one cluster: the cluster tag plus the user's tags from config.
#[derive(Debug, Clone)]
pub struct Tags {
    /// Cluster name.
    pub cluster: String,
    user: BTreeMap<String, String>,
}

impl Tags {
    /// The tags of `config`'s cluster.
    pub fn for_cluster(config: &Config) -> Tags {
        Tags {
            cluster: config.name().to_string(),
            user: config
                .cluster
                .spec
                .aws
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
        }
    }

    /// All tags for a resource called `name` plus `extra` pairs.
    pub fn pairs(&self, name: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .user
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.push((CLUSTER.into(), self.cluster.clone()));
        out.push(("Name".into(), name.into()));
        out.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        out
    }

    /// `kubernetes.io/cluster/<cluster>`: the ownership tag the Kubernetes AWS integrations
    /// (cloud provider, Load Balancer Controller, EBS CSI driver) look for.
    pub fn kubernetes_cluster_key(&self) -> String {
        format!("kubernetes.io/cluster/{}", self.cluster)
    }

    /// The Kubernetes integration tags a resource of `kind` carries: the ownership tag on the
    /// VPC, subnets, security group and instances, and `kubernetes.io/role/elb=1` on the
    /// (public) subnets; none on other kinds.
    pub fn kubernetes(&self, kind: &ResourceType) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if matches!(
            kind,
            ResourceType::Vpc
                | ResourceType::Subnet
                | ResourceType::SecurityGroup
                | ResourceType::Instance
        ) {
            out.push((self.kubernetes_cluster_key(), "owned".to_string()));
        }
        if *kind == ResourceType::Subnet {
            out.push((ROLE_ELB.to_string(), "1".to_string()));
        }
        out
    }

    /// The [`Tags::kubernetes`] pairs of `kind` that `tags` lacks (or holds with another value).
    pub fn kubernetes_missing(&self, kind: &ResourceType, tags: &[Tag]) -> Vec<(String, String)> {
        self.kubernetes(kind)
            .into_iter()
            .filter(|(k, v)| ec2_tag_value(tags, k) != Some(v.as_str()))
            .collect()
    }

    /// An EC2 tag specification for a resource created by one call (with the Kubernetes
    /// integration tags its kind carries).
    pub fn spec(&self, kind: ResourceType, name: &str, extra: &[(&str, &str)]) -> TagSpecification {
        let mut pairs = self.pairs(name, extra);
        pairs.extend(self.kubernetes(&kind));
        spec_of(kind, pairs)
    }

    /// [`Tags::spec`] without the Kubernetes integration tags: for what is not part of the
    /// running cluster (the image builder, golden images and their snapshots).
    pub fn plain_spec(
        &self,
        kind: ResourceType,
        name: &str,
        extra: &[(&str, &str)],
    ) -> TagSpecification {
        spec_of(kind, self.pairs(name, extra))
    }

    /// IAM tags.
    pub fn iam(&self, name: &str) -> Vec<aws_sdk_iam::types::Tag> {
        self.pairs(name, &[])
            .into_iter()
            .filter_map(|(k, v)| {
                aws_sdk_iam::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .ok()
            })
            .collect()
    }

    /// The EC2 filter `tag:ecoboot.io/cluster = <cluster>`.
    pub fn filter(&self) -> Filter {
        ec2_filter(&format!("tag:{CLUSTER}"), &self.cluster)
    }
}

fn spec_of(kind: ResourceType, pairs: Vec<(String, String)>) -> TagSpecification {
    let tags = pairs
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tags))
        .build()
}

/// An EC2 filter with one value.
pub fn ec2_filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The value of tag `key` in an EC2 tag list.
pub fn ec2_tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

impl crate::aws::Aws {
    /// One CreateTags of `pairs` on `ids`.
    pub async fn add_tags(
        &self,
        ids: &[&str],
        pairs: &[(String, String)],
    ) -> crate::error::Result<()> {
        let tags = pairs
            .iter()
            .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
            .collect();
        self.pace().await;
        self.ec2
            .create_tags()
            .set_resources(Some(ids.iter().map(|s| s.to_string()).collect()))
            .set_tags(Some(tags))
            .send()
            .await
            .map(drop)
            .map_err(|e| crate::aws::aws_error("CreateTags", &ids.join(","), e))
    }
}
