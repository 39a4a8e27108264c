//! Talking to Slurm: the per-attempt batch script, `sbatch`, `squeue`,
//! `scancel` and `sacct`, and what a job's end means as an [`Outcome`].
//!
//! Only commands, no library: they are what every Slurm site has and
//! supports, they find the controller the way the user's own shell does, and
//! a stepwise built here works against any Slurm version there.
//!
//! An attempt submitted to Slurm leaves three files, all in the state dir
//! (which must therefore be on a filesystem the compute nodes share):
//! - `slurm/<step>.<attempt>.sh`, the batch script: it sets the step's
//!   environment, changes to its dir, runs its command through the
//!   pipeline's shell, and writes the exit status to
//! - `slurm/<step>.<attempt>.status`, atomically (a temporary file renamed),
//!   so a reader sees no status or a whole one;
//! - `logs/<step>.<attempt>.log`, the job's stdout and stderr.
//!
//! The status file is the truth about how the command ended; Slurm's job
//! state says what happened when there is none (the job was cancelled, ran
//! out of time or memory, or its node failed).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::journal::Outcome;
use crate::pipeline::SlurmResources;
use crate::state::dir::{StateDir, step_file_name};

/// What the status file says when the job could not enter the step's dir.
const NO_DIR: &str = "no-dir";

/// The files of one attempt submitted to Slurm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptFiles {
    /// The batch script submitted as the job.
    pub script: PathBuf,
    /// Where the script writes the command's exit status.
    pub status: PathBuf,
}

impl AttemptFiles {
    /// Where they go; `state` should be absolute, since the paths are read
    /// on other machines.
    pub fn new(state: &StateDir, step: &str, attempt: u32) -> AttemptFiles {
        AttemptFiles {
            script: state
                .slurm()
                .join(step_file_name(step, &format!(".{attempt}.sh"))),
            status: state
                .slurm()
                .join(step_file_name(step, &format!(".{attempt}.status"))),
        }
    }
}

impl StateDir {
    /// Where the batch scripts and status files of Slurm jobs go.
    pub fn slurm(&self) -> PathBuf {
        self.path().join("slurm")
    }

    /// Written by a job, so proof that jobs see the state dir.
    pub fn slurm_shared_marker(&self) -> PathBuf {
        self.slurm().join("shared")
    }
}

/// Everything the batch script of an attempt needs.
pub struct Script<'a> {
    /// The step's name (for the script's comment).
    pub step: &'a str,
    /// The attempt's number (for the script's comment).
    pub attempt: u32,
    /// The run's id (for the script's comment).
    pub run: u64,
    /// The shell and its arguments, before the command.
    pub shell: &'a [String],
    /// The step's `run`.
    pub command: &'a str,
    /// The step's dir, absolute: the job changes to it.
    pub dir: &'a Path,
    /// Set on top of what the job inherits, in order (later wins).
    pub env: Vec<(&'a str, &'a str)>,
    /// Unset before the command runs: other steps' `secret_env` variables,
    /// which the job inherits from stepwise's environment through `sbatch`
    /// like everything else.
    pub withheld: Vec<&'a str>,
    /// Where the command's exit status goes ([`AttemptFiles::status`]).
    pub status: &'a Path,
}

