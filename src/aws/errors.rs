//! Turning SDK errors into diagnostics with a next step.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::Error;

/// The AWS error code of an SDK error, if the service answered with one.
pub fn code_of<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<String> {
    match err {
        SdkError::ServiceError(e) => e.err().code().map(str::to_string),
        _ => None,
    }
}

/// A diagnostic for a failed call `operation` on `target`, with advice for the known codes.
pub fn aws_error<E, R>(operation: &str, target: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let mut code = code_of(&err).unwrap_or_default();
    let mut message = match &err {
        SdkError::ServiceError(e) => e.err().message().unwrap_or_default().to_string(),
        other => {
            let full = DisplayErrorContext(other).to_string();
            // The SDK appends a Debug dump of the whole error chain; the sentence before it says it all.
            full.split(" (DispatchFailure(")
                .next()
                .unwrap_or(&full)
                .to_string()
        }
    };
    let mut help = advice(&code, &err, operation);
    if code.is_empty()
        && (message.contains("CredentialsNotLoaded") || message.contains("credentials"))
    {
        code = "NoCredentials".into();
        message = "no AWS credentials were found (tried environment, profile, SSO, web identity, ECS and instance metadata)".into();
        help = "set AWS_PROFILE (and run `aws sso login`) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; in GitHub Actions use aws-actions/configure-aws-credentials".into();
    }
    Error::Aws {
        operation: operation.to_string(),
        target: target.to_string(),
        code: if code.is_empty() {
            "no response".into()
        } else {
            code
        },
        message,
        help,
    }
}

fn advice<E, R>(code: &str, err: &SdkError<E, R>, operation: &str) -> String {
    match code {
        "VcpuLimitExceeded" => "the account's vCPU quota for on-demand standard instances is too low: request an increase (Service Quotas code L-1216C47A; the 14-node reference cluster needed 32 vCPU), then rerun `ecoboot up`".into(),
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => format!("the credentials are not allowed to call {operation}: grant it to the role or user ecoboot runs as (see README.md, Running against real AWS)"),
        "InvalidKeyPair.Duplicate" => "a key pair with this name already exists; ecoboot never overwrites key pairs: delete it in the EC2 console or set spec.aws.keyPair.name to another name".into(),
        "EntityAlreadyExists" => "an IAM entity with this name already exists but is not tagged for this cluster; ecoboot does not adopt it: delete or rename it, or rename the cluster".into(),
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => "the AWS credentials have expired: refresh them (`aws sso login`, or rerun the credentials step of the workflow) and rerun `ecoboot up`".into(),
        "AuthFailure" | "InvalidClientTokenId" | "SignatureDoesNotMatch" | "UnrecognizedClientException" => "AWS rejected the credentials: check AWS_PROFILE / AWS_ACCESS_KEY_ID and the clock".into(),
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => format!("AWS kept throttling after {} attempts: wait a minute and rerun `ecoboot up`", super::MAX_ATTEMPTS),
        "InsufficientInstanceCapacity" => "AWS has no capacity for this instance type in this AZ right now: rerun later or change the node's instanceType or subnet".into(),
        "" => match err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => "could not reach the AWS endpoint: check the network, AWS_REGION and AWS_ENDPOINT_URL".into(),
            SdkError::ConstructionFailure(_) => "no usable AWS credentials or region: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or run `aws sso login`)".into(),
            _ => "rerun with -v for the full response".into(),
        },
        _ => "see the AWS error code above; rerun `ecoboot up` after fixing it (finished work is not redone)".into(),
    }
}
