//! The credentials that sign a destination's writes: static keys, the AWS default chain, or an
//! OIDC web identity, optionally with a role assumed on top of them (a customer's role, with
//! its external ID). Role sessions come from STS; the S3 client's identity cache keeps each
//! session and asks for a new one before it expires.

use std::time::SystemTime;

use aws_config::BehaviorVersion;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::Credentials as Session;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_s3::config::Region;
use secrecy::ExposeSecret;
use tracing::Instrument;

use super::error::RemoteError;
use crate::settings::{AssumeRole, CredentialSource, Credentials, RetrySettings, WebIdentity};

/// The provider of a destination's credentials.
pub async fn provider(
    credentials: &Credentials,
    region: &Region,
    retry: RetrySettings,
) -> SharedCredentialsProvider {
    let sts = |signer: Option<SharedCredentialsProvider>| {
        sts_client(region, credentials.sts_endpoint.as_deref(), signer, retry)
    };
    let endpoint = credentials
        .sts_endpoint
        .clone()
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
    let source = match &credentials.source {
        CredentialSource::DefaultChain => SharedCredentialsProvider::new(
            DefaultCredentialsChain::builder()
                .region(region.clone())
                .build()
                .await,
        ),
        CredentialSource::Static(keys) => SharedCredentialsProvider::new(Session::new(
            keys.access_key_id.expose_secret(),
            keys.secret_access_key.expose_secret(),
            keys.session_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            None,
            "config",
        )),
        CredentialSource::WebIdentity(web) => SharedCredentialsProvider::new(WebIdentityProvider {
            client: sts(None),
            endpoint: endpoint.clone(),
            web: web.clone(),
        }),
    };
    match &credentials.assume_role {
        None => source,
        Some(role) => SharedCredentialsProvider::new(AssumeRoleProvider {
            client: sts(Some(source)),
            endpoint,
            role: role.clone(),
        }),
    }
}

/// An STS client; without a signer its requests are unsigned, as AssumeRoleWithWebIdentity's are.
fn sts_client(
    region: &Region,
    endpoint: Option<&str>,
    signer: Option<SharedCredentialsProvider>,
    retry: RetrySettings,
) -> aws_sdk_sts::Client {
    let mut config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region.clone())
        .retry_config(super::retry_config(retry))
        .timeout_config(super::timeout_config(retry));
    config.set_credentials_provider(signer);
    config.set_endpoint_url(endpoint.map(str::to_owned));
    aws_sdk_sts::Client::from_conf(config.build())
}

/// Assumes a role with the credentials of its source, with the external ID its trust policy
/// requires.
#[derive(Debug)]
struct AssumeRoleProvider {
    client: aws_sdk_sts::Client,
    /// The STS endpoint, named when it gives no answer.
    endpoint: String,
    role: AssumeRole,
}

impl AssumeRoleProvider {
    async fn session(&self) -> provider::Result {
        let role = &self.role;
        let assumed = self
            .client
            .assume_role()
            .role_arn(&role.role_arn)
            .role_session_name(&role.session_name)
            .set_external_id(role.external_id.clone())
            .duration_seconds(role.duration_secs as i32)
            .send()
            .await
            .map_err(|e| {
                CredentialsError::provider_error(RemoteError::from_sdk(
                    ("STS", &self.endpoint),
                    "AssumeRole",
                    &role.role_arn,
                    &e,
                ))
            })?;
        session(assumed.credentials, "AssumeRole", &role.role_arn)
    }
}

impl ProvideCredentials for AssumeRoleProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(
            self.session()
                .instrument(tracing::debug_span!("assume_role", role_arn = %self.role.role_arn)),
        )
    }
}

/// Exchanges the OIDC token in a file for a role session. The file is read on every exchange,
/// since whoever issues the token (Kubernetes, a CI system) rotates it in place.
#[derive(Debug)]
struct WebIdentityProvider {
    client: aws_sdk_sts::Client,
    /// The STS endpoint, named when it gives no answer.
    endpoint: String,
    web: WebIdentity,
}

impl WebIdentityProvider {
    async fn session(&self) -> provider::Result {
        let web = &self.web;
        let token = tokio::fs::read_to_string(&web.token_file)
            .await
            .map_err(|e| {
                CredentialsError::invalid_configuration(format!(
                    "cannot read the web identity token file {}: {e}",
                    web.token_file.display()
                ))
            })?;
        let assumed = self
            .client
            .assume_role_with_web_identity()
            .role_arn(&web.role_arn)
            .role_session_name(&web.session_name)
            .web_identity_token(token.trim())
            .duration_seconds(web.duration_secs as i32)
            .send()
            .await
            .map_err(|e| {
                CredentialsError::provider_error(RemoteError::from_sdk(
                    ("STS", &self.endpoint),
                    "AssumeRoleWithWebIdentity",
                    &web.role_arn,
                    &e,
                ))
            })?;
        session(
            assumed.credentials,
            "AssumeRoleWithWebIdentity",
            &web.role_arn,
        )
    }
}

impl ProvideCredentials for WebIdentityProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.session().instrument(
            tracing::debug_span!("assume_role_with_web_identity", role_arn = %self.web.role_arn),
        ))
    }
}

fn session(
    credentials: Option<aws_sdk_sts::types::Credentials>,
    via: &'static str,
    role_arn: &str,
) -> provider::Result {
    let credentials = credentials
        .ok_or_else(|| CredentialsError::unhandled(format!("STS {via} returned no credentials")))?;
    let expires_at = SystemTime::try_from(*credentials.expiration()).map_err(|_| {
        CredentialsError::unhandled(format!("STS {via} returned an unusable expiry time"))
    })?;
    tracing::info!(
        role_arn,
        operation = via,
        expires_at = %credentials.expiration(),
        "Received a role session from STS."
    );
    Ok(Session::new(
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token().to_owned()),
        Some(expires_at),
        via,
    ))
}
