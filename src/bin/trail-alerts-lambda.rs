//! `trail-alerts-lambda` (packaged as `bootstrap`): the Lambda function. Wiring only: tracing,
//! configuration, SDK clients and rules once per cold start, then the runtime loop.

use std::process::ExitCode;
use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use trail_alerts::lambda::accounts::OrgDirectory;
use trail_alerts::lambda::doctor;
use trail_alerts::lambda::handler::RuleLoader;
use trail_alerts::lambda::ports::aws::{
    load_rules, paging, s3_client, sdk_config, DynamoState, LastGoodRules, S3Store,
    SdkOrganizations, SnsPublisher,
};
use trail_alerts::lambda::ports::role::trail_reader;
use trail_alerts::lambda::{Handler, LambdaConfig};

/// mimalloc: building a matched record allocates a few hundred small blocks, and glibc's
/// allocator spent more on them than on building (see docs/performance.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Function = Handler<S3Store, SnsPublisher>;

/// Everything done once per cold start; an error here stops the start with a clear message.
/// The rule documents read and loaded again, as at cold start (the sweep's retry while the
/// instance is on the last good rules).
struct Reloader {
    kept: LastGoodRules,
    s3: aws_sdk_s3::Client,
    sources: Vec<trail_alerts::rules::RuleSource>,
    config: LambdaConfig,
}

#[async_trait::async_trait]
impl RuleLoader for Reloader {
    async fn load(&self) -> Result<trail_alerts::rules::RuleSet, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let rules = self
            .kept
            .load_current(&self.s3, &self.sources, now)
            .await
            .map_err(|e| format!("rules: {e}"))?;
        self.config.scoped(rules).map_err(|e| format!("rules: {e}"))
    }
}

/// What `{"doctor": {}}` checks with: the SDK configuration, the function's configuration and
/// its trail places.
type DoctorKit = (aws_config::SdkConfig, LambdaConfig, doctor::Scope);

async fn cold_start() -> Result<(Function, DoctorKit), String> {
    let config = LambdaConfig::from_lookup(|k| std::env::var(k).ok())
        .map_err(|e| format!("configuration: {e}"))?;
    let sdk = sdk_config().await;
    let s3 = s3_client(&sdk);
    let sns = aws_sdk_sns::Client::new(&sdk);
    // With the state table, the last rule set that loaded is kept there: a rule object that
    // no longer loads does not stop alerting.
    let (rules, fallback) = match &config.state_table {
        Some(table) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let loaded = LastGoodRules::new(aws_sdk_dynamodb::Client::new(&sdk), table.clone())
                .load(&s3, &config.rules, now)
                .await
                .map_err(|e| format!("rules: {e}"))?;
            (loaded.rules, loaded.fallback)
        }
        None => (
            load_rules(&s3, &config.rules)
                .await
                .map_err(|e| format!("rules: {e}"))?,
            None,
        ),
    };
    if let Some((fault, kept_at)) = &fallback {
        tracing::error!(
            fault = %fault,
            kept_at,
            "rules: the rule documents do not load; alerting on the last rule set that loaded"
        );
    }
    let rules = config.scoped(rules).map_err(|e| format!("rules: {e}"))?;
    let (reload_s3, reload_sources, reload_config) =
        (s3.clone(), config.rules.clone(), config.clone());
    for warning in rules.warnings() {
        tracing::warn!(rule = %warning.rule, path = %warning.path, "{}", warning.message);
    }
    tracing::info!(
        rules = rules.rules().len(),
        enabled = rules.rules().iter().filter(|r| r.enabled).count(),
        "rules loaded"
    );
    let table = config.state_table.clone();
    let paging = paging(&sdk, &config, &rules, table.is_some()).await?;
    // Trail objects are read through the log-archive account's read role when one is set; rules
    // and the backfill's findings stay in the function's own account.
    let reader = match &config.read_role {
        Some(role) => {
            tracing::info!(role = %role.arn, "trail objects are read through the read role");
            S3Store::reading_as(trail_reader(&sdk, Some(role)), &role.arn)
        }
        None => S3Store::new(s3.clone()),
    };
    let writer = Arc::new(S3Store::new(s3));
    let scope = doctor::Scope::from_lookup(&config, |k| std::env::var(k).ok());
    let config_organizations = (
        config.organizations,
        config.org_read_role.clone(),
        config.account_cache_ttl,
    );
    let kit = (sdk.clone(), config.clone(), scope);
    let handler = Handler::new(Arc::new(rules), reader, SnsPublisher::new(sns), config)
        .map_err(|e| format!("rules: {e}"))?
        .with_writer(writer);
    let handler = match paging {
        Some(p) => handler.with_paging(p),
        None => handler,
    };
    let handler = match (fallback, &table) {
        (Some((fault, _)), Some(table)) => handler.with_rules_fallback(
            fault,
            Arc::new(Reloader {
                kept: LastGoodRules::new(aws_sdk_dynamodb::Client::new(&sdk), table.clone()),
                s3: reload_s3,
                sources: reload_sources,
                config: reload_config,
            }),
        ),
        _ => handler,
    };
    // Accounts' names, OU paths and tags from AWS Organizations, cached in the state table.
    let handler = if config_organizations.0 {
        let org = SdkOrganizations::new(&sdk, config_organizations.1.as_deref());
        let mut directory = OrgDirectory::new(Box::new(org), config_organizations.2);
        if let Some(table) = &table {
            directory = directory.with_cache(Arc::new(DynamoState::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                table.clone(),
            )));
        }
        tracing::info!("accounts' context from AWS Organizations");
        handler.with_directory(Arc::new(directory))
    } else {
        handler
    };
    let handler = match table {
        Some(table) => {
            tracing::info!(table = %table, "state store");
            handler.with_state(Arc::new(DynamoState::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                table,
            )))
        }
        None => handler,
    };
    Ok((handler, kit))
}

#[tokio::main]
async fn main() -> ExitCode {
    trail_alerts::no_huge_pages();
    lambda_runtime::tracing::init_default_subscriber();
    let (handler, doctor) = match cold_start().await {
        Ok(h) => h,
        Err(message) => {
            tracing::error!(error = %message, "cold start failed");
            eprintln!("trail-alerts-lambda: {message}");
            return ExitCode::FAILURE;
        }
    };
    let handler = &handler;
    let doctor = &doctor;
    let run = lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // `aws lambda invoke --payload '{"doctor": {}}'`: the checks of `trail-alerts doctor`,
        // made as the function's own role; the answer is the report.
        if event.payload.get("doctor").is_some()
            && event.payload.as_object().is_some_and(|o| o.len() == 1)
        {
            let checks = doctor::examine(&doctor.0, &doctor.1, &doctor.2).await;
            return Ok(doctor::json(&checks));
        }
        handler.handle(event.payload).await
    }));
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trail-alerts-lambda: the runtime loop ended: {e}");
            ExitCode::FAILURE
        }
    }
}
