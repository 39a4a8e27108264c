//! The properties the fuzz targets check, shared with `cargo test`
//! (tests/fuzz_inputs.rs replays every corpus and regression file through
//! them), so a crash found by the fuzzer stays a test once it is fixed.
//!
//! Each function panics if stepwise misbehaves on `data`: a panic inside
//! stepwise, or an answer that breaks a stated guarantee.

use std::path::Path;

use stepwise::checkpoint::{format_checkpoint, parse_checkpoint};
use stepwise::journal::{Outcome, Record, read_bytes};
use stepwise::state::history::{History, export_checkpoint};
use stepwise::{Error, Pipeline};

/// The pipeline file parser and validator: any text is either a pipeline or
/// a list of positioned diagnostics. A valid one is also planned, with an
/// empty and with a made-up history, which walks the graph the validator
/// accepted.
pub fn pipeline(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match Pipeline::parse(Path::new("stepwise.toml"), Path::new("/p"), source) {
        Ok(pipeline) => {
            let order = pipeline.topological_order();
            assert_eq!(order.len(), pipeline.steps.len(), "a cycle got through");
            let scope = pipeline.scope(&[]);
            let plan = stepwise::plan(&pipeline, &History::default(), &scope, None, None);
            assert_eq!(plan.remaining(), pipeline.steps.len());
            let mut history = History::default();
            for (i, step) in pipeline
                .steps
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == 0)
            {
                history.apply(Record::AttemptStarted {
                    run: 1,
                    step: step.name.clone(),
                    attempt: 1,
                    at: i as u64,
                    stamp: None,
                });
                history.apply(Record::AttemptFinished {
                    run: 1,
                    step: step.name.clone(),
                    attempt: 1,
                    at: i as u64,
                    duration_ms: 0,
                    outcome: Outcome::Success,
                    value: None,
                });
            }
            let plan = stepwise::plan(&pipeline, &history, &scope, None, None);
            assert_eq!(plan.done() + plan.remaining(), pipeline.steps.len());
            for id in pipeline.ids() {
                for path in pipeline.output_paths(id) {
                    assert!(path.starts_with("/p/"), "output {} escapes", path.display());
                    let first = path
                        .strip_prefix("/p")
                        .ok()
                        .and_then(|p| p.components().next());
                    let first = first.and_then(|c| c.as_os_str().to_str()).unwrap_or("");
                    assert!(
                        !stepwise::state::dir::is_state_dir_name(first),
                        "output {} in the state dir",
                        path.display()
                    );
                }
                let name = &pipeline.step(id).name;
                assert!(
                    !name.contains('/') && !name.starts_with('.'),
                    "step name {name:?} can leave the logs folder"
                );
            }
        }
        Err(Error::Invalid(diagnostics)) => {
            assert!(!diagnostics.is_empty(), "rejected without a reason");
            for d in diagnostics {
                // Rendering slices the source at the diagnostic's span.
                assert!(!d.to_string().is_empty());
            }
        }
        Err(other) => panic!("parse can only fail with Invalid, got {other}"),
    }
}

/// The journal reader: any bytes are records (with a torn tail or zero-byte
/// debris noted) or an error naming a line. Every record it accepts is
/// written back identically; folding them is total; `fsck` agrees with the
/// reader, and what `fsck --repair` would keep reads back cleanly.
pub fn journal(data: &[u8]) {
    let path = Path::new("journal.jsonl");
    let examination = stepwise::state::fsck::examine(data);
    let mut kept = 0;
    read_bytes(path, &examination.kept, &mut |_| kept += 1).expect("what fsck keeps reads back");
    assert_eq!(kept, examination.records);
    assert!(
        stepwise::state::fsck::examine(&examination.kept)
            .unreadable
            .is_empty()
    );

    let mut records = Vec::new();
    let report = match read_bytes(path, data, &mut |r| records.push(r)) {
        Ok(report) => report,
        Err(Error::CorruptJournal { line, .. }) => {
            assert!(
                examination.unreadable.iter().any(|u| u.line == line),
                "fsck missed line {line}"
            );
            return;
        }
        Err(Error::NewerJournal { line, version, .. }) => {
            assert_eq!(examination.newer, Some((line, version)));
            return;
        }
        Err(other) => panic!("reading bytes can only fail as corrupt or newer, got {other}"),
    };
    assert!(examination.unreadable.is_empty() && examination.newer.is_none());
    assert_eq!(report.records, records.len());
    assert_eq!(examination.records, records.len());
    assert!(report.valid_len as usize <= data.len());
    for record in &records {
        let line = record.to_line();
        let again = Record::from_line(&line[..line.len() - 1]).expect("our own line reads back");
        assert_eq!(&again, record);
        if let Record::AttemptStarted { stamp: Some(s), .. } = record {
            let _ = s.parts();
        }
    }
    let history = History::from_records(records.iter().cloned());
    let _ = history.checkpoint().count();
    let _ = history.next_run();
    let _ = export_checkpoint(records);
    // What a writer keeps of the file reads back as the same records.
    let mut again = 0;
    read_bytes(path, &data[..report.valid_len as usize], &mut |_| {
        again += 1
    })
    .expect("the kept part reads");
    assert_eq!(again, report.records);
}

/// `checkpoint import`'s parser: any bytes are a checkpoint or a message,
/// and whatever it accepts survives export and import unchanged.
pub fn checkpoint(data: &[u8]) {
    match parse_checkpoint(data) {
        Ok(attempts) => {
            let text = format_checkpoint(&attempts);
            assert_eq!(parse_checkpoint(text.as_bytes()).as_ref(), Ok(&attempts));
            let names: Vec<&str> = attempts.iter().map(|(n, _)| n.as_str()).collect();
            let plan =
                stepwise::resume_from_checkpoint(&names, attempts.iter().map(|(n, ok)| (n, *ok)));
            for (name, ok) in &attempts {
                if *ok {
                    assert!(plan.done.contains(&name.as_str()));
                }
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
}