/// `text` as one word for `sh`, whatever it holds.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl Script<'_> {
    /// The script's text. The command runs as `env -- VAR=value... shell...
    /// command`, so a variable name the shell could not `export` (say,
    /// `A-B`) still reaches the step, as it does locally.
    pub fn text(&self) -> String {
        let status = self.status.display().to_string();
        let tmp = format!("{status}.tmp");
        let mut s = String::with_capacity(512 + self.command.len());
        s.push_str("#!/bin/sh\n");
        s.push_str(&format!(
            "# Written by stepwise for attempt {} of step `{}` (run {}).\n",
            self.attempt,
            self.step.replace('\n', " "),
            self.run
        ));
        s.push_str(
            "# The command's exit status goes to the status file, written whole\n\
             # (temporary file, then rename): stepwise reads it as the outcome.\n",
        );
        s.push_str(&format!("status={}\n", quote(&status)));
        s.push_str(&format!("tmp={}\n", quote(&tmp)));
        s.push_str(&format!(
            "cd -- {} || {{ printf '%s\\n' {NO_DIR} >\"$tmp\" && mv -f -- \"$tmp\" \"$status\"; exit 1; }}\n",
            quote(&self.dir.display().to_string())
        ));
        s.push_str("env");
        for name in &self.withheld {
            s.push_str(" -u ");
            s.push_str(&quote(name));
        }
        s.push_str(" --");
        for (k, v) in &self.env {
            s.push_str(" \\\n  ");
            s.push_str(&quote(&format!("{k}={v}")));
        }
        for word in self.shell {
            s.push_str(" \\\n  ");
            s.push_str(&quote(word));
        }
        s.push_str(" \\\n  ");
        s.push_str(&quote(self.command));
        s.push_str(" </dev/null\n");
        s.push_str("code=$?\n");
        s.push_str("printf '%s\\n' \"$code\" >\"$tmp\" && mv -f -- \"$tmp\" \"$status\"\n");
        s.push_str("exit \"$code\"\n");
        s
    }
}

/// Writes the script and makes it executable.
pub fn write_script(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Never through a symlink planted in the state dir.
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    drop(file);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// A job's name: `stepwise:<pipeline folder>:<step>`, what `squeue` shows.
pub fn job_name(root: &Path, step: &str) -> String {
    let folder = root
        .file_name()
        .map_or_else(|| "/".into(), |f| f.to_string_lossy());
    format!("stepwise:{folder}:{step}")
}

/// `--time` for a duration: Slurm counts whole minutes, so it is rounded up.
pub fn time_limit(d: Duration) -> String {
    let seconds = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let minutes = seconds.div_ceil(60).max(1);
    let (days, rest) = (minutes / 1440, minutes % 1440);
    format!("{days}-{:02}:{:02}:00", rest / 60, rest % 60)
}

/// A path for `--output`, where Slurm reads `%` as the start of a pattern
/// (`%j`, the job id): `%%` is a literal one.
fn output_path(path: &Path) -> String {
    path.display().to_string().replace('%', "%%")
}

/// The arguments of `sbatch` for one attempt, script last.
pub fn sbatch_args(
    resources: &SlurmResources,
    timeout: Option<Duration>,
    name: &str,
    log: &Path,
    script: &Path,
) -> Vec<String> {
    let mut args = vec![
        "--parsable".to_string(),
        // A requeued job would run the step a second time behind our back.
        "--no-requeue".to_string(),
        format!("--job-name={name}"),
        format!("--output={}", output_path(log)),
    ];
    let mut add = |flag: &str, value: Option<String>| {
        if let Some(v) = value {
            args.push(format!("--{flag}={v}"));
        }
    };
    add("partition", resources.partition.clone());
    add("cpus-per-task", resources.cpus.map(|c| c.to_string()));
    add("mem", resources.mem.clone());
    add("time", resources.time.or(timeout).map(time_limit));
    add("gpus", resources.gpus.clone());
    add("account", resources.account.clone());
    add("qos", resources.qos.clone());
    args.extend(resources.sbatch_args.iter().cloned());
    args.push(script.display().to_string());
    args
}

/// Why a Slurm command did not answer.
#[derive(Debug)]
pub enum SlurmError {
    /// The command is not installed here.
    Missing(String),
    /// It ran and failed; its message.
    Failed(String),
}

impl std::fmt::Display for SlurmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlurmError::Missing(cmd) => write!(f, "`{cmd}` is not installed here (not on PATH)"),
            SlurmError::Failed(why) => f.write_str(why),
        }
    }
}

