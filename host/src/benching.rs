//! Entry points for `benches/pool.rs` (not part of the public API): the cost of one task inside
//! a worker, measured in this process, without the pipe, so that the bench can report where
//! time goes next to the end-to-end figures.

use std::time::{Duration, Instant};

use crate::engine::Metering;
use crate::limits::{Grants, Resolved};
use crate::module::Task;
use crate::values::Value;
use crate::wire::{Code, WorkerSettings};
use crate::worker::runner::{CallArgs, Compiled, Runner};

/// Runs `task(args)` `iterations` times in one instance, as a worker does for a task with
/// instance reuse, and returns the mean time per call; `raw_core_calls: false` calls a core
/// export through `Func::call` as workers did before the raw path (see `worker/core_call.rs`).
pub fn reused_call(task: &Task, args: &[Value], iterations: u32, raw_core_calls: bool) -> Duration {
    let mut runner = Runner::new(settings()).expect("a worker's engines start");
    if !raw_core_calls {
        runner = runner.without_raw_core_calls();
    }
    let compiled = load(&runner, task);
    let limits = Resolved::default();
    let grants = Grants::new();
    let mut live = None;
    let mut call = || {
        let outcome = runner.run_in(
            &mut live,
            &compiled,
            task.name(),
            CallArgs::Values(args),
            &limits,
            &grants,
        );
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    };
    call();
    let start = Instant::now();
    for _ in 0..iterations {
        call();
    }
    start.elapsed() / iterations.max(1)
}

fn settings() -> WorkerSettings {
    WorkerSettings {
        max_wasm_stack: crate::limits::DEFAULT_MAX_WASM_STACK,
        allow_files: false,
        lock_down: false,
        compile_memory: None,
    }
}

/// Runs `task(args)` `iterations` times the way a worker does (a fresh store and instance per
/// call, default limits, no grants) and returns the mean time per call.
pub fn instantiate_and_call(task: &Task, args: &[Value], iterations: u32) -> Duration {
    let runner = Runner::new(settings()).expect("a worker's engines start");
    let compiled = load(&runner, task);
    let limits = Resolved::default();
    let grants = Grants::new();
    let start = Instant::now();
    for _ in 0..iterations {
        let outcome = runner.run(
            &compiled,
            task.name(),
            CallArgs::Values(args),
            &limits,
            &grants,
        );
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    }
    start.elapsed() / iterations.max(1)
}

/// `task`'s module loaded into `runner` as a worker loads it: its compiled code for workers
/// without limits, sent in the frame.
fn load(runner: &Runner, task: &Task) -> Compiled {
    let module = task.module();
    let code = module.code(Metering::Plain).expect("it compiles");
    let code = Code::Precompiled(code.bytes().expect("the code reads back").to_vec());
    runner
        .compile(module.kind(), &code, Metering::Plain)
        .expect("the module loads")
}
