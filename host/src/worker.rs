//! The worker process: the child side of the pipe.
//!
//! A worker is the same executable as its host, started with the environment variable
//! [`WORKER_ENV`] set. A constructor that runs before `main` sees it and turns the process into
//! a worker ([`worker_main`]), so any program that links wasmpool (the `wasmpool` binary, a
//! user's program, a test binary) can serve as its own worker with no extra code, the way
//! Python's multiprocessing re-runs the main module. The `wasmpool worker` subcommand enters
//! the same loop explicitly, for workers reached through ssh or a batch scheduler.
//!
//! The loop: handshake, then read a frame, act, reply. Modules are compiled once per engine
//! variant ([`engines`]) and kept in [`cache::ModuleCache`]; each call runs in a fresh store
//! ([`store`], with its WASI context from [`sandbox`] and its output captured by [`capture`])
//! and instance ([`runner`]), made ahead of time while the worker waits when it can be
//! ([`ahead`]); outcomes go back in as few frames as keep the host informed ([`reply`]), and
//! a clock thread ([`ticker`]) advances the engines' epochs and flushes them.

mod ahead;
mod batch;
pub(crate) mod cache;
mod capture;
pub(crate) mod compile;
mod core_call;
pub(crate) mod engines;
mod link;
mod reply;
pub(crate) mod runner;
mod sandbox;
mod shared;
mod store;
mod ticker;

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::FromRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::wire::{
    self, Chunk, Code, EngineInfo, HostMsg, ItemOutcome, Items, LinkSettings, PROTOCOL_VERSION,
    RunFailure, WASMPOOL_VERSION, WireError, WorkerMsg, WorkerSettings,
};
use ahead::Ahead;
use cache::ModuleCache;
use reply::Reply;
use runner::CallArgs;
use ticker::Ticker;

/// Why a worker's session ended other than by the host's `Shutdown` or its closed pipe: the
/// worker says so on its stderr, which the host keeps for the error that reports its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkerFault {
    /// A frame could not be read or written.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The worker could not set itself up (an engine, a thread, its seccomp filter).
    #[error("{0}")]
    Setup(String),
    /// The host broke the protocol.
    #[error("{0}")]
    Protocol(String),
}

impl From<std::io::Error> for WorkerFault {
    fn from(e: std::io::Error) -> Self {
        WorkerFault::Wire(WireError::Io(e))
    }
}

/// For tests: a remote worker started with [`WORKER_ENV`] set to this reports an engine
/// that cannot run the host's code (its compatibility hashes changed), so that it is sent the
/// wasm and compiles for itself, as a worker on another kind of machine is.
const FOREIGN_ENGINE: &str = "remote-foreign-engine";

/// Set in a child's environment to make it a worker; its value is the host's pid.
pub(crate) const WORKER_ENV: &str = "WASMPOOL_WORKER";

/// Runs before `main` in every program that links wasmpool: a process started as a worker
/// never reaches its own `main`.
// SAFETY: a constructor runs before `main`, before the standard library is set up for the
// program; this one reads one environment variable (no other thread exists yet, so no one
// writes the environment concurrently) and, in a worker, enters `worker_main`, which uses
// nothing that needs `main`'s set-up: the standard descriptors, threads, and the allocator,
// all usable from a constructor on Linux.
#[ctor::ctor(unsafe)]
fn become_worker_if_asked() {
    if std::env::var_os(WORKER_ENV).is_some() {
        worker_main();
    }
}

/// Makes sure the constructor above is linked into the final program: the pool calls this
/// before it starts a worker, which keeps this module's object code (and its `.init_array`
/// entry) from being dropped by the linker.
#[inline(never)]
pub(crate) fn ensure_worker_hook_linked() {
    std::hint::black_box(become_worker_if_asked as fn());
}

