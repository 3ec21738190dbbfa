//! Realistic synthetic audit events, for the load generator, the fault tests
//! and the local demo. Sizes follow what kube-apiserver produces: ~1 KB at
//! Metadata level, several KB at RequestResponse level with embedded objects.

use std::fmt::Write;

/// One event as JSON. `id` makes the auditID unique; `request_response`
/// embeds a request and a response object (a Deployment) of about `object_bytes`.
pub fn event(id: &str, second: u32, request_response: bool, object_bytes: usize) -> String {
    let mut s = String::with_capacity(1200 + if request_response { 2 * object_bytes } else { 0 });
    let (verb, resource, name) = match id.len() % 4 {
        0 => ("get", "pods", "web-7d4b9c6f5-x2x9q"),
        1 => ("list", "configmaps", ""),
        2 => ("update", "deployments", "web"),
        _ => ("watch", "endpointslices", ""),
    };
    let _ = write!(
        s,
        r#"{{"level":"{level}","auditID":"{id}","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/shop/{resource}/{name}","verb":"{verb}","user":{{"username":"system:serviceaccount:kube-system:deployment-controller","uid":"4f6b2a3c-2f7e-4c8e-9d2b-0c1e8f9a7b6d","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]}},"sourceIPs":["10.0.0.{ip}"],"userAgent":"kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/system:serviceaccount:kube-system:deployment-controller","objectRef":{{"resource":"{resource}","namespace":"shop","name":"{name}","apiGroup":"apps","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"#,
        level = if request_response { "RequestResponse" } else { "Metadata" },
        ip = second % 250 + 1,
    );
    if request_response {
        let filler = noise(id, object_bytes.saturating_sub(300));
        let _ = write!(
            s,
            r#""requestObject":{{"kind":"Deployment","apiVersion":"apps/v1","metadata":{{"name":"web","namespace":"shop","annotations":{{"note":"{filler}"}}}},"spec":{{"replicas":3}}}},"responseObject":{{"kind":"Deployment","apiVersion":"apps/v1","metadata":{{"name":"web","namespace":"shop","resourceVersion":"{second}","annotations":{{"note":"{filler}"}}}},"spec":{{"replicas":3}}}},"#
        );
    }
    let _ = write!(
        s,
        r#""requestReceivedTimestamp":"2026-11-09T06:{m:02}:{sec:02}.{us:06}Z","stageTimestamp":"2026-11-09T06:{m:02}:{sec:02}.{us2:06}Z","annotations":{{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"system:controller:deployment-controller\" of ClusterRole \"system:controller:deployment-controller\" to ServiceAccount \"deployment-controller/kube-system\""}}}}"#,
        m = (second / 60) % 60,
        sec = second % 60,
        us = (id.len() * 7919) % 1_000_000,
        us2 = (id.len() * 7919 + 1200) % 1_000_000,
    );
    s
}

/// `len` pseudo-random hex characters seeded by `seed`: stands in for the
/// uids, hashes and base64 that real embedded objects carry, and — unlike a run
/// of one letter — does not compress away, so spool and network figures are not
/// flattered.
fn noise(seed: &str, len: usize) -> String {
    let mut x = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let hex = b"0123456789abcdef";
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            hex[(x & 15) as usize] as char
        })
        .collect()
}

/// An `EventList` of `events` events with auditIDs `<prefix>-<i>`; every
/// `request_response_every`-th event is at RequestResponse level (0: none).
pub fn event_list(prefix: &str, events: usize, request_response_every: usize, object_bytes: usize) -> String {
    let mut s = String::from(r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#);
    for i in 0..events {
        if i > 0 {
            s.push(',');
        }
        let rr = request_response_every > 0 && i % request_response_every == 0;
        s.push_str(&event(&format!("{prefix}-{i}"), i as u32, rr, object_bytes));
    }
    s.push_str("]}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_and_about_a_kilobyte() {
        let list = event_list("b1", 10, 10, 4096);
        let v: serde_json::Value = serde_json::from_str(&list).unwrap();
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 10);
        assert_eq!(items[3]["auditID"], "b1-3");
        assert_eq!(items[0]["level"], "RequestResponse");
        // Embedded objects do not compress to nothing.
        let rr = event("b1-0", 0, true, 4096);
        let compressed = lz4_flex::compress(rr.as_bytes());
        assert!(compressed.len() > rr.len() / 3, "{} of {}", compressed.len(), rr.len());
        let metadata = event("b1-1", 1, false, 0);
        assert!((900..1400).contains(&metadata.len()), "{}", metadata.len());
    }
}
