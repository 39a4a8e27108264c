//! The history snapshot, `.stepwise/history-snapshot`: the folded journal
//! ([`History`]) as of a byte offset of the journal, so that opening a state
//! dir reads the snapshot and parses only the journal's tail. At 10,000
//! steps, parsing the journal's JSON was a fifth of a no-op run.
//!
//! It is only a cache. It is trusted only while it describes the journal
//! file as it is:
//!
//! - the journal is the same file (device and inode) and at least as long
//!   as the part the snapshot covers;
//! - and either its size, mtime and ctime are those it had when the
//!   snapshot was written (nothing was written to it since), or the covered
//!   part still has the checksums (XXH3-128) the snapshot holds for it, 1 MiB
//!   at a time (it was only appended to since).
//!
//! A journal rewritten by stepwise (`gc`, compaction, `fsck --repair`) is a
//! new file, and the snapshot is removed first anyway. A snapshot that is
//! missing, unreadable, fails its checksum, comes from another stepwise
//! build or fails any check above is ignored and the whole journal is read:
//! deleting or damaging it changes nothing but speed. It is written
//! atomically (temp file, fsync, rename, fsync of the folder) by `run`,
//! holding the lock, after the journal's final fsync.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::fingerprint::Digest;
use crate::journal::{ReadReport, Resume};
use crate::state::history::History;

/// The file's name in the state dir.
pub const FILE: &str = "history-snapshot";
const MAGIC: &[u8; 16] = b"stepwise-hs-v04\n";
/// The covered part of the journal is checked this many bytes at a time.
const CHUNK: u64 = 1 << 20;

/// The snapshot beside the journal at `journal`.
pub fn beside(journal: &Path) -> PathBuf {
    journal.with_file_name(FILE)
}

/// Removes the snapshot beside `journal`, before the journal is replaced.
pub fn remove_beside(journal: &Path) {
    let _ = std::fs::remove_file(beside(journal));
}

/// A snapshot checked against the journal, ready to be read on from.
pub struct Valid {
    /// The history of the covered part.
    pub history: History,
    /// Where to read the journal on from.
    pub resume: Resume,
    /// The digests of the covered part's chunks: the next snapshot only
    /// hashes what lies past them.
    pub chunks: Vec<Digest>,
}

