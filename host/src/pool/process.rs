//! [`Process`]: one task in a sandboxed worker process of its own, like
//! `multiprocessing.Process`.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ExitCause, TaskError};
use crate::limits::DEFAULT_MAX_WASM_STACK;
use crate::module::Task;
use crate::values::rust::args_from_serialize;
use crate::values::{ArgsShape, Values};
use crate::wire::WorkerSettings;

use super::handle::{Slot, TaskFuture};
use super::job::{Gather, Job, JobItem};
use super::output::{GuestOutput, OutputSink};
use super::worker_command::WorkerCommand;
use super::worker_process::{PidSlot, SendError, WorkerProcess, kill_slot};

/// One task in a new worker process of its own: [`Process::start`] it, [`Process::join`] it,
/// read its [`Process::result`] and [`Process::exitcode`]. The process exits as soon as the
/// task ends. The task runs with its own limits and grants ([`Task::with_limits`],
/// [`Task::with_grants`]) over the defaults; what it prints goes to the handler given with
/// [`Process::on_output`] (by default the `log` facade, as for a pool).
///
/// # Examples
/// ```no_run
/// use wasmpool::{Module, Process};
/// let hello = Module::from_file("hello.wasm")?.task("hello")?;
/// let mut p = Process::new(&hello, ("world",))?;
/// p.start()?;
/// p.join();
/// let greeting: String = p.result().expect("joined")?;
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Process {
    task: Task,
    args: Option<Values>,
    command: Option<WorkerCommand>,
    output: OutputSink,
    slot: Arc<Slot>,
    pid: PidSlot,
    started_pid: Option<u32>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("task", &self.task.name())
            .field("pid", &self.started_pid)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl Process {
    /// Prepares a process that will call `task` with `args` (a tuple spread over the
    /// parameters). The arguments are checked against the signature now.
    pub fn new<A: Serialize>(task: &Task, args: A) -> Result<Process, TaskError> {
        let args = args_from_serialize(task.signature(), &args, ArgsShape::Spread)
            .map_err(|e| e.for_task(task.name()))?;
        Ok(Process {
            task: task.clone(),
            args: Some(args),
            command: None,
            output: OutputSink::default(),
            slot: Slot::new(task.name()),
            pid: PidSlot::default(),
            started_pid: None,
            thread: None,
        })
    }

    /// Where what the task prints goes (see [`crate::PoolBuilder::on_output`]).
    pub fn on_output(
        mut self,
        handler: impl Fn(&GuestOutput<'_>) + Send + Sync + 'static,
    ) -> Process {
        self.output = OutputSink::new(handler);
        self
    }

    /// How the worker process is started (default: [`WorkerCommand::default_command`]).
    pub fn worker_command(mut self, command: WorkerCommand) -> Process {
        self.command = Some(command);
        self
    }

    /// Starts the worker process and the task in it; returns once the worker has answered its
    /// handshake. A process starts once: a second call is [`Error::AlreadyStarted`]. A worker
    /// that cannot be started is this error, and the task's outcome too.
    pub fn start(&mut self) -> Result<(), Error> {
        let args = self.args.take().ok_or(Error::AlreadyStarted)?;
        let command = match self.command.take() {
            Some(command) => command,
            None => WorkerCommand::default_command()?,
        };
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let job = Job::new(
            self.task.clone(),
            vec![JobItem {
                index: 0,
                task_no: 0,
                args,
                crashes: 0,
                sink: None,
            }],
            Gather::No,
            self.task.limits().resolve(),
            self.task.grants().cloned().unwrap_or_default(),
            Some(self.slot.clone()),
        );
        let settings = WorkerSettings {
            max_wasm_stack: DEFAULT_MAX_WASM_STACK,
            allow_files: !job.grants.dirs.is_empty(),
            lock_down: true,
            compile_memory: None,
        };
        let pid = Arc::clone(&self.pid);
        let output = self.output.clone();
        // The worker is started on the thread that owns it: its parent-death signal is tied
        // to that thread, which lives until the task is done.
        self.thread = Some(std::thread::spawn(move || {
            let mut worker = match WorkerProcess::spawn(&command, settings, pid, None) {
                Ok(w) => {
                    let _ = ready_tx.send(Ok(w.pid()));
                    w
                }
                Err(e) => {
                    let func = job.task.name().to_string();
                    let detail = e.to_string();
                    job.deliver_at(0, Err(TaskError::Internal { func, detail }));
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let stack = settings.max_wasm_stack;
            let name = job.task.name();
            let run = worker.run(&job, 0, |first, reported, per_item| {
                for (i, stdout, stderr) in reported.output() {
                    output.relay(job.task_no(first + i), name, stdout, stderr);
                }
                reported.deliver(&job, first, stack, per_item);
            });
            match run {
                Ok(()) => {}
                Err(SendError::Lost(stop)) => {
                    let func = name.to_string();
                    let error = stop.error(func, worker.pid(), &job.limits, 1);
                    job.deliver_at(0, Err(error));
                }
                Err(SendError::TooLarge { bytes, module }) => {
                    let error = SendError::too_large(name, bytes, module);
                    job.deliver_at(0, Err(error));
                }
            }
            worker.shutdown();
        }));
        let started = ready_rx.recv().map_err(|_| Error::Spawn {
            program: "worker".into(),
            detail: "the starting thread died".into(),
        })??;
        self.started_pid = Some(started);
        Ok(())
    }

    /// The worker's process id, once started.
    pub fn pid(&self) -> Option<u32> {
        self.started_pid
    }

    /// Waits until the task has ended and the worker process has exited.
    pub fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Like [`Process::join`], for at most `timeout`; whether the process ended.
    pub fn join_timeout(&mut self, timeout: Duration) -> bool {
        self.join_deadline(Instant::now() + timeout)
    }

    /// Like [`Process::join`], until `deadline` at the latest; whether the process ended.
    pub fn join_deadline(&mut self, deadline: Instant) -> bool {
        let future: TaskFuture<serde_json::Value> = TaskFuture::new(self.slot.clone());
        if self.thread.is_some() && !future.wait_deadline(deadline) {
            return false;
        }
        self.join();
        true
    }

    /// Whether the process has started and not yet ended.
    pub fn is_alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Kills the worker process (SIGKILL); the task's outcome becomes
    /// [`TaskError::WorkerCrashed`] unless it had already ended.
    pub fn kill(&mut self) {
        kill_slot(&self.pid);
    }

    /// The task's outcome, once it has ended (`None` before).
    pub fn result<R: DeserializeOwned>(&self) -> Option<Result<R, TaskError>> {
        let future: TaskFuture<R> = TaskFuture::new(self.slot.clone());
        future.done().then(|| future.result())
    }

    /// The process's exit code, as Python's `Process.exitcode` gives it: `None` until the task
    /// has ended; then 0 if it returned a value, the negated signal number if its worker was
    /// killed by a signal (`-9` for [`Process::kill`]), the worker's own exit code if it exited
    /// under the task, and 1 for any other failure (a trap, a limit, bad input).
    pub fn exitcode(&self) -> Option<i32> {
        self.slot.outcome_with(|outcome| match outcome {
            Ok(_) => 0,
            Err(TaskError::WorkerCrashed {
                cause: ExitCause::Signal(signal),
                ..
            }) => -signal,
            Err(TaskError::WorkerCrashed {
                cause: ExitCause::Code(code),
                ..
            }) => *code,
            Err(_) => 1,
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.is_alive() {
            self.kill();
        }
        self.join();
    }
}
