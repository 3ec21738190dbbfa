//! Retention (`elasticsearch.lifecycle`): a policy that deletes the gateway's
//! indices `delete_after` their creation, installed when asked. Elasticsearch
//! calls it ILM (the policy is named in each index's settings, by the
//! template); OpenSearch calls it ISM (the policy names the indices it takes,
//! `ism_template`). The gateway's daily indices are event-dated, so "created"
//! is at most a day after the newest event in them. With data streams
//! (`rollover`), the policy also rolls the write index over by age or size,
//! and a backing index is deleted `delete_after` its rollover.
//!
//! A server without the API (Elasticsearch without the ILM module, OpenSearch
//! without the index-management plugin) answers 400 "no handler found": that
//! is an error at start naming the setting, not a retry loop.

use std::time::Duration;

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::templates::Template;
use super::{Flavour, FlavourError, Product, Stopped};
use crate::shutdown::Shutdown;
use crate::sink::config::{LifecycleConfig, RetryConfig};
use crate::sink::protocol::policy::Action;
use crate::sink::protocol::retry::Backoff;
use crate::sink::transport::{EsClient, Reply, RequestFailure};

/// An age as both servers write it: whole days as `90d`, anything else in seconds.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else {
        format!("{s}s")
    }
}

/// The ILM policy: nothing to do while hot (or roll over, for data
/// streams), deleted at `delete_after`.
pub fn ilm_policy(cfg: &LifecycleConfig, rollover: bool) -> Value {
    let hot = match rollover {
        true => json!({ "rollover": {
            "max_age": age(cfg.rollover_max_age),
            "max_primary_shard_size": cfg.rollover_max_primary_shard_size
        }}),
        false => json!({}),
    };
    json!({
        "policy": {
            "_meta": { "managed_by": "kube-log-gateway" },
            "phases": {
                "hot": { "min_age": "0ms", "actions": hot },
                "delete": { "min_age": age(cfg.delete_after), "actions": { "delete": {} } }
            }
        }
    })
}

/// The ISM policy: the same states, attached to every new index that one of
/// the `wildcards` matches (for a data stream: its backing indices).
pub fn ism_policy(cfg: &LifecycleConfig, wildcards: &[String], rollover: bool) -> Value {
    let (hot, delete_when) = match rollover {
        true => (
            json!([{ "rollover": {
                "min_index_age": age(cfg.rollover_max_age),
                "min_primary_shard_size": cfg.rollover_max_primary_shard_size
            }}]),
            json!({ "min_rollover_age": age(cfg.delete_after) }),
        ),
        false => (json!([]), json!({ "min_index_age": age(cfg.delete_after) })),
    };
    json!({
        "policy": {
            "description": format!("kube-log-gateway: delete indices {} after their creation", age(cfg.delete_after)),
            "default_state": "hot",
            "states": [
                {
                    "name": "hot",
                    "actions": hot,
                    "transitions": [{ "state_name": "delete", "conditions": delete_when }]
                },
                { "name": "delete", "actions": [{ "delete": {} }], "transitions": [] }
            ],
            "ism_template": [{ "index_patterns": wildcards, "priority": 100 }]
        }
    })
}

/// Elasticsearch: each template names the policy (`index.lifecycle.name`).
pub fn attach(templates: &mut [Template], flavour: &Flavour, cfg: &LifecycleConfig) {
    if flavour.product == Product::Elasticsearch {
        for t in templates {
            t.body["template"]["settings"]["index"]["lifecycle"] = json!({ "name": cfg.policy });
        }
    }
}

/// Where the policy goes and what it is.
fn request(flavour: &Flavour, cfg: &LifecycleConfig, wildcards: &[String], rollover: bool) -> (String, Value) {
    match flavour.product {
        Product::Elasticsearch => (format!("/_ilm/policy/{}", cfg.policy), ilm_policy(cfg, rollover)),
        Product::OpenSearch => {
            (format!("/_plugins/_ism/policies/{}", cfg.policy), ism_policy(cfg, wildcards, rollover))
        }
    }
}

/// ISM refuses to replace a policy without its sequence number (409): read
/// it, then replace with `if_seq_no` and `if_primary_term`.
fn seq_no(reply: &Reply) -> Option<(u64, u64)> {
    let v: Value = serde_json::from_slice(&reply.body).ok()?;
    Some((v["_seq_no"].as_u64()?, v["_primary_term"].as_u64()?))
}

async fn put(
    client: &EsClient,
    flavour: &Flavour,
    cfg: &LifecycleConfig,
    wildcards: &[String],
    rollover: bool,
) -> Result<(), RequestFailure> {
    let (path, body) = request(flavour, cfg, wildcards, rollover);
    let body = bytes::Bytes::from(serde_json::to_vec(&body).expect("a policy serializes"));
    let (_, reply) = client.send(Method::Put, &path, Some(body.clone()), "application/json").await;
    let mut reply = reply?;
    if reply.status == 409 && flavour.product == Product::OpenSearch {
        let (_, current) = client.get(&path).await;
        if let Some((seq, term)) = seq_no(&current?) {
            let (seq, term) = (seq.to_string(), term.to_string());
            let query = [("if_seq_no", seq.as_str()), ("if_primary_term", term.as_str())];
            let (_, again) = client.send_with_query(Method::Put, &path, &query, Some(body), "application/json").await;
            reply = again?;
        }
    }
    match reply.status {
        200 | 201 => Ok(()),
        status => Err(RequestFailure::Status {
            status,
            body: String::from_utf8_lossy(&reply.body).chars().take(2000).collect(),
        }),
    }
}

