//! The webhook listener at its edges: refusals that reach a client still
//! sending a large body (HTTP/1.1 and HTTP/2), idle connections and the
//! connection cap, expired client certificates, `check-config` refusing what
//! `serve` refuses, and `Retry-After` on every transient answer.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::certs::{make_certs, rustls_client_config, tls_client, tls_client_with, tls_connect, write_post};
use common::config::{Admin, Elasticsearch, GatewayConfig, Server, TlsFiles};
use common::es::{es_url, refresh, require_es, search};
use common::free_port;
use common::wait::wait_for;
use common::webhook::{post_json, WebhookSetup, EVENTLIST};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const BIG: usize = 400 * 1024;
/// The webhook's connection metrics' label.
const WEBHOOK: &str = "listener=\"webhook\"";

// ---------------------------------------------------------------- helpers

/// Waits until the server closes `stream` (EOF or an error on read); returns
/// how long that took, or `None` after `limit`.
async fn wait_closed(stream: &mut TlsStream<TcpStream>, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// The client side of a connection, noting every HTTP/2 RST_STREAM frame the
/// server sends (stream id, error code) — hyper's client hides them, curl
/// 7.88 fails the request on one that arrives while it is still uploading.
struct ResetSniffer<T> {
    inner: T,
    pending: Vec<u8>,
    resets: Arc<std::sync::Mutex<Vec<(u32, u32)>>>,
}

impl<T> ResetSniffer<T> {
    fn saw(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= 9 {
            let len = u32::from_be_bytes([0, self.pending[0], self.pending[1], self.pending[2]]) as usize;
            if self.pending.len() < 9 + len {
                break;
            }
            if self.pending[3] == 0x3 && len == 4 {
                let stream = u32::from_be_bytes(self.pending[5..9].try_into().unwrap()) & 0x7fff_ffff;
                let code = u32::from_be_bytes(self.pending[9..13].try_into().unwrap());
                self.resets.lock().unwrap().push((stream, code));
            }
            self.pending.drain(..9 + len);
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for ResetSniffer<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_ready() {
            let new = buf.filled()[before..].to_vec();
            self.saw(&new);
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for ResetSniffer<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct H2Answer {
    status: u16,
    body: String,
    /// RST_STREAM frames the server sent until the connection ended.
    resets: Vec<(u32, u32)>,
}

/// One POST over HTTP/2 (ALPN h2) with hyper's client.
async fn h2_post(
    port: u16,
    certs: &Path,
    with_cert: bool,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> H2Answer {
    let tls = tls_connect(port, rustls_client_config(certs, with_cert, &[b"h2"])).await.expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the gateway must speak HTTP/2");
    let resets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let io = ResetSniffer { inner: tls, pending: Vec::new(), resets: resets.clone() };
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let mut req = axum::http::Request::post(format!("https://localhost:{port}{path}"))
        .header("content-length", body.len().to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender.send_request(req.body(Full::new(Bytes::from(body))).unwrap()).await.expect("h2 response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("h2 response body").to_bytes();
    // Done with the connection: it ends once the stream is closed on both
    // sides — the whole request body sent, or the stream reset by the server —
    // so every RST_STREAM frame for it has been read by then.
    drop(sender);
    let ended = tokio::time::timeout(Duration::from_secs(30), conn).await;
    assert!(ended.is_ok(), "the HTTP/2 connection did not end within 30 s of the answer");
    let resets = resets.lock().unwrap().clone();
    H2Answer { status, body: String::from_utf8_lossy(&body).into_owned(), resets }
}

/// One POST over HTTP/1.1 with Python's http.client, which sends the whole body
/// before it reads the answer — the client that saw a reset instead of a 415.
fn python_post(port: u16, certs: &Path, with_cert: bool, path: &str, content_type: &str, size: usize) -> Value {
    const SCRIPT: &str = r#"
import http.client, json, ssl, sys
port, certs, with_cert, path, ctype, size = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=certs + "/ca.crt")
if with_cert == "yes":
    ctx.load_cert_chain(certs + "/client.crt", certs + "/client.key")
conn = http.client.HTTPSConnection("localhost", int(port), context=ctx, timeout=30)
try:
    conn.request("POST", path, body=b"[" + b" " * (int(size) - 2) + b"]", headers={"Content-Type": ctype})
    r = conn.getresponse()
    print(json.dumps({"status": r.status, "version": r.version, "body": r.read().decode()}))
except Exception as e:
    print(json.dumps({"status": 0, "body": repr(e)}))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(port.to_string())
        .arg(certs)
        .arg(if with_cert { "yes" } else { "no" })
        .arg(path)
        .arg(content_type)
        .arg(size.to_string())
        .output()
        .expect("python3");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("python3: {e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

fn error_body(message: &str) -> String {
    json!({ "error": message }).to_string()
}

// ---------------------------------------------------------------- 1. refusals

/// The four early refusals, each with a 400 KB body still on its way.
fn refusals() -> [(&'static str, bool, &'static str, u16, &'static str); 4] {
    [
        ("/audit", true, "text/plain", 415, r#"Content-Type must be application/json, got "text/plain""#),
        (
            "/audit",
            false,
            "application/json",
            401,
            "authentication required: a client certificate or an Authorization: Bearer token",
        ),
        ("/audit", true, "application/json", 413, "Content-Length exceeds server.max_body_bytes (65536 bytes)"),
        ("/nope", true, "application/json", 404, "no such path: /nope"),
    ]
}

fn refusal_setup(name: &str) -> WebhookSetup {
    let mut setup = WebhookSetup::new(name);
    let tokens = setup.path().join("tokens");
    std::fs::write(&tokens, "the-token\n").unwrap();
    let server = setup.config.server_mut();
    server.max_body_bytes = Some(65536);
    server.bearer_tokens_file = Some(tokens);
    setup
}

#[tokio::test]
async fn early_refusals_reach_an_http1_client_still_sending_its_body() {
    require_es().await;
    let setup = refusal_setup("edge-refuse-h1");
    let _gw = setup.start();
    for (path, with_cert, content_type, status, message) in refusals() {
        let port = setup.port;
        let certs = setup.certs();
        let got = tokio::task::spawn_blocking(move || python_post(port, &certs, with_cert, path, content_type, BIG))
            .await
            .unwrap();
        assert_eq!(got["status"], status, "{path} {content_type}: {got}\n{}", setup.log());
        assert_eq!(got["version"], 11);
        assert_eq!(got["body"], error_body(message));
    }
    // And the connection is still usable after a refusal drained in full.
    let client = tls_client(&setup.certs(), true);
    let (status, _, _) = post_json(&client, &setup.url("/audit"), EVENTLIST.to_string()).await;
    assert_eq!(status, 200);
    setup.delete_indices().await;
}

#[tokio::test]
async fn early_refusals_reach_an_http2_client_still_sending_its_body() {
    require_es().await;
    let setup = refusal_setup("edge-refuse-h2");
    let _gw = setup.start();
    for (path, with_cert, content_type, status, message) in refusals() {
        let got =
            h2_post(setup.port, &setup.certs(), with_cert, path, &[("content-type", content_type)], vec![b' '; BIG])
                .await;
        assert_eq!(got.status, status, "{path} {content_type}: {}", got.body);
        assert_eq!(got.body, error_body(message));
        // The stream ends cleanly: the body was read, not cut off with RST_STREAM.
        assert_eq!(got.resets, [], "{path} {content_type}: the server reset the stream");
    }
    setup.delete_indices().await;
}

// ---------------------------------------------------------------- 2. idle connections and the cap

#[tokio::test]
async fn idle_connections_are_closed_after_idle_timeout() {
    require_es().await;
    let mut setup = WebhookSetup::new("edge-idle");
    setup.config.server_mut().idle_timeout = Some("1s".into());
    let _gw = setup.start();
    let certs = setup.certs();

    // TLS handshake done, never a byte of HTTP: HTTP/1 and HTTP/2 by ALPN.
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut silent = tls_connect(setup.port, rustls_client_config(&certs, true, &[alpn])).await.unwrap();
        let took = wait_closed(&mut silent, Duration::from_secs(15)).await;
        let took = took.unwrap_or_else(|| panic!("silent {alpn:?} connection still open after 15 s"));
        assert!(took >= Duration::from_millis(800), "closed too early: {took:?}");
    }

    // HTTP/1.1 keep-alive after one answered request.
    let mut h1 = tls_connect(setup.port, rustls_client_config(&certs, true, &[b"http/1.1"])).await.unwrap();
    write_post(&mut h1, "/audit", EVENTLIST.as_bytes()).await;
    let mut buf = vec![0u8; 4096];
    let n = h1.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    assert!(wait_closed(&mut h1, Duration::from_secs(15)).await.is_some(), "idle HTTP/1.1 keep-alive still open");

    // HTTP/2 after one answered request: the client sees the connection end.
    let tls = tls_connect(setup.port, rustls_client_config(&certs, true, &[b"h2"])).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    let conn = tokio::spawn(conn);
    let req = axum::http::Request::post(setup.url("/audit"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(EVENTLIST)))
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    tokio::time::timeout(Duration::from_secs(15), conn).await.expect("idle HTTP/2 connection still open").unwrap().ok();
    setup.delete_indices().await;
}

/// An HTTP/1.1 keep-alive connection between two requests is idle: it is closed
/// after `idle_timeout`, not after the shorter `request_timeout`.
#[tokio::test]
async fn http1_keep_alive_lasts_idle_timeout_not_request_timeout() {
    require_es().await;
    let mut setup = WebhookSetup::new("edge-keepalive");
    setup.config.server_mut().idle_timeout = Some("4s".into());
    setup.config.server_mut().request_timeout = Some("1s".into());
    setup.config.server_mut().memory_budget_wait = Some("200ms".into());
    let _gw = setup.start();
    let certs = setup.certs();
    let mut h1 = tls_connect(setup.port, rustls_client_config(&certs, true, &[b"http/1.1"])).await.unwrap();
    write_post(&mut h1, "/audit", EVENTLIST.as_bytes()).await;
    let mut buf = vec![0u8; 4096];
    let n = h1.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let took =
        wait_closed(&mut h1, Duration::from_secs(20)).await.expect("idle HTTP/1.1 keep-alive still open after 20 s");
    assert!(
        took >= Duration::from_millis(3500),
        "closed after {took:?}: request_timeout (1 s), not idle_timeout (4 s)"
    );
    setup.delete_indices().await;
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_at_accept_and_open_ones_keep_working() {
    require_es().await;
    let mut setup = WebhookSetup::new("edge-cap");
    setup.config.server_mut().max_connections = Some(5);
    let _gw = setup.start();
    let certs = setup.certs();
    let client = tls_client(&certs, true);
    let (status, _, _) = post_json(&client, &setup.url("/audit"), EVENTLIST.to_string()).await;
    assert_eq!(status, 200);

    // The real client holds one connection; four idle ones fill the cap.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tls_connect(setup.port, rustls_client_config(&certs, true, &[b"http/1.1"])).await.unwrap());
    }
    // The gateway sees 5 connections.
    setup.wait_for_metric("klg_connections_open", WEBHOOK, Duration::from_secs(10), |n| n >= 5.0).await;

    // The sixth is closed at accept.
    let sixth = tls_connect(setup.port, rustls_client_config(&certs, true, &[b"http/1.1"])).await;
    assert!(sixth.is_err(), "a sixth connection got through the cap");
    assert!(setup.metric("klg_connections_refused_total", WEBHOOK).await >= 1.0);
    assert!(setup.log().contains("max_connections"), "no warning logged: {}", setup.log());

    // The open client still gets answers on its connection.
    for _ in 0..3 {
        let started = Instant::now();
        let (status, _, _) = post_json(&client, &setup.url("/audit"), EVENTLIST.to_string()).await;
        assert_eq!(status, 200);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    // One idle connection leaves: there is room again.
    drop(idle.pop());
    wait_for("a slot freed when a connection closed", Duration::from_secs(10), || async {
        tls_connect(setup.port, rustls_client_config(&certs, true, &[b"http/1.1"])).await.is_ok()
    })
    .await;
    setup.delete_indices().await;
}

#[tokio::test]
async fn two_thousand_idle_connections_do_not_slow_a_real_client() {
    require_es().await;
    const IDLE: usize = 2000;
    let mut setup = WebhookSetup::new("edge-2000");
    setup.config.server_mut().idle_timeout = Some("5m".into());
    let _gw = setup.start();
    let certs = setup.certs();
    let config = rustls_client_config(&certs, true, &[b"http/1.1"]);
    let port = setup.port;
    use futures::StreamExt;
    let idle: Vec<_> = futures::stream::iter(0..IDLE)
        .map(|_| {
            let config = config.clone();
            async move { tls_connect(port, config).await.expect("idle TLS connection") }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(idle.len(), IDLE);
    // The gateway holds them all.
    setup.wait_for_metric("klg_connections_open", WEBHOOK, Duration::from_secs(30), |n| n >= IDLE as f64).await;

    let client = tls_client(&certs, true);
    for _ in 0..20 {
        let started = Instant::now();
        let (status, _, body) = post_json(&client, &setup.url("/audit"), EVENTLIST.to_string()).await;
        assert_eq!(status, 200, "{body}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "a request took {took:?} beside {IDLE} idle connections");
    }
    assert!(setup.metric("klg_connections_open", WEBHOOK).await > IDLE as f64);
    assert_eq!(setup.metric("klg_connections_refused_total", "").await, 0.0);
    drop(idle);
    setup.delete_indices().await;
}

// ---------------------------------------------------------------- 3. expired client certificate

/// A CA, a server certificate for localhost, a valid client certificate
/// (`dir/`) and an expired one from the same CA (`dir/expired/`).
fn certs_with_an_expired_client(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "edge test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, expired: bool| {
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        p.extended_key_usages = vec![usage];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        (p.signed_by(&key, &ca).unwrap().pem(), key.serialize_pem())
    };
    let (server, server_key) =
        leaf(vec!["localhost".into(), "127.0.0.1".into()], ExtendedKeyUsagePurpose::ServerAuth, false);
    let (client, client_key) = leaf(vec!["kube-apiserver".into()], ExtendedKeyUsagePurpose::ClientAuth, false);
    let (old, old_key) = leaf(vec!["kube-apiserver".into()], ExtendedKeyUsagePurpose::ClientAuth, true);
    std::fs::create_dir_all(dir.join("expired")).unwrap();
    for (name, text) in [
        ("ca.crt", ca.pem()),
        ("server.crt", server),
        ("server.key", server_key),
        ("client.crt", client),
        ("client.key", client_key),
        ("expired/client.crt", old),
        ("expired/client.key", old_key),
        ("expired/ca.crt", ca.pem()),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused_in_the_handshake() {
    require_es().await;
    let setup = WebhookSetup::new("edge-old-cert");
    certs_with_an_expired_client(&setup.certs());
    let _gw = setup.start();

    let expired = tls_client_with(&setup.certs(), &setup.certs().join("expired"));
    let refused =
        expired.post(setup.url("/audit")).header("content-type", "application/json").body(EVENTLIST).send().await;
    assert!(refused.is_err(), "an expired client certificate was accepted: {:?}", refused.map(|r| r.status()));
    let refusal = setup
        .wait_for_log_line("about the refused handshake", Duration::from_secs(5), |l| {
            l.contains("TLS handshake refused")
        })
        .await;
    assert!(refusal.to_lowercase().contains("expired"), "{refusal}");
    assert!(setup.metric("klg_tls_handshake_failures_total", "").await >= 1.0);

    // Same CA, in date: accepted.
    let valid = tls_client(&setup.certs(), true);
    let (status, _, _) = post_json(&valid, &setup.url("/audit"), EVENTLIST.to_string()).await;
    assert_eq!(status, 200);
    setup.delete_indices().await;
}

// ---------------------------------------------------------------- 4. check-config

/// A config for `check-config` and `serve` to refuse: certificates in
/// `certs/`, data in `data/`, everything else valid.
struct Case {
    dir: tempfile::TempDir,
    certs: PathBuf,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        make_certs(&certs);
        Case { dir, certs }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A valid config: mTLS with `certs/`, no admin listener.
    fn good(&self) -> GatewayConfig {
        GatewayConfig {
            cluster_name: Some("test".into()),
            data_dir: self.path().join("data"),
            admin: Admin::Off,
            server: Some(Server {
                listen: format!("127.0.0.1:{}", free_port()),
                tls: Some(TlsFiles::in_dir(&self.certs)),
                ..Server::default()
            }),
            elasticsearch: Elasticsearch { urls: vec![es_url()], ..Elasticsearch::default() },
            ..GatewayConfig::default()
        }
    }

    /// Writes `config`; returns its path.
    fn write(&self, config: &GatewayConfig) -> PathBuf {
        let path = self.path().join("gateway.yaml");
        std::fs::write(&path, config.to_yaml()).unwrap();
        path
    }

    /// The valid config with these TLS files.
    fn with_tls(&self, cert_file: PathBuf, key_file: PathBuf, client_ca_file: PathBuf) -> PathBuf {
        let mut config = self.good();
        config.server_mut().tls = Some(TlsFiles { cert_file, key_file, client_ca_file });
        self.write(&config)
    }

    /// The valid config with this data_dir.
    fn with_data_dir(&self, data_dir: &Path) -> PathBuf {
        self.write(&GatewayConfig { data_dir: data_dir.to_path_buf(), ..self.good() })
    }
}

/// `check-config`: exit success and stderr.
fn check_config(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kube-log-gateway"))
        .arg("check-config")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `serve` on the same config: whether it exits with failure within 30 s.
fn serve_refuses(config: &Path) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-log-gateway"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return !status.success();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

fn assert_refused(config: &Path, wants: &[&str]) {
    let (ok, stderr) = check_config(config);
    assert!(!ok, "check-config accepted it: {stderr}");
    for want in wants {
        assert!(stderr.contains(want), "{want:?} not in: {stderr}");
    }
    assert!(serve_refuses(config), "serve starts with a config check-config refuses: {stderr}");
}

#[test]
fn check_config_refuses_what_serve_refuses() {
    let case = Case::new();
    let c = &case.certs;
    let (ok, stderr) = check_config(&case.write(&case.good()));
    assert!(ok, "{stderr}");
    assert!(stderr.trim_end().ends_with("OK"), "{stderr}");

    // Certificate and key swapped.
    let swapped = case.with_tls(c.join("server.key"), c.join("server.crt"), c.join("ca.crt"));
    assert_refused(
        &swapped,
        &["server.tls.cert_file", &c.join("server.key").display().to_string(), "no PEM certificate"],
    );

    // A CA file with no certificate in it.
    let empty_ca = case.path().join("empty-ca.crt");
    std::fs::write(&empty_ca, "# the CA goes here\n").unwrap();
    let no_ca = case.with_tls(c.join("server.crt"), c.join("server.key"), empty_ca.clone());
    assert_refused(&no_ca, &["server.tls.client_ca_file", &empty_ca.display().to_string(), "no PEM certificate"]);

    // A key that is not the certificate's.
    let other = case.path().join("other");
    make_certs(&other);
    let mismatch = case.with_tls(c.join("server.crt"), other.join("server.key"), c.join("ca.crt"));
    assert_refused(
        &mismatch,
        &["server.tls", &other.join("server.key").display().to_string(), &c.join("server.crt").display().to_string()],
    );

    // data_dir is a file, or below one.
    let file = case.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let at_file = case.with_data_dir(&file);
    assert_refused(&at_file, &["data_dir", &file.display().to_string(), "not a directory"]);
    let below_file = case.with_data_dir(&file.join("data"));
    assert_refused(&below_file, &["data_dir", &file.display().to_string(), "not a directory"]);

    // data_dir cannot be written. Root ignores permission bits, so as root a
    // directory of sysfs stands in for a read-only one.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let locked = if root {
        PathBuf::from("/sys/kernel")
    } else {
        let d = case.path().join("locked");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
        d
    };
    let unwritable = case.with_data_dir(&locked);
    assert_refused(&unwritable, &["data_dir", &locked.display().to_string(), "not writable"]);
    let uncreatable = case.with_data_dir(&locked.join("data"));
    assert_refused(&uncreatable, &["data_dir", &locked.join("data").display().to_string(), "not writable"]);

    // A bearer tokens file without a token.
    let tokens = case.path().join("tokens");
    std::fs::write(&tokens, "# none yet\n").unwrap();
    let mut no_tokens = case.good();
    no_tokens.server_mut().bearer_tokens_file = Some(tokens.clone());
    let no_tokens = case.write(&no_tokens);
    assert_refused(&no_tokens, &["server.bearer_tokens_file", &tokens.display().to_string(), "no tokens"]);
}

// ---------------------------------------------------------------- 5. Retry-After on transient answers

fn retry_after(headers: &axum::http::HeaderMap) -> u64 {
    headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After in {headers:?}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_rate_limited_batch_gets_429_with_retry_after() {
    require_es().await;
    let mut setup = WebhookSetup::new("edge-429-rate");
    setup.config.server_mut().rate_limit = Some((1, 1));
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let (status, _, _) = post_json(&client, &setup.url("/audit"), EVENTLIST.to_string()).await;
    assert_eq!(status, 200);
    let (status, headers, body) = post_json(&client, &setup.url("/audit"), EVENTLIST.to_string()).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry_after(&headers) >= 1);
    setup.delete_indices().await;
}

/// An EventList of `n` valid events carrying `junk` bytes of random hex each:
/// LZ4 cannot shrink it, so it takes about its own size in the spool.
fn incompressible_eventlist(n: usize, junk: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let hex: String = (0..junk)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b"0123456789abcdef"[(x & 15) as usize])
                })
                .collect();
            json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                "auditID": format!("00000000-0000-0000-0000-{i:012}"), "stage": "ResponseComplete",
                "requestURI": "/api/v1/namespaces", "verb": "list",
                "stageTimestamp": "2026-11-09T06:00:05.020000Z", "annotations": {"junk": hex}
            })
        })
        .collect();
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}).to_string()
}

#[tokio::test]
async fn a_full_spool_gets_429_with_retry_after() {
    require_es().await;
    let mut setup = WebhookSetup::new("edge-429-spool");
    setup.config.server_mut().retry_after_seconds = Some(3);
    setup.config.spool_max_bytes = Some(1024 * 1024);
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let (status, headers, body) =
        post_json(&client, &setup.url("/audit"), incompressible_eventlist(40, 64 * 1024)).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("spool is full"), "{body}");
    assert_eq!(retry_after(&headers), 3);
    setup.delete_indices().await;
}

/// `request_timeout` never turns a batch that reached the spool into a 408:
/// large batches sent at once take the gateway longer than the 1 s timeout to
/// parse and spool; each answer must tell the truth about its batch.
#[tokio::test]
async fn a_large_batch_spooled_past_request_timeout_is_answered_200_not_408() {
    require_es().await;
    let mut setup = WebhookSetup::new("edge-truth");
    setup.config.server_mut().request_timeout = Some("1s".into());
    setup.config.server_mut().memory_budget_wait = Some("200ms".into());
    let _gw = setup.start();
    let client = tls_client(&setup.certs(), true);
    let (batches, events) = (6, 1500);
    // A 408 answered while a client still uploads closes the connection after
    // `refusal_drain_bytes`: that client sees the connection end (`None`).
    let answers: Vec<Option<u16>> = futures::future::join_all((0..batches).map(|b| {
        let (client, url) = (client.clone(), setup.url("/audit"));
        let body = kube_log_gateway::sample::event_list(&format!("truth-b{b}"), events, 1, 8 * 1024);
        async move {
            let sent = client.post(url).header("content-type", "application/json").body(body).send().await;
            sent.ok().map(|r| r.status().as_u16())
        }
    }))
    .await;
    setup.wait_spool_empty(Duration::from_secs(120)).await;
    refresh(&setup.audit_indices()).await;
    for (b, status) in answers.iter().enumerate() {
        let stored = search(
            &setup.audit_indices(),
            serde_json::json!({"prefix": {"kubernetes.audit.auditID": format!("truth-b{b}-")}}),
        )
        .await
        .len();
        match status {
            Some(200) => assert_eq!(stored, events, "batch {b} answered 200"),
            Some(408) | None => {
                assert_eq!(stored, 0, "batch {b} answered {status:?} but {stored} of its events are stored")
            }
            Some(other) => panic!("batch {b}: {other}"),
        }
    }
    eprintln!("answers: {answers:?}");
    setup.delete_indices().await;
}

#[tokio::test]
async fn a_request_not_completed_in_time_gets_408_with_retry_after() {
    require_es().await;
    let mut setup = WebhookSetup::new("edge-408");
    setup.config.server_mut().request_timeout = Some("1s".into());
    setup.config.server_mut().memory_budget_wait = Some("200ms".into());
    setup.config.server_mut().retry_after_seconds = Some(4);
    let _gw = setup.start();
    // Headers complete, the body stalls after 10 of 1000 bytes.
    let mut tls = tls_connect(setup.port, rustls_client_config(&setup.certs(), true, &[b"http/1.1"])).await.unwrap();
    tls.write_all(b"POST /audit HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"kind\":\"E")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(15);
    while !String::from_utf8_lossy(&answer).contains("server.request_timeout") {
        let n = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), tls.read(&mut buf))
            .await
            .expect("no 408 within 15 s")
            .unwrap();
        assert!(n > 0, "closed without an answer: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(text.starts_with("http/1.1 408"), "{text}");
    assert!(text.contains("\r\nretry-after: 4\r\n"), "{text}");
    setup.delete_indices().await;
}
