//! Running one attempt of a step as an operating-system process.
//!
//! The policy, in one place:
//! - the step runs as `shell... run`, stdin `/dev/null`, stdout and stderr both
//!   straight into its log file (no pipe, so a chatty step can never block on
//!   a full pipe and the log survives the runner);
//! - it leads a session (and so a process group) of its own, so stepwise can
//!   signal the step and everything it started (grandchildren included), the
//!   terminal's Ctrl-C reaches only stepwise, which decides what to forward,
//!   and a step that tries to prompt on the terminal (`sudo`, `ssh`) fails
//!   at once instead of hanging stopped in the background;
//! - it gets `SIGKILL` if the stepwise thread that started it dies (kill -9 of
//!   the runner), so a killed runner does not leave its steps running on;
//! - when the step's main process exits, whatever it left running in its
//!   process group is killed: a step is over when its command is.
//!
//! The group is signalled only while its leader is not yet reaped (a zombie
//! still holds the pid), so a signal can never reach a recycled process id.

use std::fs::File;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

/// What to run.
pub struct Spec<'a> {
    pub shell: &'a [String],
    pub run: &'a str,
    pub dir: &'a Path,
    /// Set on top of the inherited environment, in order.
    pub env: Vec<(&'a str, &'a str)>,
    /// Receives stdout and stderr.
    pub log: File,
}

/// A started step process. Cloneable handle for signalling; the exit status
/// comes from [`Started::wait`], usually on another thread.
#[derive(Clone)]
pub struct Handle {
    pid: Pid,
    /// True once the leader is reaped; guarded so a signal and the reaping
    /// never race.
    reaped: Arc<Mutex<bool>>,
}

/// The process just after spawning, before anyone waits for it.
pub struct Started {
    child: Child,
    handle: Handle,
}

/// Starts the step's process.
pub fn spawn(spec: Spec<'_>) -> io::Result<Started> {
    let (program, args) = spec
        .shell
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty shell"))?;
    let stderr = spec.log.try_clone()?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg(spec.run)
        .current_dir(spec.dir)
        .stdin(Stdio::null())
        .stdout(spec.log)
        .stderr(stderr);
    for (k, v) in spec.env {
        cmd.env(k, v);
    }
    let parent = std::process::id() as i32;
    // SAFETY: only async-signal-safe calls (setsid, prctl, getppid, _exit)
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The runner may have died before the line above took effect.
            if nix::libc::getppid() != parent {
                nix::libc::_exit(137);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        if spec.dir.exists() && !spec.dir.is_dir() {
            io::Error::new(
                e.kind(),
                format!("working dir {} is not a folder", spec.dir.display()),
            )
        } else if e.kind() == io::ErrorKind::NotFound && !spec.dir.is_dir() {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("working dir {} does not exist", spec.dir.display()),
            )
        } else if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("shell `{program}` not found"),
            )
        } else {
            e
        }
    })?;
    let handle = Handle {
        pid: Pid::from_raw(child.id() as i32),
        reaped: Arc::new(Mutex::new(false)),
    };
    Ok(Started { child, handle })
}

impl Started {
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Waits for the step's main process to exit, kills what it left in its
    /// process group, and reaps it.
    pub fn wait(mut self) -> io::Result<ExitStatus> {
        loop {
            // WNOWAIT: learn that it exited while keeping the zombie, so the
            // process group id stays ours while we clean up behind it.
            match waitid(
                Id::Pid(self.handle.pid),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
            ) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let mut reaped = self.handle.reaped.lock().unwrap_or_else(|e| e.into_inner());
        let _ = killpg(self.handle.pid, Signal::SIGKILL);
        let status = self.child.wait()?;
        *reaped = true;
        Ok(status)
    }
}

impl Handle {
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Sends `signal` to the step's whole process group, unless it is over.
    pub fn signal(&self, signal: Signal) {
        let reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
        if !*reaped {
            let _ = killpg(self.pid, signal);
        }
    }
}

/// The exit code, or the signal that ended the process.
pub fn status_parts(status: ExitStatus) -> (Option<i32>, Option<i32>) {
    (status.code(), status.signal())
}

/// The variable that ties a step process to its pipeline's state dir.
pub const STATE_DIR_VAR: &str = "STEPWISE_STATE_DIR";
/// The variable holding the run number of a step process.
pub const RUN_VAR: &str = "STEPWISE_RUN";

/// Kills processes that steps of the given runs of this state dir left
/// running, because their runner died (kill -9, power loss of the runner's
/// terminal...): the runner's death killed each step's main process, but not
/// what that process had started. Such a process is recognised by the
/// environment every step process inherits (`STEPWISE_STATE_DIR` and
/// `STEPWISE_RUN`). Call this only while holding the state dir's lock: then
/// no live run of this pipeline exists, so nothing legitimate is hit.
///
/// Returns the pids killed.
pub fn kill_leftovers(state_dir: &Path, runs: &[u64]) -> Vec<u32> {
    if runs.is_empty() {
        return Vec::new();
    }
    let dir_entry = format!("{STATE_DIR_VAR}={}", state_dir.display());
    let run_entries: Vec<String> = runs.iter().map(|r| format!("{RUN_VAR}={r}")).collect();
    let me = std::process::id();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut killed = Vec::new();
    for entry in proc_dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Other users' processes are unreadable, and not ours to kill anyway.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let mut has_dir = false;
        let mut has_run = false;
        for var in environ.split(|&b| b == 0) {
            has_dir |= var == dir_entry.as_bytes();
            has_run |= run_entries.iter().any(|r| var == r.as_bytes());
        }
        if has_dir
            && has_run
            && nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok()
        {
            killed.push(pid);
        }
    }
    killed
}
