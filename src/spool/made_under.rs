//! The settings the spooled documents were made with.
//!
//! A document is final once it is spooled: its index and every field (the
//! cluster name among them) are what they were when the webhook answered
//! 200, and a resend must be the same document to be a 409. A restart with
//! changed settings therefore delivers the entries already spooled as they
//! were made. That is right, but it must not be a surprise: the spool keeps
//! the settings its documents depend on, and a change while entries wait is
//! logged with what it means for them.

use redb::{ReadableTable, TableDefinition};

use super::Spool;

const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("made_under");

/// One setting that changed while entries made under its old value wait.
#[derive(Debug, PartialEq, Eq)]
pub struct Changed {
    pub setting: String,
    pub before: String,
    pub now: String,
}

impl Spool {
    /// Records the `(setting, value)`s new entries are made with; returns
    /// (and logs) those that changed while the spool holds entries made
    /// with the old values. A failure to record them is logged, not fatal:
    /// it costs only this notice at the next start.
    pub fn made_under(&self, settings: &[(&str, &str)]) -> Vec<Changed> {
        let entries = self.entry_count();
        let guard = self.inner.db.read().expect("spool database lock poisoned");
        let Some(db) = guard.as_ref() else { return Vec::new() };
        #[allow(clippy::result_large_err)] // redb's own error, at start only
        let result = (|| -> Result<Vec<Changed>, redb::Error> {
            let tx = db.begin_write()?;
            let mut changed = Vec::new();
            {
                let mut table = tx.open_table(SETTINGS)?;
                for (setting, now) in settings {
                    let before = table.get(*setting)?.map(|v| v.value().to_string());
                    if let Some(before) = before.filter(|b| b != now) {
                        changed.push(Changed { setting: setting.to_string(), before, now: now.to_string() });
                    }
                    table.insert(*setting, *now)?;
                }
            }
            tx.commit()?;
            Ok(changed)
        })();
        drop(guard);
        let changed = match result {
            Ok(changed) if entries > 0 => changed,
            Ok(_) => Vec::new(),
            Err(e) => {
                tracing::warn!(path = %self.inner.path.display(), "cannot record the settings of new spool entries: {e}");
                Vec::new()
            }
        };
        for c in &changed {
            tracing::warn!(
                setting = %c.setting, before = %c.before, now = %c.now, entries,
                "{} changed from {:?} to {:?} while the spool holds {entries} entries made with {:?}: they are \
                delivered as they were made, with {} {:?} (an index of an earlier pattern is created with the \
                current mappings first); new events are made with {:?}",
                c.setting, c.before, c.now, c.before, c.setting, c.before, c.now
            );
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{Document, SourceKind};

    #[tokio::test]
    async fn a_change_is_reported_only_while_entries_wait() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.made_under(&[("cluster_name", "a")]), vec![], "the first start");
        assert_eq!(spool.made_under(&[("cluster_name", "b")]), vec![], "an empty spool: nothing was made with a");
        let doc = Document { index: "i".into(), id: "1".into(), body: "{}".into(), source: SourceKind::Audit };
        spool.append(&[doc]).await.unwrap();
        assert_eq!(spool.made_under(&[("cluster_name", "b")]), vec![], "unchanged");
        drop(spool);
        let spool = super::super::tests::reopen(dir.path()).await;
        let changed = spool.made_under(&[("cluster_name", "c"), ("elasticsearch.indices.audit", "x-%Y")]);
        let want = Changed { setting: "cluster_name".into(), before: "b".into(), now: "c".into() };
        assert_eq!(changed, vec![want], "a setting seen for the first time is no change");
    }
}
