//! ECS building blocks every document shape shares (docs/fields.md): one
//! definition, so the sources cannot drift apart on them.

use serde::Serialize;

/// `{ "name": … }`: `host`, `kubernetes.node`, `orchestrator.cluster`, ….
#[derive(Serialize)]
pub struct Named<'a> {
    pub name: &'a str,
}

/// `orchestrator`: always Kubernetes, with the configured cluster name.
#[derive(Serialize)]
pub struct Orchestrator<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    cluster: Named<'a>,
}

impl<'a> Orchestrator<'a> {
    pub fn kubernetes(cluster: &'a str) -> Self {
        Orchestrator { kind: "kubernetes", cluster: Named { name: cluster } }
    }
}
