//! Running one attempt of a step as an operating-system process.
//!
//! The policy, in one place:
//! - the step runs as `shell... run`, stdin `/dev/null`, stdout and stderr
//!   into one pipe that the scheduler drains into the attempt's log file,
//!   created only when the step prints something (most steps print nothing,
//!   and creating a file per attempt was the biggest cost of a short step);
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
//! Its exit is noticed through a pidfd (or, where the kernel has none, a
//! helper thread), so one poll loop watches every running step. The group is
//! signalled only while its leader is not yet reaped (a zombie still holds
//! the pid), so a signal can never reach a recycled process id.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::{Pid, pipe2};

mod spawn;

/// What to run.
pub struct Spec<'a> {
    /// The shell program, resolved to a path (see [`resolve_program`]).
    pub program: &'a Path,
    /// Its arguments before the command string.
    pub args: &'a [String],
    /// The step's command string, passed as the last argument.
    pub run: &'a str,
    /// The working dir.
    pub dir: &'a Path,
    /// Set on top of the inherited environment, in order.
    pub env: Vec<(&'a str, &'a str)>,
    /// Inherited variables the step must not get (other steps' secrets).
    pub withheld: Vec<&'a str>,
}

/// A running step process.
pub struct Child {
    pid: Pid,
    /// Readable once the process has exited.
    exit_fd: OwnedFd,
    /// Non-blocking read end of the output pipe; `None` after end of file.
    output: Option<OwnedFd>,
    reaped: bool,
}

/// Finds `program` on `path` (a `PATH` value) the way `execvp` would, once,
/// instead of letting every spawn try each folder in turn.
pub fn resolve_program(program: &str, path: Option<&OsString>) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    let path = path
        .cloned()
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0
        {
            return candidate;
        }
    }
    PathBuf::from(program)
}

/// Starts the step's process.
pub fn spawn(spec: Spec<'_>) -> io::Result<Child> {
    let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
    fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    let pid = spawn::vfork_exec(&spec, write.as_fd()).map_err(|e| explain_spawn_error(e, &spec))?;
    // Only the child's copies of the write end remain, so the pipe ends when
    // the step's processes do.
    drop(write);
    let exit_fd = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(_) => exit_notifier(pid)?,
    };
    Ok(Child {
        pid,
        exit_fd,
        output: Some(read),
        reaped: false,
    })
}

fn explain_spawn_error(e: io::Error, spec: &Spec<'_>) -> io::Error {
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
            format!("shell `{}` not found", spec.program.display()),
        )
    } else {
        e
    }
}

fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call; on success it returns a new descriptor
    // (close-on-exec) that we own.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Without pidfds (Linux before 5.3, some sandboxes): a thread waits for the
/// exit, keeping the zombie, and closes a pipe to say so.
fn exit_notifier(pid: Pid) -> io::Result<OwnedFd> {
    let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
    std::thread::Builder::new()
        .name(format!("wait {pid}"))
        .spawn(move || {
            while let Err(Errno::EINTR) =
                waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
            {}
            drop(write);
        })?;
    Ok(read)
}

impl Child {
    /// The process id of the step's main process, which is also its process
    /// group and session id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Readable once the process has exited.
    pub fn exit_fd(&self) -> BorrowedFd<'_> {
        self.exit_fd.as_fd()
    }

    /// The output pipe, while it is open.
    pub fn output_fd(&self) -> Option<BorrowedFd<'_>> {
        self.output.as_ref().map(|fd| fd.as_fd())
    }

    /// Moves what the step printed so far into `sink`, without blocking.
    pub fn read_output(&mut self, sink: &mut dyn Write) {
        let mut buf = [0u8; 64 * 1024];
        // Bounded, so one chatty step cannot starve the others.
        for _ in 0..4 {
            let Some(fd) = &self.output else { return };
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => self.output = None,
                Ok(n) => {
                    let _ = sink.write_all(&buf[..n]);
                }
                Err(Errno::EINTR) => continue,
                // EAGAIN: nothing more for now.
                Err(_) => return,
            }
        }
    }

    /// After [`Child::exit_fd`] became readable: kills what the step left in
    /// its process group, moves the rest of its output into `sink`, and
    /// reaps it.
    pub fn finish(mut self, sink: &mut dyn Write) -> io::Result<Exit> {
        // The leader is a zombie, so the group id is still ours to signal.
        let _ = killpg(self.pid, Signal::SIGKILL);
        // Drain: whatever is left in the pipe, up to end of file or, if a
        // process escaped the group still holds it open, up to now.
        let mut buf = [0u8; 64 * 1024];
        while let Some(fd) = &self.output {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => self.output = None,
                Ok(n) => {
                    let _ = sink.write_all(&buf[..n]);
                }
                Err(Errno::EINTR) => {}
                Err(_) => self.output = None,
            }
        }
        let exit = reap(self.pid)?;
        self.reaped = true;
        Ok(exit)
    }

    /// Sends `signal` to the step's whole process group, unless it is over.
    pub fn signal(&self, signal: Signal) {
        if !self.reaped {
            let _ = killpg(self.pid, signal);
        }
    }
}

impl AsRawFd for Child {
    fn as_raw_fd(&self) -> i32 {
        self.exit_fd.as_raw_fd()
    }
}

/// An attempt's log file, created on the first byte written to it.
pub struct LazyLog {
    path: PathBuf,
    file: Option<File>,
    /// Why the log could not be written, if it could not: reported once.
    pub error: Option<io::Error>,
}

impl LazyLog {
    /// A log to be created at `path` once there is something to write.
    pub fn new(path: PathBuf) -> LazyLog {
        LazyLog {
            path,
            file: None,
            error: None,
        }
    }

