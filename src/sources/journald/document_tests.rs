use super::*;

fn entry(message: &[u8]) -> RawEntry {
    let mut e = RawEntry {
        realtime_usec: 1_762_668_882_535_854,
        cursor: "s=cc32;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=643235499a5ae;x=dd9e383ca2c1c3fe".into(),
        ..Default::default()
    };
    for f in [
        &b"_SYSTEMD_UNIT=kubelet.service"[..],
        b"PRIORITY=6",
        b"_PID=42",
        b"_COMM=kubelet",
        b"SYSLOG_IDENTIFIER=kubelet",
        b"_HOSTNAME=node-1",
        b"_BOOT_ID=0123456789abcdef0123456789abcdef",
        b"_MACHINE_ID=fedcba9876543210fedcba9876543210",
    ] {
        e.set_field(f);
    }
    let mut m = b"MESSAGE=".to_vec();
    m.extend_from_slice(message);
    e.set_field(&m);
    e
}

fn normalize(e: &RawEntry) -> (Document, Value) {
    let mut n =
        JournaldNormalizer::new("prod".into(), "node-a".into(), IndexPattern::parse("kubelet-%Y.%m.%d").unwrap());
    let doc = n.normalize(e);
    let v = serde_json::from_slice(&doc.body).unwrap();
    (doc, v)
}

#[test]
fn fields_of_a_kubelet_entry() {
    let (doc, v) = normalize(&entry(b"I1109 06:14:42.535854    1234 file.go:123] msg"));
    assert_eq!(doc.index, "kubelet-2025.11.09");
    assert_eq!(doc.source, SourceKind::Journald);
    assert_eq!(v["@timestamp"], "2025-11-09T06:14:42.535854Z");
    assert_eq!(v["message"], "I1109 06:14:42.535854    1234 file.go:123] msg");
    assert_eq!(v["event"]["dataset"], "kubelet");
    assert_eq!(v["event"]["kind"], "event");
    assert_eq!(v["event"]["id"], doc.id.as_str());
    assert!(v["event"].get("ingested").is_none(), "the sink stamps event.ingested when it sends");
    assert_eq!(v["orchestrator"]["cluster"]["name"], "prod");
    assert_eq!(v["host"]["name"], "node-1");
    assert_eq!(v["kubernetes"]["node"]["name"], "node-a");
    assert_eq!(v["log"]["level"], "info");
    assert_eq!(v["log"]["syslog"]["priority"], 6);
    assert_eq!(v["log"]["syslog"]["severity"]["name"], "info");
    assert_eq!(v["log"]["syslog"]["appname"], "kubelet");
    assert_eq!(v["log"]["origin"]["file"]["name"], "file.go");
    assert_eq!(v["log"]["origin"]["file"]["line"], 123);
    assert_eq!(v["process"]["pid"], 42);
    assert_eq!(v["process"]["name"], "kubelet");
    assert_eq!(v["process"]["thread"]["id"], 1234);
    assert_eq!(v["systemd"]["unit"], "kubelet.service");
    assert_eq!(v["journald"]["boot_id"], "0123456789abcdef0123456789abcdef");
    assert_eq!(v["journald"]["machine_id"], "fedcba9876543210fedcba9876543210");
    assert!(v["journald"]["cursor"].as_str().unwrap().starts_with("s=cc32;i=1;"));
    assert!(v.get("kube_log_gateway").is_none());
}

#[test]
fn klog_level_wins_over_priority_and_priority_is_the_fallback() {
    let mut e = entry(b"E1109 06:14:42.535854 1 a.go:1] failed");
    e.priority = b"6".to_vec();
    assert_eq!(normalize(&e).1["log"]["level"], "error");
    for (p, name) in [("0", "emerg"), ("2", "crit"), ("3", "error"), ("4", "warning"), ("5", "notice"), ("7", "debug")]
    {
        let mut e = entry(b"plain text");
        e.priority = p.as_bytes().to_vec();
        let (_, v) = normalize(&e);
        assert_eq!(v["log"]["level"], name);
        assert!(v["log"].get("origin").is_none());
        assert!(v["process"].get("thread").is_none());
    }
}

