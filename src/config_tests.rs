use super::*;
use std::io::Write;

fn write(yaml: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    f.write_all(yaml.as_bytes()).unwrap();
    f
}

fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let f = write(yaml);
    Config::load_with_env(f.path(), env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// Found by fuzz/fuzz_targets/config_load.rs: 400 bytes that took more than
/// 2 GiB in the YAML loader before any key was checked.
#[test]
fn a_file_that_is_not_utf8_is_refused_before_its_aliases_are_expanded() {
    // The fuzzer's find: an alias bomb with invalid bytes in the middle went
    // around the alias check and took gigabytes.
    let bomb = include_bytes!("../fuzz/corpus/config_load/seed-alias-bomb-not-utf8.yaml");
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bomb).unwrap();
    let err = Config::load_with_env(f.path(), []).unwrap_err().to_string();
    assert!(err.contains(&f.path().display().to_string()), "{err}");
    assert!(err.contains("not UTF-8 (an invalid byte at offset 295)"), "{err}");
}

#[test]
fn yaml_alias_bomb_is_refused() {
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        yaml += &format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(","));
    }
    assert!(yaml.len() < 400, "{}", yaml.len());
    let err = load(&yaml, &[]).unwrap_err().to_string();
    assert!(err.contains("more than 100000 nodes once its aliases are expanded"), "{err}");
    // A few aliases, as people use them, still load.
    let cfg = load("cluster_name: &c prod\nnode_name: *c\n", &[]).unwrap();
    assert_eq!(cfg.node_name.as_deref(), Some("prod"));
}

#[test]
fn the_field_limit_is_set_from_the_environment_and_refused_when_too_small() {
    let cfg = load(
        "{}",
        &[
            ("KLG__ELASTICSEARCH__TEMPLATE__TOTAL_FIELDS_LIMIT", "5000"),
            ("KLG__ELASTICSEARCH__TEMPLATE__IGNORE_DYNAMIC_BEYOND_LIMIT", "false"),
        ],
    )
    .unwrap();
    assert_eq!(cfg.elasticsearch.template.total_fields_limit, 5000);
    assert!(!cfg.elasticsearch.template.ignore_dynamic_beyond_limit);
    let defaults = load("{}", &[]).unwrap().elasticsearch.template;
    assert_eq!((defaults.total_fields_limit, defaults.ignore_dynamic_beyond_limit), (2000, true));
    let err = load("elasticsearch:\n  template:\n    total_fields_limit: 100\n", &[]).unwrap_err().to_string();
    assert!(
        err.contains("elasticsearch.template.total_fields_limit")
            && err.contains("100 is too small: at least 1000 (the gateway's own fields with room to spare)"),
        "{err}"
    );
}

#[test]
fn empty_file_gives_defaults() {
    let cfg = load("{}", &[]).unwrap();
    assert_eq!(cfg.cluster_name, "default");
    assert!(cfg.server.is_none());
    assert_eq!(cfg.elasticsearch.urls, vec!["http://127.0.0.1:9200"]);
    assert_eq!(cfg.elasticsearch.indices.sources["audit"], "audit-%Y.%m.%d");
    assert_eq!(cfg.spool.max_bytes, 1 << 30);
}

#[test]
fn environment_overrides_nested_keys_and_lists() {
    let cfg = load(
        "cluster_name: a\n",
        &[
            ("KLG__CLUSTER_NAME", "prod"),
            ("KLG__ELASTICSEARCH__URLS", "http://es-0:9200,http://es-1:9200"),
            ("KLG__DATA_DIR", "/tmp/klg"),
            ("KLG__ELASTICSEARCH__MAX_IN_FLIGHT", "7"),
        ],
    )
    .unwrap();
    assert_eq!(cfg.cluster_name, "prod");
    assert_eq!(cfg.elasticsearch.urls, vec!["http://es-0:9200", "http://es-1:9200"]);
    assert_eq!(cfg.data_dir, PathBuf::from("/tmp/klg"));
    assert_eq!(cfg.elasticsearch.max_in_flight, 7);
}

