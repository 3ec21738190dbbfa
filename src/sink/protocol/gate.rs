//! The gate a submission passes before it is batched: every index template
//! that covers its indices must be installed first (an index created before
//! its template gets dynamic mappings, for good). Each template opens the gate
//! for its own indices, so one source's refused template never holds back
//! another source's documents.
//!
//! A spooled document can name an index that no current template covers: it
//! was made before `elasticsearch.indices` changed, and its index is part of
//! it (so that a resend is always a 409 in the same index). When the gateway
//! manages templates, such an index is *carried over*: it waits here until
//! the index exists with the mappings of its source
//! ([`carry_over`](crate::sink::flavour::carry_over)), then passes like any other.

use tokio::sync::watch;

use crate::document::dead_letter::is_dead_letter;
use crate::document::{Document, SourceKind};

/// An index to carry over: named by a spooled document that no template
/// covers, with that document's source and whether it is a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carry {
    pub source: SourceKind,
    pub index: String,
    pub dead_letter: bool,
}

/// Which templates are installed; a document passes once every template that
/// covers its index is.
pub struct Gate {
    /// The wildcards (`audit-*`) of the templates, then the exact names of
    /// carried-over indices, each with whether it is ready.
    ready: watch::Sender<Vec<(String, bool)>>,
    /// Whether the gateway installs templates: only then does an index no
    /// template covers wait to be carried over.
    managed: bool,
}

impl Gate {
    /// Everything passes: templates are not installed by the gateway.
    pub fn open() -> Gate {
        Gate { ready: watch::Sender::new(Vec::new()), managed: false }
    }

    /// Closed for each of these index wildcards (`audit-*`) until [`Gate::mark_ready`].
    pub fn closed(wildcards: Vec<String>) -> Gate {
        Gate { ready: watch::Sender::new(wildcards.into_iter().map(|w| (w, false)).collect()), managed: true }
    }

    pub fn mark_ready(&self, wildcard: &str) {
        self.ready.send_modify(|ready| {
            for (w, r) in ready.iter_mut() {
                if w == wildcard {
                    *r = true;
                }
            }
        });
    }

    /// The indices of `docs` that no template covers and that are not carried
    /// over yet, each with the source of its first document; they are now
    /// waited for, and the caller has them carried over. Empty when the
    /// gateway does not manage templates.
    pub fn carry_over(&self, docs: &[Document]) -> Vec<Carry> {
        if !self.managed {
            return Vec::new();
        }
        let mut new = Vec::new();
        self.ready.send_if_modified(|ready| {
            for d in docs {
                if !ready.iter().any(|(w, _)| covers(w, &d.index)) {
                    ready.push((d.index.clone(), false));
                    new.push(Carry { source: d.source, index: d.index.clone(), dead_letter: is_dead_letter(&d.body) });
                }
            }
            !new.is_empty()
        });
        new
    }

    fn admits_with(&self, ready: &[(String, bool)], docs: &[Document]) -> bool {
        docs.iter().all(|d| {
            let mut covering = ready.iter().filter(|(w, _)| covers(w, &d.index)).peekable();
            (covering.peek().is_some() || !self.managed) && covering.all(|(_, r)| *r)
        })
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
        gate.mark_ready("audit-*");
        assert!(gate.admits(&audit));
        assert!(!gate.admits(&containers) && !gate.admits(&mixed));
        gate.mark_ready("containers-*");
        assert!(gate.admits(&mixed));
        assert!(Gate::open().admits(&mixed));
        assert!(covers("kubelet", "kubelet") && !covers("kubelet", "kubelet-1") && covers("a-*", "a-1"));
    }

    #[test]
    fn an_index_no_template_covers_waits_until_it_is_carried_over() {
        let gate = Gate::closed(vec!["klg-audit-*".into()]);
        gate.mark_ready("klg-audit-*");
        let old = [doc("audit-2026.01.01"), doc("audit-2026.01.01"), doc("klg-audit-2026.01.02")];
        assert!(!gate.admits(&old), "made under an earlier pattern: not admitted as it is");
        let carry = Carry { source: SourceKind::Audit, index: "audit-2026.01.01".into(), dead_letter: false };
        assert_eq!(gate.carry_over(&old), vec![carry]);
        assert_eq!(gate.carry_over(&old), vec![], "asked for once");
        assert!(!gate.admits(&old));
        gate.mark_ready("audit-2026.01.01");
        assert!(gate.admits(&old));
        assert!(!gate.admits(&[doc("audit-2026.01.011")]), "the exact name only");
        let unmanaged = Gate::open();
        assert!(unmanaged.admits(&old) && unmanaged.carry_over(&old).is_empty(), "templates are the user's");
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
