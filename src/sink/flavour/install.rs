//! Installing the index templates, each on its own; each one installed opens
//! the [`Gate`] for its indices.
//!
//! One template's trouble never holds back another's documents: audit events
//! flow while a refused containers template is retried. A template the server
//! refuses for its content (a 400: an unknown setting, a field type it does not
//! have) can never pass as it is: that stops the gateway at start with the
//! server's own words. Anything else (down, busy, credentials without the
//! privilege) is logged with the server's words and retried.

use super::templates::Template;
use super::{Flavour, FlavourError, Stopped};
use crate::shutdown::Shutdown;
use crate::sink::config::RetryConfig;
use crate::sink::protocol::gate::Gate;
use crate::sink::protocol::policy::Action;
use crate::sink::protocol::retry::Backoff;
use crate::sink::transport::{EsClient, RequestFailure};
use elasticsearch::http::Method;

/// `PUT /_index_template/<name>` once.
pub async fn put(client: &EsClient, template: &Template) -> Result<(), RequestFailure> {
    let body = bytes::Bytes::from(serde_json::to_vec(&template.body).expect("a template serializes"));
    let path = format!("/_index_template/{}", template.name);
    let (_, reply) = client.send(Method::Put, &path, Some(body), "application/json").await;
    let reply = reply?;
    if reply.status != 200 {
        return Err(RequestFailure::Status {
            status: reply.status,
            body: String::from_utf8_lossy(&reply.body).chars().take(2000).collect(),
        });
    }
    Ok(())
}

/// Installs every template, each on its own: each one installed opens the
/// gate for its indices at once; the others are retried with backoff.
pub async fn until_installed(
    client: &EsClient,
    flavour: &Flavour,
    templates: &[Template],
    gate: &Gate,
    retry: &RetryConfig,
    shutdown: &Shutdown,
) -> Result<(), Stopped> {
    let mut backoff = Backoff::new(retry);
    let mut left: Vec<&Template> = templates.iter().collect();
    loop {
        let mut failed = Vec::new();
        for t in left {
            let url = client.current_url().to_string();
            match put(client, t).await {
                Ok(()) => {
                    tracing::info!(template = %t.name, server = %flavour, "index template installed");
                    gate.mark_ready(&t.wildcard);
                }
                Err(RequestFailure::Status { status: 400, body }) => {
                    return Err(Stopped::Fatal(FlavourError::TemplateRefused {
                        server: flavour.to_string(),
                        url,
                        template: t.name.clone(),
                        pattern: t.wildcard.clone(),
                        reason: super::reason_of(&body),
                    }));
                }
                Err(e) => {
                    log_refusal(&url, flavour, &t.name, &t.wildcard, &e);
                    if e.action() == (Action::Retry { failover: true }) {
                        client.fail_over(client.current_index());
                    }
                    failed.push(t);
                }
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        left = failed;
        if !backoff.wait(shutdown).await {
            return Err(Stopped::Cancelled);
        }
    }
}

/// A template not installed yet, with the server's words and what they mean.
fn log_refusal(url: &str, flavour: &Flavour, name: &str, wildcard: &str, e: &RequestFailure) {
    let why = match e {
        RequestFailure::Status { status: 401, .. } => " (the credentials were not accepted)",
        RequestFailure::Status { status: 403, .. } => {
            " (the credentials need the manage_index_templates cluster privilege)"
        }
        _ => "",
    };
    let reason = match e {
        RequestFailure::Status { status, body } => format!("HTTP {status}: {}", super::reason_of(body)),
        other => other.to_string(),
    };
    if e.needs_an_operator() {
        tracing::error!(
            url,
            template = name,
            "{flavour} refused the index template {name}{why}; documents for \
            {wildcard} wait, the others are delivered; will retry: {reason}"
        );
    } else {
        tracing::warn!(
            url,
            template = name,
            "cannot install index template {name} yet; documents for {wildcard} \
            wait, will retry: {reason}"
        );
    }
}
