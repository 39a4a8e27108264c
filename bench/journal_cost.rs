//! The journal's per-record cost, for callgrind (instruction counts do not
//! depend on what else the machine is doing):
//!
//!     cargo build --release --example journal_cost
//!     valgrind --tool=callgrind --callgrind-out-file=/tmp/jc.out \
//!         target/release/examples/journal_cost 20000
//!     callgrind_annotate --inclusive=yes /tmp/jc.out | grep -E 'encode|decode'
//!
//! `encode` turns N records (a start with a stamp of six components and a
//! finish, alternately: what a run writes) into lines and appends them to a
//! journal; `decode` reads that journal back. Divide each function's
//! inclusive count by N for the cost per record.

use std::path::Path;

use stepwise::SyncMode;
use stepwise::fingerprint::{Components, Digest};
use stepwise::journal::{JsonlStore, Outcome, Record, Stamp, Store, read_file};

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let step = format!("process[item=sample_{:05}]", i / 2);
            let at = 1_795_975_940_540 + i as u64;
            if i % 2 == 0 {
                let mut parts = Components::default();
                for key in [
                    "dir",
                    "run",
                    "shell",
                    "input:data/in.csv",
                    "env:HOME",
                    "after",
                ] {
                    parts.insert(key, Digest::of(format!("{key}{i}").as_bytes()));
                }
                Record::AttemptStarted {
                    run: 7,
                    step,
                    attempt: 1,
                    at,
                    stamp: Some(Stamp::new(Digest::of(&i.to_le_bytes()), parts)),
                }
            } else {
                Record::AttemptFinished {
                    run: 7,
                    step,
                    attempt: 1,
                    at,
                    duration_ms: 12,
                    outcome: Outcome::Success,
                    value: None,
                }
            }
        })
        .collect()
}

#[inline(never)]
fn encode(path: &Path, records: &[Record]) {
    let mut store = JsonlStore::open(path, SyncMode::Batched).expect("open");
    for record in records {
        store.append(record).expect("append");
    }
    store.close().expect("close");
}

#[inline(never)]
fn decode(path: &Path) -> usize {
    let mut n = 0;
    read_file(path, &mut |_| n += 1).expect("read");
    n
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("journal_cost.{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("journal.jsonl");
    let records = records(n);
    encode(&path, &records);
    let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    let read = decode(&path);
    assert_eq!(read, n);
    println!(
        "{n} records, {bytes} bytes ({} per record)",
        bytes / n as u64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