/// The journal file's identity and stamp.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct JournalStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl JournalStamp {
    fn of(meta: &std::fs::Metadata) -> JournalStamp {
        JournalStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// The snapshot at `path`, if it can be trusted for the journal open as
/// `journal`; `None` means read the whole journal.
pub fn load(path: &Path, journal: &File) -> Option<Valid> {
    let bytes = std::sync::Arc::new(std::fs::read(path).ok()?);
    if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (key, rest) = bytes[MAGIC.len()..].split_at(16);
    if key != build_key().0 {
        return None;
    }
    let (checksum, body) = rest.split_at(16);
    if Digest::checksum(body).0 != checksum {
        return None;
    }
    let mut r = Dec::new(body);
    r.shared = Some((&bytes, MAGIC.len() + 32));
    let then = JournalStamp {
        dev: r.u64()?,
        ino: r.u64()?,
        size: r.u64()?,
        mtime_ns: r.i128()?,
        ctime_ns: r.i128()?,
    };
    let offset = r.u64()?;
    let lines = r.usize()?;
    let records = r.usize()?;
    let zero_lines = (0..r.usize()?)
        .map(|_| r.usize())
        .collect::<Option<Vec<_>>>()?;
    let zeros_in_lines = (0..r.usize()?)
        .map(|_| r.usize())
        .collect::<Option<Vec<_>>>()?;
    let checked = match r.u64()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let chunks = (0..r.usize()?)
        .map(|_| r.digest())
        .collect::<Option<Vec<_>>>()?;
    if chunks.len() as u64 != offset.div_ceil(CHUNK) {
        return None;
    }
    let now = JournalStamp::of(&journal.metadata().ok()?);
    if (now.dev, now.ino) != (then.dev, then.ino) || now.size < offset || offset == 0 {
        return None;
    }
    // Written to since: only appending keeps what the snapshot covers.
    if now != then && digests(journal, 0, offset).ok()? != chunks {
        return None;
    }
    let history = History::decode(&mut r)?;
    if !r.done() {
        return None;
    }
    Some(Valid {
        history,
        resume: Resume {
            offset,
            lines,
            report: ReadReport {
                records,
                valid_len: offset,
                torn_line: None,
                zero_lines,
                zeros_in_lines,
                checked,
            },
        },
        chunks,
    })
}

/// Writes the snapshot of `history`, the fold of the journal at `journal`
/// up to `state.offset` (whole lines: the file's length, all of it
/// fsynced; `state.lines` is left to this to count). `known` is what the
/// snapshot the journal was read on from held: its chunk digests, the
/// bytes and lines it covered (only the bytes past its whole chunks are
/// read). Best effort: a snapshot that cannot be written costs speed next
/// time, nothing else.
pub fn save(
    path: &Path,
    journal: &Path,
    state: Resume,
    known: (&[Digest], u64, usize),
    history: &History,
) {
    let _ = try_save(path, journal, state, known, history);
}

fn try_save(
    path: &Path,
    journal: &Path,
    mut state: Resume,
    (known, known_offset, known_lines): (&[Digest], u64, usize),
    history: &History,
) -> std::io::Result<()> {
    let file = File::open(journal)?;
    let stamp = JournalStamp::of(&file.metadata()?);
    if stamp.size != state.offset || state.offset == 0 || known_offset > state.offset {
        return Ok(());
    }
    // Chunks known in full stay; a partial last one is hashed again.
    let whole = known.len().min((known_offset / CHUNK) as usize);
    let from = whole as u64 * CHUNK;
    let (fresh, newlines) = digests_counting(&file, from, state.offset, known_offset.max(from))?;
    let mut chunks = known[..whole].to_vec();
    chunks.extend(fresh);
    let known_lines = if known_offset >= from { known_lines } else { 0 };
    state.lines = known_lines + newlines;
    state.report.zero_lines.retain(|&l| l <= state.lines);
    state.report.zeros_in_lines.retain(|&l| l <= state.lines);
    let mut e = Enc(Vec::with_capacity(1 << 16));
    e.u64(stamp.dev);
    e.u64(stamp.ino);
    e.u64(stamp.size);
    e.i128(stamp.mtime_ns);
    e.i128(stamp.ctime_ns);
    e.u64(state.offset);
    e.u64(state.lines as u64);
    e.u64(state.report.records as u64);
    e.u64(state.report.zero_lines.len() as u64);
    for &l in &state.report.zero_lines {
        e.u64(l as u64);
    }
    e.u64(state.report.zeros_in_lines.len() as u64);
    for &l in &state.report.zeros_in_lines {
        e.u64(l as u64);
    }
    e.u64(u64::from(state.report.checked));
    e.u64(chunks.len() as u64);
    for d in &chunks {
        e.bytes(&d.0);
    }
    history.encode(&mut e);
    let mut out = Vec::with_capacity(MAGIC.len() + 32 + e.0.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&build_key().0);
    out.extend_from_slice(&Digest::checksum(&e.0).0);
    out.extend_from_slice(&e.0);
    crate::hash::write_atomically(path, &out)
}

/// The digests of `file`'s bytes `from..to`, [`CHUNK`] at a time (`from`
/// at a chunk boundary).
fn digests(file: &File, from: u64, to: u64) -> std::io::Result<Vec<Digest>> {
    Ok(digests_counting(file, from, to, to)?.0)
}

/// [`digests`], and the newlines in `count_from..to`.
fn digests_counting(
    file: &File,
    from: u64,
    to: u64,
    count_from: u64,
) -> std::io::Result<(Vec<Digest>, usize)> {
    let mut out = Vec::new();
    let mut newlines = 0;
    let mut buf = vec![0u8; CHUNK.min(to - from) as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(CHUNK) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        out.push(Digest::checksum(&buf[..n]));
        let skip = count_from.saturating_sub(at).min(n as u64) as usize;
        newlines += memchr::memchr_iter(b'\n', &buf[skip..n]).count();
        at += n as u64;
    }
    Ok((out, newlines))
}

/// Which stepwise wrote it: the encoding is this module's, but what it
/// encodes is this build's idea of a history.
fn build_key() -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(MAGIC);
    h.update(crate::hash::build_identity());
    Digest::from_blake3(&h.finalize())
}

/// Little-endian varints and length-prefixed bytes.
pub(crate) struct Enc(pub(crate) Vec<u8>);

