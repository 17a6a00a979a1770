//! [`WorkerCommand`]: how a worker process is started, the one seam under every worker slot.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::error::Error;

/// The process-wide default set by [`set_worker_command`].
static DEFAULT: Mutex<Option<WorkerCommand>> = Mutex::new(None);

/// Sets the worker command that every pool, [`crate::Process`] and compile of this process
/// uses when it is given none (`None`: back to [`WorkerCommand::current_exe`]).
///
/// For a program that cannot serve as its own worker: a host whose executable is not the one
/// linking the library, such as the Python interpreter that loads wasmpool's Python extension,
/// names a binary that serves the protocol (`wasmpool worker`). Compiling a module happens in
/// a worker process too, so this is the one way to point that at another program.
///
/// # Examples
/// ```no_run
/// use wasmpool::{WorkerCommand, set_worker_command};
/// set_worker_command(Some(WorkerCommand::new("/opt/wasmpool/bin/wasmpool").arg("worker")));
/// let pool = wasmpool::Pool::new()?; // its workers are `wasmpool worker`
/// # Ok::<(), wasmpool::Error>(())
/// ```
pub fn set_worker_command(command: Option<WorkerCommand>) {
    *DEFAULT.lock().unwrap_or_else(|e| e.into_inner()) = command;
}

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
    share_code_above: usize,
}

impl WorkerCommand {
    /// `program`, with no arguments yet; found on `PATH` if it has no `/`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        WorkerCommand {
            program: program.into(),
            args: Vec::new(),
            share_code_above: crate::shared_code::DEFAULT_SHARE_CODE_ABOVE,
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

    /// The command used when none is given: the one [`set_worker_command`] set, else
    /// [`WorkerCommand::current_exe`].
    pub fn default_command() -> Result<Self, Error> {
        let chosen = DEFAULT.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match chosen {
            Some(command) => Ok(command),
            None => WorkerCommand::current_exe(),
        }
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

    /// Compiled code of at least `bytes` goes to the workers as a descriptor of a file they
    /// all map, one copy of its pages for all of them, instead of down each one's pipe as a
    /// copy of its own (default 0: all code, as even small code measured no slower so; see
    /// `shared_code.rs`). Only workers the host started itself can take a descriptor; a worker
    /// behind a launcher (`ssh`) always gets the bytes. For tests and benches.
    #[doc(hidden)]
    pub fn share_code_above(mut self, bytes: usize) -> Self {
        self.share_code_above = bytes;
        self
    }

    /// See [`WorkerCommand::share_code_above`].
    pub(crate) fn code_sharing_threshold(&self) -> usize {
        self.share_code_above
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