/// Serves the protocol on stdin and stdout until the host says `Shutdown` or closes the pipe,
/// then exits the process. Anything else that writes to stdout (a library, a stray `println!`)
/// is sent to stderr instead, so that it cannot corrupt the frames.
pub fn worker_main() -> ! {
    // A worker started by a launcher (`ssh HOST wasmpool worker`, srun) has the environment
    // the remote side gave it: it starts itself again with an empty one, as the host starts
    // its own workers.
    empty_environment();
    // Before anything else: no new privileges, death with the host, resource limits.
    let host = std::env::var(WORKER_ENV)
        .ok()
        .and_then(|pid| pid.parse::<libc::pid_t>().ok());
    if let Err(e) = crate::walls::first_walls(host) {
        eprintln!("wasmpool worker: cannot raise its walls: {e}");
        std::process::exit(70);
    }
    // SAFETY: plain descriptor juggling on the process's own standard descriptors, before any
    // other thread exists: fd 1 is duplicated for the protocol, then fd 1 becomes stderr.
    let (protocol_in, protocol_out) = unsafe {
        let fd = libc::dup(1);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            eprintln!("wasmpool worker: cannot set up its descriptors");
            std::process::exit(70);
        }
        (File::from_raw_fd(0), File::from_raw_fd(fd))
    };
    crate::walls::enter_worker(fd_of(&protocol_out));
    // Asked now, before the seccomp filter, which refuses `getsockopt`.
    let descriptors = crate::shared_code::can_receive(host);
    // Between tasks the worker spins briefly on its pipe before it sleeps: the host's next
    // chunk then costs no cross-core wake-up (see `crate::spin`).
    let mut input = BufReader::with_capacity(1 << 16, crate::spin::SpinRead(protocol_in));
    let output = Arc::new(Mutex::new(BufWriter::with_capacity(1 << 16, protocol_out)));
    let result = match handshake(&mut input, &output, descriptors) {
        Ok(Some((settings, link))) => {
            // Guest code runs on a thread whose native stack has room for the wasm stack.
            let stack = settings.max_wasm_stack + (8 << 20);
            std::thread::scope(|scope| {
                std::thread::Builder::new()
                    .name("wasmpool-session".into())
                    .stack_size(stack)
                    .spawn_scoped(scope, move || match (settings.compile_memory, link) {
                        (Some(memory), _) => {
                            compile::session(settings, memory, &mut input, &output)
                        }
                        // Behind a launcher: a link thread reads stdin (see `link`).
                        (None, Some(link)) => {
                            let mut relay = link::start(link, input, &output).map_err(|e| {
                                WorkerFault::Setup(format!("cannot start its link threads: {e}"))
                            })?;
                            session(settings, &mut relay, &output)
                        }
                        (None, None) => session(settings, &mut input, &output),
                    })
                    .map_err(|e| WorkerFault::Setup(format!("cannot start its session: {e}")))
                    .and_then(|t| {
                        t.join()
                            .map_err(|_| WorkerFault::Setup("the session thread panicked".into()))?
                    })
            })
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("wasmpool worker {}: {e}", std::process::id());
            std::process::exit(1);
        }
    }
}

/// Starts this executable again with an empty environment (but for [`WORKER_ENV`], saying
/// `remote`) when it has any other variable, as a worker started through a launcher has: the
/// walls of a remote worker are those of a local one, raised by itself. A worker started by
/// its host has just [`WORKER_ENV`] and goes on. If the new start fails, it goes on as it is.
fn empty_environment() {
    if std::env::vars_os().all(|(key, _)| key == WORKER_ENV) {
        return;
    }
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // `remote` and the test's `remote-foreign-engine` (see `handshake`) stay as they are.
    let value = match std::env::var(WORKER_ENV) {
        Ok(value) if value == FOREIGN_ENGINE => value,
        _ => "remote".to_string(),
    };
    // The constructor of the new image turns it into a worker, whatever its arguments.
    let error = std::process::Command::new(exe)
        .env_clear()
        .env(WORKER_ENV, value)
        .exec();
    eprintln!("wasmpool worker: cannot start itself again with an empty environment ({error})");
}

fn fd_of(file: &File) -> i32 {
    use std::os::fd::AsRawFd;
    file.as_raw_fd()
}