/// Installs the policy, retrying what may pass; a 400 (no such API, or a
/// policy the server refuses) stops the gateway at start.
pub async fn until_installed(
    client: &EsClient,
    flavour: &Flavour,
    cfg: &LifecycleConfig,
    wildcards: &[String],
    rollover: bool,
    retry: &RetryConfig,
    shutdown: &Shutdown,
) -> Result<(), Stopped> {
    let mut backoff = Backoff::new(retry);
    loop {
        let url = client.current_url().to_string();
        match put(client, flavour, cfg, wildcards, rollover).await {
            Ok(()) => {
                tracing::info!(policy = %cfg.policy, server = %flavour, delete_after = %age(cfg.delete_after),
                    "lifecycle policy installed");
                return Ok(());
            }
            Err(RequestFailure::Status { status: 400, body }) => {
                let reason = super::reason_of(&body);
                return Err(Stopped::Fatal(if reason.starts_with("no handler found") {
                    let api = match flavour.product {
                        Product::Elasticsearch => "has no ILM (the x-pack-ilm module)",
                        Product::OpenSearch => "has no ISM (the index-management plugin)",
                    };
                    FlavourError::Unsupported {
                        setting: "elasticsearch.lifecycle.install",
                        flavour: flavour.to_string(),
                        why: format!("the server at {url} {api}: {reason}"),
                    }
                } else {
                    FlavourError::LifecycleRefused {
                        server: flavour.to_string(),
                        url,
                        policy: cfg.policy.clone(),
                        reason,
                    }
                }));
            }
            Err(e) => {
                tracing::error!(url = %url, policy = %cfg.policy, "cannot install the lifecycle policy yet, will retry: {e}");
                if e.action() == (Action::Retry { failover: true }) {
                    client.fail_over(client.current_index());
                }
            }
        }
        if !backoff.wait(shutdown).await {
            return Err(Stopped::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::flavour::Version;

    fn cfg() -> LifecycleConfig {
        LifecycleConfig {
            install: true,
            delete_after: Duration::from_secs(30 * 86_400),
            policy: "klg".into(),
            rollover_max_age: Duration::from_secs(86_400),
            rollover_max_primary_shard_size: "50gb".into(),
        }
    }

    #[test]
    fn ilm_for_elasticsearch_and_ism_for_opensearch() {
        assert_eq!(
            (age(Duration::from_secs(86_400 * 90)), age(Duration::from_secs(3_600))),
            ("90d".into(), "3600s".into())
        );
        let ilm = ilm_policy(&cfg(), false);
        assert_eq!(ilm["policy"]["phases"]["hot"]["actions"], json!({}));
        assert_eq!(ilm["policy"]["phases"]["delete"], json!({"min_age": "30d", "actions": {"delete": {}}}));
        let ism = ism_policy(&cfg(), &["audit-*".into(), "kubelet-*".into()], false);
        assert_eq!(ism["policy"]["states"][0]["actions"], json!([]));
        assert_eq!(ism["policy"]["states"][0]["transitions"][0]["conditions"], json!({"min_index_age": "30d"}));
        assert_eq!(ism["policy"]["states"][1]["actions"], json!([{"delete": {}}]));
        assert_eq!(ism["policy"]["ism_template"][0]["index_patterns"], json!(["audit-*", "kubelet-*"]));

        let es = Flavour { product: Product::Elasticsearch, version: Version::parse("9.5.4") };
        let os = Flavour { product: Product::OpenSearch, version: Version::parse("3.8.0") };
        assert_eq!(request(&es, &cfg(), &[], false).0, "/_ilm/policy/klg");
        assert_eq!(request(&os, &cfg(), &[], false).0, "/_plugins/_ism/policies/klg");
        let template = || Template {
            name: "t".into(),
            wildcard: "a-*".into(),
            body: json!({"template": {"settings": {"index": {}}}}),
            sources: Vec::new(),
        };
        let mut on_es = [template()];
        attach(&mut on_es, &es, &cfg());
        assert_eq!(on_es[0].body["template"]["settings"]["index"]["lifecycle"], json!({"name": "klg"}));
        let mut on_os = [template()];
        attach(&mut on_os, &os, &cfg());
        assert_eq!(on_os[0].body["template"]["settings"]["index"], json!({}), "ISM names its indices itself");
    }

    #[test]
    fn data_streams_roll_over_by_age_or_size_and_are_deleted_after_their_rollover() {
        let ilm = ilm_policy(&cfg(), true);
        assert_eq!(
            ilm["policy"]["phases"]["hot"]["actions"],
            json!({"rollover": {"max_age": "1d", "max_primary_shard_size": "50gb"}})
        );
        assert_eq!(ilm["policy"]["phases"]["delete"]["min_age"], "30d");
        let ism = ism_policy(&cfg(), &["logs-kubernetes.audit_logs-default".into()], true);
        assert_eq!(
            ism["policy"]["states"][0]["actions"],
            json!([{"rollover": {"min_index_age": "1d", "min_primary_shard_size": "50gb"}}])
        );
        assert_eq!(ism["policy"]["states"][0]["transitions"][0]["conditions"], json!({"min_rollover_age": "30d"}));
    }
}
