//! Container log lines (CRI and docker json-file) → parsed lines → reassembled
//! messages. Never panics; a message never exceeds `max_message_bytes`; a message
//! is cut exactly at the cap and flagged `cut` (docs/containers.md: "the rest of
//! it is dropped ... flagged `cut`"); an uncut message is its pieces joined; every
//! dropped byte is counted in the cut bytes.
#![no_main]

use std::time::Instant;

use kube_log_gateway::sources::containers::format::{self, Format};
use kube_log_gateway::sources::containers::reassembly::{Reassembler, Record};
use libfuzzer_sys::fuzz_target;

struct Expect {
    max: usize,
    /// The pieces seen so far of the pending message, per stream.
    joined: [Vec<u8>; 2],
    /// Bytes of every piece pushed, and bytes of every message emitted.
    pushed: u64,
    emitted: u64,
}

impl Expect {
    fn check(&mut self, rec: &Record<'_>) {
        let stream = rec.stream.expect("reassembled records have a stream").index();
        let whole = std::mem::take(&mut self.joined[stream]);
        assert!(rec.message.len() <= self.max, "message of {} bytes, cap {}", rec.message.len(), self.max);
        if rec.flags.cut {
            assert!(whole.len() > self.max, "flagged cut but only {} bytes", whole.len());
            assert_eq!(&*rec.message, &whole[..self.max], "a cut keeps the first max bytes");
        } else {
            assert_eq!(&*rec.message, &whole[..], "an uncut message is its pieces joined");
        }
        assert!(!rec.flags.invalid);
        self.emitted += rec.message.len() as u64;
    }
}

fuzz_target!(|data: &[u8]| {
    let max = data.first().map_or(0, |b| *b as usize % 97);
    let mut r = Reassembler::new(max);
    let mut expect = Expect { max, joined: [Vec::new(), Vec::new()], pushed: 0, emitted: 0 };
    let mut fmt = None;
    let mut offset = 0u64;
    for line in data.split(|b| *b == b'\n') {
        let this_offset = offset;
        offset += line.len() as u64 + 1;
        // Both parsers directly, whatever the file's format.
        let _ = format::parse_cri(line);
        let _ = format::parse_docker(line);
        if line.is_empty() {
            continue;
        }
        let f = *fmt.get_or_insert_with(|| Format::detect(line));
        let Ok(parsed) = format::parse(f, line) else { continue };
        assert!(format::parse_time(&parsed.time_text).is_some());
        expect.joined[parsed.stream.index()].extend_from_slice(&parsed.message);
        expect.pushed += parsed.message.len() as u64;
        if let Some(rec) = r.push(parsed, this_offset, Instant::now()) {
            expect.check(&rec);
        }
        assert!(r.safe_offset(offset) <= offset);
    }
    for rec in r.flush_all() {
        assert!(rec.flags.partial);
        expect.check(&rec);
    }
    assert!(!r.has_pending());
    assert_eq!(expect.pushed, expect.emitted + r.take_cut_bytes(), "every byte is either sent or counted as cut");
});