/// The frames a worker writes: shared by the session thread, which writes each outcome as it
/// is ready, and the ticker thread, which flushes what is buffered every tick so the host
/// sees progress within a tick even while the next task runs long.
pub(crate) type Output<W> = Arc<Mutex<BufWriter<W>>>;

/// The stream a worker reads its frames from, which can tell whether more bytes are already
/// waiting: a worker with nothing to read uses the pause to make its next instance ([`ahead`]).
pub(crate) trait Input: Read {
    /// Whether bytes are waiting to be read, buffered or in the pipe.
    fn has_pending(&self) -> bool;
}

impl Input for BufReader<crate::spin::SpinRead<File>> {
    fn has_pending(&self) -> bool {
        !self.buffer().is_empty() || crate::spin::readable_now(&self.get_ref().0)
    }
}

/// In memory (the unit tests), every frame boundary counts as a pause, so that the tests run
/// each chunk after the first on an instance made ahead when one qualifies.
#[cfg(test)]
impl Input for &[u8] {
    fn has_pending(&self) -> bool {
        false
    }
}

/// The whole conversation over any pair of byte streams (the unit tests use memory buffers).
#[cfg(test)]
pub(crate) fn serve<W: Write + Send + 'static>(
    input: &mut impl Input,
    output: &Output<W>,
) -> Result<(), WorkerFault> {
    match handshake(input, output, false)? {
        Some((settings, _)) => session(settings, input, output),
        None => Ok(()),
    }
}

fn send<W: Write>(output: &Output<W>, msg: &WorkerMsg, flush: bool) -> Result<(), WorkerFault> {
    let mut frame = Vec::new();
    wire::encode_frame(msg, &mut frame)?;
    let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
    out.write_all(&frame)?;
    if flush {
        out.flush()?;
    }
    Ok(())
}

/// Answers the host's Hello (saying whether this worker can receive code descriptors, and,
/// behind a launcher, what its engine can run): the worker settings and its link's, or `None`
/// when the worker must exit.
fn handshake<W: Write>(
    input: &mut impl Read,
    output: &Output<W>,
    descriptors: bool,
) -> Result<Option<(WorkerSettings, Option<LinkSettings>)>, WorkerFault> {
    let mut buf = Vec::new();
    match wire::read_frame::<HostMsg>(input, &mut buf)? {
        Some(HostMsg::Hello {
            version,
            settings,
            link,
            ..
        }) if version == PROTOCOL_VERSION => {
            let pid = std::process::id();
            let engine = match link {
                Some(_) => {
                    let mut compat =
                        crate::engine::compat_digests(false).map_err(WorkerFault::Setup)?;
                    if std::env::var(WORKER_ENV).is_ok_and(|v| v == FOREIGN_ENGINE) {
                        compat.iter_mut().for_each(|digest| digest[0] ^= 0xff);
                    }
                    Some(EngineInfo {
                        compat,
                        target: crate::engine::target_description(),
                    })
                }
                None => None,
            };
            let ready = WorkerMsg::Ready {
                version,
                pid,
                descriptors,
                wasmpool: WASMPOOL_VERSION.into(),
                engine,
            };
            send(output, &ready, true)?;
            Ok(Some((settings, link)))
        }
        Some(HostMsg::Hello {
            version, wasmpool, ..
        }) => {
            let reason = format!(
                "the worker (wasmpool {WASMPOOL_VERSION}) speaks protocol version \
                 {PROTOCOL_VERSION}, the host (wasmpool {wasmpool}) {version}"
            );
            send(output, &WorkerMsg::Refused { reason }, true)?;
            Ok(None)
        }
        Some(other) => {
            let reason = format!("expected a Hello, got {}", msg_name(&other));
            send(output, &WorkerMsg::Refused { reason }, true)?;
            Ok(None)
        }
        None => Ok(None),
    }
}

