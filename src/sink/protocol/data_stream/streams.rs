//! What the sink knows of each data stream it writes to: its backing indices
//! and when each was created, learnt from the server when a stream is first
//! written to and again whenever a write lands in a backing index the sink did
//! not expect (a rollover). With that, the two lookups of the module's
//! documentation: [`Streams::before_write`] and [`Streams::after_write`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use elasticsearch::http::Method;
use serde::Deserialize;

use super::event_millis;
use crate::document::Document;
use crate::sink::protocol::bulk_response;
use crate::sink::protocol::outcome::Outcome;
use crate::sink::transport::{EsClient, Reply, RequestFailure};
use crate::telemetry::{self, CopyFound, CopyLabels};

/// A data stream's backing indices, oldest first: the last is the write index.
#[derive(Debug, Default)]
struct Backing {
    indices: Vec<BackingIndex>,
}

#[derive(Debug)]
struct BackingIndex {
    name: String,
    created_ms: i64,
}

impl Backing {
    fn write_index(&self) -> Option<&str> {
        self.indices.last().map(|i| i.name.as_str())
    }

    /// The backing indices other than `except` that were the write index at
    /// some time at or after `since_ms` (all of them for `None`): where a
    /// document first sent then may be.
    fn written_since<'a>(&'a self, since_ms: Option<i64>, except: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.indices.iter().enumerate().filter_map(move |(i, index)| {
            // Index i stopped being the write index when i + 1 was created.
            let until = self.indices.get(i + 1).map_or(i64::MAX, |next| next.created_ms);
            (index.name != except && since_ms.is_none_or(|since| until >= since)).then_some(index.name.as_str())
        })
    }

    /// The backing indices created before `index` (all of them if it is not
    /// known): where an earlier copy of a document just written to it counts.
    fn older_than<'a>(&'a self, index: &str) -> impl Iterator<Item = &'a str> + 'a {
        let created = self.indices.iter().find(|i| i.name == index).map_or(i64::MAX, |i| i.created_ms);
        self.indices.iter().filter(move |i| i.created_ms < created).map(|i| i.name.as_str())
    }

    /// Whether a document of this event time may have been written to a
    /// backing index before the write index: it is older than the write
    /// index's creation plus the margin.
    fn may_be_earlier(&self, event_ms: Option<i64>, margin_ms: i64) -> bool {
        match (self.indices.len(), event_ms) {
            (0 | 1, _) => false,
            (_, None) => true,
            (_, Some(t)) => t < self.indices.last().expect("two or more").created_ms.saturating_add(margin_ms),
        }
    }
}

/// The write index each stream of a batch had when its lookup was made.
#[derive(Debug, Default)]
pub struct Assumed(HashMap<String, String>);

/// Each data stream's backing indices, shared by the bulk workers.
pub struct Streams {
    client: Arc<EsClient>,
    margin_ms: i64,
    known: Mutex<HashMap<String, Arc<Backing>>>,
}

impl Streams {
    pub fn new(client: Arc<EsClient>, margin: Duration) -> Streams {
        Streams { client, margin_ms: margin.as_millis() as i64, known: Mutex::new(HashMap::new()) }
    }

    /// Which of `docs` are already stored in an earlier backing index of their
    /// stream (those are not to be sent), and the write indices assumed.
    pub async fn before_write(&self, docs: &[&Document]) -> Result<(Vec<bool>, Assumed), RequestFailure> {
        let mut assumed = Assumed::default();
        let mut backings = HashMap::new();
        for doc in docs {
            if !backings.contains_key(doc.index.as_str()) {
                let backing = self.backing(&doc.index, false).await?;
                assumed.0.insert(doc.index.clone(), backing.write_index().unwrap_or_default().to_string());
                backings.insert(doc.index.as_str(), backing);
            }
        }
        let mut wanted = Vec::new();
        for (i, doc) in docs.iter().enumerate() {
            let backing = &backings[doc.index.as_str()];
            if backing.indices.len() < 2 {
                // One backing index (or none yet): a resend meets its 409.
                continue;
            }
            let event_ms = event_millis(&doc.body);
            if backing.may_be_earlier(event_ms, self.margin_ms) {
                let write = backing.write_index().unwrap_or_default();
                let since = event_ms.map(|t| t.saturating_sub(self.margin_ms));
                wanted.extend(backing.written_since(since, write).map(|index| (i, index.to_string())));
            }
        }
        let found = self.found(docs, &wanted).await?;
        count(CopyFound::before_write, found.iter().filter(|f| **f).count());
        Ok((found, assumed))
    }

