//! The tags that make every resource findable: the real world is searched by them.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use crate::config::Config;

/// Tag key naming the cluster a resource belongs to.
pub const CLUSTER: &str = "ecoboot.io/cluster";
/// Tag key naming the node an instance or volume belongs to.
pub const NODE: &str = "ecoboot.io/node";
/// Tag key naming the config subnet a subnet stands for.
pub const SUBNET: &str = "ecoboot.io/subnet";

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

    /// An EC2 tag specification for a resource created by one call.
    pub fn spec(&self, kind: ResourceType, name: &str, extra: &[(&str, &str)]) -> TagSpecification {
        let tags = self
            .pairs(name, extra)
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(tags))
            .build()
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
