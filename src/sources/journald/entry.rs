//! One journal entry as the reader thread fills it: only the fields the
//! document needs, as the bytes libsystemd returns, in buffers reused from
//! entry to entry.

/// The fields of one journal entry that the document uses. Buffers are reused
/// from entry to entry; an empty buffer means "field absent".
#[derive(Debug, Default, Clone)]
pub struct RawEntry {
    /// `__REALTIME_TIMESTAMP`: microseconds since the Unix epoch.
    pub realtime_usec: u64,
    /// `__CURSOR`, as libsystemd formats it.
    pub cursor: String,
    pub message: Vec<u8>,
    pub priority: Vec<u8>,
    pub unit: Vec<u8>,
    pub identifier: Vec<u8>,
    pub pid: Vec<u8>,
    pub comm: Vec<u8>,
    pub hostname: Vec<u8>,
    pub boot_id: Vec<u8>,
    pub machine_id: Vec<u8>,
}

impl RawEntry {
    pub fn clear(&mut self) {
        self.realtime_usec = 0;
        self.cursor.clear();
        for b in [
            &mut self.message,
            &mut self.priority,
            &mut self.unit,
            &mut self.identifier,
            &mut self.pid,
            &mut self.comm,
            &mut self.hostname,
            &mut self.boot_id,
            &mut self.machine_id,
        ] {
            b.clear();
        }
    }

    /// Takes one `NAME=value` datum as `sd_journal_enumerate_data` returns it.
    /// Only the first occurrence of a field counts (journald allows repeats).
    pub fn set_field(&mut self, data: &[u8]) {
        let Some(eq) = memchr::memchr(b'=', data) else { return };
        self.set_name_value(&data[..eq], &data[eq + 1..]);
    }

    /// [`set_field`](Self::set_field) with the datum already split at its
    /// first `=`: the `systemd` crate finds the `=` of every datum it
    /// enumerates, so the reader does not search for it a second time.
    #[inline]
    pub fn set_name_value(&mut self, name: &[u8], value: &[u8]) {
        let slot = match name {
            b"MESSAGE" => &mut self.message,
            b"PRIORITY" => &mut self.priority,
            b"_SYSTEMD_UNIT" => &mut self.unit,
            b"SYSLOG_IDENTIFIER" => &mut self.identifier,
            b"_PID" => &mut self.pid,
            b"_COMM" => &mut self.comm,
            b"_HOSTNAME" => &mut self.hostname,
            b"_BOOT_ID" => &mut self.boot_id,
            b"_MACHINE_ID" => &mut self.machine_id,
            _ => return,
        };
        if slot.is_empty() {
            slot.extend_from_slice(value);
        }
    }
}
