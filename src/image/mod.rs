//! Golden images (`ecoboot image build|list|prune`): one builder instance launched from the
//! base AMI runs prepare-nodes' playbook and pre-pulls every container image the cluster pulls
//! at bring-up, then becomes an AMI tagged with the content hash of all that went into it
//! (`crate::golden`). `up` launches from it with `spec.aws.ami.golden: true`.

pub mod build;
mod builder;
pub mod catalog;
mod prepull;

/// Event stage id of the image commands.
pub const ID: &str = "image";