impl Enc {
    pub(crate) fn u64(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.u64(((v << 1) ^ (v >> 63)) as u64);
    }
    fn i128(&mut self, v: i128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    pub(crate) fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
}

pub(crate) struct Dec<'a> {
    b: &'a [u8],
    at: usize,
    /// The whole file `b` is part of, and where in it `b` starts.
    shared: Option<(&'a std::sync::Arc<Vec<u8>>, usize)>,
}

impl<'a> Dec<'a> {
    fn new(b: &'a [u8]) -> Dec<'a> {
        Dec {
            b,
            at: 0,
            shared: None,
        }
    }

    /// A string's bytes, as a range of the whole file (shared, not copied).
    pub(crate) fn shared_str(
        &mut self,
    ) -> Option<(std::sync::Arc<Vec<u8>>, std::ops::Range<usize>)> {
        let n = self.usize()?;
        let start = self.at;
        std::str::from_utf8(self.take(n)?).ok()?;
        let (whole, base) = self.shared?;
        Some((whole.clone(), base + start..base + start + n))
    }
    fn done(&self) -> bool {
        self.at == self.b.len()
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.u64()?.try_into().ok()
    }
    pub(crate) fn usize(&mut self) -> Option<usize> {
        self.u64()?.try_into().ok()
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        let v = self.u64()?;
        Some(((v >> 1) as i64) ^ -((v & 1) as i64))
    }
    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.i64()?.try_into().ok()
    }
    fn i128(&mut self) -> Option<i128> {
        Some(i128::from_le_bytes(self.take(16)?.try_into().ok()?))
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    pub(crate) fn digest(&mut self) -> Option<Digest> {
        Some(Digest(self.take(16)?.try_into().ok()?))
    }
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        let n = self.usize()?;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Components;
    use crate::journal::{self, Outcome, Record, Stamp, StepValue};
    use crate::pipeline::SyncMode;
    use crate::state::dir::StateDir;
    use std::io::Write;

    /// Every kind of record and outcome, shared and separate stamps,
    /// forgets and imports, in a deterministic jumble.
    fn records(n: usize, seed: u64) -> Vec<Record> {
        let mut x = seed | 1;
        let mut rand = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut out = Vec::new();
        let mut run = 0;
        let mut attempts = [0u32; 6];
        for at in 0..n as u64 {
            let step = rand(6) as usize;
            let name = format!("s{step}");
            match rand(12) {
                0 => {
                    if run > 0 && rand(2) == 0 {
                        out.push(Record::RunFinished {
                            run,
                            at,
                            exit_code: [None, Some(0), Some(2)][rand(3) as usize],
                            counts: (rand(2) == 0).then_some(journal::RunCounts {
                                ran: 3,
                                failed: 1,
                                steps: (rand(2) == 0).then_some(2),
                                steps_failed: (rand(2) == 0).then_some(1),
                                last_at: (rand(2) == 0).then_some(at),
                            }),
                        });
                    }
                    run += 1;
                    out.push(Record::RunStarted { run, at, pid: 7 });
                }
                1 => out.push(Record::Forgotten {
                    at,
                    steps: (rand(3) > 0).then(|| vec![name, "never-seen".into()]),
                }),
                2 => {
                    let mut stamps = std::collections::BTreeMap::new();
                    if rand(2) == 0 {
                        stamps.insert(name.clone(), stamp(at));
                    }
                    out.push(Record::Imported {
                        at,
                        attempts: vec![(name, rand(2) == 0), ("other".into(), true)],
                        stamps,
                    });
                }
                _ => {
                    attempts[step] += 1;
                    let attempt = attempts[step];
                    out.push(Record::AttemptStarted {
                        run: run.max(1),
                        step: name.clone(),
                        attempt,
                        at,
                        stamp: (rand(5) > 0).then(|| stamp(at)),
                    });
                    if rand(3) == 0 {
                        out.push(Record::Submitted {
                            run: run.max(1),
                            step: name.clone(),
                            attempt,
                            at,
                            job: format!("{}", 1000 + at),
                        });
                    }
                    if rand(6) > 0 {
                        let outcome = match rand(10) {
                            0 => Outcome::Exited(3),
                            1 => Outcome::Signaled(9),
                            2 => Outcome::TimedOut,
                            3 => Outcome::Interrupted(2),
                            4 => Outcome::NotStarted("no shell".into()),
                            5 => Outcome::OutputsMissing(vec!["a b".into(), "c\"".into()]),
                            6 => Outcome::Error("boom\n".into()),
                            7 => Outcome::Job("OUT_OF_MEMORY".into()),
                            _ => Outcome::Success,
                        };
                        let value = match (outcome.ok(), rand(3)) {
                            (true, 0) => Some(StepValue::Inline(std::sync::Arc::from(
                                serde_json::value::to_raw_value(&serde_json::json!({"n": at}))
                                    .unwrap(),
                            ))),
                            (true, 1) => Some(StepValue::File(Digest::of(&at.to_le_bytes()))),
                            _ => None,
                        };
                        out.push(Record::AttemptFinished {
                            run: run.max(1),
                            step: name,
                            attempt,
                            at: at + 1,
                            duration_ms: at,
                            outcome,
                            value,
                        });
                    }
                }
            }
        }
        out
    }

    fn stamp(at: u64) -> Stamp {
        let mut parts = Components::default();
        parts.insert("run", Digest::of(&at.to_le_bytes()));
        if at.is_multiple_of(2) {
            parts.insert("dep:x", Digest::of(b"x"));
        }
        Stamp::new(parts.fingerprint(), parts)
    }

    fn append(journal: &Path, records: &[Record]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(journal)
            .unwrap();
        for r in records {
            f.write_all(&r.to_line()).unwrap();
        }
    }

    /// The history from reading every line of the journal.
    fn from_journal(state: &StateDir) -> History {
        let mut h = History::default();
        journal::read_file(&state.journal(), &mut |r| h.apply(r)).unwrap();
        h
    }

    /// Opens and closes the state dir as `run` does, writing the snapshot.
    fn close_as_run(state: &StateDir) {
        let writer = state.open_writer(SyncMode::Batched, "test").unwrap();
        writer.close_saving_snapshot().unwrap();
    }

    /// Loads read-only and as the writer; both must give the journal's own
    /// history. Returns the bytes of journal parsed by the read-only load.
    fn check(state: &StateDir) -> u64 {
        let want = from_journal(state);
        let before = journal::bytes_parsed();
        let loaded = state.load().unwrap();
        let parsed = journal::bytes_parsed() - before;
        assert!(loaded.history.same_as(&want), "read-only load differs");
        let writer = state.open_writer(SyncMode::Batched, "test").unwrap();
        assert!(writer.history.same_as(&want), "writer's history differs");
        assert_eq!(writer.records, count(state));
        drop(writer);
        parsed
    }

    fn count(state: &StateDir) -> usize {
        journal::read_file(&state.journal(), &mut |_| {})
            .unwrap()
            .records
    }

    fn setup(n: usize, seed: u64) -> (tempfile::TempDir, StateDir, Vec<Record>) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join(".stepwise"));
        std::fs::create_dir(state.path()).unwrap();
        (dir, state, records(n, seed))
    }

