//! Content hashes of files and folders, at the speed of `stat`.
//!
//! The stat cache (`.stepwise/stat-cache`) remembers, per path, the file's
//! size, mtime, ctime, inode and device and the content hash they went
//! with; a file is read again only when one of those changed. So `touch`
//! costs a rehash but never a rerun, and a changed byte is always seen (a
//! write changes mtime and ctime, even when a tool restores the mtime).
//!
//! The cache is only an optimisation: a missing, unreadable or garbage cache
//! file means hashing everything, never a different decision. Entries for
//! files modified in the last two seconds are not stored, since a second
//! write within the same timestamp tick could go unseen ("racily clean").

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::fingerprint::Digest;

/// Which build of stepwise this is: its version and the running
/// executable's size, mtime and inode, computed once. Caches that store
/// this build's in-memory idea of a pipeline or a history (the compiled
/// pipeline, the history snapshot) mix it into their keys, so a rebuilt
/// stepwise (or a program embedding it) never reads another build's. An
/// executable that cannot be `stat`ed contributes the version alone.
pub(crate) fn build_identity() -> &'static [u8] {
    static IDENTITY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    IDENTITY.get_or_init(|| {
        let mut id = env!("CARGO_PKG_VERSION").as_bytes().to_vec();
        id.push(0);
        if let Some(meta) = std::env::current_exe()
            .ok()
            .and_then(|exe| fs::metadata(exe).ok())
        {
            id.extend_from_slice(&meta.size().to_le_bytes());
            id.extend_from_slice(&meta.mtime().to_le_bytes());
            id.extend_from_slice(&meta.mtime_nsec().to_le_bytes());
            id.extend_from_slice(&meta.ino().to_le_bytes());
        }
        id
    })
}

/// Files at least this large are hashed memory-mapped on every core.
const PARALLEL_HASH_BYTES: u64 = 128 * 1024 * 1024;
/// How recent a change must be for its hash not to be cached: file
/// timestamps tick coarsely (and NFS clocks drift), so a second write right
/// after hashing could keep the same stamp.
const RACY_NS: i128 = 2_000_000_000;
const CACHE_HEADER: &str = "stepwise stat-cache v2";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }

    fn of_stat(st: &nix::sys::stat::FileStat) -> Stamp {
        Stamp {
            size: st.st_size as u64,
            mtime_ns: i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
            ctime_ns: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec),
            ino: st.st_ino,
            dev: st.st_dev,
        }
    }
}

/// The stat cache's map: keyed by the path's bytes (hashing a `Path` walks
/// its components, and so does comparing two).
type CacheMap = HashMap<Box<[u8]>, (Stamp, Digest), foldhash::fast::RandomState>;

fn key(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

/// How much work hashing did: for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashStats {
    /// Files whose content was read and hashed.
    pub files_hashed: u64,
    /// The size of those files, together.
    pub bytes_hashed: u64,
    /// Files whose hash came from the stat cache.
    pub cache_hits: u64,
}

/// Hashes file and folder contents through the stat cache.
pub struct FileHasher {
    cache: CacheMap,
    /// Open folders (`O_PATH`) by path, while [`FileHasher::batch`] is on:
    /// a file in one is then `stat`ed by its name alone, not walked to from
    /// `/` component by component. `None`: the folder cannot be opened.
    dirs: Option<HashMap<Box<[u8]>, Option<OwnedFd>, foldhash::fast::RandomState>>,
    dirty: bool,
    racy_ns: i128,
    /// Set by [`FileHasher::hash_settled`].
    settled: bool,
    /// What it did so far.
    pub stats: HashStats,
}

impl Default for FileHasher {
    fn default() -> Self {
        FileHasher {
            cache: CacheMap::default(),
            dirs: None,
            dirty: false,
            racy_ns: RACY_NS,
            settled: false,
            stats: HashStats::default(),
        }
    }
}

impl FileHasher {
    /// Loads the cache at `path`; anything wrong with it means an empty cache.
    pub fn load(path: &Path) -> FileHasher {
        let mut hasher = FileHasher::default();
        if let Ok(text) = fs::read_to_string(path) {
            hasher.cache = parse_cache(&text).unwrap_or_default();
        }
        hasher
    }

