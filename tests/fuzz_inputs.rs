//! The fuzzers' entry points in `cargo test`: the pipeline file, the journal
//! and `checkpoint import` get arbitrary bytes and well-formed-but-wrong
//! structures, through the library and through the real binary. Whatever
//! they get: no panic; through the binary, exit code 2 with a message and
//! nothing written. Every file of the fuzzers' corpora and every crash they
//! found (fuzz/regressions/) is replayed here too.

mod common;
use common::*;

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

use proptest::prelude::*;
use stepwise::checkpoint::parse_checkpoint;

// ---- the corpora and the crashes found ----

fn replay(dir: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for sub in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(sub).join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            // (A fuzzer running meanwhile may drop a file it reduced.)
            let Ok(data) = std::fs::read(entry.path()) else {
                continue;
            };
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails", entry.path().display());
            n += 1;
        }
    }
    n
}

#[test]
fn every_pipeline_corpus_file_and_regression_passes() {
    assert!(replay("pipeline", checks::pipeline) > 0);
}

#[test]
fn every_journal_corpus_file_and_regression_passes() {
    assert!(replay("journal", checks::journal) > 0);
}

#[test]
fn every_checkpoint_corpus_file_and_regression_passes() {
    assert!(replay("checkpoint", checks::checkpoint) > 0);
}

// ---- arbitrary bytes, through the library ----

proptest! {
    #[test]
    fn arbitrary_bytes_as_a_pipeline_file(data in prop::collection::vec(any::<u8>(), 0..400)) {
        checks::pipeline(&data);
    }

    #[test]
    fn arbitrary_text_as_a_pipeline_file(text in "[\\[\\]a-z =\"\n{},.0-9_]{0,300}") {
        checks::pipeline(text.as_bytes());
    }

    #[test]
    fn arbitrary_bytes_as_a_journal(data in prop::collection::vec(any::<u8>(), 0..400)) {
        checks::journal(&data);
    }

    #[test]
    fn arbitrary_bytes_as_a_checkpoint(data in prop::collection::vec(any::<u8>(), 0..200)) {
        checks::checkpoint(&data);
    }
}

// ---- well-formed but wrong, through the library ----

/// A TOML value of any type, as text.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"\"".to_string()),
        "\"[a-z./ *-]{1,8}\"".prop_map(|s| s),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("-1".to_string()),
        Just("1.5".to_string()),
        Just("true".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("[]".to_string()),
        Just("[1, 2]".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        Just("[\"..\", \"/etc\"]".to_string()),
        Just("{}".to_string()),
        Just("{ X = [1] }".to_string()),
        Just("{ \"\" = \"v\" }".to_string()),
        Just("\"10 parsecs\"".to_string()),
        Just("\"1h30m\"".to_string()),
    ]
}

const KEYS: &[&str] = &[
    "name",
    "run",
    "dir",
    "env",
    "secret_env",
    "after",
    "inputs",
    "outputs",
    "keep_failed_outputs",
    "timeout",
    "retries",
    "retry_delay",
    "nmae",
    "shell",
    "jobs",
];

/// A pipeline file that is valid TOML with the right tables, and values of
/// any type under known (and misspelt) keys.
fn wrong_pipeline() -> impl Strategy<Value = String> {
    let entry = (prop::sample::select(KEYS), toml_value());
    let step = prop::collection::vec(entry, 0..6);
    let settings = prop::collection::vec(
        (
            prop::sample::select(&["shell", "env", "sync", "jobs", "kill_grace", "step"][..]),
            toml_value(),
        ),
        0..3,
    );
    (settings, prop::collection::vec(step, 0..4)).prop_map(|(settings, steps)| {
        let mut text = String::new();
        if !settings.is_empty() {
            text += "[pipeline]\n";
            for (k, v) in dedup(settings) {
                text += &format!("{k} = {v}\n");
            }
        }
        for step in steps {
            text += "[[step]]\n";
            for (k, v) in dedup(step) {
                text += &format!("{k} = {v}\n");
            }
        }
        text
    })
}

/// TOML refuses a key twice; keep the first.
fn dedup(entries: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    let mut seen = Vec::new();
    entries
        .into_iter()
        .filter(|(k, _)| {
            let new = !seen.contains(k);
            seen.push(*k);
            new
        })
        .collect()
}

/// A JSON value of any type, as text.
fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("1e400".to_string()),
        Just("-1".to_string()),
        Just("4294967296".to_string()),
        Just("\"\"".to_string()),
        "\"[a-z0-9 ]{1,8}\"".prop_map(|s| s),
        Just("\"2a48720f9c226b95e7b2d26ff3324673\"".to_string()),
        Just("[]".to_string()),
        Just("[[\"a\", true]]".to_string()),
        Just("{}".to_string()),
        Just("{\"run\":\"zz\"}".to_string()),
        Just("{\"a\":{\"fingerprint\":\"00\"}}".to_string()),
    ]
}

const FIELDS: &[&str] = &[
    "v",
    "event",
    "run",
    "step",
    "attempt",
    "at",
    "pid",
    "fingerprint",
    "parts",
    "stamps",
    "ok",
    "exit_code",
    "signal",
    "reason",
    "error",
    "duration_ms",
    "steps",
    "all",
    "attempts",
    "missing",
];

const EVENTS: &[&str] = &["run", "start", "finish", "forget", "import", "end", "other"];