    #[test]
    fn snapshot_and_tail_give_the_journals_history_at_every_split() {
        for seed in 1..40 {
            let (_dir, state, all) = setup(60, seed);
            let split = (seed as usize * 7) % all.len();
            append(&state.journal(), &all[..split.max(1)]);
            close_as_run(&state);
            assert!(state.snapshot().exists());
            // Nothing since: nothing parsed.
            assert_eq!(check(&state), 0, "seed {seed}");
            // Records appended by a run that died before writing the
            // snapshot (or by any writer that does not write one): only
            // they are parsed.
            let len = std::fs::metadata(state.journal()).unwrap().len();
            append(&state.journal(), &all[split.max(1)..]);
            let tail = std::fs::metadata(state.journal()).unwrap().len() - len;
            assert_eq!(check(&state), tail, "seed {seed}");
            // The next run's snapshot covers them too.
            close_as_run(&state);
            assert_eq!(check(&state), 0, "seed {seed}");
        }
    }

    #[test]
    fn a_run_that_dies_after_appending_and_before_its_snapshot_costs_only_the_tail() {
        let (_dir, state, all) = setup(120, 11);
        append(&state.journal(), &all[..60]);
        close_as_run(&state);
        let len = std::fs::metadata(state.journal()).unwrap().len();
        let mut writer = state.open_writer(SyncMode::Batched, "test").unwrap();
        for r in &all[60..] {
            writer.record(r.clone()).unwrap();
        }
        // Dies here: the records are in the journal, no snapshot is
        // written, a half-written temp file is left.
        drop(writer);
        std::fs::write(
            state.path().join(format!(".{FILE}.tmp.1")),
            b"stepwise-hs-v03\n",
        )
        .unwrap();
        let whole = std::fs::metadata(state.journal()).unwrap().len();
        assert_eq!(check(&state), whole - len);
    }

