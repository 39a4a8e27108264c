//! The history snapshot is only a cache: whatever happens to it, every
//! command plans as the journal says.

mod common;
use common::*;

const PIPELINE: &str = "[[step]]\nname = \"a\"\nrun = \"echo a >> ran\"\n\n[[step]]\nname = \"b\"\nrun = \"test -f go\"\nafter = [\"a\"]\n\n[[step]]\nname = \"c\"\nrun = \"echo c >> ran\"\nafter = [\"b\"]\n\n[[step]]\nname = \"d\"\nrun = \"echo d >> ran\"\nafter = []\n";

fn plans(space: &Space) -> (serde_json::Value, String) {
    let json = space.plan_json(&[]);
    let status = space.run(&["status"]);
    (json, status.stdout.clone())
}

#[test]
fn a_corrupt_deleted_or_stale_snapshot_plans_as_the_journal_says() {
    let space = Space::with(PIPELINE);
    space.run(&["run", "-k"]).code(1);
    space.run(&["forget", "d"]).success();
    let snapshot = space.join(".stepwise/history-snapshot");
    // `run` wrote it; `forget` appended after it: stale.
    assert!(snapshot.exists());
    let stale = plans(&space);
    std::fs::remove_file(&snapshot).unwrap();
    let from_journal = plans(&space);
    assert_eq!(stale, from_journal);

    // Current again (a run with nothing new to do... b still fails).
    space.run(&["run", "-k"]).code(1);
    let current = plans(&space);
    let bytes = std::fs::read(&snapshot).unwrap();
    for at in [0, 40, bytes.len() / 3, bytes.len() - 2] {
        let mut bad = bytes.clone();
        bad[at] ^= 1;
        std::fs::write(&snapshot, &bad).unwrap();
        assert_eq!(plans(&space), current, "flipped byte {at}");
    }
    std::fs::write(&snapshot, b"").unwrap();
    assert_eq!(plans(&space), current);
    std::fs::remove_file(&snapshot).unwrap();
    assert_eq!(plans(&space), current);

    // Then b succeeds; with the old snapshot put back, the journal still wins.
    space.write("go", "");
    space.run(&["run"]).code(0);
    std::fs::write(&snapshot, &bytes).unwrap();
    let done = plans(&space);
    std::fs::remove_file(&snapshot).unwrap();
    assert_eq!(plans(&space), done);
    assert_eq!(done.0["remaining"], 0, "{}", done.0);
}

#[test]
fn after_gc_the_old_snapshot_is_never_used() {
    let space = Space::with(PIPELINE);
    space.write("go", "");
    space.run(&["run"]).success();
    space.run(&["forget", "a"]).success();
    space.run(&["run"]).success();
    let snapshot = space.join(".stepwise/history-snapshot");
    let old = std::fs::read(&snapshot).unwrap();
    space.run(&["gc"]).success();
    assert_ne!(
        std::fs::read(&snapshot).unwrap(),
        old,
        "gc replaces it with one of the journal it wrote"
    );
    // Even put back, it describes another file.
    std::fs::write(&snapshot, &old).unwrap();
    let with_old = plans(&space);
    std::fs::remove_file(&snapshot).unwrap();
    assert_eq!(plans(&space), with_old);
    space.run(&["run"]).success().stderr_has("nothing to do");
}

#[test]
fn every_command_that_writes_the_journal_leaves_a_snapshot_the_next_one_uses() {
    let space = Space::with(PIPELINE);
    space.write("go", "");
    space.run(&["run"]).success();
    let snapshot = space.join(".stepwise/history-snapshot");
    for args in [
        &["forget", "a"][..],
        &["run"],
        &["gc"],
        &["checkpoint", "import", "cp.json"],
    ] {
        space.write("cp.json", r#"[["a", true]]"#);
        let _ = std::fs::remove_file(&snapshot);
        space.run(args).success();
        assert!(snapshot.exists(), "{args:?} left no snapshot");
        // What it describes is what the journal says.
        let with_snapshot = plans(&space);
        std::fs::remove_file(&snapshot).unwrap();
        assert_eq!(plans(&space), with_snapshot, "after {args:?}");
    }
}

/// What the snapshot skips is still judged as if read: zeros among records
/// in the part it covers are still reported, and a record without a
/// checksum appended after checksummed ones is still refused.
#[test]
fn what_a_snapshot_covers_still_counts_for_warnings_and_checksums() {
    let space = Space::with(PIPELINE);
    space.run(&["run", "-k"]).code(1);
    let mut bytes = space.journal_bytes().unwrap();
    let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    bytes.splice(second..second, [0u8; 12]);
    std::fs::write(space.join(".stepwise/journal.jsonl"), &bytes).unwrap();
    // This run reads the whole journal and leaves a snapshot covering it.
    space.run(&["run", "-k"]).code(1).stderr_has("line 2 ");
    let snapshot = space.join(".stepwise/history-snapshot");
    let covered = std::fs::metadata(&snapshot).unwrap().modified().unwrap();
    space.run(&["plan"]).success().stderr_has("line 2 ");
    assert_eq!(
        std::fs::metadata(&snapshot).unwrap().modified().unwrap(),
        covered
    );

    let mut journal = std::fs::OpenOptions::new()
        .append(true)
        .open(space.join(".stepwise/journal.jsonl"))
        .unwrap();
    std::io::Write::write_all(
        &mut journal,
        b"{\"v\":1,\"event\":\"forget\",\"at\":1,\"all\":true}\n",
    )
    .unwrap();
    let lines = space.journal().lines().count();
    space
        .run(&["plan"])
        .code(2)
        .stderr_has(&format!("journal.jsonl:{lines}"))
        .stderr_has("without a checksum");
}
