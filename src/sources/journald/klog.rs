//! The klog/glog header kubelet lines start with, and syslog severities:
//! where a journald document's `log.level`, `log.origin` and thread come from.

/// The klog header of a kubelet line:
/// `I1109 06:14:42.535854    1234 file.go:123] msg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KlogHeader<'a> {
    pub level: &'static str,
    pub thread_id: u64,
    pub file: &'a str,
    pub line: u32,
}

/// Parses the klog/glog header at the start of `line`; `None` if it is not
/// one (the whole line then stays as it is, and PRIORITY gives the level).
pub fn parse_klog(line: &str) -> Option<KlogHeader<'_>> {
    let b = line.as_bytes();
    let level = match *b.first()? {
        b'I' => "info",
        b'W' => "warning",
        b'E' => "error",
        b'F' => "fatal",
        _ => return None,
    };
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    // Lmmdd hh:mm:ss.
    if !(digits(1..5)
        && b.get(5) == Some(&b' ')
        && digits(6..8)
        && b.get(8) == Some(&b':')
        && digits(9..11)
        && b.get(11) == Some(&b':')
        && digits(12..14)
        && b.get(14) == Some(&b'.'))
    {
        return None;
    }
    let mut i = 15;
    let frac = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=9).contains(&frac) {
        return None;
    }
    i += frac;
    let spaces = b[i..].iter().take_while(|&&c| c == b' ').count();
    if spaces == 0 {
        return None;
    }
    i += spaces;
    let tid_len = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if tid_len == 0 || b.get(i + tid_len) != Some(&b' ') {
        return None;
    }
    let thread_id = line[i..i + tid_len].parse().ok()?;
    i += tid_len + 1;
    // file:line]
    let rest = &line[i..];
    let close = rest.find(']')?;
    let (file, num) = rest[..close].rsplit_once(':')?;
    if file.is_empty() || file.contains(' ') || num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(KlogHeader { level, thread_id, file, line: num.parse().ok()? })
}

/// syslog severity names for PRIORITY 0–7 (RFC 5424 keywords, ECS style).
pub fn syslog_severity(priority: u8) -> Option<&'static str> {
    const NAMES: [&str; 8] = ["emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"];
    NAMES.get(priority as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn klog_lines_table() {
        // (line, level, file, line number, thread id)
        type Want = Option<(&'static str, &'static str, u32, u64)>;
        let table: &[(&str, Want)] = &[
            ("I1109 06:14:42.535854    1234 file.go:123] msg", Some(("info", "file.go", 123, 1234))),
            (
                "W0101 00:00:00.000001       1 kubelet.go:2409] Pod sandbox changed",
                Some(("warning", "kubelet.go", 2409, 1)),
            ),
            (
                "E1231 23:59:59.999999 4294967 pod_workers.go:1301] \"Error syncing pod\" err=\"x\"",
                Some(("error", "pod_workers.go", 1301, 4294967)),
            ),
            ("F0615 12:00:00.5 77 server.go:9] boom", Some(("fatal", "server.go", 9, 77))),
            (
                "I1109 06:14:42.535854 1234 pkg/kubelet/kubelet.go:1] nested path",
                Some(("info", "pkg/kubelet/kubelet.go", 1, 1234)),
            ),
            ("I1109 06:14:42.535854 1234 file.go:123]", Some(("info", "file.go", 123, 1234))),
            ("D1109 06:14:42.535854 1234 file.go:123] not a klog level", None),
            ("I1109 06:14:42 1234 file.go:123] no fraction", None),
            ("I1109 06:14:42.535854 file.go:123] no thread id", None),
            ("I1109 06:14:42.535854 1234 file.go] no line", None),
            ("I1109 06:14:42.535854 1234 file.go:12a] bad line", None),
            ("Info: starting kubelet", None),
            ("", None),
            ("I110", None),
        ];
        for (line, want) in table {
            let got = parse_klog(line).map(|k| (k.level, k.file, k.line, k.thread_id));
            assert_eq!(got, *want, "{line:?}");
        }
    }
}
