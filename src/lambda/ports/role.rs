//! The trail's read role: when the organisation trail's bucket (and its KMS key) sit in a
//! log-archive account, the function reads through a role there (`TRAIL_READ_ROLE_ARN`, with
//! `TRAIL_READ_EXTERNAL_ID` when its trust policy asks for one).
//!
//! The role's credentials come from one `sts:AssumeRole` and are kept by the S3 client's
//! identity cache, which asks again a little before they expire (one hour by default): one STS
//! call per hour of a warm instance, none per object. A refusal (no trust, a wrong external id,
//! no `sts:AssumeRole` in the function's own policy) is `RoleRefused`, which reads of objects
//! report as access denied naming the role, so that Lambda does not retry what cannot succeed;
//! throttling and network faults stay retryable.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

use crate::lambda::config::ReadRole;
use crate::s3::RoleRefused;

/// The session name the log-archive account's CloudTrail shows for the function's reads.
pub const SESSION_NAME: &str = "trail-alerts";

/// Credentials of the read role, assumed with the function's own credentials.
#[derive(Debug)]
pub struct RoleCredentials {
    sts: aws_sdk_sts::Client,
    role: ReadRole,
}

impl RoleCredentials {
    pub fn new(sdk: &SdkConfig, role: ReadRole) -> Self {
        RoleCredentials {
            sts: aws_sdk_sts::Client::new(sdk),
            role,
        }
    }

    async fn assume(&self) -> Result<Credentials, CredentialsError> {
        let out = self
            .sts
            .assume_role()
            .role_arn(&self.role.arn)
            .role_session_name(SESSION_NAME)
            .set_external_id(self.role.external_id.clone())
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(SdkError::ServiceError(se)) => {
                let status = se.raw().status().as_u16();
                let code = se.err().code().unwrap_or("").to_owned();
                let message = se.err().message().unwrap_or("").to_owned();
                let refused = RoleRefused {
                    role: self.role.arn.clone(),
                    reason: format!("{code}: {message}"),
                };
                return Err(match (status, code.as_str()) {
                    (429 | 500..=599, _) | (_, "Throttling" | "IDPCommunicationError") => {
                        CredentialsError::provider_error(refused.reason)
                    }
                    _ => CredentialsError::invalid_configuration(refused),
                });
            }
            Err(e) => return Err(CredentialsError::provider_error(crate::describe::chain(&e))),
        };
        let Some(c) = out.credentials else {
            return Err(CredentialsError::provider_error(
                "AssumeRole answered without credentials",
            ));
        };
        let expiry = SystemTime::try_from(c.expiration)
            .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(900));
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            Some(expiry),
            "trail-alerts read role",
        ))
    }
}

impl ProvideCredentials for RoleCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}

/// The S3 client that reads trail objects: the function's own credentials, or the read role's
/// when one is configured (kept by the client's identity cache).
pub fn trail_reader(sdk: &SdkConfig, role: Option<&ReadRole>) -> aws_sdk_s3::Client {
    let client = crate::s3::s3_client(sdk);
    match role {
        None => client,
        Some(role) => aws_sdk_s3::Client::from_conf(
            client
                .config()
                .to_builder()
                .credentials_provider(RoleCredentials::new(sdk, role.clone()))
                .build(),
        ),
    }
}