    /// After a bulk answer with items: each document written (`Created`) to a
    /// backing index other than the one assumed crossed a rollover; if a copy
    /// of it is found in an older backing index, the one just written is
    /// deleted and its outcome becomes `Duplicate`. Only older ones: when two
    /// copies are written at once across a rollover (kube-apiserver resent a
    /// batch whose answer it lost, and both are in flight), each writer finds
    /// the other's, and the copy in the older index is the one both keep.
    pub async fn after_write(
        &self,
        docs: &[&Document],
        body: &Bytes,
        outcomes: &mut [Outcome],
        assumed: &Assumed,
    ) -> Result<(), RequestFailure> {
        let items = bulk_response::read(body, docs.len()).map_err(|e| RequestFailure::Malformed(e.to_string()))?;
        let moved: Vec<(usize, String)> = items
            .iter()
            .enumerate()
            .filter(|(i, item)| {
                matches!(outcomes[*i], Outcome::Created)
                    && assumed.0.get(&docs[*i].index).is_some_and(|w| *w != item.index)
            })
            .map(|(i, item)| (i, item.index.to_string()))
            .collect();
        if moved.is_empty() {
            return Ok(());
        }
        let streams: HashSet<&str> = moved.iter().map(|(i, _)| docs[*i].index.as_str()).collect();
        let mut backings = HashMap::new();
        for stream in streams {
            backings.insert(stream, self.backing(stream, true).await?);
        }
        let mut wanted = Vec::new();
        for (i, written_to) in &moved {
            let since = event_millis(&docs[*i].body).map(|t| t.saturating_sub(self.margin_ms));
            let backing = &backings[docs[*i].index.as_str()];
            let older: HashSet<&str> = backing.older_than(written_to).collect();
            wanted.extend(
                backing.written_since(since, written_to).filter(|b| older.contains(b)).map(|b| (*i, b.to_string())),
            );
        }
        let found = self.found(docs, &wanted).await?;
        let twice: Vec<(usize, &str)> =
            moved.iter().filter(|(i, _)| found[*i]).map(|(i, written_to)| (*i, written_to.as_str())).collect();
        if twice.is_empty() {
            return Ok(());
        }
        self.delete(docs, &twice).await?;
        tracing::warn!(
            documents = twice.len(),
            "documents stored before a rollover the gateway had not seen yet were written again to the \
            new backing index; those copies were deleted again"
        );
        for (i, _) in &twice {
            outcomes[*i] = Outcome::Duplicate;
        }
        count(CopyFound::after_write, twice.len());
        Ok(())
    }

    /// The stream's backing indices: as known, or asked for (`fresh`, or
    /// never asked before).
    async fn backing(&self, stream: &str, fresh: bool) -> Result<Arc<Backing>, RequestFailure> {
        if !fresh {
            if let Some(b) = self.known.lock().expect("streams poisoned").get(stream) {
                return Ok(b.clone());
            }
        }
        let backing = Arc::new(self.ask(stream).await?);
        self.known.lock().expect("streams poisoned").insert(stream.to_string(), backing.clone());
        Ok(backing)
    }