/// Runs a Slurm command, returning its stdout. It gets its own process
/// group, so the terminal's Ctrl-C reaches only stepwise, which then
/// decides what to cancel; a half-done `sbatch` would otherwise leave a job
/// we never heard of.
fn slurm_command(program: &str, args: &[String], dir: Option<&Path>) -> Result<String, SlurmError> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SlurmError::Missing(program.into()));
        }
        Err(e) => return Err(SlurmError::Failed(format!("cannot run `{program}`: {e}"))),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message = stderr.trim();
    Err(SlurmError::Failed(if message.is_empty() {
        format!("`{program}` failed ({})", out.status)
    } else {
        format!(
            "`{program}`: {}",
            message.lines().collect::<Vec<_>>().join("; ")
        )
    }))
}

/// Whether `sbatch` can be run here.
pub fn available() -> bool {
    crate::run::process::resolve_program("sbatch", None).is_absolute()
}

/// Submits a batch job; returns its id. `dir` is where `sbatch` runs (the
/// job's default working dir; the script changes to the step's own).
pub fn submit(args: &[String], dir: &Path) -> Result<String, SlurmError> {
    let out = slurm_command("sbatch", args, Some(dir))?;
    // `--parsable` prints `id` or `id;cluster`.
    let id = out
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(SlurmError::Failed(format!(
            "`sbatch` printed no job id: {:?}",
            out.trim()
        )));
    }
    Ok(id)
}

/// How many job ids go into one `squeue -j`, to keep command lines short.
const IDS_PER_QUERY: usize = 500;

/// The state of each of these jobs that Slurm still knows, by id (finished
/// jobs stay known for the cluster's `MinJobAge`). One `squeue` for up to
/// 500 jobs.
pub fn states(ids: &[&str]) -> Result<HashMap<String, String>, SlurmError> {
    let mut known = HashMap::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let args = vec![
            "--noheader".into(),
            "--states=all".into(),
            format!("--jobs={}", chunk.join(",")),
            "--format=%i|%T".into(),
        ];
        match slurm_command("squeue", &args, None) {
            Ok(out) => {
                for line in out.lines() {
                    if let Some((id, state)) = line.trim().split_once('|') {
                        known.insert(id.to_string(), state.to_string());
                    }
                }
            }
            // All of them are unknown: finished too long ago, or never were.
            Err(SlurmError::Failed(why)) if why.contains("Invalid job id") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(known)
}

/// The user's jobs whose batch script is one of `scripts`: how a job whose
/// id never reached the journal (the runner died while `sbatch` ran) is
/// found. By script path, `(id, state)`.
pub fn find_by_script(
    scripts: &[PathBuf],
) -> Result<HashMap<PathBuf, (String, String)>, SlurmError> {
    let args = vec![
        "--noheader".into(),
        "--me".into(),
        "--states=all".into(),
        "--format=%i|%T|%o".into(),
    ];
    let out = slurm_command("squeue", &args, None)?;
    let mut found = HashMap::new();
    for line in out.lines() {
        let mut parts = line.trim().splitn(3, '|');
        let (Some(id), Some(state), Some(command)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let command = PathBuf::from(command.trim());
        if scripts.contains(&command) {
            found.insert(command, (id.to_string(), state.to_string()));
        }
    }
    Ok(found)
}

/// What the accounting database says about jobs `squeue` has forgotten:
/// `(state, exit code)` by id. Empty where there is no accounting (`sacct`
/// missing or disabled): then only the status file tells.
pub fn accounting(ids: &[&str]) -> HashMap<String, (String, Option<i32>)> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let args = vec![
            "--noheader".into(),
            "--parsable2".into(),
            "--allocations".into(),
            format!("--jobs={}", chunk.join(",")),
            "--format=JobIDRaw,State,ExitCode".into(),
        ];
        let Ok(text) = slurm_command("sacct", &args, None) else {
            return out;
        };
        for line in text.lines() {
            let mut parts = line.split('|');
            let (Some(id), Some(state), Some(code)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            // "CANCELLED by 1000"; an exit code is "code:signal".
            let state = state.split_whitespace().next().unwrap_or("").to_string();
            let code = code.split(':').next().and_then(|c| c.parse().ok());
            out.insert(id.to_string(), (state, code));
        }
    }
    out
}

/// Cancels jobs, all in one `scancel`.
pub fn cancel(ids: &[&str]) -> Result<(), SlurmError> {
    if ids.is_empty() {
        return Ok(());
    }
    let args: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    slurm_command("scancel", &args, None).map(|_| ())
}

/// Whether a job in this state is over: it will not run (again).
pub fn is_over(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "TIMEOUT"
            | "CANCELLED"
            | "OUT_OF_MEMORY"
            | "NODE_FAIL"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "PREEMPTED"
            | "SPECIAL_EXIT"
            | "REVOKED"
    )
}

