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
#[derive(Debug, PartialEq, Eq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    if let Some(items) = all_created(body, sent) {
        return Ok(items);
    }
    read_json(body, sent)
}

/// The answer to nearly every request, all items created, read without serde.
/// Filtered by `client::BULK_FILTER_PATH`, Elasticsearch writes it as exactly
/// `{"items":[{"create":{"_index":"…","status":201}},…]}`; serde spent about
/// 1,900 instructions per item on that (docs/decisions.md §15). Anything else
/// — another status, an error, an escape in a name, whitespace, another key
/// order, another count — is `None` and goes to [`read_json`], so what this
/// accepts is a subset of what serde reads, with the same result.
fn all_created(body: &[u8], sent: usize) -> Option<Vec<ItemResult<'_>>> {
    const HEAD: &[u8] = br#"{"items":["#;
    const ITEM: &[u8] = br#"{"create":{"_index":""#;
    const TAIL: &[u8] = br#"","status":201}}"#;
    let mut rest = body.strip_prefix(HEAD)?;
    let mut items = Vec::with_capacity(sent);
    loop {
        rest = rest.strip_prefix(ITEM)?;
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        let (name, after) = rest.split_at(end);
        if name.iter().any(|b| *b < 0x20) {
            return None;
        }
        let index = std::str::from_utf8(name).ok()?;
        rest = after.strip_prefix(TAIL)?;
        items.push(ItemResult { index: Cow::Borrowed(index), status: 201, error: None });
        match rest.split_first()? {
            (b',', next) => rest = next,
            (b']', next) => {
                rest = next;
                break;
            }
            _ => return None,
        }
    }
    (rest == b"}" && items.len() == sent).then_some(items)
}

/// Any bulk response, through serde.
fn read_json(body: &[u8], sent: usize) -> Result<Vec<ItemResult<'_>>, BulkResponseError> {
    let resp: BulkResponse = serde_json::from_slice(body).map_err(|e| BulkResponseError::Json(e.to_string()))?;
    if resp.items.len() != sent {
        return Err(BulkResponseError::Count { got: resp.items.len(), sent });
    }
    Ok(resp.items.into_iter().map(|i| i.create).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(index: &str, n: usize) -> String {
        let item = format!(r#"{{"create":{{"_index":"{index}","status":201}}}}"#);
        format!(r#"{{"items":[{}]}}"#, vec![item; n].join(","))
    }

    #[test]
    fn all_created_is_read_without_serde_and_as_serde_reads_it() {
        for n in [1, 2000] {
            let body = created("audit-2026.12.02", n);
            let fast = all_created(body.as_bytes(), n).expect("the fast path takes it");
            assert_eq!(fast, read_json(body.as_bytes(), n).unwrap());
            assert!(fast.iter().all(|i| i.status == 201 && i.index == "audit-2026.12.02" && i.error.is_none()));
        }
    }

    #[test]
    fn anything_else_goes_to_serde_with_the_same_result() {
        let others = [
            // An error, another status, an escaped name, whitespace, key order, `index`.
            r#"{"items":[{"create":{"_index":"a","status":201}},{"create":{"_index":"a","status":409,"error":{"type":"version_conflict_engine_exception","reason":"x"}}}]}"#,
            r#"{"items":[{"create":{"_index":"a","status":200}}]}"#,
            r#"{"items":[{"create":{"_index":"a\"b","status":201}}]}"#,
            r#"{"items":[{"create":{"_index":"a\u0062","status":201}}]}"#,
            r#"{"items": [{"create":{"_index":"a","status":201}}]}"#,
            r#"{"items":[{"create":{"status":201,"_index":"a"}}]}"#,
            r#"{"items":[{"index":{"_index":"a","status":201}}]}"#,
            r#"{"items":[{"create":{"_index":"a","status":2010}}]}"#,
        ];
        for body in others {
            let sent = body.matches("status").count();
            assert!(all_created(body.as_bytes(), sent).is_none(), "{body}");
            assert_eq!(read(body.as_bytes(), sent), read_json(body.as_bytes(), sent), "{body}");
        }
        assert_eq!(read(br#"{"items":[{"create":{"_index":"a\"b","status":201}}]}"#, 1).unwrap()[0].index, "a\"b");
    }

    #[test]
    fn a_wrong_count_or_trailing_bytes_are_errors_as_before() {
        let body = created("a", 2);
        assert_eq!(read(body.as_bytes(), 3), Err(BulkResponseError::Count { got: 2, sent: 3 }));
        assert!(matches!(read(format!("{body}x").as_bytes(), 2), Err(BulkResponseError::Json(_))));
        let truncated = &body[..body.len() - 1];
        assert!(matches!(read(truncated.as_bytes(), 2), Err(BulkResponseError::Json(_))));
        assert!(matches!(read(b"{\"items\":[]}", 0), Ok(v) if v.is_empty()));
    }
}