/// The receive-run-reply loop, after the handshake.
fn session<W: Write + Send + 'static>(
    settings: WorkerSettings,
    input: &mut impl Input,
    output: &Output<W>,
) -> Result<(), WorkerFault> {
    let mut cache = ModuleCache::new(settings).map_err(WorkerFault::Setup)?;
    let _ticker = Ticker::start(cache.runner().flavors(), Arc::clone(output))
        .map_err(|e| WorkerFault::Setup(format!("cannot start its clock: {e}")))?;
    if settings.lock_down {
        crate::walls::lock_down(settings.allow_files).map_err(WorkerFault::Setup)?;
    }
    let mut ahead = Ahead::default();
    let mut buf = Vec::new();
    loop {
        if !input.has_pending() {
            ahead.make(&cache);
        }
        match wire::read_frame::<HostMsg>(input, &mut buf)? {
            None | Some(HostMsg::Shutdown) => return Ok(()),
            Some(HostMsg::Load {
                id,
                kind,
                code: Code::Descriptor { len },
                metering,
            }) => {
                // The descriptor came first, on stderr (see `crate::shared_code`).
                let file = crate::shared_code::receive(len);
                cache.load_file(id, kind, file, metering);
                send(output, &WorkerMsg::Loaded { id }, true)?;
            }
            Some(HostMsg::Load {
                id,
                kind,
                code,
                metering,
            }) => {
                cache.load(id, kind, &code, metering);
                send(output, &WorkerMsg::Loaded { id }, true)?;
            }
            Some(HostMsg::Run(chunk)) => run_chunk(&cache, &chunk, output, &mut ahead)?,
            Some(HostMsg::Shared { pool, over_link }) => {
                // A local worker's descriptors came first, on stderr. Without them the worker
                // goes on: its tasks' shared objects are then out of reach, which they are
                // told.
                let installed = if over_link {
                    shared::install_over_link(pool)
                } else {
                    shared::install(pool)
                };
                if let Err(e) = installed {
                    eprintln!("wasmpool worker: no shared state: {e}");
                }
            }
            // Taken by the link thread, which hands it to the call waiting for it.
            Some(HostMsg::SharedReply(_)) => {
                return Err(WorkerFault::Protocol(
                    "an answer to a shared-state request nobody made".into(),
                ));
            }
            // Taken by the link thread when there is one; nothing to do otherwise.
            Some(HostMsg::Heartbeat) => {}
            Some(HostMsg::Ping(n)) => send(output, &WorkerMsg::Pong(n), true)?,
            Some(HostMsg::Hello { .. }) => {
                return Err(WorkerFault::Protocol(
                    "a second Hello in the middle of the session".into(),
                ));
            }
            Some(HostMsg::Compile { .. }) => {
                return Err(WorkerFault::Protocol(
                    "a running worker was asked to compile".into(),
                ));
            }
        }
    }
}

/// Runs a chunk's items in order and reports their outcomes in frames of consecutive items:
/// one per item when items are slow, up to [`BATCH_ITEMS`] when they are quick.
fn run_chunk<W: Write>(
    cache: &ModuleCache,
    chunk: &Chunk,
    output: &Output<W>,
    ahead: &mut Ahead,
) -> Result<(), WorkerFault> {
    let mut reply = Reply::new(chunk.chunk_id, chunk.items.len());
    let made = ahead.take(chunk);
    let made_in = match &chunk.items {
        _ if chunk.batch => batch::run(cache, chunk, made, &mut reply, output)?,
        Items::Values(items) if chunk.program => run_items(
            cache,
            chunk,
            items.iter().map(|args| Ok(CallArgs::Program(args))),
            made,
            &mut reply,
            output,
        )?,
        Items::Values(items) => run_items(
            cache,
            chunk,
            items.iter().map(|args| Ok(CallArgs::Values(args))),
            made,
            &mut reply,
            output,
        )?,
        Items::Packed(packed) => run_items(
            cache,
            chunk,
            packed.rows().map(|row| row.map(CallArgs::Packed)),
            made,
            &mut reply,
            output,
        )?,
    };
    ahead.expect(chunk, made_in);
    Ok(())
}

