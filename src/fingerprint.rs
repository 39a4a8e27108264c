//! What defines a step, hashed: its fingerprint and the components it is
//! made of, and how two sets of components differ, in words.
//!
//! Pure: the caller supplies the content hashes of inputs and of what the
//! step's dependencies produced (see [`crate::workspace`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A 128-bit BLAKE3 digest: plenty against accidental collisions, and half
/// the journal space of the full 256 bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 16]);

impl Digest {
    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_blake3(&blake3::hash(bytes))
    }

    /// The first 128 bits of a full BLAKE3 hash.
    pub fn from_blake3(hash: &blake3::Hash) -> Digest {
        let mut d = [0u8; 16];
        d.copy_from_slice(&hash.as_bytes()[..16]);
        Digest(d)
    }

    /// A checksum of some bytes (XXH3, 128 bits), for the caches in the
    /// state dir: it only has to catch damage, and at a few gigabytes a
    /// second it costs a no-op run next to nothing. Never a fingerprint.
    pub fn checksum(bytes: &[u8]) -> Digest {
        Digest(xxhash_rust::xxh3::xxh3_128(bytes).to_le_bytes())
    }

    /// The first 8 hex digits, for people.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Digest, String> {
        fn nibble(b: u8) -> Option<u8> {
            match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'a'..=b'f' => Some(b - b'a' + 10),
                b'A'..=b'F' => Some(b - b'A' + 10),
                _ => None,
            }
        }
        let bytes = s.as_bytes();
        let bad = || format!("`{s}` is not a 32-digit hex digest");
        if bytes.len() != 32 {
            return Err(bad());
        }
        let mut d = [0u8; 16];
        for (i, byte) in d.iter_mut().enumerate() {
            let (hi, lo) = (nibble(bytes[2 * i]), nibble(bytes[2 * i + 1]));
            *byte = (hi.ok_or_else(bad)? << 4) | lo.ok_or_else(bad)?;
        }
        Ok(Digest(d))
    }
}

/// The hashed parts a fingerprint is made of, by name:
///
/// | key | hash of |
/// |---|---|
/// | `run` | the command string |
/// | `shell` | the shell program and arguments |
/// | `dir` | the working dir as written |
/// | `env:KEY` | the value of a declared variable (pipeline's and step's merged) |
/// | `input:PATH` | the content of an input file or folder |
/// | `dep:NAME` | what a dependency produced: the content of its declared outputs, or its fingerprint if it declares none |
///
/// A step of a Rust program ([`crate::Run`]) has `input:LABEL` for each of
/// its inputs (the JSON form of the value) and `version` for its version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Components(pub BTreeMap<String, Digest>);

impl Components {
    /// Sets a component, replacing any earlier digest under the same key.
    pub fn insert(&mut self, key: impl Into<String>, digest: Digest) {
        self.0.insert(key.into(), digest);
    }

    /// The digest of one component, if the step has it.
    pub fn get(&self, key: &str) -> Option<&Digest> {
        self.0.get(key)
    }

    /// The fingerprint: a hash over every component, in key order, with
    /// separators no key or digest can contain.
    pub fn fingerprint(&self) -> Digest {
        // The same bytes as hashing piece by piece, gathered first: one
        // hasher call instead of four per component.
        let mut buf = Vec::with_capacity(24 + self.0.keys().map(|k| k.len() + 18).sum::<usize>());
        buf.extend_from_slice(b"stepwise fingerprint v1\n");
        for (key, digest) in &self.0 {
            buf.extend_from_slice(key.as_bytes());
            buf.push(0);
            buf.extend_from_slice(&digest.0);
            buf.push(b'\n');
        }
        Digest::of(&buf)
    }

    /// How `self` (now) differs from `then`, as reasons, in a stable order.
    pub fn changes_since(&self, then: &Components) -> Vec<Reason> {
        let mut reasons = Vec::new();
        let keys: std::collections::BTreeSet<&String> =
            self.0.keys().chain(then.0.keys()).collect();
        for key in keys {
            let (now, was) = (self.0.get(key), then.0.get(key));
            if now == was {
                continue;
            }
            let (kind, name) = key.split_once(':').unwrap_or((key.as_str(), ""));
            let reason = match (kind, now, was) {
                ("run", ..) => Reason::CommandChanged,
                ("shell", ..) => Reason::ShellChanged,
                ("dir", ..) => Reason::DirChanged,
                ("env", ..) => Reason::EnvChanged { key: name.into() },
                ("input", Some(_), Some(_)) => Reason::InputChanged { path: name.into() },
                ("input", Some(_), None) => Reason::InputAdded { path: name.into() },
                ("input", None, _) => Reason::InputRemoved { path: name.into() },
                ("dep", Some(_), Some(_)) => Reason::DependencyChanged { step: name.into() },
                ("dep", Some(_), None) => Reason::DependencyAdded { step: name.into() },
                ("dep", None, _) => Reason::DependencyRemoved { step: name.into() },
                _ => Reason::DefinitionChanged { part: key.clone() },
            };
            reasons.push(reason);
        }
        reasons
    }
}

