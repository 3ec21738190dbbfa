//! Index names from a strftime-style pattern (`audit-%Y.%m.%d`) and the event's own
//! time, so that a replay lands in the same index as the first write.

use chrono::{DateTime, Datelike, Utc};

/// A validated index pattern. Only the date specifiers that make sense in an index
/// name are accepted; everything else must be a legal index name character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    raw: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Year,
    Month,
    Day,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexPatternError {
    #[error("index pattern is empty")]
    Empty,
    #[error("index pattern {0:?} uses unsupported specifier %{1}; use %Y, %m or %d")]
    Specifier(String, char),
    #[error("index pattern {0:?} has character {1:?}, which Elasticsearch does not allow in index names (they must be lowercase, without \\ / * ? \" < > | , # : or space)")]
    Character(String, char),
    #[error("index pattern {0:?} must not start with -, _ or +")]
    Start(String),
}

impl IndexPattern {
    pub fn parse(raw: &str) -> Result<Self, IndexPatternError> {
        if raw.is_empty() {
            return Err(IndexPatternError::Empty);
        }
        if raw.starts_with(['-', '_', '+']) {
            return Err(IndexPatternError::Start(raw.to_string()));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '%' {
                let part = match chars.next() {
                    Some('Y') => Part::Year,
                    Some('m') => Part::Month,
                    Some('d') => Part::Day,
                    Some(other) => return Err(IndexPatternError::Specifier(raw.to_string(), other)),
                    None => return Err(IndexPatternError::Specifier(raw.to_string(), ' ')),
                };
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(part);
            } else {
                if c.is_uppercase() || " \\/*?\"<>|,#:".contains(c) {
                    return Err(IndexPatternError::Character(raw.to_string(), c));
                }
                literal.push(c);
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(IndexPattern { raw: raw.to_string(), parts })
    }

    /// The index for an event that happened at `time` (UTC).
    pub fn index_for(&self, time: DateTime<Utc>) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(self.raw.len() + 4);
        for part in &self.parts {
            // Written in place: this runs once per document.
            let _ = match part {
                Part::Literal(s) => out.write_str(s),
                Part::Year => write!(out, "{:04}", time.year()),
                Part::Month => write!(out, "{:02}", time.month()),
                Part::Day => write!(out, "{:02}", time.day()),
            };
        }
        out
    }

    /// Whether the name changes with the event's date (`%Y`, `%m`, `%d`).
    pub fn is_dated(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }

    /// The wildcard that matches every index this pattern can produce
    /// (`audit-%Y.%m.%d` → `audit-*`), for index templates and queries.
    pub fn wildcard(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                _ => {
                    out.push('*');
                    break;
                }
            }
        }
        if !out.ends_with('*') && self.parts.iter().any(|p| !matches!(p, Part::Literal(_))) {
            out.push('*');
        }
        out
    }
}

impl std::fmt::Display for IndexPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_from_event_time() {
        let p = IndexPattern::parse("audit-%Y.%m.%d").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 9, 23, 59, 59).unwrap();
        assert_eq!(p.index_for(t), "audit-2026.01.09");
        assert_eq!(p.wildcard(), "audit-*");
    }

    #[test]
    fn static_name_has_no_wildcard() {
        let p = IndexPattern::parse("audit").unwrap();
        assert_eq!(p.wildcard(), "audit");
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(matches!(IndexPattern::parse("Audit-%Y"), Err(IndexPatternError::Character(_, 'A'))));
        assert!(matches!(IndexPattern::parse("audit-%H"), Err(IndexPatternError::Specifier(_, 'H'))));
        assert!(matches!(IndexPattern::parse("_audit"), Err(IndexPatternError::Start(_))));
        assert_eq!(IndexPattern::parse(""), Err(IndexPatternError::Empty));
    }
}
