//! PagerDuty's Events API v2 over HTTPS (or plain HTTP to a loopback stand-in, for tests), with
//! retries: the [`Pager`] port's adapter. What is sent, when and within which budget is
//! `lambda::pager`'s.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{Pager, PagerError};
use crate::lambda::pager::{cut, retry_after, MAX_INLINE_WAIT};

/// The Events API over HTTPS (or HTTP, for a local stand-in), with retries.
pub struct HttpPager {
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    url: hyper::Uri,
    /// Attempts after the first, and the first back-off (doubling).
    pub retries: u32,
    pub backoff: Duration,
}

impl HttpPager {
    pub fn new(url: &str) -> Result<Self, String> {
        let url: hyper::Uri = url
            .parse()
            .map_err(|e| format!("PAGERDUTY_URL {url:?}: {e}"))?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpPager {
            client: Client::builder(TokioExecutor::new()).build(https),
            url,
            retries: 3,
            backoff: Duration::from_millis(200),
        })
    }

    async fn post(&self, body: &str) -> Result<(u16, String, Option<Duration>), PagerError> {
        let request = hyper::Request::post(self.url.clone())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| PagerError {
                message: e.to_string(),
                retryable: false,
                retry_after: None,
            })?;
        let call = self.client.request(request);
        let response = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .map_err(|_| PagerError {
                message: "no answer within 10 s".into(),
                retryable: true,
                retry_after: None,
            })?
            .map_err(|e| PagerError {
                message: crate::describe::chain(&e),
                retryable: true,
                retry_after: None,
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let text = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Ok((status, text, retry_after))
    }
}

#[async_trait]
impl Pager for HttpPager {
    async fn enqueue(&self, event: &Value) -> Result<(), PagerError> {
        let body = event.to_string();
        let mut wait = self.backoff;
        let mut attempt = 0;
        loop {
            let outcome = self.post(&body).await;
            let retry = match &outcome {
                Ok((status, _, _)) if (200..300).contains(status) => return Ok(()),
                Ok((status, text, after)) if *status == 429 || *status >= 500 => PagerError {
                    message: format!("HTTP {status}: {}", cut(text, 300)),
                    retryable: true,
                    retry_after: *after,
                },
                Ok((status, text, _)) => {
                    return Err(PagerError {
                        message: format!(
                            "HTTP {status}, the event was refused: {}",
                            cut(text, 300)
                        ),
                        retryable: false,
                        retry_after: None,
                    })
                }
                Err(e) if e.retryable => e.clone(),
                Err(e) => return Err(e.clone()),
            };
            // A wait PagerDuty names is honoured; a long one is left to the budget's pause.
            let pause = match retry.retry_after {
                Some(after) if after > MAX_INLINE_WAIT => {
                    return Err(PagerError {
                        message: format!("{} (Retry-After {} s)", retry.message, after.as_secs()),
                        ..retry
                    })
                }
                Some(after) => after,
                None => wait,
            };
            if attempt >= self.retries {
                return Err(PagerError {
                    message: format!("{} (after {} attempts)", retry.message, attempt + 1),
                    ..retry
                });
            }
            attempt += 1;
            tokio::time::sleep(pause).await;
            wait *= 2;
        }
    }
}