/// One reason a step will run (or, for [`Reason::InputMissing`], a warning).
///
/// Serialized (`--json`) as `{"kind": "input changed", "path": "a.csv"}`:
/// the kind in the words of its [`Display`](fmt::Display) form, the details
/// as fields. An attempt number is an [`Attempt::number`](crate::state::history::Attempt::number)
/// (0 for an imported attempt).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind")]
pub enum Reason {
    /// No attempt is recorded.
    #[serde(rename = "never run")]
    NeverRun,
    /// Its latest attempt failed.
    #[serde(rename = "failed")]
    Failed {
        /// The failed attempt.
        attempt: u32,
    },
    /// Its latest attempt never finished (its runner died) or was stopped by
    /// a signal to the run.
    #[serde(rename = "interrupted")]
    Interrupted {
        /// The interrupted attempt.
        attempt: u32,
    },
    /// Its latest attempt is running now, in the process holding the lock.
    #[serde(rename = "running")]
    Running {
        /// The running attempt.
        attempt: u32,
    },
    /// `stepwise forget` cleared it after its last attempt.
    #[serde(rename = "forgotten")]
    Forgotten,
    /// The `run` string differs from the one that succeeded.
    #[serde(rename = "command changed")]
    CommandChanged,
    /// The pipeline's `shell` differs.
    #[serde(rename = "shell changed")]
    ShellChanged,
    /// The step's `dir`, as written, differs.
    #[serde(rename = "dir changed")]
    DirChanged,
    /// A declared variable has another value, or was added or removed.
    #[serde(rename = "env changed")]
    EnvChanged {
        /// The variable's name.
        key: String,
    },
    /// The content of an input differs.
    #[serde(rename = "input changed")]
    InputChanged {
        /// The input's path relative to the step's dir (for a program's
        /// step, the input's label).
        path: String,
    },
    /// An input that was not there at the success is now (a new file
    /// matching a glob, a new input of a program's step).
    #[serde(rename = "input added")]
    InputAdded {
        /// As in [`Reason::InputChanged`].
        path: String,
    },
    /// An input at the success is no longer one.
    #[serde(rename = "input removed")]
    InputRemoved {
        /// As in [`Reason::InputChanged`].
        path: String,
    },
    /// A declared input matches no file now.
    #[serde(rename = "input missing")]
    InputMissing {
        /// The input as declared: a path or a glob.
        pattern: String,
    },
    /// A declared output does not exist.
    #[serde(rename = "output missing")]
    OutputMissing {
        /// The output as written in the pipeline file.
        path: String,
    },
    /// A later attempt than the success may have rewritten the outputs.
    #[serde(rename = "outputs touched")]
    OutputsTouched {
        /// That later attempt, which did not succeed.
        attempt: u32,
    },
    /// What a needed step produced differs from what it had produced for
    /// the success.
    #[serde(rename = "dependency changed")]
    DependencyChanged {
        /// The needed step's name.
        step: String,
    },
    /// The step needs a step it did not need at the success.
    #[serde(rename = "dependency added")]
    DependencyAdded {
        /// The needed step's name.
        step: String,
    },
    /// The step no longer needs a step it needed at the success.
    #[serde(rename = "dependency removed")]
    DependencyRemoved {
        /// The step's name.
        step: String,
    },
    /// A needed step runs first in this plan, so what it produces may
    /// change.
    #[serde(rename = "dependency will run")]
    DependencyWillRun {
        /// The needed step's name.
        step: String,
    },
    /// Another part of the definition changed: a program step's `version`,
    /// a component this version of stepwise does not know, or the
    /// fingerprint itself when the recorded components cannot say where.
    #[serde(rename = "definition changed")]
    DefinitionChanged {
        /// The component's key (`version`, ...), or `fingerprint`.
        part: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NeverRun => write!(f, "never run"),
            Reason::Failed { attempt } => write!(f, "attempt {attempt} failed"),
            Reason::Interrupted { attempt } => write!(f, "attempt {attempt} was interrupted"),
            Reason::Running { attempt } => write!(f, "attempt {attempt} is running"),
            Reason::Forgotten => write!(f, "forgotten"),
            Reason::CommandChanged => write!(f, "command changed"),
            Reason::ShellChanged => write!(f, "shell changed"),
            Reason::DirChanged => write!(f, "dir changed"),
            Reason::EnvChanged { key } => write!(f, "env changed: {key}"),
            Reason::InputChanged { path } => write!(f, "input changed: {path}"),
            Reason::InputAdded { path } => write!(f, "input added: {path}"),
            Reason::InputRemoved { path } => write!(f, "input removed: {path}"),
            Reason::InputMissing { pattern } => write!(f, "input missing: {pattern}"),
            Reason::OutputMissing { path } => write!(f, "output missing: {path}"),
            Reason::OutputsTouched { attempt } => {
                write!(
                    f,
                    "outputs may have been changed by attempt {attempt}, which did not finish well"
                )
            }
            Reason::DependencyChanged { step } => write!(f, "dependency changed: {step}"),
            Reason::DependencyAdded { step } => write!(f, "dependency added: {step}"),
            Reason::DependencyRemoved { step } => write!(f, "dependency removed: {step}"),
            Reason::DependencyWillRun { step } => write!(f, "dependency will run: {step}"),
            Reason::DefinitionChanged { part } => write!(f, "definition changed: {part}"),
        }
    }
}

