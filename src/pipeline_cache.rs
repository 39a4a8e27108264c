//! The compiled pipeline: a validated [`Pipeline`] stored in the state dir,
//! so that a run of a big, unchanged pipeline file skips TOML parsing and
//! validation (at 10,000 steps those were 40% of a no-op run).
//!
//! The cache is keyed by a hash (XXH3-128) of the file's bytes, its path as
//! named and its folder, and the stepwise version; its body carries a
//! checksum. Any mismatch, or a cache that cannot be read, means parsing the
//! file as if there were no cache: it can make stepwise faster, never
//! different. Only `run` (holding the lock) writes it.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::fingerprint::Digest;
use crate::hash::write_atomically;
use crate::pipeline::Pipeline;
use crate::state::dir::state_dir_name;

const MAGIC: &[u8; 16] = b"stepwise-pl-v02\n";
const HEADER: usize = MAGIC.len() + 16 + 16;

/// A pipeline as loaded, with what to store if it had to be parsed.
pub struct Loaded {
    /// The validated pipeline.
    pub pipeline: Pipeline,
    /// The compiled form to write to [`cache_path`], when the file was
    /// parsed rather than read from the cache.
    pub compiled: Option<Vec<u8>>,
}

/// Where the compiled form of the pipeline file at `path` (in folder
/// `root`) lives.
pub fn cache_path(path: &Path, root: &Path) -> PathBuf {
    root.join(state_dir_name(path)).join("pipeline-cache")
}

fn key(path: &Path, root: &Path, source: &[u8]) -> Digest {
    // A change detector, not a fingerprint: XXH3 (see `Digest::checksum`).
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(MAGIC);
    // The compiled form is the in-memory layout of this build.
    h.update(crate::hash::build_identity());
    h.update(path.as_os_str().as_encoded_bytes());
    h.update(b"\0");
    h.update(root.as_os_str().as_encoded_bytes());
    h.update(b"\0");
    h.update(source);
    Digest(h.digest128().to_le_bytes())
}

/// Loads the pipeline file at `path`, from its compiled form when that is
/// current.
pub fn load(path: &Path) -> Result<Loaded> {
    let (source, root) = Pipeline::read_source(path)?;
    let key = key(path, &root, source.as_bytes());
    if let Some(pipeline) = read_cache(&cache_path(path, &root), key) {
        return Ok(Loaded {
            pipeline,
            compiled: None,
        });
    }
    let pipeline = Pipeline::parse(path, &root, &source)?;
    let body = postcard::to_stdvec(&pipeline).expect("a pipeline serializes");
    let mut compiled = Vec::with_capacity(HEADER + body.len());
    compiled.extend_from_slice(MAGIC);
    compiled.extend_from_slice(&key.0);
    compiled.extend_from_slice(&Digest::checksum(&body).0);
    compiled.extend_from_slice(&body);
    Ok(Loaded {
        pipeline,
        compiled: Some(compiled),
    })
}

fn read_cache(cache: &Path, key: Digest) -> Option<Pipeline> {
    let bytes = std::fs::read(cache).ok()?;
    if bytes.len() < HEADER
        || &bytes[..MAGIC.len()] != MAGIC
        || bytes[MAGIC.len()..MAGIC.len() + 16] != key.0
    {
        return None;
    }
    let body = &bytes[HEADER..];
    if Digest::checksum(body).0 != bytes[MAGIC.len() + 16..HEADER] {
        return None;
    }
    let mut pipeline: Pipeline = postcard::from_bytes(body).ok()?;
    // Matrix files and for_each globs are part of what the file means.
    if !pipeline.expansion_inputs.iter().all(|i| i.is_current()) {
        return None;
    }
    pipeline.rebuild_index();
    Some(pipeline)
}

/// Writes the compiled form (best effort: it is only a shortcut).
pub fn store(cache: &Path, compiled: &[u8]) {
    let _ = write_atomically(cache, compiled);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_used_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stepwise.toml");
        std::fs::write(&file, "[[step]]\nname = \"a\"\nrun = \"x\"\n").unwrap();
        let first = load(&file).unwrap();
        let compiled = first.compiled.expect("parsed the first time");
        std::fs::create_dir_all(dir.path().join(".stepwise")).unwrap();
        let cache = cache_path(&file, &first.pipeline.root);
        store(&cache, &compiled);

        let second = load(&file).unwrap();
        assert!(second.compiled.is_none(), "read from the cache");
        assert_eq!(second.pipeline.find("a"), Some(crate::StepId(0)));
        assert_eq!(second.pipeline.step(crate::StepId(0)).run, "x");

        std::fs::write(&file, "[[step]]\nname = \"a\"\nrun = \"y\"\n").unwrap();
        let third = load(&file).unwrap();
        assert!(third.compiled.is_some(), "the file changed: parsed again");
        assert_eq!(third.pipeline.step(crate::StepId(0)).run, "y");
    }

    #[test]
    fn a_damaged_cache_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stepwise.toml");
        std::fs::write(&file, "[[step]]\nname = \"a\"\nrun = \"x\"\n").unwrap();
        let first = load(&file).unwrap();
        let mut compiled = first.compiled.unwrap();
        std::fs::create_dir_all(dir.path().join(".stepwise")).unwrap();
        let cache = cache_path(&file, &first.pipeline.root);
        let last = compiled.len() - 1;
        compiled[last] ^= 0x55;
        store(&cache, &compiled);
        let again = load(&file).unwrap();
        assert!(
            again.compiled.is_some(),
            "a cache failing its checksum is not used"
        );
        assert_eq!(again.pipeline.step(crate::StepId(0)).run, "x");
    }
}