/// Runs the items, the first in `ahead` if an instance was made for it in advance; how long
/// the last instance took to make (`None` if none was left, as after a failed call).
fn run_items<'a, W: Write>(
    cache: &ModuleCache,
    chunk: &Chunk,
    items: impl Iterator<Item = Result<CallArgs<'a>, String>>,
    mut ahead: Option<runner::Live>,
    reply: &mut Reply,
    output: &Output<W>,
) -> Result<Option<Duration>, WorkerFault> {
    let compiled = cache.get(&chunk.module, chunk.limits.metering);
    let runner = cache.runner();
    // The instance kept between items, when the task asked for reuse.
    let mut live = None;
    let mut made_in = None;
    for args in items {
        // Without reuse, each item gets a fresh instance, dropped only once its outcome is on
        // its way: tearing an instance down (resetting its memory) takes a few microseconds
        // that a waiting caller need not wait for.
        let mut fresh = None;
        let slot = if chunk.reuse_instance {
            &mut live
        } else {
            &mut fresh
        };
        if slot.is_none() {
            *slot = ahead.take();
        }
        let outcome = match (&compiled, args) {
            (Ok(compiled), Ok(args)) => runner.run_in(
                slot,
                compiled,
                &chunk.func,
                args,
                &chunk.limits,
                &chunk.grants,
            ),
            (Err(reason), _) => ItemOutcome::failed(RunFailure::Module(reason.clone())),
            (_, Err(reason)) => ItemOutcome::failed(RunFailure::BadInput(reason)),
        };
        made_in = slot.as_ref().map(runner::Live::made_in);
        reply.add(outcome, output)?;
        drop(fresh);
    }
    Ok(made_in)
}

fn msg_name(msg: &HostMsg) -> &'static str {
    match msg {
        HostMsg::Hello { .. } => "Hello",
        HostMsg::Load { .. } => "Load",
        HostMsg::Run(_) => "Run",
        HostMsg::Compile { .. } => "Compile",
        HostMsg::Shared { .. } => "Shared",
        HostMsg::Shutdown => "Shutdown",
        HostMsg::Heartbeat => "Heartbeat",
        HostMsg::Ping(_) => "Ping",
        HostMsg::SharedReply(_) => "SharedReply",
    }
}

