//! Whole programs (`Module::program`, what `wasmpool exec` runs): a command component built
//! from `guest-tasks/program` and a WASI preview-1 command module, each run once per input
//! with its arguments and stdin, its exit code the result and its output captured per run.

use serde_json::json;
use wasmpool::{Error, Module, Order, StreamOptions, TaskError};

use crate::support::pool;

/// A preview-1 command: echoes up to 64 bytes of its stdin to stdout, then exits with 3 if its
/// stdin was empty, and returns (exit code 0) otherwise.
const ECHO_P1: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; an iovec at 0: buffer at 64, 64 bytes
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 64))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (if (i32.eqz (i32.load (i32.const 8))) (then (call $proc_exit (i32.const 3))))
    ;; write back as many bytes as were read
    (i32.store (i32.const 4) (i32.load (i32.const 8)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))))
"#;

fn run(program: &wasmpool::Task, inputs: &[serde_json::Value]) -> Vec<wasmpool::JsonOutcome> {
    let pool = pool(2);
    let items: Vec<_> = inputs.iter().map(|i| program.args_from_json(i)).collect();
    let options = StreamOptions::new()
        .order(Order::Input)
        .capture_output(true);
    pool.imap_json_with(program, items, options).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_command_component_gets_its_stdin_and_arguments_and_exits_with_its_code() {
    let module = Module::from_bytes(wasmpool_artifacts::PROGRAM.wasm).unwrap();
    let program = module.program().unwrap();
    assert_eq!(
        program.signature().to_string(),
        format!(
            "{}: func(args: list<string>, stdin: string) -> s32",
            program.name()
        )
    );
    let outcomes = run(
        &program,
        &[
            json!([[], "1 2 3\n"]),
            json!([["--args", "a b", "c"], ""]),
            json!([[], "1 x"]),
            json!([["--exit", "0"], "5"]),
            json!([["--exit", "7"], "5"]),
            json!([["--panic"], ""]),
        ],
    );
    let seen: Vec<_> = outcomes
        .iter()
        .map(|o| {
            let c = o.captured.clone().unwrap_or_default();
            (o.result.clone().ok(), text(&c.stdout), text(&c.stderr))
        })
        .collect();
    assert_eq!(
        seen[0],
        (Some(json!(0)), "6\n".into(), "read 3 numbers\n".into())
    );
    // Each argument is one argv entry, spaces and all.
    assert_eq!(seen[1].0, Some(json!(0)));
    assert_eq!(seen[1].1, "--args a b c\n");
    // A component exits with 0 or 1 only: `wasi:cli/exit` has no other code.
    assert_eq!(
        seen[2],
        (Some(json!(1)), String::new(), "not a number: x\n".into())
    );
    assert_eq!(seen[3].0, Some(json!(0)));
    assert_eq!(seen[4].0, Some(json!(1)));
    // A panic is a trap, with its message, not an exit code.
    let Err(TaskError::Trap { panic, .. }) = &outcomes[5].result else {
        panic!("{:?}", outcomes[5].result)
    };
    assert!(
        panic.as_deref().unwrap_or("").starts_with("asked to panic"),
        "{panic:?}"
    );
}

#[test]
fn a_preview1_command_module_exits_with_any_code() {
    let module = Module::from_bytes(ECHO_P1.as_bytes()).unwrap();
    let program = module.program().unwrap();
    let outcomes = run(&program, &[json!([[], "hello"]), json!([[], ""])]);
    assert_eq!(outcomes[0].result, Ok(json!(0)));
    assert_eq!(
        outcomes[0].captured.as_ref().unwrap().stdout,
        b"hello".to_vec()
    );
    assert_eq!(outcomes[1].result, Ok(json!(3)));
}

#[test]
fn a_program_runs_under_the_limits_of_any_task() {
    let module = Module::from_bytes(wasmpool_artifacts::PROGRAM.wasm).unwrap();
    let mut limits = wasmpool::Limits::new();
    limits.timeout = Some(std::time::Duration::from_millis(200));
    let program = module.program().unwrap().with_limits(limits);
    let outcomes = run(&program, &[json!([["--spin"], ""]), json!([[], "4 4"])]);
    assert!(
        matches!(outcomes[0].result, Err(TaskError::Timeout { .. })),
        "{:?}",
        outcomes[0].result
    );
    // The pool goes on.
    assert_eq!(outcomes[1].result, Ok(json!(0)));
}

#[test]
fn a_library_is_not_a_program() {
    let module = Module::from_bytes(wasmpool_artifacts::SQUARE.wasm).unwrap();
    let err = module.program().unwrap_err();
    assert!(matches!(err, Error::NotAProgram { .. }), "{err:?}");
    assert!(err.to_string().contains("is not a program"), "{err}");
}