    /// Where it is, or will be once written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether anything was written.
    pub fn exists(&self) -> bool {
        self.file.is_some()
    }

    /// Whether the log could be created now: its folder is writable and its
    /// path is free or a file. (Creation can still fail later, when the
    /// first byte comes, on a full disk: then the output is dropped with a
    /// warning and the step goes on, since killing it would lose its work.)
    pub fn check(&self) -> io::Result<()> {
        use nix::unistd::{AccessFlags, access};
        let folder = self.path.parent().unwrap_or(Path::new("."));
        access(folder, AccessFlags::W_OK | AccessFlags::X_OK).map_err(io::Error::from)?;
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if !meta.is_file() => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "something other than a file is in its place",
            )),
            Ok(_) => access(&self.path, AccessFlags::W_OK).map_err(io::Error::from),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Write for LazyLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.error.is_some() {
            return Ok(buf.len());
        }
        if self.file.is_none() {
            // Owner-only: a step's output may show what its environment holds.
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&self.path);
            match created {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    self.error = Some(e);
                    return Ok(buf.len());
                }
            }
        }
        let file = self.file.as_mut().expect("just created");
        if let Err(e) = file.write_all(buf) {
            self.error = Some(e);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How a step's main process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal, by number, killed it.
    Signal(i32),
}

fn reap(pid: Pid) -> io::Result<Exit> {
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return Ok(Exit::Code(code)),
            Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => {
                return Ok(Exit::Signal(sig as i32));
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl Drop for Child {
    /// A child dropped without [`Child::finish`] (an error path) is killed
    /// and reaped, never left a zombie or running.
    fn drop(&mut self) {
        if !self.reaped {
            let _ = killpg(self.pid, Signal::SIGKILL);
            let _ = reap(self.pid);
        }
    }
}

/// The variable that ties a step process to its pipeline's state dir.
pub const STATE_DIR_VAR: &str = "STEPWISE_STATE_DIR";
/// The variable holding the run number of a step process.
pub const RUN_VAR: &str = "STEPWISE_RUN";
/// The variable holding the step name of a step process.
pub const STEP_VAR: &str = "STEPWISE_STEP";
/// The variable holding the attempt number of a step process.
pub const ATTEMPT_VAR: &str = "STEPWISE_ATTEMPT";
/// Set to `slurm` in the environment of a step run as a Slurm job.
pub const EXECUTOR_VAR: &str = "STEPWISE_EXECUTOR";

/// Kills processes that the given attempts (run, step, attempt number) of
/// this state dir left running, because their runner died while they ran
/// (kill -9, power loss of the runner's terminal...): the runner's death
/// killed each step's main process, but not what that process had started.
/// Such a process is recognised by the environment every step process
/// inherits (`STEPWISE_STATE_DIR`, `STEPWISE_RUN`, `STEPWISE_STEP` and
/// `STEPWISE_ATTEMPT`). Only attempts that were running are named: what a
/// step that finished left behind on purpose (a service started with
/// `setsid`) is not a leftover. Call this only while holding the state dir's
/// lock: then no live run of this pipeline exists, so nothing legitimate is
/// hit.
///
/// Processes of Slurm jobs (`STEPWISE_EXECUTOR=slurm`) are left alone, even
/// on this machine: Slurm runs them, they outlive their runner by design,
/// and the next run re-attaches to them.
///
/// Returns the pids killed.
pub fn kill_leftovers(state_dir: &Path, attempts: &[(u64, &str, u32)]) -> Vec<u32> {
    if attempts.is_empty() {
        return Vec::new();
    }
    // Steps get the state dir's real path (see `state_dir::real_path`); a
    // process whose variable spells it otherwise (a symlink, `..`) is still
    // this pipeline's, so differing spellings are resolved before comparing.
    use std::os::unix::ffi::OsStrExt;
    let state_dir =
        crate::state::dir::real_path(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let dir_prefix = format!("{STATE_DIR_VAR}=");
    let is_this_dir = |value: &[u8]| {
        let value = Path::new(std::ffi::OsStr::from_bytes(value));
        value == state_dir
            || crate::state::dir::real_path(value).is_ok_and(|real| real == state_dir)
    };
    let wanted: std::collections::HashSet<(Vec<u8>, Vec<u8>, Vec<u8>)> = attempts
        .iter()
        .map(|(run, step, attempt)| {
            (
                run.to_string().into_bytes(),
                step.as_bytes().to_vec(),
                attempt.to_string().into_bytes(),
            )
        })
        .collect();
    let slurm_entry = format!("{EXECUTOR_VAR}=slurm");
    let run_prefix = format!("{RUN_VAR}=");
    let step_prefix = format!("{STEP_VAR}=");
    let attempt_prefix = format!("{ATTEMPT_VAR}=");
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
        let (mut run, mut step, mut attempt) = (None, None, None);
        let mut slurm_job = false;
        for var in environ.split(|&b| b == 0) {
            has_dir |= var
                .strip_prefix(dir_prefix.as_bytes())
                .is_some_and(&is_this_dir);
            if let Some(v) = var.strip_prefix(run_prefix.as_bytes()) {
                run = Some(v);
            } else if let Some(v) = var.strip_prefix(step_prefix.as_bytes()) {
                step = Some(v);
            } else if let Some(v) = var.strip_prefix(attempt_prefix.as_bytes()) {
                attempt = Some(v);
            }
            slurm_job |= var == slurm_entry.as_bytes();
        }
        let of_attempt = match (run, step, attempt) {
            (Some(r), Some(s), Some(a)) => wanted.contains(&(r.to_vec(), s.to_vec(), a.to_vec())),
            _ => false,
        };
        if has_dir
            && of_attempt
            && !slurm_job
            && nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok()
        {
            killed.push(pid);
        }
    }
    killed
}