/// Hashes a string component.
pub fn text(s: &str) -> Digest {
    Digest::of(s.as_bytes())
}

/// Hashes a list of strings (the shell) without ambiguity.
pub fn text_list(items: &[String]) -> Digest {
    let mut h = blake3::Hasher::new();
    for item in items {
        h.update(&(item.len() as u64).to_le_bytes());
        h.update(item.as_bytes());
    }
    Digest::from_blake3(&h.finalize())
}

/// The digest that stands for a dependency's declared outputs together.
pub fn outputs_digest<S: AsRef<str>>(outputs: &[(S, Digest)]) -> Digest {
    // The same bytes as hashing piece by piece, gathered first.
    let mut buf = Vec::with_capacity(
        8 + outputs
            .iter()
            .map(|(p, _)| p.as_ref().len() + 18)
            .sum::<usize>(),
    );
    buf.extend_from_slice(b"outputs\n");
    for (path, digest) in outputs {
        buf.extend_from_slice(path.as_ref().as_bytes());
        buf.push(0);
        buf.extend_from_slice(&digest.0);
        buf.push(b'\n');
    }
    Digest::of(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(pairs: &[(&str, &str)]) -> Components {
        let mut c = Components::default();
        for (k, v) in pairs {
            c.insert(*k, text(v));
        }
        c
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let d = text("hello");
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        assert!("xyz".parse::<Digest>().is_err());
    }

    #[test]
    fn the_fingerprint_depends_on_every_component_and_nothing_else() {
        let a = comps(&[("run", "make"), ("env:A", "1")]);
        assert_eq!(
            a.fingerprint(),
            comps(&[("env:A", "1"), ("run", "make")]).fingerprint()
        );
        assert_ne!(
            a.fingerprint(),
            comps(&[("run", "make"), ("env:A", "2")]).fingerprint()
        );
        assert_ne!(a.fingerprint(), comps(&[("run", "make")]).fingerprint());
    }

    #[test]
    fn changes_are_named_component_by_component() {
        let then = comps(&[
            ("run", "a"),
            ("env:K", "1"),
            ("input:x", "1"),
            ("input:gone", "1"),
            ("dep:up", "1"),
        ]);
        let now = comps(&[
            ("run", "b"),
            ("env:K", "2"),
            ("input:x", "2"),
            ("input:new", "1"),
            ("dep:up", "1"),
        ]);
        let reasons: Vec<String> = now
            .changes_since(&then)
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            reasons,
            [
                "env changed: K",
                "input removed: gone",
                "input added: new",
                "input changed: x",
                "command changed"
            ]
        );
    }

    #[test]
    fn reasons_serialize_with_a_kind() {
        let json = serde_json::to_string(&Reason::InputChanged {
            path: "a.csv".into(),
        })
        .unwrap();
        assert_eq!(json, r#"{"kind":"input changed","path":"a.csv"}"#);
    }
}