#[test]
fn binary_and_multiline_messages() {
    let (_, v) = normalize(&entry(b"line one\nline two\n"));
    assert_eq!(v["message"], "line one\nline two\n");
    assert!(v.get("kube_log_gateway").is_none());
    let (_, v) = normalize(&entry(b"bad \xff\xfe byte"));
    assert_eq!(v["message"], "bad \u{fffd}\u{fffd} byte");
    assert_eq!(v["kube_log_gateway"]["flags"], json!(["message_binary"]));
    let (_, v) = normalize(&entry(b"nul\0inside"));
    assert_eq!(v["message"], "nul\u{0}inside");
    assert_eq!(v["kube_log_gateway"]["flags"], json!(["message_binary"]));
}

#[test]
fn other_units_and_missing_fields() {
    let mut e = RawEntry { realtime_usec: 1, cursor: "s=a;i=2".into(), ..Default::default() };
    e.set_field(b"_SYSTEMD_UNIT=containerd.service");
    let (doc, v) = normalize(&e);
    assert_eq!(doc.index, "kubelet-1970.01.01");
    assert_eq!(v["@timestamp"], "1970-01-01T00:00:00.000001Z");
    assert_eq!(v["event"]["dataset"], "journald");
    assert!(v.get("message").is_none() && v.get("host").is_none() && v.get("process").is_none());
    assert!(v["log"].get("level").is_none());
}

#[test]
fn timestamps_formatted_per_second_match_chrono() {
    let mut t = Timestamp::default();
    for usec in [
        1_762_668_882_535_854u64,
        1_762_668_882_535_855,
        1_762_668_882_000_000,
        1_762_668_882_999_999,
        1_762_668_883_000_001,
        1_762_668_882_000_007,
        0,
        1,
        253_402_300_799_999_999,
    ] {
        let when = time::from_usec(usec);
        assert_eq!(t.format(when), time::rfc3339_micros(when), "{usec}");
    }
}

#[test]
fn id_depends_on_entry_identity_not_on_the_sequence_number() {
    let a = entry_id(b"m1", "s=aaa;i=1;b=b1;m=3e8;t=64;x=ff");
    assert_eq!(a, entry_id(b"m1", "s=bbb;i=99;b=b1;m=3e8;t=64;x=ff"));
    assert_ne!(a, entry_id(b"m2", "s=aaa;i=1;b=b1;m=3e8;t=64;x=ff"));
    assert_ne!(a, entry_id(b"m1", "s=aaa;i=1;b=b1;m=3e8;t=64;x=fe"));
}

fn pinned_entries() -> Vec<RawEntry> {
    let raw = |usec: u64, cursor: &str, fields: &[&[u8]]| {
        let mut e = RawEntry { realtime_usec: usec, cursor: cursor.into(), ..Default::default() };
        for f in fields {
            e.set_field(f);
        }
        e
    };
    vec![
        entry(b"I1109 06:14:42.535854    1234 file.go:123] \"SyncLoop\" pod=\"kube-system/x\""),
        entry(b"E1109 06:14:42.535854 1 a.go:1] failed \\ with \"quotes\"\ttab \xc3\xbc \xe2\x9c\x93"),
        entry(b"bad \xff\xfe byte\nsecond line\r\n\x01\x1f\x7f"),
        entry(b"nul\0inside"),
        raw(1, "s=a;i=2", &[b"_SYSTEMD_UNIT=containerd.service"]),
        raw(1_762_668_882_000_000, "s=a;i=3;b=b1;m=1;t=2;x=3", &[b"PRIORITY=3", b"MESSAGE=plain", b"_PID= 42 "]),
        raw(
            1_762_668_883_999_999,
            "s=cc32;i=4;b=0123;m=3e9;t=643235499a5af;x=1",
            &[b"SYSLOG_IDENTIFIER=sshd", b"PRIORITY=9", b"_COMM=sshd", b"_HOSTNAME=n\xc3\xb6de", b"_BOOT_ID=b"],
        ),
        raw(253_402_300_799_999_999, "", &[b"_MACHINE_ID=m", b"_PID=x", b"MESSAGE="]),
    ]
}

