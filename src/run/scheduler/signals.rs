//! The signals that stop a run: SIGINT, SIGTERM, SIGHUP and SIGQUIT are
//! counted as they arrive and wake the poll loop through a pipe. What they
//! lead to is the policy's to decide; this only hears them.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::signal::Signal;

use crate::error::{IoContext, Result};

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT while a run goes on: each arrival is
/// counted, and a byte written to a pipe wakes the poll loop.
pub(super) struct SignalWatch {
    wake: OwnedFd,
    counts: Arc<[AtomicUsize; 4]>,
    ids: Vec<signal_hook::SigId>,
}

const WATCHED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

impl SignalWatch {
    pub(super) fn start() -> Result<SignalWatch> {
        use nix::fcntl::OFlag;
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(std::io::Error::from)
            .context("cannot create a pipe for signals")?;
        let counts: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
        let mut ids = Vec::new();
        for (i, sig) in WATCHED.iter().enumerate() {
            let c = Arc::clone(&counts);
            // SAFETY: the action only increments an atomic, which is
            // async-signal-safe. It is registered before the pipe writer, so
            // the count is there when the loop wakes.
            let id = unsafe {
                signal_hook::low_level::register(*sig as i32, move || {
                    c[i].fetch_add(1, Ordering::SeqCst);
                })
            }
            .context("cannot install signal handlers")?;
            ids.push(id);
            let w = write
                .try_clone()
                .context("cannot install signal handlers")?;
            ids.push(
                signal_hook::low_level::pipe::register(*sig as i32, w)
                    .context("cannot install signal handlers")?,
            );
        }
        Ok(SignalWatch {
            wake: read,
            counts,
            ids,
        })
    }

    pub(super) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The signals that arrived since the last call, in a fixed order.
    pub(super) fn take(&mut self) -> Vec<Signal> {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.wake, &mut buf), Ok(n) if n > 0) {}
        let mut out = Vec::new();
        for (i, sig) in WATCHED.iter().enumerate() {
            for _ in 0..self.counts[i].swap(0, Ordering::SeqCst) {
                out.push(*sig);
            }
        }
        out
    }

    pub(super) fn stop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