#[test]
fn unknown_key_is_named_with_its_path() {
    let err = load("elasticsearch:\n  urlz: [x]\n", &[]).unwrap_err().to_string();
    assert!(err.contains("elasticsearch"), "{err}");
    assert!(err.contains("urlz"), "{err}");
}

#[test]
fn wrong_type_is_named() {
    let err = load("elasticsearch:\n  max_in_flight: lots\n", &[]).unwrap_err().to_string();
    assert!(err.contains("elasticsearch.max_in_flight"), "{err}");
}

#[test]
fn semantic_errors_name_the_key() {
    let err = load("elasticsearch:\n  indices:\n    audit: Audit-%Y\n", &[]).unwrap_err().to_string();
    assert!(err.starts_with("config key `elasticsearch.indices.audit`"), "{err}");
    let err =
        load("server:\n  tls:\n    enabled: false\n  retry_after_seconds: 9\n  allow_unauthenticated: true\n", &[])
            .unwrap_err()
            .to_string();
    assert!(err.contains("server.retry_after_seconds"), "{err}");
    let err = load("server:\n  tls:\n    cert_file: /nonexistent.crt\n", &[]).unwrap_err().to_string();
    assert!(err.contains("server.tls.cert_file") && err.contains("/nonexistent.crt"), "{err}");
    let err = load("server:\n  tls:\n    enabled: false\n", &[]).unwrap_err().to_string();
    assert!(err.contains("no authentication"), "{err}");
}

#[test]
fn concurrency_keys_from_the_file_and_the_environment_and_their_errors() {
    use crate::sink::elasticsearch::config::ConcurrencyMode;
    let cfg = load("", &[]).unwrap();
    assert_eq!(cfg.elasticsearch.concurrency, ConcurrencyMode::Adaptive);
    assert_eq!(cfg.elasticsearch.adaptive.initial, 1);
    let cfg = load(
        "elasticsearch:\n  concurrency: adaptive\n",
        &[
            ("KLG__ELASTICSEARCH__CONCURRENCY", "fixed"),
            ("KLG__ELASTICSEARCH__MAX_IN_FLIGHT", "12"),
            ("KLG__ELASTICSEARCH__ADAPTIVE__INITIAL", "3"),
            ("KLG__ELASTICSEARCH__ADAPTIVE__DECREASE_RATIO", "0.5"),
            ("KLG__ELASTICSEARCH__ADAPTIVE__EWMA_ALPHA", "1"),
            ("KLG__ELASTICSEARCH__ADAPTIVE__RTT_DEVIATION_SCALE", "0"),
        ],
    )
    .unwrap();
    let es = &cfg.elasticsearch;
    assert_eq!(es.concurrency, ConcurrencyMode::Fixed);
    assert_eq!(es.max_in_flight, 12);
    assert_eq!(
        (es.adaptive.initial, es.adaptive.decrease_ratio, es.adaptive.ewma_alpha, es.adaptive.rtt_deviation_scale),
        (3, 0.5, 1.0, 0.0)
    );
    for (yaml, key) in [
        ("concurrency: lots", "elasticsearch.concurrency"),
        ("adaptive:\n    initial: 5", "elasticsearch.adaptive.initial"),
        ("adaptive:\n    initial: 0", "elasticsearch.adaptive.initial"),
        ("adaptive:\n    decrease_ratio: 1.0", "elasticsearch.adaptive.decrease_ratio"),
        ("adaptive:\n    ewma_alpha: 0", "elasticsearch.adaptive.ewma_alpha"),
        ("adaptive:\n    rtt_deviation_scale: -1", "elasticsearch.adaptive.rtt_deviation_scale"),
    ] {
        let err = load(&format!("elasticsearch:\n  {yaml}\n"), &[]).unwrap_err().to_string();
        assert!(err.contains(key), "{yaml}: {err}");
    }
}

#[test]
fn missing_file_is_named() {
    let err = Config::load_with_env(Path::new("/nonexistent/klg.yaml"), []).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/klg.yaml"), "{err}");
}

