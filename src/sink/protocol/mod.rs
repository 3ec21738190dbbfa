//! The bulk protocol, the same on every server: documents in, one final
//! outcome per document out.
//!
//! * [`encoder`]: the NDJSON bulk body.
//! * [`bulk_response`]: reads a bulk response item by item.
//! * [`policy`]: the one failure policy for a whole request (retry, fail over,
//!   split, dead-letter), and [`outcome`] for each item of a 200.
//! * [`retry`]: the backoff schedule between attempts.
//! * [`concurrency`]: how many bulk workers may be busy: fixed, or found by AIMD.
//! * [`rate_limit`]: the global documents/s limit.
//! * [`dead_letter`]: documents the server refuses, kept with their reason.
//! * [`gate`]: a submission waits until the templates of its indices are in.
//! * [`data_stream`]: with data streams, resends across a rollover found
//!   before (or undone after) they are written twice.
//! * [`batcher`]: submissions merged into batches, one worker per batch.
//! * [`worker`]: one batch sent until every document in it is final.

pub mod batcher;
pub mod bulk_response;
pub mod concurrency;
pub mod data_stream;
pub mod dead_letter;
pub mod encoder;
pub mod gate;
pub mod outcome;
pub mod policy;
pub mod rate_limit;
pub mod retry;
pub mod worker;
