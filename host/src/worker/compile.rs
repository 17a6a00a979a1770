//! A compiling worker: the process in which wasmtime's compiler (Cranelift) runs on untrusted
//! modules, so that it runs behind the same walls as a task (no files, no network, no new
//! processes, seccomp) and within limits of its own (an address-space cap set here, and the
//! host's deadline), instead of in the host.

use std::io::Write;

use wasmtime::Engine;

use crate::engine::Metering;
use crate::module::read_interface;
use crate::wire::{self, Compiled, HostMsg, ModuleKind, WorkerMsg, WorkerSettings};

use super::{Input, Output, WorkerFault, send};

/// The receive-compile-reply loop of a compiling worker, after the handshake.
pub(super) fn session<W: Write>(
    settings: WorkerSettings,
    memory: u64,
    input: &mut impl Input,
    output: &Output<W>,
) -> Result<(), WorkerFault> {
    cap_address_space(memory)?;
    if settings.lock_down {
        crate::walls::lock_down(false).map_err(WorkerFault::Setup)?;
    }
    let mut buf = Vec::new();
    loop {
        match wire::read_frame::<HostMsg>(input, &mut buf)? {
            None | Some(HostMsg::Shutdown) => return Ok(()),
            Some(HostMsg::Compile {
                kind,
                metering,
                wasm,
            }) => {
                let compiled = compile(kind, metering, &wasm);
                send(output, &WorkerMsg::Compiled(compiled), true)?;
            }
            Some(_) => {
                return Err(WorkerFault::Protocol(
                    "a compiling worker was asked for something else".into(),
                ));
            }
        }
    }
}

/// Compiles `wasm` for the host's engine of `metering` (the configuration workers load code
/// for) and reads its interface from the code; a compile error is the module's, as text.
pub(crate) fn compile(
    kind: ModuleKind,
    metering: Metering,
    wasm: &[u8],
) -> Result<Compiled, String> {
    let engine = Engine::new(&crate::engine::config(metering))
        .map_err(|e| format!("the compiler cannot make its engine: {e:#}"))?;
    let code = match kind {
        ModuleKind::Component => engine.precompile_component(wasm),
        ModuleKind::Core => engine.precompile_module(wasm),
    }
    .map_err(|e| format!("{e:#}"))?;
    let interface = read_interface(&engine, kind, &code)?;
    Ok(Compiled { code, interface })
}

/// Caps the process's address space at `bytes`: the compiler's memory limit. An allocation
/// past it fails, and the process aborts, which the host reports as the limit.
fn cap_address_space(bytes: u64) -> Result<(), WorkerFault> {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit on this process with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
        return Err(WorkerFault::Setup(format!(
            "cannot cap its memory: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}