/// A journal line that is a JSON object with the journal's fields, some of
/// the wrong type or missing.
fn wrong_record() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just(1u32), Just(0), Just(2), any::<u32>()],
        prop::sample::select(EVENTS),
        prop::collection::vec((prop::sample::select(FIELDS), json_value()), 0..6),
    )
        .prop_map(|(v, event, fields)| {
            let mut map = serde_json::Map::new();
            map.insert("v".into(), v.into());
            map.insert("event".into(), event.into());
            map.insert("at".into(), 1.into());
            for (k, value) in fields {
                map.insert(k.into(), serde_json::from_str(&value).unwrap_or_default());
            }
            serde_json::Value::Object(map).to_string()
        })
}

proptest! {
    #[test]
    fn wrong_pipelines_are_refused_with_positioned_messages(text in wrong_pipeline()) {
        checks::pipeline(text.as_bytes());
        if let Err(stepwise::Error::Invalid(diagnostics)) =
            stepwise::Pipeline::parse(Path::new("stepwise.toml"), Path::new("/p"), &text)
        {
            for d in diagnostics {
                prop_assert!(d.to_string().starts_with("error: "), "{}", d);
            }
        }
    }

    #[test]
    fn wrong_records_are_read_or_refused_never_misread(
        lines in prop::collection::vec(wrong_record(), 1..8),
        newline_at_end in any::<bool>(),
    ) {
        let mut text = lines.join("\n");
        if newline_at_end {
            text.push('\n');
        }
        checks::journal(text.as_bytes());
    }

    #[test]
    fn wrong_checkpoints_are_refused(value in json_value(), wrap in 0usize..4) {
        let text = match wrap {
            0 => value.clone(),
            1 => format!("[{value}]"),
            2 => format!("[[{value}]]"),
            _ => format!("[[\"a\", {value}]]"),
        };
        checks::checkpoint(text.as_bytes());
        let exactly_pairs = serde_json::from_str::<Vec<(String, bool)>>(&text).is_ok();
        prop_assert_eq!(parse_checkpoint(text.as_bytes()).is_ok(), exactly_pairs);
    }
}

// ---- through the real binary: exit 2, a message, nothing written ----

fn binary_config() -> ProptestConfig {
    // Each case starts processes; a few dozen are plenty on top of the
    // library cases above.
    ProptestConfig::with_cases(24)
}

proptest! {
    #![proptest_config(binary_config())]

    #[test]
    fn a_wrong_pipeline_file_makes_every_command_exit_2_writing_nothing(
        text in prop_oneof![
            wrong_pipeline(),
            prop::collection::vec(any::<u8>(), 1..200)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ]
    ) {
        let valid =
            stepwise::Pipeline::parse(Path::new("stepwise.toml"), Path::new("/p"), &text).is_ok();
        prop_assume!(!valid);
        let space = Space::with(&text);
        for args in [&["run"][..], &["plan"], &["forget", "--all"], &["checkpoint", "import", "cp.json"]] {
            let out = space.run(args);
            prop_assert_eq!(out.code, 2, "{:?}: {}", args, out.stderr);
            prop_assert!(out.stderr.starts_with("error"), "{}", out.stderr);
            prop_assert!(!space.exists(".stepwise"), "{:?} created the state dir", args);
        }
    }

    #[test]
    fn a_corrupt_journal_makes_every_command_exit_2_leaving_it_byte_identical(
        garbage in prop_oneof![
            wrong_record(),
            prop::collection::vec(any::<u8>().prop_filter("one line", |b| *b != b'\n'), 1..80)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ]
    ) {
        // A bad line followed by a good one: corruption, not a torn tail.
        let mut journal = format!("{garbage}\n").into_bytes();
        journal.extend_from_slice(b"{\"v\":1,\"event\":\"run\",\"run\":1,\"at\":1,\"pid\":1}\n");
        prop_assume!(stepwise::journal::read_bytes(Path::new("j"), &journal, &mut |_| {}).is_err());
        let space = Space::with(&chain(&["a"], &[]));
        space.write("cp.json", "[[\"a\", true]]");
        std::fs::create_dir(space.join(".stepwise")).unwrap();
        std::fs::write(space.join(".stepwise/journal.jsonl"), &journal).unwrap();
        for args in [&["run"][..], &["plan"], &["status"], &["forget", "a"], &["checkpoint", "import", "cp.json"], &["checkpoint", "export"]] {
            let out = space.run(args);
            prop_assert_eq!(out.code, 2, "{:?}: {}", args, out.stderr);
            prop_assert!(out.stderr.contains("error: the journal"), "{}", out.stderr);
            prop_assert_eq!(space.journal_bytes(), Some(journal.clone()));
        }
        prop_assert!(space.ran().is_empty());
    }

    #[test]
    fn a_bad_checkpoint_is_refused_with_exit_2_and_the_journal_untouched(
        data in prop_oneof![
            json_value().prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..100),
        ],
        history in any::<bool>(),
    ) {
        prop_assume!(parse_checkpoint(&data).is_err());
        let space = Space::with(&chain(&["a"], &[]));
        if history {
            space.run(&["run"]).success();
        }
        let before = space.journal_bytes();
        std::fs::write(space.join("cp.json"), &data).unwrap();
        let out = space.run(&["checkpoint", "import", "cp.json"]);
        prop_assert_eq!(out.code, 2, "{}", out.stderr);
        prop_assert!(out.stderr.contains("is not a checkpoint"), "{}", out.stderr);
        prop_assert_eq!(space.journal_bytes(), before);
        prop_assert_eq!(space.exists(".stepwise"), history);
    }
}
