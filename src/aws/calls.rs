//! Counting AWS calls by operation with an SDK interceptor.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// Counts operations (not retries) per name, across EC2 and IAM clients, by the stage that
/// made them (`crate::stage_scope`: stages may overlap).
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    calls: Arc<Mutex<crate::stage_scope::ByStage>>,
}

impl CallCounter {
    /// Returns and resets the counts of the current stage, and of calls made outside any stage.
    pub fn take(&self) -> BTreeMap<String, u64> {
        crate::stage_scope::take_current(&mut self.calls.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn add(&self, operation: &str) {
        *self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((crate::stage_scope::current(), operation.to_string()))
            .or_default() += 1;
    }
}

/// True for operations that change something (everything but Describe/Get/List).
pub fn is_mutating(operation: &str) -> bool {
    !["Describe", "Get", "List"]
        .iter()
        .any(|p| operation.starts_with(p))
}

/// Counted before serialization: once per operation (retries are not counted again), and after
/// the operation's own configuration, which carries its name, has been applied.
impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "ecoboot::CallCounter"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            tracing::debug!(
                operation = meta.name(),
                service = meta.service(),
                "aws call"
            );
            self.add(meta.name());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutating_classification() {
        assert!(is_mutating("RunInstances"));
        assert!(is_mutating("CreateVpc"));
        assert!(!is_mutating("DescribeInstances"));
        assert!(!is_mutating("GetRole"));
        assert!(!is_mutating("ListAttachedRolePolicies"));
    }
}