/// Index, `_id` and body bytes written by the code before the body was
/// written by hand (serde structs through sonic-rs): a new writer must give
/// exactly these bytes, and the ids must never change (a resend after an
/// upgrade must get a 409, not a duplicate).
const PINNED: [(&str, &str, &str); 9] = [
        ("kubelet-2025.11.09", "0ZJAMeyzUrekARRZvMgp_g", "{\"@timestamp\":\"2025-11-09T06:14:42.535854Z\",\"message\":\"I1109 06:14:42.535854    1234 file.go:123] \\\"SyncLoop\\\" pod=\\\"kube-system/x\\\"\",\"event\":{\"dataset\":\"kubelet\",\"kind\":\"event\",\"id\":\"0ZJAMeyzUrekARRZvMgp_g\"},\"orchestrator\":{\"type\":\"kubernetes\",\"cluster\":{\"name\":\"prod\"}},\"host\":{\"name\":\"node-1\"},\"kubernetes\":{\"node\":{\"name\":\"node-a\"}},\"log\":{\"level\":\"info\",\"syslog\":{\"priority\":6,\"severity\":{\"name\":\"info\"},\"appname\":\"kubelet\"},\"origin\":{\"file\":{\"name\":\"file.go\",\"line\":123}}},\"process\":{\"pid\":42,\"name\":\"kubelet\",\"thread\":{\"id\":1234}},\"systemd\":{\"unit\":\"kubelet.service\"},\"journald\":{\"boot_id\":\"0123456789abcdef0123456789abcdef\",\"machine_id\":\"fedcba9876543210fedcba9876543210\",\"cursor\":\"s=cc32;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=643235499a5ae;x=dd9e383ca2c1c3fe\"}}"),
        ("kubelet-2025.11.09", "0ZJAMeyzUrekARRZvMgp_g", "{\"@timestamp\":\"2025-11-09T06:14:42.535854Z\",\"message\":\"E1109 06:14:42.535854 1 a.go:1] failed \\\\ with \\\"quotes\\\"\\ttab ü ✓\",\"event\":{\"dataset\":\"kubelet\",\"kind\":\"event\",\"id\":\"0ZJAMeyzUrekARRZvMgp_g\"},\"orchestrator\":{\"type\":\"kubernetes\",\"cluster\":{\"name\":\"prod\"}},\"host\":{\"name\":\"node-1\"},\"kubernetes\":{\"node\":{\"name\":\"node-a\"}},\"log\":{\"level\":\"error\",\"syslog\":{\"priority\":6,\"severity\":{\"name\":\"info\"},\"appname\":\"kubelet\"},\"origin\":{\"file\":{\"name\":\"a.go\",\"line\":1}}},\"process\":{\"pid\":42,\"name\":\"kubelet\",\"thread\":{\"id\":1}},\"systemd\":{\"unit\":\"kubelet.service\"},\"journald\":{\"boot_id\":\"0123456789abcdef0123456789abcdef\",\"machine_id\":\"fedcba9876543210fedcba9876543210\",\"cursor\":\"s=cc32;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=643235499a5ae;x=dd9e383ca2c1c3fe\"}}"),
        ("kubelet-2025.11.09", "0ZJAMeyzUrekARRZvMgp_g", "{\"@timestamp\":\"2025-11-09T06:14:42.535854Z\",\"message\":\"bad �� byte\\nsecond line\\r\\n\\u0001\\u001f\u{7f}\",\"event\":{\"dataset\":\"kubelet\",\"kind\":\"event\",\"id\":\"0ZJAMeyzUrekARRZvMgp_g\"},\"orchestrator\":{\"type\":\"kubernetes\",\"cluster\":{\"name\":\"prod\"}},\"host\":{\"name\":\"node-1\"},\"kubernetes\":{\"node\":{\"name\":\"node-a\"}},\"log\":{\"level\":\"info\",\"syslog\":{\"priority\":6,\"severity\":{\"name\":\"info\"},\"appname\":\"kubelet\"}},\"process\":{\"pid\":42,\"name\":\"kubelet\"},\"systemd\":{\"unit\":\"kubelet.service\"},\"journald\":{\"boot_id\":\"0123456789abcdef0123456789abcdef\",\"machine_id\":\"fedcba9876543210fedcba9876543210\",\"cursor\":\"s=cc32;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=643235499a5ae;x=dd9e383ca2c1c3fe\"},\"kube_log_gateway\":{\"flags\":[\"message_binary\"]}}"),
        ("kubelet-2025.11.09", "0ZJAMeyzUrekARRZvMgp_g", "{\"@timestamp\":\"2025-11-09T06:14:42.535854Z\",\"message\":\"nul\\u0000inside\",\"event\":{\"dataset\":\"kubelet\",\"kind\":\"event\",\"id\":\"0ZJAMeyzUrekARRZvMgp_g\"},\"orchestrator\":{\"type\":\"kubernetes\",\"cluster\":{\"name\":\"prod\"}},\"host\":{\"name\":\"node-1\"},\"kubernetes\":{\"node\":{\"name\":\"node-a\"}},\"log\":{\"level\":\"info\",\"syslog\":{\"priority\":6,\"severity\":{\"name\":\"info\"},\"appname\":\"kubelet\"}},\"process\":{\"pid\":42,\"name\":\"kubelet\"},\"systemd\":{\"unit\":\"kubelet.service\"},\"journald\":{\"boot_id\":\"0123456789abcdef0123456789abcdef\",\"machine_id\":\"fedcba9876543210fedcba9876543210\",\"cursor\":\"s=cc32;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=643235499a5ae;x=dd9e383ca2c1c3fe\"},\"kube_log_gateway\":{\"flags\":[\"message_binary\"]}}"),
        ("kubelet-1970.01.01", "6bh1UIk_7CmU2-Y7YF52yg", "{\"@timestamp\":\"1970-01-01T00:00:00.000001Z\",\"event\":{\"dataset\":\"journald\",\"kind\":\"event\",\"id\":\"6bh1UIk_7CmU2-Y7YF52yg\"},\"orchestrator\":{\"type\":\"kubernetes\",\"cluster\":{\"name\":\"prod\"}},\"kubernetes\":{\"node\":{\"name\":\"node-a\"}},\"log\":{},\"systemd\":{\"unit\":\"containerd.service\"},\"journald\":{\"cursor\":\"s=a;i=2\"}}"),
        ("kubelet-2025.11.09", "8TpJTktJzybl13jhwseIUA", "{\"@timestamp\":\"2025-11-09T06:14:42.000000Z\",\"message\":\"plain\",\"event\":{\"dataset\":\"journald\",\"kind\":\"event\",\"id\":\"8TpJTktJzybl13jhwseIUA\"},\"orchestrator\":{\"type\":\"kubernetes\",\"cluster\":{\"name\":\"prod\"}},\"kubernetes\":{\"node\":{\"name\":\"node-a\"}},\"log\":{\"level\":\"error\",\"syslog\":{\"priority\":3,\"severity\":{\"name\":\"error\"}}},\"process\":{\"pid\":42},\"journald\":{\"cursor\":\"s=a;i=3;b=b1;m=1;t=2;x=3\"}}"),
        ("kubelet-2025.11.09", "73DyId9fgZSUP0neI9y8nQ", "{\"@timestamp\":\"2025-11-09T06:14:43.999999Z\",\"event\":{\"dataset\":\"journald\",\"kind\":\"event\",\"id\":\"73DyId9fgZSUP0neI9y8nQ\"},\"orchestrator\":{\"type\":\"kubernetes\",\"cluster\":{\"name\":\"prod\"}},\"host\":{\"name\":\"nöde\"},\"kubernetes\":{\"node\":{\"name\":\"node-a\"}},\"log\":{\"syslog\":{\"priority\":9,\"appname\":\"sshd\"}},\"process\":{\"name\":\"sshd\"},\"journald\":{\"boot_id\":\"b\",\"cursor\":\"s=cc32;i=4;b=0123;m=3e9;t=643235499a5af;x=1\"}}"),
        ("kubelet-9999.12.31", "a0PNErRc3W04cvDZskBaSw", "{\"@timestamp\":\"9999-12-31T23:59:59.999999Z\",\"event\":{\"dataset\":\"journald\",\"kind\":\"event\",\"id\":\"a0PNErRc3W04cvDZskBaSw\"},\"orchestrator\":{\"type\":\"kubernetes\",\"cluster\":{\"name\":\"prod\"}},\"kubernetes\":{\"node\":{\"name\":\"node-a\"}},\"log\":{},\"journald\":{\"machine_id\":\"m\",\"cursor\":\"\"}}"),
        ("kubelet-2025.11.09", "0ZJAMeyzUrekARRZvMgp_g", "{\"@timestamp\":\"2025-11-09T06:14:42.535854Z\",\"message\":\"I1109 06:14:42.535854    1234 file.go:123] \\\"SyncLoop\\\" pod=\\\"kube-system/x\\\"\",\"event\":{\"dataset\":\"kubelet\",\"kind\":\"event\",\"id\":\"0ZJAMeyzUrekARRZvMgp_g\"},\"orchestrator\":{\"type\":\"kubernetes\",\"cluster\":{\"name\":\"a\\\"b\\\\c\\u0001\"}},\"host\":{\"name\":\"node-1\"},\"kubernetes\":{\"node\":{\"name\":\"nöde/ü\"}},\"log\":{\"level\":\"info\",\"syslog\":{\"priority\":6,\"severity\":{\"name\":\"info\"},\"appname\":\"kubelet\"},\"origin\":{\"file\":{\"name\":\"file.go\",\"line\":123}}},\"process\":{\"pid\":42,\"name\":\"kubelet\",\"thread\":{\"id\":1234}},\"systemd\":{\"unit\":\"kubelet.service\"},\"journald\":{\"boot_id\":\"0123456789abcdef0123456789abcdef\",\"machine_id\":\"fedcba9876543210fedcba9876543210\",\"cursor\":\"s=cc32;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=643235499a5ae;x=dd9e383ca2c1c3fe\"}}"),
];

