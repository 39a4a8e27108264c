//! A tiny harness for end-to-end tests: a temp dir holding a pipeline, the
//! real `stepwise` binary run inside it, and helpers to read what happened.
//!
//! Steps in tests prove they ran by appending their name to the file `ran`,
//! so "ran exactly once" is checked, not assumed.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_stepwise");

pub struct Space {
    dir: tempfile::TempDir,
}

/// What one invocation of stepwise did.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn from(output: Output) -> Outcome {
        use std::os::unix::process::ExitStatusExt;
        Outcome {
            code: output
                .status
                .code()
                .unwrap_or_else(|| 128 + output.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs a command (from [`Space::command`], customised) to the end.
    pub fn of(cmd: &mut Command) -> Outcome {
        Outcome::from(cmd.output().expect("stepwise starts"))
    }

    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn success(&self) -> &Self {
        self.code(0)
    }

    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}\n--- stderr\n{}",
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\n--- stdout\n{}",
            self.stdout
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl Space {
    pub fn new() -> Space {
        Space {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    /// A space whose `stepwise.toml` is `toml`.
    pub fn with(toml: &str) -> Space {
        let space = Space::new();
        space.write("stepwise.toml", toml);
        space
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, contents).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap_or_default()
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.join(rel).exists()
    }

    /// The lines of the file `ran`: one per step execution.
    pub fn ran(&self) -> Vec<String> {
        self.read("ran").lines().map(String::from).collect()
    }

    /// How many times `step` appended to `ran`.
    pub fn ran_count(&self, step: &str) -> usize {
        self.ran().iter().filter(|l| *l == step).count()
    }

    /// Writes `text` as the journal, each line's checksum made right: for
    /// records edited on purpose.
    pub fn write_journal_resealed(&self, text: &str) {
        let mut out = String::new();
        for line in text.lines() {
            let sealed = stepwise::journal::reseal(line.as_bytes());
            out += &String::from_utf8(sealed).unwrap();
            out.push('\n');
        }
        self.write(".stepwise/journal.jsonl", &out);
    }

    pub fn journal(&self) -> String {
        self.read(".stepwise/journal.jsonl")
    }

    /// A `stepwise` command inside the space, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a customised [`Space::command`] to the end.
    pub fn run_command(&self, mut cmd: Command) -> Outcome {
        Outcome::from(cmd.output().expect("stepwise starts"))
    }

    /// Runs `stepwise ARGS...` to the end.
    pub fn run(&self, args: &[&str]) -> Outcome {
        Outcome::from(self.command(args).output().expect("stepwise starts"))
    }

    /// Runs `stepwise ARGS...` to the end with `input` on its stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Outcome {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("stepwise starts");
        let mut stdin = child.stdin.take().expect("a stdin pipe");
        // A stepwise that does not read its stdin closes the pipe: not our problem.
        let _ = stdin.write_all(input.as_bytes());
        drop(stdin);
        Outcome::from(child.wait_with_output().expect("stepwise ends"))
    }

    /// Starts `stepwise ARGS...` in the background. The returned handle kills
    /// it (SIGKILL) if the test ends before it does.
    pub fn spawn(&self, args: &[&str]) -> Background {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("stepwise starts");
        Background { child: Some(child) }
    }

    /// The raw bytes of the journal, `None` when there is no journal.
    pub fn journal_bytes(&self) -> Option<Vec<u8>> {
        std::fs::read(self.join(".stepwise/journal.jsonl")).ok()
    }

    /// `stepwise plan --json`, parsed.
    pub fn plan_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["plan", "--json"];
        all.extend_from_slice(args);
        let outcome = self.run(&all);
        outcome.success();
        outcome.json()
    }

    /// Waits (up to 10 s) until the file `rel` has a line equal to `line`.
    #[track_caller]
    pub fn wait_for_line(&self, rel: &str, line: &str) {
        wait_until(&format!("a line {line:?} in {rel}"), || {
            self.read(rel).lines().any(|l| l == line)
        });
    }
}

/// A `stepwise` process running in the background.
pub struct Background {
    child: Option<Child>,
}

impl Background {
    /// Adopts a process started with a customised [`Space::command`].
    pub fn from_child(child: Child) -> Background {
        Background { child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("still ours").id()
    }

    /// SIGKILL, like `kill -9`, and waits for it to be gone.
    pub fn kill9(&mut self) -> Outcome {
        let mut child = self.child.take().expect("still ours");
        child.kill().expect("SIGKILL is delivered");
        Outcome::from(child.wait_with_output().expect("stepwise is reaped"))
    }

    /// Waits (up to 10 s) for it to end by itself.
    #[track_caller]
    pub fn wait(&mut self) -> Outcome {
        let deadline = Instant::now() + TIMEOUT;
        let mut child = self.child.take().expect("still ours");
        loop {
            if child.try_wait().expect("try_wait works").is_some() {
                return Outcome::from(child.wait_with_output().expect("stepwise is reaped"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = Outcome::from(child.wait_with_output().expect("stepwise is reaped"));
                panic!("stepwise did not end within {TIMEOUT:?}; killed it:\n{out:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long a test waits for something that should take milliseconds.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds, failing the test after [`TIMEOUT`].
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "gave up after {TIMEOUT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` is alive: it exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: "pid (comm) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The live processes of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ..."
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2
            && fields[2].parse::<u32>().ok() == Some(pgid)
            && fields[0] != "Z"
            && fields[0] != "X"
        {
            out.push(pid);
        }
    }
    out
}

/// Kills what is left of process group `pgid` when dropped, so a test that
/// fails does not leave step processes behind.
pub struct GroupReaper(pub Option<u32>);

impl Drop for GroupReaper {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The steps of a `plan --json` document as `(name, action, state)`.
pub fn plan_steps(plan: &serde_json::Value) -> Vec<(String, String, String)> {
    plan["steps"]
        .as_array()
        .expect("`steps` is a list")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("a name").to_string(),
                s["action"].as_str().expect("an action").to_string(),
                s["state"].as_str().expect("a state").to_string(),
            )
        })
        .collect()
}

/// The names `plan --json` says will run, in the order listed.
pub fn plan_remaining(plan: &serde_json::Value) -> Vec<String> {
    plan_steps(plan)
        .into_iter()
        .filter(|(_, action, _)| action == "run")
        .map(|(name, _, _)| name)
        .collect()
}

/// Every line of a journal, parsed; panics on a line that is not JSON.
pub fn journal_records(journal: &str) -> Vec<serde_json::Value> {
    journal
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("journal line {} is not JSON ({e}): {line}", i + 1))
        })
        .collect()
}

/// A pipeline of steps that each append their name to `ran`, one after the
/// other. `fail` lists steps that fail while the file `fixed` is absent.
pub fn chain(names: &[&str], fail: &[&str]) -> String {
    let mut toml = String::new();
    for name in names {
        let run = if fail.contains(name) {
            format!(
                "echo {name} >> ran; test -f fixed || {{ echo '{name} is broken' >&2; exit 3; }}"
            )
        } else {
            format!("echo {name} >> ran")
        };
        toml.push_str(&format!("[[step]]\nname = \"{name}\"\nrun = \"{run}\"\n\n"));
    }
    toml
}

pub mod ui;