    #[test]
    fn a_damaged_or_missing_snapshot_is_ignored() {
        let (_dir, state, all) = setup(200, 5);
        append(&state.journal(), &all);
        close_as_run(&state);
        let good = std::fs::read(state.snapshot()).unwrap();
        let whole = std::fs::metadata(state.journal()).unwrap().len();
        let mut damaged: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"garbage".to_vec(),
            good[..good.len() / 2].to_vec(),
        ];
        for at in [0, 10, 20, 40, 60, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            damaged.push(bad);
        }
        let mut longer = good.clone();
        longer.push(0);
        damaged.push(longer);
        for bad in damaged {
            std::fs::write(state.snapshot(), &bad).unwrap();
            assert_eq!(check(&state), whole, "a damaged snapshot was used");
        }
        std::fs::remove_file(state.snapshot()).unwrap();
        assert_eq!(check(&state), whole);
        close_as_run(&state);
        assert_eq!(check(&state), 0);
    }

    #[test]
    fn a_journal_rewritten_or_truncated_is_read_in_full() {
        let (_dir, state, all) = setup(300, 9);
        append(&state.journal(), &all[..200]);
        close_as_run(&state);
        let snapshot = std::fs::read(state.snapshot()).unwrap();
        let restore = || std::fs::write(state.snapshot(), &snapshot).unwrap();

        // Truncated in place (same file), shorter than what it covers.
        let text = std::fs::read(state.journal()).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(state.journal())
            .unwrap();
        f.set_len(text.len() as u64 / 2).unwrap();
        drop(f);
        // Cut at a line: a valid, shorter journal.
        let cut = text[..text.len() / 2]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1;
        std::fs::write(state.journal(), &text[..cut]).unwrap();
        let parsed = check(&state);
        assert_eq!(parsed, cut as u64);

        // Rewritten in place, the same file, longer than it was, but with
        // other records: a prefix that is not the one covered.
        restore();
        let mut other = Vec::new();
        for r in &all[100..] {
            other.extend_from_slice(&r.to_line());
        }
        assert!(other.len() > text.len());
        std::fs::write(state.journal(), &other).unwrap();
        assert_eq!(check(&state), other.len() as u64);

        // The same content, rewritten as another file (as `gc` does).
        std::fs::write(state.journal(), &text).unwrap();
        close_as_run(&state);
        assert_eq!(check(&state), 0);
        let records: Vec<Record> = {
            let mut v = Vec::new();
            journal::read_file(&state.journal(), &mut |r| v.push(r)).unwrap();
            v
        };
        let kept = snapshot_kept(&state);
        journal::rewrite(&state.journal(), &records).unwrap();
        assert!(!state.snapshot().exists(), "rewrite removes the snapshot");
        std::fs::write(state.snapshot(), &kept).unwrap();
        assert_eq!(
            check(&state),
            text.len() as u64,
            "a snapshot of another file was used"
        );
    }

    fn snapshot_kept(state: &StateDir) -> Vec<u8> {
        std::fs::read(state.snapshot()).unwrap()
    }

    #[test]
    fn compaction_in_a_run_leaves_a_snapshot_of_the_new_journal() {
        let (_dir, state, all) = setup(400, 3);
        append(&state.journal(), &all);
        close_as_run(&state);
        let mut writer = state.open_writer(SyncMode::Batched, "test").unwrap();
        writer.compact().unwrap();
        writer.close_saving_snapshot().unwrap();
        assert_eq!(check(&state), 0);
    }

    #[test]
    fn a_journal_spanning_chunks_is_checked_and_extended_chunk_by_chunk() {
        let (_dir, state, _) = setup(0, 1);
        let sample = records(500, 1);
        let line_len = sample.iter().map(|r| r.to_line().len()).sum::<usize>() / sample.len();
        // Enough records for a bit over two chunks.
        let want = (2 * CHUNK as usize + 50_000) / line_len;
        let all: Vec<Record> = (0..want / 500 + 1)
            .flat_map(|s| records(500, s as u64 + 1))
            .collect();
        let half = all.len() / 2;
        append(&state.journal(), &all[..half]);
        close_as_run(&state);
        append(&state.journal(), &all[half..]);
        assert!(std::fs::metadata(state.journal()).unwrap().len() > 2 * CHUNK);
        let tail = check(&state);
        assert!(tail > 0);
        close_as_run(&state);
        assert_eq!(check(&state), 0);
        // The extended snapshot's digests match a fresh one's.
        let extended = std::fs::read(state.snapshot()).unwrap();
        std::fs::remove_file(state.snapshot()).unwrap();
        close_as_run(&state);
        let fresh = std::fs::read(state.snapshot()).unwrap();
        assert_eq!(extended, fresh);
    }
}
