//! One writer at a time: an exclusive lock on the state dir itself, and on
//! `.stepwise/lock` beside it.
//!
//! The lock that excludes is `flock` on the state dir's folder: a folder
//! cannot be unlinked away under its holder while it holds files, so
//! deleting or replacing `.stepwise/lock` during a run never lets a second
//! writer in (a lock on the file alone would be on an inode a new writer no
//! longer sees). Both locks:
//! - are released by the kernel when the process dies, kill -9 included,
//!   so there is never a stale lock to delete by hand;
//! - are on descriptors opened `O_CLOEXEC`, so no step process inherits
//!   them: an orphaned grandchild cannot keep the pipeline locked;
//! - belong to an open file description, so they conflict between two opens
//!   in the same process, and closing some other descriptor of the file
//!   does not drop them.
//!
//! The lock file carries an open-file-description lock (`F_OFD_SETLK`) and
//! the holder's pid and command, for the "already running in process N"
//! message: `F_OFD_GETLK` lets read-only commands ask "is a run in
//! progress?" without taking anything, so they never make a starting run
//! fail. Only when the lock file is gone do they look at the folder's lock
//! (a shared `flock`, held for an instant).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

use crate::error::{Error, IoContext, Result};

/// Held for as long as it lives; dropping it (or the process dying) releases
/// the lock.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    dir: File,
    path: PathBuf,
}

fn whole_file(kind: libc::c_short) -> libc::flock {
    // SAFETY: flock is a plain C struct; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0; // to the end of the file, however long
    fl
}

/// `flock(2)` without waiting: `Ok(false)` when another open file
/// description holds a conflicting lock.
fn try_flock(file: &File, op: libc::c_int) -> std::io::Result<bool> {
    // SAFETY: a plain system call on a descriptor `file` keeps open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    match Errno::last() {
        Errno::EWOULDBLOCK => Ok(false),
        e => Err(std::io::Error::from(e)),
    }
}

/// Opens the state dir's folder for locking, never through a symlink.
fn open_dir(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
}

