//! Starting a step the way `posix_spawn` does — `clone(CLONE_VM |
//! CLONE_VFORK)`, so no page tables are copied — while still doing the three
//! things `posix_spawn` cannot: `setsid`, `PR_SET_PDEATHSIG`, and checking
//! that the runner did not die first.
//!
//! A `fork` costs the runner a copy of its page tables and a copy-on-write
//! fault for every page touched afterwards; on a pipeline of short steps
//! that was most of stepwise's own time. With `CLONE_VFORK` the runner
//! thread is suspended until the child has called `execve` (or exited), and
//! the child shares its memory, so the child may only make raw system calls
//! on data prepared beforehand: no allocation, no locks, no Rust runtime.
//!
//! Signals: the runner blocks every signal around the clone so that none of
//! its handlers can run in the child; the child resets the signals the
//! runner catches to their defaults before restoring the mask and calling
//! `execve` (which would reset them too, but only after a window in which a
//! handler could have run).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::ptr;
use std::sync::OnceLock;

use nix::libc;
use nix::unistd::Pid;

use super::Spec;

/// What went wrong in the child before `execve` replaced it.
const STAGE_NONE: i32 = 0;
const STAGE_SETUP: i32 = 1;
const STAGE_CHDIR: i32 = 2;
const STAGE_EXEC: i32 = 3;

/// Everything the child needs, prepared by the parent: pointers into
/// `CString`s and arrays that outlive the clone.
#[repr(C)]
struct ChildArgs {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    dir: *const libc::c_char,
    stdin: libc::c_int,
    output: libc::c_int,
    parent: libc::pid_t,
    old_mask: libc::sigset_t,
    caught: [libc::c_int; 65],
    caught_len: usize,
    /// Written by the child if it fails before `execve`: which stage, errno.
    stage: i32,
    errno: i32,
}

/// `/dev/null`, opened once.
fn dev_null() -> io::Result<libc::c_int> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_raw_fd());
    }
    let fd = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    Ok(NULL.get_or_init(|| fd).as_raw_fd())
}

/// A descriptor number above 2, so `dup2` onto 0, 1, 2 never targets
/// itself (it would then keep its close-on-exec flag).
fn above_stdio(fd: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    if fd.as_raw_fd() > 2 {
        return Ok(None);
    }
    Ok(Some(fd.try_clone_to_owned().and_then(|f| {
        let raised = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
        // SAFETY: fcntl returned a new descriptor we own.
        Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(raised) })
    })?))
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a NUL byte in a command or variable",
        )
    })
}

/// The environment of the step: ours without `withheld`, with `overrides`
/// set on top.
fn environment(overrides: &[(&str, &str)], withheld: &[&str]) -> io::Result<Vec<CString>> {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| OsStr::new(o) == k))
        .filter(|(k, _)| !withheld.iter().any(|w| OsStr::new(w) == k))
        .collect();
    // Later overrides win over earlier ones with the same name.
    for (i, (k, v)) in overrides.iter().enumerate() {
        if !overrides[i + 1..].iter().any(|(o, _)| o == k) {
            vars.push((k.into(), v.into()));
        }
    }
    vars.iter()
        .map(|(k, v)| {
            let mut entry = k.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            cstring(&entry)
        })
        .collect()
}

/// The signals the child must reset to their defaults: those this process
/// catches right now (the child must not run their handlers), and SIGPIPE,
/// which the Rust runtime ignores in every program it starts. An ignored
/// disposition survives `execve`, so without the reset every step would
/// run with SIGPIPE ignored: `yes | head -n1` would print "Broken pipe"
/// and fail under `set -o pipefail`. `std::process::Command` resets it for
/// the same reason; other ignored signals are the caller's choice and are
/// inherited, as under any shell.
fn caught_signals() -> ([libc::c_int; 65], usize) {
    let mut caught = [0; 65];
    caught[0] = libc::SIGPIPE;
    let mut n = 1;
    for sig in 1..65 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || sig == libc::SIGPIPE {
            continue;
        }
        // SAFETY: querying a disposition with a null new action.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(sig, ptr::null(), &mut old) } == 0
            && old.sa_sigaction != libc::SIG_DFL
            && old.sa_sigaction != libc::SIG_IGN
        {
            caught[n] = sig;
            n += 1;
        }
    }
    (caught, n)
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: the parent passes a valid `ChildArgs` and is suspended until we
    // exec or exit; only async-signal-safe system calls follow.
    unsafe {
        let a = &mut *(arg as *mut ChildArgs);
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for &sig in &a.caught[..a.caught_len] {
            libc::sigaction(sig, &dfl, ptr::null_mut());
        }
        libc::sigprocmask(libc::SIG_SETMASK, &a.old_mask, ptr::null_mut());
        a.stage = STAGE_SETUP;
        if libc::setsid() < 0 || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) < 0 {
            a.errno = *libc::__errno_location();
            libc::_exit(127);
        }
        // The runner died before the line above took effect: nobody would
        // ever wait for us.
        if libc::getppid() != a.parent {
            libc::_exit(137);
        }
        if libc::dup2(a.stdin, 0) < 0 || libc::dup2(a.output, 1) < 0 || libc::dup2(a.output, 2) < 0
        {
            a.errno = *libc::__errno_location();
            libc::_exit(127);
        }
        a.stage = STAGE_CHDIR;
        if libc::chdir(a.dir) < 0 {
            a.errno = *libc::__errno_location();
            libc::_exit(127);
        }
        a.stage = STAGE_EXEC;
        libc::execve(a.program, a.argv, a.envp);
        a.errno = *libc::__errno_location();
        libc::_exit(127)
    }
}