    /// `GET /_resolve/index/<stream>` for the backing indices, then their
    /// `index.creation_date`. A stream not yet created has none.
    async fn ask(&self, stream: &str) -> Result<Backing, RequestFailure> {
        #[derive(Deserialize)]
        struct Resolved {
            #[serde(default)]
            data_streams: Vec<ResolvedStream>,
        }
        #[derive(Deserialize)]
        struct ResolvedStream {
            name: String,
            backing_indices: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Settings {
            settings: IndexSettings,
        }
        #[derive(Deserialize)]
        struct IndexSettings {
            index: CreationDate,
        }
        #[derive(Deserialize)]
        struct CreationDate {
            creation_date: String,
        }
        // Elasticsearch answers 404 for a name that does not exist yet,
        // OpenSearch 200 with nothing in it: either way, no backing index.
        let reply = self.client.get(&format!("/_resolve/index/{stream}")).await.1?;
        if reply.status == 404 {
            return Ok(Backing::default());
        }
        let resolved: Resolved = json(Ok(reply))?;
        let Some(found) = resolved.data_streams.into_iter().find(|d| d.name == stream) else {
            return Ok(Backing::default());
        };
        let path = format!("/{stream}/_settings/index.creation_date");
        let settings: BTreeMap<String, Settings> = json(self.client.get(&path).await.1)?;
        let mut indices = Vec::with_capacity(found.backing_indices.len());
        for name in found.backing_indices {
            let created = settings.get(&name).and_then(|s| s.settings.index.creation_date.parse().ok());
            let created_ms = created.ok_or_else(|| {
                RequestFailure::Malformed(format!("{path}: no index.creation_date for backing index {name}"))
            })?;
            indices.push(BackingIndex { name, created_ms });
        }
        // Generations only grow, and so do creation times.
        indices.sort_by_key(|i| i.created_ms);
        Ok(Backing { indices })
    }

    /// A real-time `_mget` of each (document, backing index) pair: one flag
    /// per document, set when any of its pairs is found. An index deleted
    /// meanwhile (retention) holds nothing.
    async fn found(&self, docs: &[&Document], wanted: &[(usize, String)]) -> Result<Vec<bool>, RequestFailure> {
        let mut found = vec![false; docs.len()];
        if wanted.is_empty() {
            return Ok(found);
        }
        #[derive(Deserialize)]
        struct Mget {
            docs: Vec<Got>,
        }
        #[derive(Deserialize)]
        struct Got {
            #[serde(default)]
            found: bool,
            #[serde(default)]
            error: Option<serde_json::Value>,
        }
        let pairs: Vec<serde_json::Value> = wanted
            .iter()
            .map(|(i, index)| serde_json::json!({ "_index": index, "_id": docs[*i].id, "_source": false }))
            .collect();
        let looked: HashSet<usize> = wanted.iter().map(|(i, _)| *i).collect();
        telemetry::metrics().data_stream_lookups.inc_by(looked.len() as u64);
        let body = Bytes::from(serde_json::to_vec(&serde_json::json!({ "docs": pairs })).expect("JSON"));
        let (_, reply) = self.client.send(Method::Post, "/_mget", Some(body), "application/json").await;
        let got: Mget = json(reply)?;
        if got.docs.len() != wanted.len() {
            return Err(RequestFailure::Malformed(format!(
                "_mget answered {} of {} documents",
                got.docs.len(),
                wanted.len()
            )));
        }
        for ((i, _), g) in wanted.iter().zip(got.docs) {
            match g.error {
                None => found[*i] |= g.found,
                Some(e) if e["type"] == "index_not_found_exception" => {}
                Some(e) => return Err(RequestFailure::Malformed(format!("_mget of {}: {e}", docs[*i].id))),
            }
        }
        Ok(found)
    }

    /// Deletes the copies just written (`_index` is the backing index, which
    /// takes deletes though a data stream does not); gone already is fine.
    async fn delete(&self, docs: &[&Document], twice: &[(usize, &str)]) -> Result<(), RequestFailure> {
        let mut body = Vec::new();
        for (i, index) in twice {
            let op = serde_json::json!({ "delete": { "_index": index, "_id": docs[*i].id } });
            serde_json::to_writer(&mut body, &op).expect("JSON");
            body.push(b'\n');
        }
        #[derive(Deserialize)]
        struct Deleted {
            items: Vec<HashMap<String, DeleteItem>>,
        }
        #[derive(Deserialize)]
        struct DeleteItem {
            status: u16,
        }
        let (_, reply) =
            self.client.send(Method::Post, "/_bulk", Some(Bytes::from(body)), "application/x-ndjson").await;
        let deleted: Deleted = json(reply)?;
        match deleted.items.iter().flat_map(|m| m.values()).find(|d| !matches!(d.status, 200 | 404)) {
            Some(d) => Err(RequestFailure::Status { status: d.status, body: "deleting a copy written twice".into() }),
            None => Ok(()),
        }
    }
}

fn count(when: CopyFound, n: usize) {
    if n > 0 {
        telemetry::metrics().data_stream_copies.get_or_create(&CopyLabels { when }).inc_by(n as u64);
    }
}

/// A 200's answer read as `T`; any other status is a failure.
fn json<T: serde::de::DeserializeOwned>(reply: Result<Reply, RequestFailure>) -> Result<T, RequestFailure> {
    let reply = reply?;
    if reply.status != 200 {
        let body = String::from_utf8_lossy(&reply.body[..reply.body.len().min(512)]).into_owned();
        return Err(RequestFailure::Status { status: reply.status, body });
    }
    serde_json::from_slice(&reply.body).map_err(|e| RequestFailure::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backing(created: &[i64]) -> Backing {
        Backing {
            indices: created
                .iter()
                .enumerate()
                .map(|(g, c)| BackingIndex { name: format!(".ds-s-{:06}", g + 1), created_ms: *c })
                .collect(),
        }
    }

    #[test]
    fn only_documents_older_than_the_write_index_plus_the_margin_are_looked_up() {
        let b = backing(&[1_000, 50_000, 90_000]);
        assert!(!b.may_be_earlier(Some(95_000), 5_000), "newer than the rollover and the margin");
        assert!(b.may_be_earlier(Some(94_999), 5_000), "within the margin");
        assert!(b.may_be_earlier(Some(10), 5_000));
        assert!(b.may_be_earlier(None, 5_000), "no time: older than anything");
        assert!(!backing(&[1_000]).may_be_earlier(Some(10), 5_000), "one backing index: the 409 covers it");
        assert!(!backing(&[]).may_be_earlier(None, 5_000));
    }

    #[test]
    fn a_document_is_looked_for_where_it_could_have_been_written() {
        let b = backing(&[1_000, 50_000, 90_000]);
        let at = |since, except| b.written_since(since, except).collect::<Vec<_>>();
        // Sent at or after 60,000: only the second was the write index then.
        assert_eq!(at(Some(60_000), ".ds-s-000003"), [".ds-s-000002"]);
        assert_eq!(at(Some(10), ".ds-s-000003"), [".ds-s-000001", ".ds-s-000002"]);
        assert_eq!(at(None, ".ds-s-000002"), [".ds-s-000001", ".ds-s-000003"]);
        assert_eq!(at(Some(95_000), ".ds-s-000003"), Vec::<&str>::new());
    }

    #[test]
    fn of_two_copies_written_across_a_rollover_the_older_index_keeps_its_own() {
        let b = backing(&[1_000, 50_000, 90_000]);
        assert_eq!(b.older_than(".ds-s-000003").collect::<Vec<_>>(), [".ds-s-000001", ".ds-s-000002"]);
        assert_eq!(b.older_than(".ds-s-000002").collect::<Vec<_>>(), [".ds-s-000001"]);
        assert_eq!(b.older_than(".ds-s-000001").count(), 0, "the oldest copy is never deleted");
    }

    #[test]
    fn a_missing_backing_index_or_error_reads_as_it_should() {
        let reply = |status, body: &str| Ok(Reply { status, body: Bytes::from(body.to_string()) });
        let e = json::<serde_json::Value>(reply(403, r#"{"error":"no"}"#)).unwrap_err();
        assert!(matches!(e, RequestFailure::Status { status: 403, .. }));
        assert!(json::<serde_json::Value>(reply(200, "{}")).is_ok());
    }
}
