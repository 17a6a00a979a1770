//! [`WorkerCommand`]: how a worker process is started, the one seam under every worker slot.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::Error;

use super::link::{DEFAULT_LINK, LinkConfig};

/// How long a worker started by the host itself may take to answer its handshake.
pub(crate) const LOCAL_STARTUP: Duration = Duration::from_secs(30);
/// How long a worker behind a launcher may take (an ssh connection, a Slurm step that may
/// wait for resources, a pod's exec): its launcher's progress is logged meanwhile.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

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
    /// Set for a command that is a launcher (ssh, srun, kubectl): its worker's link.
    link: Option<LinkConfig>,
    startup: Duration,
    /// The host it reaches, for messages and for the pool's accounting of failing hosts.
    host: Option<String>,
}

impl WorkerCommand {
    /// `program`, with no arguments yet; found on `PATH` if it has no `/`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        WorkerCommand {
            program: program.into(),
            args: Vec::new(),
            share_code_above: crate::shared_code::DEFAULT_SHARE_CODE_ABOVE,
            link: None,
            startup: LOCAL_STARTUP,
            host: None,
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

    /// Marks this command as a launcher whose stdio reaches a worker elsewhere (`ssh HOST
    /// wasmpool worker`, `srun ... wasmpool worker`, `kubectl exec -i POD -- wasmpool
    /// worker`): it is started with the host's environment (which ssh, srun and kubectl
    /// need: `SSH_AUTH_SOCK`, `SLURM_*`, `KUBECONFIG`) instead of an empty one, the worker
    /// raises its walls on its own machine and clears its own environment, heartbeats flow
    /// both ways ([`WorkerCommand::heartbeat`]), compiled code is sent only if the worker's
    /// engine can run it, and its start may take up to [`DEFAULT_STARTUP_TIMEOUT`]. `host`
    /// names the machine in messages; the [`crate::Launcher`] presets set all this.
    pub fn launched(mut self, host: impl Into<String>) -> Self {
        self.link.get_or_insert(DEFAULT_LINK);
        if self.startup == LOCAL_STARTUP {
            self.startup = DEFAULT_STARTUP_TIMEOUT;
        }
        self.host = Some(host.into());
        self
    }

    /// How often each side of a launched worker's link sends a heartbeat (default 1 s), and
    /// how long either waits without hearing anything before it takes the link as lost
    /// (default 5 s): the host then kills the launcher (the worker's task is retried or fails
    /// with [`crate::TaskError::WorkerCrashed`]) and the worker exits. Makes the command a
    /// launched one (see [`WorkerCommand::launched`]).
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(10));
        self.link = Some(LinkConfig {
            heartbeat: interval,
            silence: timeout.max(interval * 2),
        });
        if self.host.is_none() {
            let host = self.program.display().to_string();
            self = self.launched(host);
        }
        self
    }

    /// How long a worker may take to answer its handshake (default 30 s for a local worker,
    /// [`DEFAULT_STARTUP_TIMEOUT`] for a launched one): a worker still starting is reported in
    /// the log every few seconds with what its launcher last said (`srun: job 12 queued and
    /// waiting for resources`), and one that has not answered by then fails to start, with
    /// that.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup = timeout.max(Duration::from_millis(100));
        self
    }

    /// The link of a launched worker.
    pub(crate) fn link(&self) -> Option<LinkConfig> {
        self.link
    }

    /// How long its handshake may take.
    pub(crate) fn startup(&self) -> Duration {
        self.startup
    }

    /// The host a launched worker runs on.
    pub(crate) fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The command line, for messages: `ssh -T node1 wasmpool worker`.
    pub(crate) fn describe(&self) -> String {
        let mut text = self.program.display().to_string();
        for arg in &self.args {
            text.push(' ');
            text.push_str(&arg.to_string_lossy());
        }
        text
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