/// Starts `spec` with stdin from `/dev/null` and stdout and stderr into
/// `output`; returns the new process's pid.
pub(super) fn vfork_exec(spec: &Spec<'_>, output: BorrowedFd<'_>) -> io::Result<Pid> {
    let raised = above_stdio(output)?;
    let output = raised
        .as_ref()
        .map_or(output.as_raw_fd(), |f| f.as_raw_fd());
    let program = cstring(spec.program.as_os_str().as_bytes())?;
    let mut args: Vec<CString> = vec![program.clone()];
    for a in spec.args {
        args.push(cstring(a.as_bytes())?);
    }
    args.push(cstring(spec.run.as_bytes())?);
    let env = environment(&spec.env, &spec.withheld)?;
    let dir = cstring(spec.dir.as_os_str().as_bytes())?;
    let argv: Vec<*const libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr())
        .chain([ptr::null()])
        .collect();
    let envp: Vec<*const libc::c_char> = env
        .iter()
        .map(|e| e.as_ptr())
        .chain([ptr::null()])
        .collect();
    let (caught, caught_len) = caught_signals();

    let mut args = ChildArgs {
        program: program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        dir: dir.as_ptr(),
        stdin: dev_null()?,
        output,
        parent: std::process::id() as libc::pid_t,
        // SAFETY: a sigset_t is plain data; it is filled in just below.
        old_mask: unsafe { std::mem::zeroed() },
        caught,
        caught_len,
        stage: STAGE_NONE,
        errno: 0,
    };
    // Not zeroed: only the child uses it, and as a stack it writes before
    // it reads; zeroing 64 KiB per step showed in profiles of short steps.
    let mut stack: Vec<u8> = Vec::with_capacity(64 * 1024);
    // SAFETY: block every signal around the clone (restored right after), so
    // no handler runs in the child while it shares our memory. The stack top
    // is 16-byte aligned, as the ABI requires. `args` and everything it
    // points to live until `clone` returns, which with CLONE_VFORK is after
    // the child has called execve or exited.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut args.old_mask);
        let top = stack.as_mut_ptr().add(stack.capacity());
        let top = top.sub(top as usize % 16);
        let pid = libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut args as *mut ChildArgs as *mut libc::c_void,
        );
        let errno = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &args.old_mask, ptr::null_mut());
        if pid < 0 {
            return Err(errno);
        }
        pid
    };
    drop(stack);
    // SAFETY: the child wrote these before exiting, and has exited (or
    // exec'd) by now; volatile so the compiler does not assume they are
    // unchanged since we set them.
    let (stage, errno) = unsafe {
        (
            ptr::read_volatile(&args.stage),
            ptr::read_volatile(&args.errno),
        )
    };
    if !(stage == STAGE_EXEC && errno == 0) {
        // The child failed before execve and exited: reap it.
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        let error = io::Error::from_raw_os_error(if errno == 0 { libc::ECHILD } else { errno });
        return Err(match stage {
            STAGE_CHDIR => io::Error::new(
                error.kind(),
                format!("cannot enter the working dir: {error}"),
            ),
            STAGE_SETUP => io::Error::new(
                error.kind(),
                format!("cannot set up the step's process: {error}"),
            ),
            _ => error,
        });
    }
    Ok(Pid::from_raw(pid))
}
