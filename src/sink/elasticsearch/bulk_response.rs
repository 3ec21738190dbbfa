//! The `_bulk` response as Elasticsearch writes it: one item per document sent,
//! in the order sent, each with its own status and error. This module only reads
//! it; what each status means for the document is the [`policy`](super::policy)'s
//! call, so that reading the format and judging it never get mixed up.

use std::borrow::Cow;

use serde::Deserialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BulkResponseError {
    #[error("bulk response is not the expected JSON: {0}")]
    Json(String),
    #[error("bulk response has {got} items for {sent} documents")]
    Count { got: usize, sent: usize },
}

#[derive(Deserialize)]
// `errors` is not read: 409s set it too, and the items are the truth.
struct BulkResponse<'a> {
    #[serde(borrow)]
    items: Vec<BulkItem<'a>>,
}

#[derive(Deserialize)]
struct BulkItem<'a> {
    // We only send `create`, but accept `index` too so that the parser is not
    // the thing that breaks if that ever changes.
    #[serde(alias = "index", borrow)]
    create: ItemResult<'a>,
}

/// What Elasticsearch said about one document.
#[derive(Debug, Deserialize)]
pub struct ItemResult<'a> {
    /// The index the item was written to (or refused by). Borrowed from the
    /// response unless it has escapes (index names never do): one allocation
    /// fewer per document, whose outcome needs the name only when the index
    /// is blocked.
    #[serde(rename = "_index", default, borrow)]
    pub index: Cow<'a, str>,
    pub status: u16,
    #[serde(default)]
    pub error: Option<ItemError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ItemError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub caused_by: Option<Box<ItemError>>,
}

impl ItemError {
    /// `type: reason; caused by type: reason`, the way Elasticsearch nests causes.
    pub fn describe(&self) -> String {
        let mut out = format!("{}: {}", self.kind, self.reason.as_deref().unwrap_or(""));
        let mut cause = self.caused_by.as_deref();
        while let Some(c) = cause {
            out.push_str(&format!("; caused by {}: {}", c.kind, c.reason.as_deref().unwrap_or("")));
            cause = c.caused_by.as_deref();
        }
        out
    }
}

/// One [`ItemResult`] per document sent, in the order sent. A response with a
/// different number of items cannot be matched to the documents, so it is an
/// error rather than a guess.
pub fn read(body: &[u8], sent: usize) -> Result<Vec<ItemResult<'_>>, BulkResponseError> {
    let resp: BulkResponse = serde_json::from_slice(body).map_err(|e| BulkResponseError::Json(e.to_string()))?;
    if resp.items.len() != sent {
        return Err(BulkResponseError::Count { got: resp.items.len(), sent });
    }
    Ok(resp.items.into_iter().map(|i| i.create).collect())
}
