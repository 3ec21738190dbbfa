//! Keys Elasticsearch cannot take as field names (docs/fields.md, "Keys"):
//! renamed so that every value is kept and no two keys become one.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::event::{Unknown, UserInfo};

/// A key Elasticsearch cannot take as a field name, or would read as a path:
/// empty, only whitespace (as Java sees it), or with dots.
fn needs_new_name(key: &str) -> bool {
    key.is_empty() || key.contains('.') || key.chars().all(java_whitespace)
}

/// `Character.isWhitespace` is what Elasticsearch checks a blank name with; it
/// includes U+001C–U+001F, which `char::is_whitespace` does not. (The union is
/// a little wider than Java's; a key renamed for nothing is harmless.)
fn java_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The name a key gets (docs/fields.md, "Keys"): dots become `_`, an empty key
/// `_empty_`, a key of only whitespace `_blank_`; `taken` says which names are
/// in use, and a clash gets `~2`, `~3`, … so that no value is lost.
fn new_name(key: &str, taken: impl Fn(&str) -> bool) -> String {
    let base = if key.is_empty() {
        "_empty_".to_string()
    } else if key.chars().all(java_whitespace) {
        "_blank_".to_string()
    } else {
        key.replace('.', "_")
    };
    if !taken(&base) {
        return base;
    }
    (2u32..).map(|n| format!("{base}~{n}")).find(|k| !taken(k)).expect("some suffix is free")
}

/// Renames the keys of a map (annotations) that Elasticsearch cannot
/// take. Keys that need no change keep their names; the others are renamed in
/// sorted order, so the result is deterministic.
pub(super) fn sanitize_keys<V>(map: &mut BTreeMap<Cow<'_, str>, V>) {
    if !map.keys().any(|k| needs_new_name(k)) {
        return;
    }
    let mut renamed = Vec::new();
    for (k, v) in std::mem::take(map) {
        if needs_new_name(&k) {
            renamed.push((k, v));
        } else {
            map.insert(k, v);
        }
    }
    for (k, v) in renamed {
        let name = new_name(&k, |n| map.contains_key(n));
        map.insert(Cow::Owned(name), v);
    }
}

/// The names of a user's unknown fields. `extra` keeps its keys as
/// kube-apiserver sends them (`authentication.kubernetes.io/pod-name`):
/// rules query them so, and `extra` is a `flattened` field, which takes any
/// key, dots included, without a mapping per key.
pub(super) fn sanitize_user(user: &mut UserInfo<'_>) {
    sanitize_unknown(&mut user.unknown);
}

/// The same for the names of unknown fields. A renamed one can clash with
/// another unknown field, never with a known one (those have no `_` or `~`).
pub(super) fn sanitize_unknown(unknown: &mut Unknown<'_>) {
    let fields = &mut unknown.0;
    for i in 0..fields.len() {
        if needs_new_name(&fields[i].0) {
            let name = new_name(&fields[i].0, |n| fields.iter().any(|(k, _)| k == n));
            fields[i].0 = Cow::Owned(name);
        }
    }
}