    /// Writes the cache atomically (temp file, fsync, rename). Best effort by
    /// nature: callers may ignore the error.
    pub fn save(&mut self, path: &Path) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut text = String::with_capacity(64 + self.cache.len() * 96);
        text.push_str(CACHE_HEADER);
        text.push('\n');
        for (p, (s, d)) in &self.cache {
            let Some(p) = std::str::from_utf8(p).ok().filter(|p| !p.contains('\n')) else {
                continue;
            };
            text.push_str(&format!(
                "{d} {} {} {} {} {} {p}\n",
                s.size, s.mtime_ns, s.ctime_ns, s.ino, s.dev
            ));
        }
        let checksum = Digest::checksum(text.as_bytes());
        text.push_str(&format!("checksum {checksum}\n"));
        write_atomically(path, text.as_bytes())?;
        self.dirty = false;
        Ok(())
    }

    /// Like [`FileHasher::hash_path`], for files whose writers are known to
    /// be gone (a step's outputs, read after its whole process group ended):
    /// their stamps can be trusted at once, however recent, since nothing can
    /// change them again within the same timestamp tick.
    pub fn hash_settled(&mut self, path: &Path) -> io::Result<Option<Digest>> {
        self.settled = true;
        let result = self.hash_path(path);
        self.settled = false;
        result
    }

    /// Starts (`true`) or ends a batch of lookups during which no folder
    /// is replaced: files are then `stat`ed relative to their folder, opened
    /// once. Only for a pass in which nothing runs (a step could remove a
    /// folder and make another of the same name).
    pub fn batch(&mut self, on: bool) {
        self.dirs = on.then(HashMap::default);
    }

    /// A file's stamp through its open folder, during a batch; `None` when
    /// that does not apply (then `fs::metadata` decides, errors included).
    fn stat_in_dir(&mut self, path: &Path) -> Option<io::Result<Option<Stamp>>> {
        let dirs = self.dirs.as_mut()?;
        let (parent, name) = (path.parent()?, path.file_name()?);
        if !path.is_absolute() || name.as_bytes().contains(&0) {
            return None;
        }
        let fd = dirs.entry(key(parent).into()).or_insert_with(|| {
            use nix::fcntl::OFlag;
            nix::fcntl::open(
                parent,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .ok()
        });
        let fd = fd.as_ref()?;
        match nix::sys::stat::fstatat(fd, OsStr::new(name), nix::fcntl::AtFlags::empty()) {
            Ok(st) if st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG => {
                Some(Ok(Some(Stamp::of_stat(&st))))
            }
            Ok(_) => None,
            Err(nix::errno::Errno::ENOENT) => Some(Ok(None)),
            Err(_) => None,
        }
    }

    /// The content hash of a file or folder; `Ok(None)` if it does not exist.
    pub fn hash_path(&mut self, path: &Path) -> io::Result<Option<Digest>> {
        match self.stat_in_dir(path) {
            Some(Ok(Some(stamp))) => return self.hash_file_stamped(path, stamp).map(Some),
            Some(Ok(None)) => return Ok(None),
            Some(Err(e)) => return Err(e),
            None => {}
        }
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(digest) = special(&meta) {
            return Ok(Some(digest));
        }
        if meta.is_dir() {
            self.hash_dir(path, 0).map(Some)
        } else {
            self.hash_file(path, &meta).map(Some)
        }
    }

    fn hash_file(&mut self, path: &Path, meta: &fs::Metadata) -> io::Result<Digest> {
        self.hash_file_stamped(path, Stamp::of(meta))
    }

    fn hash_file_stamped(&mut self, path: &Path, stamp: Stamp) -> io::Result<Digest> {
        if let Some((cached, digest)) = self.cache.get(key(path))
            && *cached == stamp
        {
            self.stats.cache_hits += 1;
            return Ok(*digest);
        }
        let mut hasher = blake3::Hasher::new();
        if stamp.size >= PARALLEL_HASH_BYTES {
            hasher.update_mmap_rayon(path)?;
        } else {
            hasher.update_reader(File::open(path)?)?;
        }
        let digest = Digest::from_blake3(&hasher.finalize());
        self.stats.files_hashed += 1;
        self.stats.bytes_hashed += stamp.size;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let racy = !self.settled && now - stamp.mtime_ns.max(stamp.ctime_ns) < self.racy_ns;
        if racy {
            self.cache.remove(key(path));
        } else {
            self.cache.insert(key(path).into(), (stamp, digest));
        }
        self.dirty = true;
        Ok(digest)
    }

    /// A folder's hash covers the names and contents of everything in it,
    /// recursively, in name order.
    fn hash_dir(&mut self, path: &Path, depth: usize) -> io::Result<Digest> {
        if depth > 64 {
            return Err(io::Error::other(format!(
                "{} is nested too deeply (a symlink loop?)",
                path.display()
            )));
        }
        let mut entries: Vec<_> = fs::read_dir(path)?.collect::<io::Result<_>>()?;
        // stepwise's own state is never part of a folder's content: its
        // journal changes with every run.
        entries.retain(|e| {
            !e.file_name()
                .to_str()
                .is_some_and(crate::state::dir::is_state_dir_name)
        });
        entries.sort_by_key(|e| e.file_name());
        let mut h = blake3::Hasher::new();
        h.update(b"dir\n");
        for entry in entries {
            let child = entry.path();
            let meta = match fs::metadata(&child) {
                Ok(m) => m,
                // A dangling symlink: its target's absence is its content.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    h.update(entry.file_name().as_encoded_bytes());
                    h.update(b"\0dangling\n");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let digest = if let Some(digest) = special(&meta) {
                digest
            } else if meta.is_dir() {
                self.hash_dir(&child, depth + 1)?
            } else {
                self.hash_file(&child, &meta)?
            };
            h.update(entry.file_name().as_encoded_bytes());
            h.update(if meta.is_dir() { b"/\0" } else { b"\0\0" });
            h.update(&digest.0);
            h.update(b"\n");
        }
        Ok(Digest::from_blake3(&h.finalize()))
    }
}

/// The digest of a file that is neither a regular file nor a folder (a
/// named pipe, a socket, a device), or `None` for those two. Such a file
/// has no content to read (opening a named pipe blocks until a writer
/// comes; a socket cannot be opened), so it counts by its kind alone.
fn special(meta: &fs::Metadata) -> Option<Digest> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind: &[u8] = if t.is_fifo() {
        b"fifo"
    } else if t.is_socket() {
        b"socket"
    } else if t.is_char_device() {
        b"char device"
    } else if t.is_block_device() {
        b"block device"
    } else {
        return None;
    };
    let mut h = blake3::Hasher::new();
    h.update(b"special\n");
    h.update(kind);
    Some(Digest::from_blake3(&h.finalize()))
}