#[test]
fn documents_are_pinned_byte_for_byte() {
    let mut odd = JournaldNormalizer::new(
        "a\"b\\c\u{1}".into(),
        "nöde/ü".into(),
        IndexPattern::parse("kubelet-%Y.%m.%d").unwrap(),
    );
    let mut docs: Vec<Document> = pinned_entries().iter().map(|e| normalize(e).0).collect();
    docs.push(odd.normalize(&pinned_entries()[0]));
    assert_eq!(docs.len(), PINNED.len());
    for (doc, (index, id, body)) in docs.iter().zip(PINNED) {
        assert_eq!((doc.index.as_str(), doc.id.as_str()), (index, id));
        assert_eq!(std::str::from_utf8(&doc.body).unwrap(), body);
    }
}

/// The one shape the pinned documents lack: a klog line with no PRIORITY,
/// identifier, pid or comm (`log` without `syslog`, `process` with only the
/// thread), written out as the serde structs did.
#[test]
fn klog_line_without_syslog_fields() {
    let mut e = RawEntry { realtime_usec: 5, cursor: "x".into(), ..Default::default() };
    e.set_field(b"MESSAGE=I1109 06:14:42.535854 7 f.go:2] m");
    let (doc, _) = normalize(&e);
    let want = format!(
        concat!(
            r#"{{"@timestamp":"1970-01-01T00:00:00.000005Z","message":"I1109 06:14:42.535854 7 f.go:2] m","#,
            r#""event":{{"dataset":"journald","kind":"event","id":"{}"}},"#,
            r#""orchestrator":{{"type":"kubernetes","cluster":{{"name":"prod"}}}},"kubernetes":{{"node":{{"name":"node-a"}}}},"#,
            r#""log":{{"level":"info","origin":{{"file":{{"name":"f.go","line":2}}}}}},"process":{{"thread":{{"id":7}}}},"#,
            r#""journald":{{"cursor":"x"}}}}"#
        ),
        doc.id
    );
    assert_eq!(std::str::from_utf8(&doc.body).unwrap(), want);
}