/// What a job's status file says: `Some(Ok(code))`, `Some(Err(why))` when
/// the command could not start, `None` when there is no (whole) file.
pub fn read_status(path: &Path) -> Option<Result<i32, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let word = text.trim();
    if word == NO_DIR {
        return Some(Err("the job could not enter the step's dir".into()));
    }
    word.parse().ok().map(Ok)
}

/// Whether Slurm itself stopped a job in this state (its command did not
/// end on its own).
fn stopped_by_slurm(state: &str) -> bool {
    matches!(
        state,
        "CANCELLED" | "OUT_OF_MEMORY" | "NODE_FAIL" | "BOOT_FAIL" | "DEADLINE" | "PREEMPTED"
    )
}

/// How a job ended, from its status file (`status`, see [`read_status`])
/// and the state Slurm reports. The status file decides, except where Slurm
/// stopped the job: a timeout is a timeout, and a job cancelled, out of
/// memory or on a failed node is that, whatever status its command's death
/// left (a success that finished first stays one). `None` when neither
/// tells (the caller waits, or counts the job as lost).
pub fn outcome(status: Option<Result<i32, String>>, state: Option<&str>) -> Option<Outcome> {
    match (status, state) {
        (_, Some("TIMEOUT")) => Some(Outcome::TimedOut),
        (Some(Ok(0)), _) => Some(Outcome::Success),
        (Some(Ok(_)), Some(state)) if stopped_by_slurm(state) => {
            Some(Outcome::Job(state.to_string()))
        }
        (Some(Ok(code)), _) => Some(Outcome::Exited(code)),
        (Some(Err(why)), _) => Some(Outcome::NotStarted(why)),
        (None, Some(state)) if is_over(state) => Some(Outcome::Job(state.to_string())),
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limits_round_up_to_whole_minutes() {
        let d = |s| Duration::from_secs(s);
        assert_eq!(time_limit(d(10)), "0-00:01:00");
        assert_eq!(time_limit(d(60)), "0-00:01:00");
        assert_eq!(time_limit(d(61)), "0-00:02:00");
        assert_eq!(time_limit(Duration::from_millis(60_500)), "0-00:02:00");
        assert_eq!(time_limit(d(90 * 60)), "0-01:30:00");
        assert_eq!(time_limit(d(3 * 86_400 + 60)), "3-00:01:00");
    }

    #[test]
    fn sbatch_gets_the_resources_then_the_users_arguments() {
        let r = SlurmResources {
            partition: Some("short".into()),
            cpus: Some(4),
            mem: Some("4G".into()),
            time: None,
            gpus: Some("a100:1".into()),
            account: Some("lab".into()),
            qos: None,
            sbatch_args: vec!["--constraint=avx2".into()],
        };
        let args = sbatch_args(
            &r,
            Some(Duration::from_secs(90)),
            "stepwise:p:s",
            Path::new("/p/.stepwise/logs/a%2Fb.1.log"),
            Path::new("/p/.stepwise/slurm/s.1.sh"),
        );
        assert_eq!(
            args,
            [
                "--parsable",
                "--no-requeue",
                "--job-name=stepwise:p:s",
                "--output=/p/.stepwise/logs/a%%2Fb.1.log",
                "--partition=short",
                "--cpus-per-task=4",
                "--mem=4G",
                "--time=0-00:02:00",
                "--gpus=a100:1",
                "--account=lab",
                "--constraint=avx2",
                "/p/.stepwise/slurm/s.1.sh",
            ]
        );
    }

    #[test]
    fn the_script_runs_the_command_and_writes_its_status_whole() {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("s.1.status");
        let script = Script {
            step: "s",
            attempt: 1,
            run: 2,
            shell: &["sh".into(), "-c".into()],
            command: "echo \"$GREETING, it's $STEPWISE_STEP${OTHER_SECRET-}\"; exit 3",
            dir: dir.path(),
            env: vec![("GREETING", "hello 'there'"), ("STEPWISE_STEP", "s")],
            withheld: vec!["OTHER_SECRET"],
            status: &status,
        };
        let path = dir.path().join("s.1.sh");
        write_script(&path, &script.text()).unwrap();
        // Another step's secret, inherited as a job inherits stepwise's
        // environment, does not reach this step.
        let out = Command::new(&path)
            .env("OTHER_SECRET", " and a secret")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello 'there', it's s\n"
        );
        assert_eq!(read_status(&status), Some(Ok(3)));
        assert!(!dir.path().join("s.1.status.tmp").exists());

        let gone = dir.path().join("gone");
        let script = Script {
            dir: &gone,
            ..script
        };
        write_script(&path, &script.text()).unwrap();
        let out = Command::new(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(matches!(read_status(&status), Some(Err(_))));
    }

    #[test]
    fn outcomes_come_from_the_status_file_first() {
        assert_eq!(
            outcome(Some(Ok(0)), Some("COMPLETED")),
            Some(Outcome::Success)
        );
        assert_eq!(
            outcome(Some(Ok(3)), Some("FAILED")),
            Some(Outcome::Exited(3))
        );
        // Finished just before a cancel reached it: the command's own word.
        assert_eq!(
            outcome(Some(Ok(0)), Some("CANCELLED")),
            Some(Outcome::Success)
        );
        assert_eq!(
            outcome(Some(Ok(143)), Some("TIMEOUT")),
            Some(Outcome::TimedOut)
        );
        // Killed by a cancel or the OOM killer: Slurm's word, not the signal's.
        assert_eq!(
            outcome(Some(Ok(143)), Some("CANCELLED")),
            Some(Outcome::Job("CANCELLED".into()))
        );
        assert_eq!(
            outcome(Some(Ok(137)), Some("OUT_OF_MEMORY")),
            Some(Outcome::Job("OUT_OF_MEMORY".into()))
        );
        assert_eq!(outcome(None, Some("TIMEOUT")), Some(Outcome::TimedOut));
        assert_eq!(
            outcome(None, Some("OUT_OF_MEMORY")),
            Some(Outcome::Job("OUT_OF_MEMORY".into()))
        );
        assert_eq!(outcome(None, Some("RUNNING")), None);
        assert_eq!(outcome(None, None), None);
    }

    #[test]
    fn files_of_an_attempt_are_named_safely() {
        let files = AttemptFiles::new(&StateDir::new("/p/.stepwise"), "thumb[path=a/b.jpg]", 3);
        assert_eq!(
            files.script,
            Path::new("/p/.stepwise/slurm/thumb[path=a%2Fb.jpg].3.sh")
        );
        assert_eq!(
            files.status,
            Path::new("/p/.stepwise/slurm/thumb[path=a%2Fb.jpg].3.status")
        );
        // A name too long for a file name: shortened, each file on its own.
        let long = format!("thumb[path=raw/{}.jpg]", "写真".repeat(15));
        let files = AttemptFiles::new(&StateDir::new("/p/.stepwise"), &long, 3);
        for path in [&files.script, &files.status] {
            let name = path.file_name().unwrap().to_str().unwrap();
            assert!(name.len() <= 255 && name.contains('~'), "{name}");
        }
        assert!(files.status.to_str().unwrap().ends_with(".3.status"));
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(job_name(Path::new("/home/u/proj"), "s"), "stepwise:proj:s");
    }
}