/// Checks the cache file at `path` the way [`FileHasher::load`] reads it:
/// the number of entries, `Ok(0)` when there is no cache, or why it cannot
/// be trusted.
pub fn check_cache(path: &Path) -> Result<usize, String> {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| "is not text".to_string())?;
            parse_cache(&text)
                .map(|map| map.len())
                .ok_or_else(|| "is corrupt (its checksum or an entry is wrong)".to_string())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

/// Parses a cache file; `None` unless every byte of it checks out.
fn parse_cache(text: &str) -> Option<CacheMap> {
    // The last line is a checksum of everything before it: a cache corrupted
    // into another well-formed cache must not be trusted either.
    let body_end = text.strip_suffix('\n')?.rfind('\n')? + 1;
    let (body, last) = text.split_at(body_end);
    let checksum: Digest = last.trim_end().strip_prefix("checksum ")?.parse().ok()?;
    if Digest::checksum(body.as_bytes()) != checksum {
        return None;
    }
    let body = body.as_bytes();
    let header_end = memchr::memchr(b'\n', body)?;
    if &body[..header_end] != CACHE_HEADER.as_bytes() {
        return None;
    }
    let mut map = CacheMap::with_capacity_and_hasher(body.len() / 100, Default::default());
    let mut rest = &body[header_end + 1..];
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest)?;
        let (line, next) = (&rest[..end], &rest[end + 1..]);
        rest = next;
        let mut f = Fields(line);
        let digest: Digest = std::str::from_utf8(f.next()?).ok()?.parse().ok()?;
        let stamp = Stamp {
            size: int(f.next()?)?.try_into().ok()?,
            mtime_ns: int(f.next()?)?,
            ctime_ns: int(f.next()?)?,
            ino: int(f.next()?)?.try_into().ok()?,
            dev: int(f.next()?)?.try_into().ok()?,
        };
        // The path is the rest of the line, spaces and all.
        let path = f.0;
        if path.is_empty() {
            return None;
        }
        map.insert(path.into(), (stamp, digest));
    }
    Some(map)
}

/// Space-separated fields of a cache line; what is left is in `.0`.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let end = memchr::memchr(b' ', self.0)?;
        let field = &self.0[..end];
        self.0 = &self.0[end + 1..];
        Some(field)
    }
}

