//! `loadgen`: sends realistic audit `EventList` batches to the webhook, like a
//! busy kube-apiserver, over TLS with a client certificate and N connections,
//! and reports accepted events/s and batch latency percentiles.
//!
//! Every batch carries unique auditIDs (a per-batch counter is patched into a
//! pre-built template), so end-to-end runs index every event instead of
//! collapsing into 409s, and generating load costs the load generator little.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(about = "Load generator for the kube-log-gateway audit webhook")]
struct Args {
    /// Webhook URL.
    #[arg(long, default_value = "https://127.0.0.1:8443/audit")]
    url: String,
    /// CA that signed the server certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Client certificate and key (PEM); omit for bearer-token or no auth.
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
    /// Bearer token instead of a client certificate.
    #[arg(long)]
    token: Option<String>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Events per EventList (kube-apiserver's default batch size is 400).
    #[arg(long, default_value_t = 400)]
    batch_size: usize,
    /// Every Nth event is at RequestResponse level with embedded objects (0: none).
    #[arg(long, default_value_t = 10)]
    request_response_every: usize,
    /// Size of each embedded object in RequestResponse events.
    #[arg(long, default_value_t = 1024)]
    object_bytes: usize,
    /// Stop after this many seconds...
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// ...or after this many batches, whichever comes first (0: no limit).
    #[arg(long, default_value_t = 0)]
    batches: u64,
    /// Events per second across all connections (0: as fast as the gateway answers).
    /// A steady rate shows what a fault does over time (scripts/bench-outage.sh).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// A unique prefix for auditIDs (defaults to the current time).
    #[arg(long)]
    run_id: Option<String>,
}

/// A batch body with the positions of its 10-digit batch counter.
struct Template {
    body: Vec<u8>,
    slots: Vec<usize>,
}

const PLACEHOLDER: &str = "##########";

impl Template {
    fn new(args: &Args, run_id: &str) -> Template {
        let body = kube_log_gateway::sample::event_list(
            &format!("{run_id}-{PLACEHOLDER}"),
            args.batch_size,
            args.request_response_every,
            args.object_bytes,
        )
        .into_bytes();
        let slots = body
            .windows(PLACEHOLDER.len())
            .enumerate()
            .filter(|(_, w)| *w == PLACEHOLDER.as_bytes())
            .map(|(i, _)| i)
            .collect();
        Template { body, slots }
    }

    fn render(&self, batch: u64) -> Vec<u8> {
        let mut body = self.body.clone();
        let digits = format!("{batch:010}");
        for &at in &self.slots {
            body[at..at + 10].copy_from_slice(digits.as_bytes());
        }
        body
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let run_id = args.run_id.clone().unwrap_or_else(|| format!("lg{}", chrono::Utc::now().timestamp()));
    let template = Arc::new(Template::new(&args, &run_id));
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&args.ca)?)?)
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(60));
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        let mut pem = std::fs::read(cert)?;
        pem.extend(std::fs::read(key)?);
        builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
    }
    let client = builder.build()?;
    let next = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
    let accepted_events = Arc::new(AtomicU64::new(0));
    let bytes_sent = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (client, args, template, next, latencies, statuses, accepted_events, bytes_sent) = (
            client.clone(),
            args.clone(),
            template.clone(),
            next.clone(),
            latencies.clone(),
            statuses.clone(),
            accepted_events.clone(),
            bytes_sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let batch = next.fetch_add(1, Ordering::Relaxed);
                if args.batches > 0 && batch >= args.batches {
                    break;
                }
                if args.rate > 0 {
                    let due =
                        started + Duration::from_secs_f64(batch as f64 * args.batch_size as f64 / args.rate as f64);
                    if due >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                }
                let body = template.render(batch);
                let len = body.len() as u64;
                let mut req = client.post(&args.url).header("content-type", "application/json").body(body);
                if let Some(t) = &args.token {
                    req = req.bearer_auth(t);
                }
                let t0 = Instant::now();
                let status = match req.send().await {
                    Ok(resp) => {
                        let s = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                let took = t0.elapsed();
                if status == 200 {
                    accepted_events.fetch_add(args.batch_size as u64, Ordering::Relaxed);
                    bytes_sent.fetch_add(len, Ordering::Relaxed);
                    latencies.lock().unwrap().push(took);
                } else if status == 429 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                *statuses.lock().unwrap().entry(status).or_default() += 1;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1000.0
    };
    let events = accepted_events.load(Ordering::Relaxed);
    let bytes = bytes_sent.load(Ordering::Relaxed);
    println!("run_id:            {run_id}");
    println!("connections:       {}", args.connections);
    println!(
        "batch:             {} events, {} bytes ({} bytes/event)",
        args.batch_size,
        template.body.len(),
        template.body.len() / args.batch_size.max(1)
    );
    println!("elapsed:           {elapsed:.2} s");
    println!("statuses:          {:?}  (0 = transport error)", statuses.lock().unwrap());
    println!("accepted events:   {events}");
    println!("accepted events/s: {:.0}", events as f64 / elapsed);
    println!("accepted MB/s:     {:.1}", bytes as f64 / elapsed / 1e6);
    println!(
        "batch latency ms:  p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
