//! Rotation, truncation and files deleted or rotated while the gateway was down.

use super::*;

#[test]
fn rotation_reads_the_old_file_to_its_end_then_the_new_one() {
    let mut h = Harness::new(|c| c.rotated_grace = Duration::from_secs(1));
    let path = h.path("a.log");
    append(&path, b"2026-01-02T03:04:05Z stdout F one\n");
    h.run(Duration::ZERO);
    // Written after the last read, then rotated away: must still be read.
    append(&path, b"2026-01-02T03:04:05Z stdout F two\n2026-01-02T03:04:05Z stdout P dangling\n");
    std::fs::rename(&path, h.path("a.log.20260102-030405")).unwrap();
    append(&path, b"2026-01-02T03:04:06Z stdout F three\n");
    h.run(Duration::ZERO);
    assert_eq!(h.tailer.open_files(), 2, "the rotated file stays open for the grace period");
    h.run(Duration::from_secs(2));
    assert_eq!(h.tailer.open_files(), 1);
    assert_eq!(messages(&h.docs), vec!["one", "two", "three", "dangling"]);
    assert_eq!(flags(&h.docs[3]), vec!["partial"]);
    // The closed file stays in the checkpoint, finished, while it lies beside the live one.
    let saved = h.checkpoint();
    let done: Vec<&Entry> = saved.values().filter(|e| e.finished).collect();
    assert_eq!((saved.len(), done.len()), (2, 1), "{saved:?}");
    assert_eq!(done[0].target, h.path("a.log.20260102-030405"));
    // The pieces never merge across files.
    let ids: std::collections::HashSet<_> = h.docs.iter().map(|d| d["_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 4);
    // Gone from disk: forgotten.
    std::fs::remove_file(h.path("a.log.20260102-030405")).unwrap();
    h.run(Duration::from_secs(11));
    assert_eq!(h.checkpoint().len(), 1, "the deleted rotated file is forgotten");
}

#[test]
fn deleted_files_close_after_grace_and_a_growing_one_at_the_bound() {
    let mut h = Harness::new(|c| {
        c.rotated_grace = Duration::from_secs(2);
        c.rotated_max_open = Duration::from_secs(5);
    });
    let (quiet, busy) = (h.path("quiet.log"), h.path("busy.log"));
    append(&quiet, b"2026-01-02T03:04:05Z stdout F one\n");
    append(&busy, b"2026-01-02T03:04:05Z stdout F one\n");
    let mut writer = std::fs::OpenOptions::new().append(true).open(&busy).unwrap();
    h.run(Duration::ZERO);
    std::fs::remove_file(&quiet).unwrap();
    std::fs::remove_file(&busy).unwrap();
    h.run(Duration::ZERO);
    assert_eq!(h.tailer.open_files(), 2);
    for second in 1..=6 {
        writer.write_all(b"2026-01-02T03:04:05Z stdout F more\n").unwrap();
        h.run(Duration::from_secs(1));
        let want = match second {
            1 => 2,
            2..=4 => 1,
            _ => 0,
        };
        assert_eq!(h.tailer.open_files(), want, "after {second} s");
    }
}

#[test]
fn copytruncate_restarts_at_the_head() {
    let mut h = Harness::new(|_| {});
    let path = h.path("a.log");
    append(&path, b"2026-01-02T03:04:05Z stdout F one long line of text\n2026-01-02T03:04:05Z stdout F two\n");
    h.run(Duration::ZERO);
    let first_fp = h.checkpoint().values().next().unwrap().fingerprint;
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
    append(&path, b"2026-01-02T03:04:07Z stdout F three\n");
    h.run(Duration::ZERO);
    assert_eq!(messages(&h.docs), vec!["one long line of text", "two", "three"]);
    assert_eq!(h.docs[2]["log"]["offset"], 0);
    assert_ne!(h.docs[2]["_id"], h.docs[0]["_id"]);
    assert_ne!(h.checkpoint().values().next().unwrap().fingerprint, first_fp);
}

#[test]
fn a_file_rotated_while_down_is_finished_from_its_checkpoint() {
    let mut h = Harness::new(|c| c.rotated_grace = Duration::from_secs(1));
    let path = h.path("a.log");
    append(&path, b"2026-01-02T03:04:05Z stdout F one\n");
    h.run(Duration::ZERO);
    let saved = h.checkpoint();
    let Harness { dir, .. } = h;
    append(&path, b"2026-01-02T03:04:05Z stdout F two\n");
    std::fs::rename(&path, dir.path().join("a.log.1")).unwrap();
    append(&path, b"2026-01-02T03:04:07Z stdout F three\n");
    let mut h2 = Harness::in_dir(dir, |c| c.rotated_grace = Duration::from_secs(1), Some(saved));
    h2.run(Duration::ZERO);
    h2.run(Duration::from_secs(2));
    assert_eq!(messages(&h2.docs), vec!["two", "three"]);
    assert_eq!(h2.tailer.open_files(), 1);
}

#[test]
fn a_rotated_file_without_a_complete_line_does_not_hold_up_the_new_one() {
    let mut h = Harness::new(|c| c.rotated_grace = Duration::from_secs(1));
    let path = h.path("a.log");
    append(&path, b"2026-01-02T03:04:05Z stdout F no newline yet");
    h.run(Duration::ZERO);
    std::fs::rename(&path, h.path("a.log.1")).unwrap();
    append(&path, b"2026-01-02T03:04:06Z stdout F next file\n");
    h.run(Duration::ZERO);
    assert_eq!(messages(&h.docs), vec!["next file"], "the new file is read at once");
    h.run(Duration::from_secs(2));
    assert_eq!(h.tailer.open_files(), 1);
    assert_eq!(messages(&h.docs), vec!["next file", "no newline yet"]);
    assert_eq!(flags(&h.docs[1]), vec!["partial"]);
    assert_eq!(h.docs[1]["log"]["offset"], 0);
}

#[test]
fn two_rotations_between_scans_read_the_middle_file_in_order() {
    let mut h = Harness::new(|c| c.rotated_grace = Duration::from_secs(1));
    let path = h.path("a.log");
    append(&path, line(0).as_bytes());
    h.run(Duration::ZERO);
    // Two rotations before the next listing: the middle file never was at a listed path.
    append(&path, line(1).as_bytes());
    std::fs::rename(&path, h.path("a.log.20260102-000001")).unwrap();
    append(&path, line(2).as_bytes());
    std::thread::sleep(Duration::from_millis(20)); // distinct mtimes
    std::fs::rename(&path, h.path("a.log.20260102-000002")).unwrap();
    append(&path, line(3).as_bytes());
    h.run(Duration::ZERO);
    h.run(Duration::from_secs(2));
    assert_eq!(messages(&h.docs), vec!["m0", "m1", "m2", "m3"], "each file read whole, oldest first");
    assert_eq!(h.tailer.open_files(), 1);
    let saved = h.checkpoint();
    assert_eq!(saved.values().filter(|e| e.finished).count(), 2, "{saved:?}");
    // A restart reads none of the finished siblings again.
    let Harness { dir, .. } = h;
    append(&path, line(4).as_bytes());
    let mut h2 = Harness::in_dir(dir, |_| {}, Some(saved));
    h2.run(Duration::ZERO);
    assert_eq!(messages(&h2.docs), vec!["m4"]);
}

#[test]
fn siblings_rotated_while_down_and_never_seen_are_read_after_a_restart() {
    let mut h = Harness::new(|c| c.rotated_grace = Duration::from_secs(1));
    let path = h.path("a.log");
    append(&path, line(0).as_bytes());
    h.run(Duration::ZERO);
    let saved = h.checkpoint();
    let Harness { dir, .. } = h;
    // Down: three rotations; the checkpoint knows only the first file.
    for n in 1..=3 {
        append(&path, line(n).as_bytes());
        std::fs::rename(&path, dir.path().join(format!("a.log.2026010{n}"))).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    append(&path, line(4).as_bytes());
    let mut h2 = Harness::in_dir(dir, |c| c.rotated_grace = Duration::from_secs(1), Some(saved));
    h2.run(Duration::ZERO);
    h2.run(Duration::from_secs(2));
    assert_eq!(messages(&h2.docs), vec!["m1", "m2", "m3", "m4"]);
    assert_eq!(h2.tailer.open_files(), 1);
}

#[test]
fn rotated_siblings_on_the_first_run_follow_start_at_first_run() {
    for (start, want) in [
        (crate::sources::containers::config::StartAt::Beginning, vec!["m0", "m1", "m2"]),
        (crate::sources::containers::config::StartAt::End, vec![]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        append(&dir.path().join("a.log.20260101"), line(0).as_bytes());
        std::thread::sleep(Duration::from_millis(20));
        append(&dir.path().join("a.log.20260102"), line(1).as_bytes());
        std::thread::sleep(Duration::from_millis(20));
        append(&dir.path().join("a.log"), line(2).as_bytes());
        let mut h = Harness::in_dir(dir, |c| c.start_at_first_run = start, None);
        h.run(Duration::ZERO);
        h.run(Duration::from_secs(6));
        assert_eq!(messages(&h.docs), want, "{start:?}");
        let finished = h.checkpoint().values().filter(|e| e.finished).count();
        assert_eq!(finished, 2, "{start:?}: both siblings are known as done");
    }
}
