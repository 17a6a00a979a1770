//! The worker process: the child side of the pipe.
//!
//! A worker is the same executable as its host, started with the environment variable
//! [`WORKER_ENV`] set. A constructor that runs before `main` sees it and turns the process into
//! a worker ([`worker_main`]), so any program that links wasmpool (the `wasmpool` binary, a
//! user's program, a test binary) can serve as its own worker with no extra code, the way
//! Python's multiprocessing re-runs the main module. The `wasmpool worker` subcommand enters
//! the same loop explicitly, for workers reached through ssh or a batch scheduler.
//!
//! The loop: handshake, then read a frame, act, reply; modules are compiled once and kept in
//! [`cache::ModuleCache`]; each call runs in a fresh store and instance ([`runner`]).

pub(crate) mod cache;
pub(crate) mod runner;

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::FromRawFd;

use crate::wire::{self, HostMsg, ItemOutcome, PROTOCOL_VERSION, RunFailure, WorkerMsg};
use cache::ModuleCache;

/// Set in a child's environment to make it a worker.
pub(crate) const WORKER_ENV: &str = "WASMPOOL_WORKER";

/// Runs before `main` in every program that links wasmpool: a process started as a worker
/// never reaches its own `main`.
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
    // SAFETY: plain descriptor juggling on the process's own standard descriptors, before any
    // other thread exists: fd 1 is duplicated for the protocol, then fd 1 becomes stderr.
    let protocol_out = unsafe {
        let fd = libc::dup(1);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            eprintln!("wasmpool worker: cannot set up its descriptors");
            std::process::exit(70);
        }
        File::from_raw_fd(fd)
    };
    let mut input = BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    let mut output = BufWriter::with_capacity(1 << 16, protocol_out);
    match serve(&mut input, &mut output) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("wasmpool worker {}: {e:#}", std::process::id());
            std::process::exit(1);
        }
    }
}

/// The receive-run-reply loop over any pair of byte streams.
pub(crate) fn serve(input: &mut impl Read, output: &mut impl Write) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    match wire::read_frame::<HostMsg>(input, &mut buf)? {
        Some(HostMsg::Hello { version }) if version == PROTOCOL_VERSION => {
            let pid = std::process::id();
            wire::write_frame(output, &WorkerMsg::Ready { version, pid })?;
        }
        Some(HostMsg::Hello { version }) => {
            let reason = format!(
                "the worker speaks protocol version {PROTOCOL_VERSION}, the host {version}"
            );
            wire::write_frame(output, &WorkerMsg::Refused { reason })?;
            return Ok(());
        }
        Some(other) => {
            let reason = format!("expected a Hello, got {}", msg_name(&other));
            wire::write_frame(output, &WorkerMsg::Refused { reason })?;
            return Ok(());
        }
        None => return Ok(()),
    }

    let mut cache = ModuleCache::new()?;
    let mut out = Vec::new();
    loop {
        match wire::read_frame::<HostMsg>(input, &mut buf)? {
            None | Some(HostMsg::Shutdown) => return Ok(()),
            Some(HostMsg::Load { id, kind, bytes }) => cache.load(id, kind, &bytes),
            Some(HostMsg::Run(chunk)) => {
                let outcomes = match cache.get(&chunk.module) {
                    Ok(compiled) => chunk
                        .items
                        .iter()
                        .map(|args| cache.runner().run(compiled, &chunk.func, args))
                        .collect(),
                    Err(reason) => {
                        let failed = ItemOutcome {
                            result: Err(RunFailure::Module(reason)),
                            stdout: Vec::new(),
                            stderr: Vec::new(),
                        };
                        vec![failed; chunk.items.len()]
                    }
                };
                wire::encode_frame(
                    &WorkerMsg::Done {
                        chunk_id: chunk.chunk_id,
                        outcomes,
                    },
                    &mut out,
                )?;
                output.write_all(&out)?;
                output.flush()?;
            }
            Some(HostMsg::Hello { .. }) => {
                anyhow::bail!("a second Hello in the middle of the session")
            }
        }
    }
}

fn msg_name(msg: &HostMsg) -> &'static str {
    match msg {
        HostMsg::Hello { .. } => "Hello",
        HostMsg::Load { .. } => "Load",
        HostMsg::Run(_) => "Run",
        HostMsg::Shutdown => "Shutdown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::Value;
    use crate::wire::{Chunk, ModuleKind};

    fn session(msgs: &[HostMsg]) -> Vec<WorkerMsg> {
        let mut input = Vec::new();
        for m in msgs {
            wire::write_frame(&mut input, m).unwrap();
        }
        let mut output = Vec::new();
        serve(&mut input.as_slice(), &mut output).unwrap();
        let mut replies = Vec::new();
        let mut reader = output.as_slice();
        let mut buf = Vec::new();
        while let Some(msg) = wire::read_frame(&mut reader, &mut buf).unwrap() {
            replies.push(msg);
        }
        replies
    }

    #[test]
    fn a_mismatched_version_is_refused() {
        let replies = session(&[HostMsg::Hello {
            version: PROTOCOL_VERSION + 1,
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
            },
            HostMsg::Load {
                id,
                kind: ModuleKind::Core,
                bytes,
            },
            HostMsg::Run(Chunk {
                chunk_id: 1,
                module: id,
                func: "div".into(),
                items: vec![
                    vec![Value::S32(7), Value::S32(2)],
                    vec![Value::S32(1), Value::S32(0)],
                ],
            }),
            HostMsg::Run(Chunk {
                chunk_id: 2,
                module: [0; 32],
                func: "div".into(),
                items: vec![vec![]],
            }),
        ]);
        let [
            WorkerMsg::Ready { .. },
            WorkerMsg::Done {
                chunk_id: 1,
                outcomes,
            },
            WorkerMsg::Done {
                chunk_id: 2,
                outcomes: missing,
            },
        ] = replies.as_slice()
        else {
            panic!("{replies:?}")
        };
        assert_eq!(outcomes[0].result, Ok(vec![Value::S32(3)]));
        let Err(RunFailure::Trap { message, .. }) = &outcomes[1].result else {
            panic!("{outcomes:?}")
        };
        assert!(message.contains("divide by zero"), "{message}");
        assert!(
            matches!(&missing[0].result, Err(RunFailure::Module(_))),
            "{missing:?}"
        );
    }
}