/// The settings of the in-process unit tests of the worker: no seccomp filter (it would
/// apply to the whole test process), a small wasm stack.
#[cfg(test)]
pub(crate) const TEST_SETTINGS: WorkerSettings = WorkerSettings {
    max_wasm_stack: 512 << 10,
    allow_files: false,
    lock_down: false,
    compile_memory: None,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Metering;
    use crate::limits::{Grants, Limits, Resolved};
    use crate::values::Value;
    use crate::wire::{Code, ModuleKind};

    fn session(msgs: &[HostMsg]) -> Vec<WorkerMsg> {
        let mut input = Vec::new();
        for m in msgs {
            wire::write_frame(&mut input, m).unwrap();
        }
        let output: Output<Vec<u8>> = Arc::new(Mutex::new(BufWriter::new(Vec::new())));
        serve(&mut input.as_slice(), &output).unwrap();
        let bytes = output.lock().unwrap().get_ref().clone();
        let mut replies = Vec::new();
        let mut reader = bytes.as_slice();
        let mut buf = Vec::new();
        while let Some(msg) = wire::read_frame(&mut reader, &mut buf).unwrap() {
            replies.push(msg);
        }
        replies
    }

    /// A core module sent for one metering variant.
    fn load(id: [u8; 32], bytes: &[u8], metering: Metering) -> HostMsg {
        HostMsg::Load {
            id,
            kind: ModuleKind::Core,
            code: Code::Wasm(bytes.to_vec()),
            metering,
        }
    }

    fn run(module: [u8; 32], func: &str, items: Vec<Vec<Value>>, limits: Resolved) -> HostMsg {
        HostMsg::Run(Chunk {
            chunk_id: 1,
            module,
            func: func.into(),
            items: Items::Values(items.into_iter().map(Into::into).collect()),
            limits,
            grants: Grants::new(),
            reuse_instance: false,
            program: false,
            batch: false,
        })
    }

    fn reusing(msg: HostMsg) -> HostMsg {
        let HostMsg::Run(mut chunk) = msg else {
            unreachable!()
        };
        chunk.reuse_instance = true;
        HostMsg::Run(chunk)
    }

    /// Every item's outcome, from both kinds of frames, in order.
    fn outcomes(replies: &[WorkerMsg]) -> Vec<ItemOutcome> {
        replies
            .iter()
            .flat_map(|m| match m {
                WorkerMsg::Outcomes { outcomes, .. } => outcomes.clone(),
                WorkerMsg::Results { results, .. } => results
                    .items()
                    .map(|values| ItemOutcome {
                        result: Ok(values.unwrap()),
                        stdout: Vec::new(),
                        stderr: Vec::new(),
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn a_mismatched_version_is_refused() {
        let replies = session(&[HostMsg::Hello {
            version: PROTOCOL_VERSION + 1,
            settings: TEST_SETTINGS,
            wasmpool: "9.9.9".into(),
            link: None,
        }]);
        let [WorkerMsg::Refused { reason }] = replies.as_slice() else {
            panic!("{replies:?}")
        };
        assert!(reason.contains("protocol version"), "{reason}");
        let replies = session(&[HostMsg::Shutdown]);
        assert!(
            matches!(replies.as_slice(), [WorkerMsg::Refused { .. }]),
            "{replies:?}"
        );
    }

    #[test]
    fn runs_a_core_module_and_reports_traps_per_item() {
        let wat = r#"(module
            (func (export "div") (param i32 i32) (result i32) local.get 0 local.get 1 i32.div_s))"#;
        let bytes = wat::parse_str(wat).unwrap();
        let id = [9; 32];
        let replies = session(&[
            HostMsg::Hello {
                version: PROTOCOL_VERSION,
                settings: TEST_SETTINGS,
                wasmpool: WASMPOOL_VERSION.into(),
                link: None,
            },
            load(id, &bytes, Metering::Plain),
            run(
                id,
                "div",
                vec![
                    vec![Value::S32(7), Value::S32(2)],
                    vec![Value::S32(1), Value::S32(0)],
                ],
                Resolved::default(),
            ),
            run([0; 32], "div", vec![vec![]], Resolved::default()),
        ]);
        assert!(matches!(replies[0], WorkerMsg::Ready { .. }), "{replies:?}");
        let outcomes = outcomes(&replies);
        assert_eq!(outcomes.len(), 3);
        assert_eq!(outcomes[0].result, Ok(smallvec::smallvec![Value::S32(3)]));
        let Err(RunFailure::Trap { message, .. }) = &outcomes[1].result else {
            panic!("{outcomes:?}")
        };
        assert!(message.contains("divide by zero"), "{message}");
        assert!(
            matches!(&outcomes[2].result, Err(RunFailure::Module(_))),
            "{outcomes:?}"
        );
    }

    #[test]
    fn reuse_keeps_one_instance_per_chunk_until_a_call_fails() {
        // A counter: each call sees what the calls before it in the same instance left.
        let wat = r#"(module
            (global $n (mut i32) (i32.const 0))
            (func (export "next") (param i32) (result i32)
                global.get $n i32.const 1 i32.add global.set $n
                local.get 0 if unreachable end
                global.get $n))"#;
        let bytes = wat::parse_str(wat).unwrap();
        let id = [5; 32];
        let items = |flags: &[i32]| flags.iter().map(|&f| vec![Value::S32(f)]).collect();
        let replies = session(&[
            HostMsg::Hello {
                version: PROTOCOL_VERSION,
                settings: TEST_SETTINGS,
                wasmpool: WASMPOOL_VERSION.into(),
                link: None,
            },
            load(id, &bytes, Metering::Plain),
            run(id, "next", items(&[0, 0, 0]), Resolved::default()),
            reusing(run(
                id,
                "next",
                items(&[0, 0, 1, 0, 0]),
                Resolved::default(),
            )),
            reusing(run(id, "next", items(&[0]), Resolved::default())),
        ]);
        let got: Vec<String> = outcomes(&replies)
            .iter()
            .map(|o| match &o.result {
                Ok(v) => format!("{:?}", v[0]),
                Err(_) => "trap".into(),
            })
            .collect();
        // Fresh instances: always 1. Reused: counts up; a trap throws the instance away; the
        // next chunk starts over.
        assert_eq!(
            got,
            [
                "S32(1)", "S32(1)", "S32(1)", "S32(1)", "S32(2)", "trap", "S32(1)", "S32(2)",
                "S32(1)"
            ]
        );
    }

    /// Outcomes of quick items share frames; an item that takes a clock tick (1 to 4 ms) or
    /// more is sent as soon as it is done, not held until the next one finishes.
    #[test]
    fn slow_items_are_sent_one_by_one_and_quick_ones_together() {
        // `busy(n)` counts down from n: 50 million rounds take well over a tick.
        let wat = r#"(module
            (func (export "busy") (param i32) (result i32)
                (loop local.get 0 i32.const 1 i32.sub local.tee 0 br_if 0)
                local.get 0))"#;
        let bytes = wat::parse_str(wat).unwrap();
        let id = [3; 32];
        let items = |n: i32, count: usize| vec![vec![Value::S32(n)]; count];
        let replies = session(&[
            HostMsg::Hello {
                version: PROTOCOL_VERSION,
                settings: TEST_SETTINGS,
                wasmpool: WASMPOOL_VERSION.into(),
                link: None,
            },
            load(id, &bytes, Metering::Plain),
            run(id, "busy", items(50_000_000, 3), Resolved::default()),
            run(id, "busy", items(1, 100), Resolved::default()),
        ]);
        let frames: Vec<(u32, usize)> = replies
            .iter()
            .filter_map(|m| match m {
                WorkerMsg::Results { first, results, .. } => {
                    Some((*first, results.items().count()))
                }
                WorkerMsg::Outcomes {
                    first, outcomes, ..
                } => Some((*first, outcomes.len())),
                _ => None,
            })
            .collect();
        assert_eq!(frames[..3], [(0, 1), (1, 1), (2, 1)], "{frames:?}");
        // The quick chunk: fewer frames than items (how many depends on the machine's pace).
        let quick = &frames[3..];
        assert_eq!(quick.iter().map(|f| f.1).sum::<usize>(), 100, "{frames:?}");
        assert!(quick.len() < 100, "{frames:?}");
    }

    #[test]
    fn limits_fire_as_their_own_failures() {
        let wat = r#"(module
            (memory 1)
            (func (export "spin") (loop br 0))
            (func (export "grow") (param i32) (result i32) local.get 0 memory.grow)
            (func $deep (export "deep") (param i32) (result i32) local.get 0 i32.const 1 i32.add call $deep))"#;
        let bytes = wat::parse_str(wat).unwrap();
        let id = [7; 32];
        let limits = Limits::new()
            .timeout(Duration::from_millis(50))
            .max_memory(4 << 16)
            .resolve();
        let fuel = Limits::new().fuel(10_000).resolve();
        let replies = session(&[
            HostMsg::Hello {
                version: PROTOCOL_VERSION,
                settings: TEST_SETTINGS,
                wasmpool: WASMPOOL_VERSION.into(),
                link: None,
            },
            load(id, &bytes, Metering::Epochs),
            load(id, &bytes, Metering::EpochsAndFuel),
            run(id, "spin", vec![vec![]], limits),
            run(id, "spin", vec![vec![]], fuel),
            run(
                id,
                "grow",
                vec![vec![Value::S32(2)], vec![Value::S32(100)]],
                limits,
            ),
            run(id, "deep", vec![vec![Value::S32(0)]], limits),
        ]);
        let outcomes = outcomes(&replies);
        assert_eq!(outcomes[0].result, Err(RunFailure::Timeout));
        assert_eq!(outcomes[1].result, Err(RunFailure::OutOfFuel));
        assert_eq!(outcomes[2].result, Ok(smallvec::smallvec![Value::S32(1)]));
        assert_eq!(outcomes[3].result, Err(RunFailure::MemoryLimit));
        assert_eq!(outcomes[4].result, Err(RunFailure::StackOverflow));
    }
}