/// The one-pass cursor parser against `split(';')`, the way it was written before.
#[test]
fn cursor_identity_is_split_on_semicolons() {
    fn by_split(cursor: &str) -> [&str; 4] {
        let mut out = [""; 4];
        for part in cursor.split(';') {
            let slot = match part.get(..2) {
                Some("b=") => 0,
                Some("m=") => 1,
                Some("t=") => 2,
                Some("x=") => 3,
                _ => continue,
            };
            out[slot] = &part[2..];
        }
        out
    }
    for cursor in [
        "s=cc32;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=643235499a5ae;x=dd9e383ca2c1c3fe",
        "",
        ";",
        ";;b=",
        "b",
        "b=",
        "x=1;x=2",
        "b=1;",
        "m=é;t=ü",
        "é=1;bé=2;b=ok",
        "s=a;i=2",
        "t=1;m=2;b=3;x=4;y=5",
    ] {
        assert_eq!(cursor_identity(cursor), by_split(cursor), "{cursor:?}");
    }
}

/// Bodies split off a shared chunk stay whole while later ones are written,
/// around one over a quarter of a chunk too (that one gets its own allocation).
#[test]
fn bodies_from_the_arena_stay_intact() {
    let mut n =
        JournaldNormalizer::new("prod".into(), "node-a".into(), IndexPattern::parse("kubelet-%Y.%m.%d").unwrap());
    let messages: Vec<Vec<u8>> = (0..100usize)
        .map(|i| if i == 30 { vec![b'y'; crate::document::arena::CHUNK] } else { vec![b'a' + (i % 26) as u8; i * 7] })
        .collect();
    let docs: Vec<Document> = messages.iter().map(|m| n.normalize(&entry(m))).collect();
    for (m, doc) in messages.iter().zip(&docs) {
        assert_eq!(doc.body, normalize(&entry(m)).0.body);
    }
}