#[test]
fn containers_section_loads_from_yaml_and_the_environment() {
    use crate::sources::containers::config::ContainersConfig;
    use std::io::Write;
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    f.write_all(b"sources:\n  containers:\n    exclude_pods: [\"gw-*\"]\n    max_message_bytes: 2048\n").unwrap();
    let env = [
        ("KLG__SOURCES__CONTAINERS__EXCLUDE_NAMESPACES", "kube-system,logging"),
        ("KLG__SOURCES__CONTAINERS__POLL_INTERVAL", "1s"),
    ];
    let cfg = Config::load_with_env(f.path(), env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
    let c: ContainersConfig = cfg.sources.section("containers").unwrap().unwrap();
    assert_eq!(c.exclude_pods, vec!["gw-*"]);
    assert_eq!(c.exclude_namespaces, vec!["kube-system", "logging"]);
    assert_eq!(c.poll_interval, std::time::Duration::from_secs(1));
    assert_eq!(c.max_message_bytes, 2048);
    assert_eq!(c.paths, vec!["/var/log/containers/*.log"]);

    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    f.write_all(b"sources:\n  containers:\n    max_message_bytes: 10\n").unwrap();
    let err = Config::load_with_env(f.path(), []).unwrap_err().to_string();
    assert!(err.contains("sources.containers.max_message_bytes"), "{err}");
}

/// Every list-valued key of both shipped config files, set from the
/// environment as one comma-separated value, arrives as that list.
#[test]
fn every_list_key_of_both_config_files_can_be_set_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("any.pem");
    std::fs::write(&pem, "readable").unwrap();
    let pem = pem.to_str().unwrap().to_string();
    // The shipped files point TLS at files that only exist in a cluster.
    let tls = [
        ("KLG__SERVER__TLS__CERT_FILE", pem.as_str()),
        ("KLG__SERVER__TLS__KEY_FILE", pem.as_str()),
        ("KLG__SERVER__TLS__CLIENT_CA_FILE", pem.as_str()),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut walked = Vec::new();
    for file in ["gateway.yaml", "node.yaml"] {
        let path = root.join(file);
        let yaml: serde_json::Value = config::Config::builder()
            .add_source(config::File::from(path.as_path()).format(config::FileFormat::Yaml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        let mut lists = Vec::new();
        list_keys(&yaml, "", &mut lists);
        assert!(!lists.is_empty(), "{file} has list keys");
        for (key, items) in lists {
            // Twice the file's items (or two names for an empty list): unmistakably from the environment.
            let want: Vec<String> = if items.is_empty() {
                vec!["name-1".into(), "name-2".into()]
            } else {
                items.iter().chain(items.iter()).cloned().collect()
            };
            let var = format!("KLG__{}", key.replace('.', "__").to_uppercase());
            let mut env: Vec<(String, String)> = tls.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            env.push((var.clone(), want.join(",")));
            let cfg = Config::load_with_env(&path, env).unwrap_or_else(|e| panic!("{file}: {var}: {e}"));
            let got = serde_json::to_value(&cfg).unwrap();
            let got = key.split('.').fold(&got, |v, k| &v[k]);
            assert_eq!(got, &serde_json::json!(want), "{file}: {var}");
            walked.push(key);
        }
    }
    for key in [
        "elasticsearch.urls",
        "server.tls.allowed_client_names",
        "sources.journald.directories",
        "sources.journald.units",
        "sources.journald.identifiers",
        "sources.containers.paths",
        "sources.containers.exclude_pods",
    ] {
        assert!(walked.iter().any(|k| k == key), "{key} was not walked: {walked:?}");
    }
}

/// (dotted key, string items) of every sequence in `v`.
fn list_keys(v: &serde_json::Value, prefix: &str, out: &mut Vec<(String, Vec<String>)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                list_keys(v, &key, out);
            }
        }
        serde_json::Value::Array(items) => out.push((
            prefix.to_string(),
            items.iter().map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string())).collect(),
        )),
        _ => {}
    }
}

#[test]
fn a_journal_directory_from_the_environment() {
    let cfg =
        load("sources:\n  journald: {}\n", &[("KLG__SOURCES__JOURNALD__DIRECTORIES", "/var/log/journal")]).unwrap();
    let j: crate::sources::journald::config::JournaldConfig = cfg.sources.section("journald").unwrap().unwrap();
    assert_eq!(j.directories, vec![PathBuf::from("/var/log/journal")]);
}
