//! `bulkload`: the ceiling for `scripts/bench-ceiling.sh`. Exports the
//! documents the gateway wrote (index, id, source) to bulk NDJSON once, then
//! posts that NDJSON back to Elasticsearch with parallel `_bulk` requests, as
//! fast as it takes them, with the gateway's default batching (2000 documents
//! or 5 MiB, gzip at the fast level, 4 in flight).
//!
//! The loader stays out of the way: every request body is built and gzipped
//! before the clock starts, so the timed part is only Elasticsearch's answer
//! (the loader's own CPU during it is printed to check that).
//!
//!   bulkload export --url URL --index 'PATTERN' --out FILE
//!   bulkload load   --url URL --file FILE [--batch-docs N] [--batch-bytes N] [--parallel N]

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "Exports gateway documents and bulk-loads them back (the Elasticsearch ceiling)")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Scroll over the indices and write `create` action lines + sources.
    Export {
        #[arg(long, default_value = "http://127.0.0.1:9200")]
        url: String,
        /// Index name or pattern, e.g. `bench123-audit-*`.
        #[arg(long)]
        index: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Post an exported NDJSON file with parallel `_bulk` requests.
    Load {
        #[arg(long, default_value = "http://127.0.0.1:9200")]
        url: String,
        #[arg(long)]
        file: PathBuf,
        /// Documents per request (the gateway's `elasticsearch.batch.max_documents` default).
        #[arg(long, default_value_t = 2000)]
        batch_docs: usize,
        /// Bytes per request before gzip (the gateway's `elasticsearch.batch.max_bytes` default).
        #[arg(long, default_value_t = 5 * 1024 * 1024)]
        batch_bytes: usize,
        /// Requests in flight (the gateway's `elasticsearch.max_in_flight` default).
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// gzip level, 0 = no compression (the gateway gzips at 1, `Compression::fast()`).
        #[arg(long, default_value_t = 1)]
        gzip: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.cmd {
        Cmd::Export { url, index, out } => runtime.block_on(export(url, index, out)),
        Cmd::Load { url, file, batch_docs, batch_bytes, parallel, gzip } => {
            runtime.block_on(load(url, file, batch_docs, batch_bytes, parallel, gzip))
        }
    }
}

async fn export(url: String, index: String, out: PathBuf) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut w = BufWriter::new(std::fs::File::create(&out)?);
    let first = client
        .post(format!("{url}/{index}/_search?scroll=2m"))
        .header("content-type", "application/json")
        .body(json!({ "size": 5000, "sort": ["_doc"] }).to_string())
        .send()
        .await?;
    let mut page: Value = serde_json::from_slice(&first.error_for_status()?.bytes().await?)?;
    let mut n = 0u64;
    loop {
        let hits = page["hits"]["hits"].as_array().context("no hits in a search answer")?;
        if hits.is_empty() {
            break;
        }
        for h in hits {
            let action = json!({ "create": { "_index": h["_index"], "_id": h["_id"] } });
            serde_json::to_writer(&mut w, &action)?;
            w.write_all(b"\n")?;
            serde_json::to_writer(&mut w, &h["_source"])?;
            w.write_all(b"\n")?;
            n += 1;
        }
        let scroll_id = page["_scroll_id"].as_str().context("no _scroll_id")?.to_owned();
        let reply = client
            .post(format!("{url}/_search/scroll"))
            .header("content-type", "application/json")
            .body(json!({ "scroll": "2m", "scroll_id": scroll_id }).to_string())
            .send()
            .await?
            .error_for_status()?;
        page = serde_json::from_slice(&reply.bytes().await?)?;
    }
    if let Some(id) = page["_scroll_id"].as_str() {
        let body = json!({ "scroll_id": id }).to_string();
        let _ = client
            .delete(format!("{url}/_search/scroll"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
    }
    w.flush()?;
    println!("exported {n} documents to {}", out.display());
    Ok(())
}

/// One request body, gzipped or not, and the documents in it.
struct Batch {
    body: Vec<u8>,
    docs: usize,
}

fn batches(file: &PathBuf, batch_docs: usize, batch_bytes: usize, gzip: u32) -> anyhow::Result<Vec<Batch>> {
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut docs = 0;
    let mut lines = reader.lines();
    let finish = |cur: &mut Vec<u8>, docs: &mut usize, out: &mut Vec<Batch>| -> anyhow::Result<()> {
        let raw = std::mem::take(cur);
        let body = if gzip == 0 {
            raw
        } else {
            let mut enc = GzEncoder::new(Vec::with_capacity(raw.len() / 6), Compression::new(gzip));
            enc.write_all(&raw)?;
            enc.finish()?
        };
        out.push(Batch { body, docs: *docs });
        *docs = 0;
        Ok(())
    };
    while let Some(action) = lines.next() {
        let action = action?;
        let Some(source) = lines.next() else { bail!("an action line without a source") };
        let source = source?;
        if docs > 0 && (docs >= batch_docs || cur.len() + action.len() + source.len() + 2 > batch_bytes) {
            finish(&mut cur, &mut docs, &mut out)?;
        }
        cur.extend_from_slice(action.as_bytes());
        cur.push(b'\n');
        cur.extend_from_slice(source.as_bytes());
        cur.push(b'\n');
        docs += 1;
    }
    if docs > 0 {
        finish(&mut cur, &mut docs, &mut out)?;
    }
    Ok(out)
}

/// User + system CPU seconds of this process so far.
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

async fn load(
    url: String,
    file: PathBuf,
    batch_docs: usize,
    batch_bytes: usize,
    parallel: usize,
    gzip: u32,
) -> anyhow::Result<()> {
    let batches = Arc::new(batches(&file, batch_docs, batch_bytes, gzip)?);
    let total: usize = batches.iter().map(|b| b.docs).sum();
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu0 = own_cpu_seconds();
    // The bodies above are built and gzipped before the clock starts, which the
    // gateway's side does while it sends: the caller times from this line, not
    // from the start of this process (scripts/bench-ceiling.sh).
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    println!("sending from:       {started:.3} (Unix time)");
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..parallel.max(1) {
        let (batches, next, failed, client, url) =
            (batches.clone(), next.clone(), failed.clone(), client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(b) = batches.get(i) else { return Ok::<(), anyhow::Error>(()) };
                let mut req = client
                    .post(format!("{url}/_bulk?filter_path=errors,items.*.status"))
                    .header("content-type", "application/x-ndjson")
                    .body(b.body.clone());
                if gzip != 0 {
                    req = req.header("content-encoding", "gzip");
                }
                let reply: Value = serde_json::from_slice(&req.send().await?.error_for_status()?.bytes().await?)?;
                if reply["errors"].as_bool() == Some(true) {
                    let bad = reply["items"]
                        .as_array()
                        .map(|items| {
                            items.iter().filter(|it| it["create"]["status"].as_u64().is_none_or(|s| s >= 300)).count()
                        })
                        .unwrap_or(b.docs);
                    failed.fetch_add(bad as u64, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = own_cpu_seconds() - cpu0;
    let failed = failed.load(Ordering::Relaxed);
    println!("loaded documents:   {total} in {} requests ({failed} refused)", batches.len());
    println!("load seconds:       {secs:.2}");
    println!("load docs/s:        {:.0}", total as f64 / secs);
    println!("loader CPU:         {cpu:.2} s ({:.0} % of one core)", 100.0 * cpu / secs);
    if failed > 0 {
        bail!("{failed} documents were refused");
    }
    Ok(())
}
