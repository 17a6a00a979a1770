//! [`WorkerCommand`]: how a worker process is started, the one seam under every worker slot.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::Error;

/// The program a pool (or a [`crate::Process`]) runs as a worker, and its arguments: the one
/// seam under every worker slot.
///
/// Whatever it is, the program must serve wasmpool's worker protocol on its stdin and stdout:
/// this very executable does (the default, [`WorkerCommand::current_exe`]: the library's
/// constructor turns it into a worker before `main`), as does `wasmpool worker`, and so does
/// any launcher whose stdio reaches one, such as `ssh HOST wasmpool worker`. The host starts it
/// with an empty environment but for `WASMPOOL_WORKER` (naming the host), in a process group of
/// its own, with
/// the walls of `docs/security.md` (no new privileges, death with the host, resource limits),
/// and talks to it only through its stdin and stdout.
///
/// # Examples
/// ```no_run
/// use wasmpool::{Pool, WorkerCommand};
/// let pool = Pool::builder()
///     .worker_command(WorkerCommand::new("wasmpool").arg("worker"))
///     .build()?;
/// # Ok::<(), wasmpool::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    program: PathBuf,
    args: Vec<OsString>,
}

impl WorkerCommand {
    /// `program`, with no arguments yet; found on `PATH` if it has no `/`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        WorkerCommand {
            program: program.into(),
            args: Vec::new(),
        }
    }

    /// This very executable: the constructor in the library turns it into a worker, so a
    /// program that links wasmpool needs no code of its own to serve as one.
    pub fn current_exe() -> Result<Self, Error> {
        crate::worker::ensure_worker_hook_linked();
        let program = std::env::current_exe().map_err(|e| Error::Spawn {
            program: "(the current executable)".into(),
            detail: e.to_string(),
        })?;
        Ok(WorkerCommand::new(program))
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several arguments.
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The program.
    pub fn program(&self) -> &std::path::Path {
        &self.program
    }

    /// Its arguments.
    pub fn arguments(&self) -> &[OsString] {
        &self.args
    }
}