/// Opens the lock file, never through a symlink (a planted one would make
/// us truncate and write its target).
fn open_lock_file(path: &Path, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Whether the lock file is held (by an open file description, not ours).
fn file_locked(file: &File) -> bool {
    let mut fl = whole_file(libc::F_WRLCK as libc::c_short);
    fcntl(file.as_fd(), FcntlArg::F_OFD_GETLK(&mut fl)).is_ok()
        && fl.l_type != libc::F_UNLCK as libc::c_short
}

impl StateLock {
    /// Takes the lock or fails at once with [`Error::Locked`]. `command`
    /// (`"run"`, `"forget"`...) is recorded for the message others get.
    pub fn acquire(path: &Path, command: &str) -> Result<StateLock> {
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir =
            open_dir(folder).context(format!("cannot open the state dir {}", folder.display()))?;
        let deadline = std::time::Instant::now() + DEAD_HOLDER_WAIT;
        let probe_deadline = std::time::Instant::now() + PROBE_WAIT;
        loop {
            if try_flock(&dir, libc::LOCK_EX)
                .context(format!("cannot lock {}", folder.display()))?
            {
                break;
            }
            let now = std::time::Instant::now();
            let file = open_lock_file(path, false).ok();
            let holder = file.as_ref().and_then(|f| {
                let mut f = f.try_clone().ok()?;
                read_holder(&mut f)
            });
            if file.as_ref().is_some_and(file_locked) {
                // The process that took the lock is gone, yet the lock is
                // held: a step it was starting still has a copy of the
                // descriptors for the instant before its `exec` (or its
                // death by PDEATHSIG). That ends by itself, so wait for it
                // rather than report a run that no longer exists.
                let dead = holder
                    .as_ref()
                    .and_then(|h| h.pid)
                    .is_some_and(|pid| !alive(pid));
                if dead && now < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                    holder,
                });
            }
            // The folder is locked but the lock file is not: a read-only
            // command looking for an instant, or a writer whose lock file
            // was deleted or replaced under it. The first lets go at once.
            if now < probe_deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            }
            return Err(Error::Locked {
                path: path.to_path_buf(),
                holder: None,
            });
        }
        let mut file = open_lock_file(path, true)
            .context(format!("cannot open the lock file {}", path.display()))?;
        let fl = whole_file(libc::F_WRLCK as libc::c_short);
        match fcntl(file.as_fd(), FcntlArg::F_OFD_SETLK(&fl)) {
            Ok(_) => {}
            // Only a stepwise from before the folder lock gets here.
            Err(Errno::EAGAIN | Errno::EACCES) => {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                    holder: read_holder(&mut file),
                });
            }
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .context(format!("cannot lock {}", path.display()));
            }
        }
        // Best effort: this is only for messages.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}\n{command}\n", std::process::id());
        Ok(StateLock {
            _file: file,
            dir,
            path: path.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether some process holds the lock at `path` right now, without
    /// taking it, and which.
    pub fn holder(path: &Path) -> Option<Holder> {
        if let Ok(mut file) = open_lock_file(path, false)
            && file_locked(&file)
        {
            return Some(read_holder(&mut file).unwrap_or_default());
        }
        // No lock file, or an unlocked one: a writer may still hold the
        // folder (its lock file deleted under it).
        let dir = open_dir(path.parent()?).ok()?;
        match try_flock(&dir, libc::LOCK_SH) {
            Ok(true) => {
                // SAFETY: as in `try_flock`.
                unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_UN) };
                None
            }
            Ok(false) => Some(Holder::default()),
            Err(_) => None,
        }
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Unlocked explicitly rather than by closing: a process forked by
        // another thread that has not yet exec'd shares these open file
        // descriptions, and closing ours alone would leave the lock held
        // until it does, refusing a writer that comes right after.
        let fl = whole_file(libc::F_UNLCK as libc::c_short);
        let _ = fcntl(self._file.as_fd(), FcntlArg::F_OFD_SETLK(&fl));
        // SAFETY: a plain system call on a descriptor we own.
        unsafe { libc::flock(self.dir.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// How long a writer waits when the state dir is locked but its lock file
/// is not: long enough for a read-only command's glance to end.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// How long to wait for a lock whose taker is dead to be released (see
/// [`StateLock::acquire`]); a live holder is reported at once.
const DEAD_HOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether process `pid` exists and is not a zombie (a zombie's descriptors
/// are closed already).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Who holds a lock, as far as it wrote down (a holder that just took the
/// lock may not have yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: Option<u32>,
    /// The stepwise command it runs: `run`, `forget`, ...
    pub command: Option<String>,
}

/// The prefix of [`Holder::command`] for a program using the library
/// ([`crate::Run`]), followed by the program's name.
pub const LIBRARY_COMMAND: &str = "library:";

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let program = self
            .command
            .as_deref()
            .and_then(|c| c.strip_prefix(LIBRARY_COMMAND));
        if let Some(program) = program {
            return match self.pid {
                Some(pid) => write!(
                    f,
                    "process {pid} (`{program}`, through the stepwise library)"
                ),
                None => write!(f, "`{program}` (through the stepwise library)"),
            };
        }
        match (self.pid, &self.command) {
            (Some(pid), Some(cmd)) => write!(f, "process {pid} (`stepwise {cmd}`)"),
            (Some(pid), None) => write!(f, "process {pid}"),
            (None, Some(cmd)) => write!(f, "`stepwise {cmd}`"),
            (None, None) => write!(f, "another process"),
        }
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let mut lines = text.lines();
    Some(Holder {
        pid: lines.next().and_then(|l| l.trim().parse().ok()),
        command: lines
            .next()
            .map(|l| l.trim().to_string())
            .filter(|c| !c.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_even_in_the_same_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = StateLock::acquire(&path, "run").unwrap();
        let me = Holder {
            pid: Some(std::process::id()),
            command: Some("run".into()),
        };
        assert_eq!(StateLock::holder(&path), Some(me.clone()));
        match StateLock::acquire(&path, "forget") {
            Err(Error::Locked { holder, .. }) => assert_eq!(holder, Some(me)),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        assert_eq!(StateLock::holder(&path), None);
        StateLock::acquire(&path, "run").unwrap();
    }

    #[test]
    fn dropping_releases_the_lock_even_while_a_copy_of_the_descriptor_lives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let lock = StateLock::acquire(&path, "run").unwrap();
        // What a process forked by another thread holds until it execs.
        let copy = lock._file.try_clone().unwrap();
        drop(lock);
        assert_eq!(StateLock::holder(&path), None);
        StateLock::acquire(&path, "run").unwrap();
        drop(copy);
    }

    #[test]
    fn a_lock_still_held_after_its_taker_died_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = StateLock::acquire(&path, "run").unwrap();
        // The lock file now names a process that has exited and been reaped,
        // while a descriptor (here: ours) still holds the lock.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        std::fs::write(&path, format!("{dead}\nrun\n")).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(first);
        });
        let started = std::time::Instant::now();
        StateLock::acquire(&path, "run").expect("acquired once the descriptor is closed");
        assert!(started.elapsed() >= std::time::Duration::from_millis(90));
        release.join().unwrap();
    }
}
