//! The gate a submission passes before it is batched: every index template
//! that covers its indices must be installed first (an index created before
//! its template gets dynamic mappings, for good). Each template opens the gate
//! for its own indices, so one source's refused template never holds back
//! another source's documents.

use tokio::sync::watch;

use crate::document::Document;

/// Which templates are installed; a document passes once every template that
/// covers its index is.
pub struct Gate {
    wildcards: Vec<String>,
    ready: watch::Sender<Vec<bool>>,
}

impl Gate {
    /// Everything passes: templates are not installed by the gateway.
    pub fn open() -> Gate {
        Gate { wildcards: Vec::new(), ready: watch::Sender::new(Vec::new()) }
    }

    /// Closed for each of these index wildcards (`audit-*`) until [`Gate::mark_ready`].
    pub fn closed(wildcards: Vec<String>) -> Gate {
        let n = wildcards.len();
        Gate { wildcards, ready: watch::Sender::new(vec![false; n]) }
    }

    pub fn mark_ready(&self, wildcard: &str) {
        self.ready.send_modify(|ready| {
            for (w, r) in self.wildcards.iter().zip(ready.iter_mut()) {
                if w == wildcard {
                    *r = true;
                }
            }
        });
    }

    fn admits_with(&self, ready: &[bool], docs: &[Document]) -> bool {
        docs.iter().all(|d| self.wildcards.iter().zip(ready).all(|(w, r)| *r || !covers(w, &d.index)))
    }

    /// Whether every document's templates are installed.
    pub fn admits(&self, docs: &[Document]) -> bool {
        self.admits_with(&self.ready.borrow(), docs)
    }

    /// Resolves once [`Gate::admits`] the documents.
    pub async fn until_admits(&self, docs: &[Document]) {
        let mut rx = self.ready.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail.
        let _ = rx.wait_for(|ready| self.admits_with(ready, docs)).await;
    }
}

/// Whether a template's `index_patterns` entry matches an index: the
/// gateway's wildcards are a literal prefix and `*`, or a literal name.
fn covers(wildcard: &str, index: &str) -> bool {
    match wildcard.strip_suffix('*') {
        Some(prefix) => index.starts_with(prefix),
        None => index == wildcard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::SourceKind;

    fn doc(index: &str) -> Document {
        Document { index: index.into(), id: "i".into(), body: b"{}".to_vec().into(), source: SourceKind::Audit }
    }

    #[test]
    fn each_template_opens_the_gate_for_its_own_indices() {
        let gate = Gate::closed(vec!["audit-*".into(), "containers-*".into()]);
        let audit = [doc("audit-2026.01.01")];
        let containers = [doc("containers-2026.01.01")];
        let mixed = [doc("audit-2026.01.01"), doc("containers-2026.01.01")];
        assert!(!gate.admits(&audit) && !gate.admits(&containers));
        assert!(gate.admits(&[doc("elsewhere")]), "an index no template covers is not held");
        gate.mark_ready("audit-*");
        assert!(gate.admits(&audit));
        assert!(!gate.admits(&containers) && !gate.admits(&mixed));
        gate.mark_ready("containers-*");
        assert!(gate.admits(&mixed));
        assert!(Gate::open().admits(&mixed));
        assert!(covers("kubelet", "kubelet") && !covers("kubelet", "kubelet-1") && covers("a-*", "a-1"));
    }

    #[tokio::test]
    async fn a_waiting_submission_passes_when_its_template_is_in() {
        let gate = std::sync::Arc::new(Gate::closed(vec!["audit-*".into(), "containers-*".into()]));
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.until_admits(&[doc("audit-2026.01.02")]).await });
        tokio::task::yield_now().await;
        gate.mark_ready("containers-*");
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "another template does not let it pass");
        gate.mark_ready("audit-*");
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
    }
}
