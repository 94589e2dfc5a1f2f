//! `trail-alerts-lambda` (packaged as `bootstrap`): the Lambda function. Wiring only: tracing,
//! configuration, SDK clients and rules once per cold start, then the runtime loop.

use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use trail_alerts::lambda::aws::{read_rule_document, s3_client, sdk_config, S3Store, SnsPublisher};
use trail_alerts::lambda::{Handler, LambdaConfig};
use trail_alerts::rules::{read_source, RuleSet, RuleSource};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = LambdaConfig::from_lookup(|k| std::env::var(k).ok())
        .map_err(|e| format!("configuration: {e}"))?;
    let sdk = sdk_config().await;
    let s3 = s3_client(&sdk);
    let sns = aws_sdk_sns::Client::new(&sdk);

    let mut documents = Vec::new();
    for source in &config.rules {
        match RuleSource::parse(source) {
            RuleSource::S3 { bucket, key } => {
                let text = read_rule_document(&s3, &bucket, &key)
                    .await
                    .map_err(|e| format!("rules: s3://{bucket}/{key}: {e}"))?;
                documents.push((format!("s3://{bucket}/{key}"), text));
            }
            other => documents.extend(read_source(&other).map_err(|e| format!("rules: {e}"))?),
        }
    }
    let rules = RuleSet::from_documents(&documents).map_err(|e| format!("rules: {e}"))?;
    tracing::info!(
        rules = rules.rules().len(),
        enabled = rules.rules().iter().filter(|r| r.enabled).count(),
        "rules loaded"
    );
    let handler = Handler::new(
        Arc::new(rules),
        S3Store::new(s3),
        SnsPublisher::new(sns),
        config,
    )
    .map_err(|e| format!("rules: {e}"))?;
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler.handle(event.payload).await
    }))
    .await
}
