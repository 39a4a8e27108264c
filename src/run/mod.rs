//! Doing the work: the scheduler that runs a plan's steps, the local
//! processes they run as, and Slurm batch jobs.
//!
//! - [`scheduler`]: the run loop: it waits on processes, signals and
//!   timers, records each attempt, and carries out what the policy decides;
//!   in its `jobs` submodule, steps run as Slurm jobs;
//! - `policy`: the decisions (parallelism, file order, retries, stopping
//!   after a failure, timeouts, signals) as a state machine without I/O;
//! - [`process`]: one step as a local process group (spawn, logs, kill,
//!   and the leftovers of a runner that died);
//! - [`slurm`]: talking to Slurm (`sbatch`, `squeue`, `sacct`, `scancel`)
//!   and the batch scripts.
//!
//! Every attempt is recorded in the journal before it is acted on.

mod policy;
pub mod process;
pub mod scheduler;
pub mod slurm;
