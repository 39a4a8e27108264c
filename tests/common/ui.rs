//! Helpers for the tests of what stepwise shows: output made stable for
//! snapshots (times, durations, digests, temp paths), and a pseudo-terminal.

use std::path::Path;

use regex::Regex;
use serde_json::Value;

/// Replaces what changes from run to run with placeholders: the temp dir,
/// dates, durations.
pub fn normalize(text: &str, dir: &Path) -> String {
    let mut text = text.to_string();
    for d in [dir.to_path_buf(), dir.canonicalize().unwrap_or_default()] {
        let d = d.display().to_string();
        if !d.is_empty() {
            text = text.replace(&d, "[DIR]");
        }
    }
    let date = Regex::new(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC").unwrap();
    let text = date.replace_all(&text, "[DATE]");
    let duration = Regex::new(r"\b(\d+h\d{2}m|\d+m\d{2}s|\d+\.\d+s|\d+ms)\b").unwrap();
    let text = duration.replace_all(&text, "[T]");
    let digest = Regex::new(r"\b[0-9a-f]{8}\b").unwrap();
    digest.replace_all(&text, "[HASH]").into_owned()
}

/// [`normalize`], and every run of spaces cut to two: the columns of a
/// table are as wide as the (varying) durations in them.
pub fn normalize_table(text: &str, dir: &Path) -> String {
    let spaces = Regex::new(r"  +").unwrap();
    normalize(text, dir)
        .lines()
        .map(|l| spaces.replace_all(l, "  ").into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// [`normalize`] for a JSON document: times, durations, pids and digests
/// become placeholders, strings are normalised as text.
pub fn normalize_json(value: &Value, dir: &Path) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        (_, Value::Null) => Value::Null,
                        (
                            "at" | "started_at" | "finished_at" | "generated_at",
                            Value::Number(_),
                        ) => "[MS]".into(),
                        ("duration_ms", Value::Number(_)) => "[DURATION]".into(),
                        ("pid" | "running", Value::Number(_)) => "[PID]".into(),
                        ("fingerprint" | "was" | "now", Value::String(_)) => "[DIGEST]".into(),
                        _ => normalize_json(v, dir),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| normalize_json(v, dir)).collect()),
        Value::String(s) => Value::String(normalize(s, dir)),
        other => other.clone(),
    }
}

/// Pretty, normalised JSON text for a snapshot.
pub fn json_snapshot(text: &str, dir: &Path) -> String {
    let value: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"));
    serde_json::to_string_pretty(&normalize_json(&value, dir)).unwrap()
}
