//! Doing the work: the scheduler that runs a plan's steps, the local
//! processes they run as, and Slurm batch jobs.
//!
//! - [`scheduler`]: the run loop (parallelism, retries, timeouts, signals)
//!   and, in its `jobs` submodule, steps run as Slurm jobs;
//! - [`process`]: one step as a local process group (spawn, logs, kill,
//!   and the leftovers of a runner that died);
//! - [`slurm`]: talking to Slurm (`sbatch`, `squeue`, `sacct`, `scancel`)
//!   and the batch scripts.
//!
//! Every attempt is recorded in the journal before it is acted on.

pub mod process;
pub mod scheduler;
pub mod slurm;