/// A decimal integer, optionally negative, nothing else.
fn int(s: &[u8]) -> Option<i128> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 38 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Up to 19 digits fit a u64: the common case, without 128-bit
    // multiplications.
    let (head, tail) = digits.split_at(digits.len().saturating_sub(19));
    let mut n: i128 = 0;
    for &b in head {
        n = n * 10 + i128::from(b - b'0');
    }
    let mut low: u64 = 0;
    for &b in tail {
        low = low * 10 + u64::from(b - b'0');
    }
    n = n * 10i128.pow(tail.len() as u32) + i128::from(low);
    Some(if negative { -n } else { n })
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new
/// contents, never a mix: temp file in the same folder, fsync, rename, fsync
/// of the folder. The file is created readable by its owner only: what
/// stepwise keeps in its state dir is nobody else's business.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        // Created anew, never through a symlink planted at the temp name;
        // one left by a dead process of the same pid is ours to replace.
        let _ = fs::remove_file(&tmp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_same_hash_and_a_changed_byte_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, "hello").unwrap();
        let mut h = FileHasher::default();
        let first = h.hash_path(&f).unwrap().unwrap();
        fs::write(&f, "hellO").unwrap();
        assert_ne!(h.hash_path(&f).unwrap().unwrap(), first);
        fs::write(&f, "hello").unwrap();
        assert_eq!(h.hash_path(&f).unwrap().unwrap(), first);
        assert_eq!(h.hash_path(&dir.path().join("missing")).unwrap(), None);
    }

    #[test]
    fn folders_hash_names_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("a"), "1").unwrap();
        fs::write(d.join("sub/b"), "2").unwrap();
        let mut h = FileHasher::default();
        let before = h.hash_path(&d).unwrap().unwrap();
        fs::rename(d.join("a"), d.join("c")).unwrap();
        let renamed = h.hash_path(&d).unwrap().unwrap();
        assert_ne!(before, renamed);
        fs::write(d.join("sub/b"), "3").unwrap();
        assert_ne!(h.hash_path(&d).unwrap().unwrap(), renamed);
    }

    #[test]
    fn cache_integers_parse_exactly() {
        for n in [
            0i128,
            7,
            -7,
            1_795_980_278_826_000_000,
            i128::from(u64::MAX),
            10i128.pow(30) + 3,
            -(10i128.pow(25)),
        ] {
            assert_eq!(int(n.to_string().as_bytes()), Some(n));
        }
        for bad in ["", "-", "1a", " 1", "+1", "1.0"] {
            assert_eq!(int(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_batch_stats_through_open_folders_and_sees_the_same() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("f"), "x").unwrap();
        let mut plain = FileHasher::default();
        let mut batched = FileHasher::default();
        batched.batch(true);
        for p in ["f", "d", "missing", "nodir/missing", "f/under-a-file"] {
            let path = dir.path().join(p);
            let a = plain.hash_path(&path).map_err(|e| e.kind());
            let b = batched.hash_path(&path).map_err(|e| e.kind());
            assert_eq!(a, b, "{p}");
        }
        batched.batch(false);
        assert!(batched.dirs.is_none());
    }

    #[test]
    fn a_file_changed_just_now_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, "data").unwrap();
        let mut h = FileHasher::default();
        h.hash_path(&f).unwrap();
        assert!(h.cache.is_empty());
    }

    #[test]
    fn the_cache_saves_work_and_garbage_in_it_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, "data").unwrap();
        let cache = dir.path().join("cache");
        // Just written, so racy by the default window; this test is not about that.
        let mut h = FileHasher {
            racy_ns: 0,
            ..FileHasher::default()
        };
        let digest = h.hash_path(&f).unwrap().unwrap();
        h.save(&cache).unwrap();

        let mut again = FileHasher::load(&cache);
        assert_eq!(again.hash_path(&f).unwrap().unwrap(), digest);
        assert_eq!((again.stats.cache_hits, again.stats.files_hashed), (1, 0));

        let saved = fs::read_to_string(&cache).unwrap();
        let flipped = saved.replacen(&digest.to_string()[..4], "0000", 1);
        for garbage in [
            "",
            "nonsense",
            "stepwise stat-cache v1\nzz 1 2 3 4 5 /x\n",
            flipped.as_str(),
        ] {
            fs::write(&cache, garbage).unwrap();
            let mut h = FileHasher::load(&cache);
            assert_eq!(h.hash_path(&f).unwrap().unwrap(), digest);
            assert_eq!(h.stats.cache_hits, 0, "{garbage:?} was trusted");
        }
        // A lying entry (right stamp, wrong digest) cannot be told from a true
        // one; but a stale stamp is never trusted:
        let mut h = FileHasher::load(&cache);
        fs::write(&f, "changed").unwrap();
        assert_ne!(h.hash_path(&f).unwrap().unwrap(), digest);
    }
}
