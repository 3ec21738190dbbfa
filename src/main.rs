//! The `kube-log-gateway` binary: argument parsing and the process edge.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube_log_gateway::config::Config;

#[derive(Parser)]
#[command(
    name = "kube-log-gateway",
    version,
    about = "Kubernetes audit, kubelet and container logs into Elasticsearch, exactly once"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every source the config enables (the audit webhook, journald, container logs).
    Serve {
        #[arg(long, short, env = "KLG_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file (with KLG__ overrides) and print the effective config.
    CheckConfig {
        #[arg(long, short, env = "KLG_CONFIG")]
        config: PathBuf,
    },
    /// Work on spool files.
    Spool {
        #[command(subcommand)]
        action: SpoolCommand,
    },
    /// Write a development CA, a server certificate and a client certificate.
    Certs {
        /// Output directory: ca.crt server.crt server.key client.crt client.key.
        #[arg(long)]
        out: PathBuf,
        /// Extra DNS name or IP for the server certificate (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Common name of the client certificate.
        #[arg(long, default_value = "kube-apiserver")]
        client_name: String,
    },
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// Deliver what can still be read from a spool file set aside as damaged
    /// (`spool.redb.damaged-<time>`) to the Elasticsearch of the config. Safe to
    /// run more than once: documents already there are counted as duplicates.
    Salvage {
        /// The set-aside spool file (it is copied, never changed).
        file: PathBuf,
        #[arg(long, short, env = "KLG_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config).map_err(|e| e.to_string()).and_then(|cfg| {
            startup_checks(&cfg)?;
            Ok(cfg)
        }) {
            Ok(cfg) => {
                println!("{}", serde_json::to_string_pretty(&redacted(&cfg)).expect("config serializes"));
                eprintln!("{}: OK", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::FAILURE
            }
        },
        Command::Certs { out, sans, client_name } => match kube_log_gateway::certs::generate(&out, &sans, &client_name)
        {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("certs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Spool { action: SpoolCommand::Salvage { file, config } } => salvage(&file, &config),
        Command::Serve { config } => {
            let cfg = match Config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::FAILURE;
                }
            };
            kube_log_gateway::telemetry::init_tracing(&cfg.log);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            match runtime.block_on(kube_log_gateway::serve::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("kube-log-gateway: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `spool salvage FILE`: exit 0 if every entry was read and delivered, 2 if
/// some could not be read (the report says which), 1 on an error.
fn salvage(file: &Path, config: &Path) -> ExitCode {
    let cfg = match Config::load(config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{}: {e}", config.display());
            return ExitCode::FAILURE;
        }
    };
    kube_log_gateway::telemetry::init_tracing(&cfg.log);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        let shutdown = kube_log_gateway::shutdown::Shutdown::new();
        let (sink, task) = kube_log_gateway::serve::start_sink(&cfg, shutdown.clone())?;
        let work_dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let report = kube_log_gateway::spool::salvage::salvage(file, work_dir, &sink).await;
        drop(sink);
        let _ = task.await;
        anyhow::Ok(report?)
    });
    match result {
        Ok(report) => {
            println!(
                "{}: {} entries read, {} documents: {} created, {} already in Elasticsearch, {} dead-lettered",
                file.display(),
                report.entries,
                report.documents,
                report.created,
                report.duplicates,
                report.dead_lettered
            );
            for (id, why) in &report.undecodable {
                println!("entry {id}: does not decode, skipped: {why}");
            }
            if let Some((after, why)) = &report.stopped {
                match after {
                    Some(id) => println!("stopped after entry {id}: the rest of the file cannot be read: {why}"),
                    None => println!("no entry could be read: {why}"),
                }
            }
            if report.undecodable.is_empty() && report.stopped.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("kube-log-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `serve` checks at start-up beyond the config itself, without starting
/// anything: the webhook's TLS configuration and tokens are built exactly as
/// `serve` builds them, and `data_dir` must be a directory that can be written
/// (or created).
fn startup_checks(cfg: &Config) -> Result<(), String> {
    check_data_dir(&cfg.data_dir)?;
    if let Some(server) = &cfg.server {
        kube_log_gateway::sources::audit_webhook::credentials::load(server).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `data_dir`, or the nearest ancestor that exists when it does not yet, is a
/// directory in which a file can be created (probed, then removed: permission
/// bits say nothing about read-only filesystems or root).
fn check_data_dir(dir: &Path) -> Result<(), String> {
    let fail = |message: String| Err(format!("config key `data_dir`: {message}"));
    let mut existing = dir;
    while let Err(e) = std::fs::symlink_metadata(existing) {
        existing = match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ if existing != Path::new(".") => Path::new("."),
            _ => return fail(format!("cannot create {}: {e}", dir.display())),
        };
    }
    if !existing.is_dir() {
        return if existing == dir {
            fail(format!("{} is not a directory", dir.display()))
        } else {
            fail(format!("cannot create {}: {} is not a directory", dir.display(), existing.display()))
        };
    }
    let probe = existing.join(format!(".kube-log-gateway-check-config-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if existing == dir => fail(format!("{} is not writable: {e}", dir.display())),
        Err(e) => fail(format!("cannot create {}: {} is not writable: {e}", dir.display(), existing.display())),
    }
}

/// The config with credentials blanked, for printing.
fn redacted(cfg: &Config) -> Config {
    let mut c = cfg.clone();
    let a = &mut c.elasticsearch.auth;
    for secret in [&mut a.password, &mut a.api_key, &mut a.bearer_token] {
        if secret.is_some() {
            *secret = Some("<redacted>".into());
        }
    }
    c
}
