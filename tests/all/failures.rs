//! Bad input and failing tasks get clear, typed errors, and the pool goes on.

use wasmpool::{Error, ExitCause, Module, TaskError};
use wasmpool_artifacts::{ARITH, FALLIBLE, SQUARE, TRAP};

use crate::support::{pool, task};

#[test]
fn a_trap_fails_one_item_only() {
    let pool = pool(2);
    let maybe_crash = task(TRAP, "maybe-crash");
    let outcomes = pool.map_async::<_, u32>(&maybe_crash, 0..15u32).outcomes();
    for (x, outcome) in outcomes.iter().enumerate() {
        match (x, outcome) {
            (
                5,
                Err(TaskError::Trap {
                    func,
                    message,
                    backtrace,
                    ..
                }),
            ) => {
                assert_eq!(func, "maybe-crash");
                assert!(message.contains("unreachable"), "{message}");
                assert!(
                    backtrace.as_deref().is_some_and(|bt| bt.contains("maybe")),
                    "{backtrace:?}"
                );
            }
            (5, other) => panic!("item 5: {other:?}"),
            (x, Ok(v)) => assert_eq!(*v as usize, x * x),
            (x, Err(e)) => panic!("item {x}: {e}"),
        }
    }
    // map raises the first error, as Python's does.
    let err = pool.map::<_, u32>(&maybe_crash, 0..15u32).unwrap_err();
    assert!(matches!(err, TaskError::Trap { .. }), "{err}");
    assert_eq!(pool.apply::<_, u32>(&maybe_crash, (6u32,)).unwrap(), 36);
}

#[test]
fn a_panic_is_a_trap_with_the_panic_message_on_stderr() {
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = printed.clone();
    let pool = wasmpool::Pool::builder()
        .workers(1)
        .on_output(move |out| sink.lock().unwrap().push_str(out.text))
        .build()
        .unwrap();
    let panic = task(TRAP, "panic");
    let err = pool
        .apply::<_, u32>(&panic, ("the sky is falling",))
        .unwrap_err();
    assert!(matches!(err, TaskError::Trap { .. }), "{err}");
    assert!(
        printed.lock().unwrap().contains("the sky is falling"),
        "{}",
        printed.lock().unwrap()
    );
    let divide = task(TRAP, "divide");
    assert_eq!(pool.apply::<_, u32>(&divide, (7, 2)).unwrap(), 3);
    assert!(matches!(
        pool.apply::<_, u32>(&divide, (7, 0)),
        Err(TaskError::Trap { .. })
    ));
}

#[test]
fn a_guest_error_is_typed_with_its_value() {
    let pool = pool(1);
    let parse = task(FALLIBLE, "parse-int");
    assert_eq!(pool.apply::<_, i64>(&parse, (" 42 ",)).unwrap(), 42);
    let err = pool.apply::<_, i64>(&parse, ("forty-two",)).unwrap_err();
    let TaskError::Guest { message, value, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(message, "not an integer: forty-two");
    assert_eq!(value, &serde_json::json!("not an integer: forty-two"));
    assert_eq!(
        err.to_string(),
        "`parse-int` returned an error: not an integer: forty-two"
    );
}

#[test]
fn garbage_modules_are_clear_errors_at_load_time() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not wasm at all").unwrap();
    let err = Module::from_file(&garbage).unwrap_err();
    assert!(matches!(err, Error::InvalidModule { .. }), "{err}");
    assert!(err.to_string().contains("garbage.wasm"), "{err}");
    let truncated = &SQUARE.wasm[..SQUARE.wasm.len() / 2];
    let err = Module::from_bytes(truncated).unwrap_err();
    assert!(matches!(err, Error::InvalidModule { .. }), "{err}");
    let err = Module::from_file(dir.path().join("missing.wasm")).unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err}");
    let err = Module::from_bytes(SQUARE.wasm)
        .unwrap()
        .task("cube")
        .unwrap_err();
    assert!(err.to_string().contains("square, slow-square"), "{err}");
}

/// A module that imports what no worker provides is refused when it is loaded, naming the
/// import, instead of failing every call; WASI imports load.
#[test]
fn imports_a_worker_cannot_provide_are_refused_at_load_time() {
    let component = r#"(component
        (import "my:host/log" (instance (export "log" (func (param "msg" string)))))
        (core module $m (func (export "one") (result i32) i32.const 1))
        (core instance $i (instantiate $m))
        (func (export "one") (result s32) (canon lift (core func $i "one"))))"#;
    let core = r#"(module
        (import "env" "host_time" (func (result i64)))
        (func (export "one") (result i32) i32.const 1))"#;
    for (text, import) in [(component, "my:host/log"), (core, "host_time")] {
        let err = Module::from_bytes(text).unwrap_err();
        assert!(matches!(err, Error::InvalidModule { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(import), "{message}");
        assert!(message.contains("WASI"), "{message}");
    }
    let wasi_core = r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "one") (result i32) i32.const 1))"#;
    let module = Module::from_bytes(wasi_core).unwrap();
    assert_eq!(module.imports(), ["wasi_snapshot_preview1.fd_write"]);
    assert_eq!(
        pool(1)
            .apply::<_, i32>(&module.task("one").unwrap(), ())
            .unwrap(),
        1
    );
}

#[test]
fn wrong_arguments_name_the_parameter_and_its_type() {
    let pool = pool(1);
    let square = task(SQUARE, "square");
    let err = pool.apply::<_, i64>(&square, ("seven",)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad input for `square`: parameter `x`: expected s64, got \"seven\""
    );
    let err = pool.apply::<_, i64>(&square, (1, 2)).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected 1 argument (x: s64), got 2"),
        "{err}"
    );
    // In a map, the bad item fails alone.
    let items = vec![
        serde_json::json!(1),
        serde_json::json!("x"),
        serde_json::json!(3),
    ];
    let outcomes = pool.map_async::<_, i64>(&square, items).outcomes();
    assert_eq!(outcomes[0], Ok(1));
    assert!(matches!(outcomes[1], Err(TaskError::BadInput { .. })));
    assert_eq!(outcomes[2], Ok(9));
    // A result that does not fit the requested Rust type is its own error.
    let err = pool.apply::<_, String>(&square, (3,)).unwrap_err();
    assert!(matches!(err, TaskError::ResultType { .. }), "{err}");
}

#[test]
fn core_modules_run_numeric_exports() {
    let pool = pool(1);
    let arith = Module::from_bytes(ARITH.wasm).unwrap();
    let add = arith.task("add").unwrap();
    assert_eq!(pool.apply::<_, i32>(&add, (40, 2)).unwrap(), 42);
    let mul = arith.task("mul64").unwrap();
    assert_eq!(
        pool.apply::<_, i64>(&mul, (1i64 << 40, 3)).unwrap(),
        3 << 40
    );
    let fdiv = arith.task("fdiv").unwrap();
    assert_eq!(pool.apply::<_, f64>(&fdiv, (1.0, 4.0)).unwrap(), 0.25);
    let half = arith.task("half").unwrap();
    assert_eq!(pool.apply::<_, f32>(&half, (3.0f32,)).unwrap(), 1.5);
    let boom = arith.task("boom").unwrap();
    assert!(matches!(
        pool.apply::<_, i32>(&boom, ()),
        Err(TaskError::Trap { .. })
    ));
    let err = pool.apply::<_, i32>(&add, (1i64 << 40, 1)).unwrap_err();
    assert!(err.to_string().contains("expected s32"), "{err}");
}

#[test]
fn a_killed_worker_fails_its_task_and_is_replaced() {
    let pool = pool(1);
    let sleep = task(wasmpool_artifacts::SLEEP, "sleep");
    let victim = pool.worker_pids()[0];
    let handle = pool.submit::<_, u64>(&sleep, (5000u32,));
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: SIGKILL to our own worker child.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let err = handle.result().unwrap_err();
    let TaskError::WorkerCrashed {
        pid, cause, detail, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*pid, victim);
    assert_eq!(*cause, ExitCause::Signal(libc::SIGKILL));
    assert_eq!(detail, "its pipe closed", "what the host saw");
    assert!(
        err.to_string().contains("killed by signal 9 (SIGKILL)"),
        "{err}"
    );
    let square = task(SQUARE, "square");
    assert_eq!(pool.apply::<_, i64>(&square, (5,)).unwrap(), 25);
    assert_ne!(pool.worker_pids(), vec![victim]);
}

#[test]
fn when_no_worker_can_be_started_any_more_tasks_fail_instead_of_waiting() {
    // A worker program that starts once: every later start fails.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let script = dir.path().join("worker-once.sh");
    let exe = std::env::current_exe().unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e '{marker}' ]; then exit 3; fi\n: > '{marker}'\nexec '{exe}'\n",
            marker = marker.display(),
            exe = exe.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pool = wasmpool::Pool::builder()
        .workers(1)
        .worker_command(wasmpool::WorkerCommand::new(&script))
        .on_output(|_| {})
        .build()
        .unwrap();
    let sleep = task(wasmpool_artifacts::SLEEP, "sleep");
    let square = task(SQUARE, "square");
    let running = pool.submit::<_, u64>(&sleep, (5000u32,));
    let queued = pool.submit::<_, i64>(&square, (3,));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let victim = pool.worker_pids()[0];
    // SAFETY: SIGKILL to our own worker child.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let wait = std::time::Duration::from_secs(20);
    let err = running
        .result_timeout(wait)
        .expect("an outcome")
        .unwrap_err();
    assert!(matches!(err, TaskError::WorkerCrashed { .. }), "{err:?}");
    // The replacement never starts: the queued task and a later one fail, and say why.
    for err in [
        queued
            .result_timeout(wait)
            .expect("an outcome")
            .unwrap_err(),
        pool.submit::<_, i64>(&square, (4,))
            .result_timeout(wait)
            .expect("an outcome")
            .unwrap_err(),
    ] {
        let TaskError::Internal { detail, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(
            detail.contains("no worker process could be started"),
            "{detail}"
        );
    }
}

#[test]
fn bad_input_names_the_parameter() {
    let pool = pool(1);
    let power = task(wasmpool_artifacts::POWER, "power");
    let err = pool.apply::<_, i64>(&power, (2, -3)).unwrap_err();
    let TaskError::BadInput { param, detail, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(param.as_deref(), Some("exponent"));
    assert_eq!(detail, "parameter `exponent`: expected u32, got -3");
    let err = pool.apply::<_, i64>(&power, (2,)).unwrap_err();
    assert!(
        matches!(&err, TaskError::BadInput { param: None, .. }),
        "a count is no one parameter's fault: {err:?}"
    );
}

/// A chunk whose frame would be larger than a frame may be is the caller's, not the
/// worker's: it is split and sent in halves, and an item too large alone fails with its own
/// error; the worker is never killed for it, and nothing is retried.
#[test]
fn a_chunk_too_large_for_a_frame_is_split_and_a_lone_item_refused() {
    let pool = wasmpool::Pool::builder()
        .workers(1)
        .retries(3)
        .on_output(|_| {})
        .build()
        .unwrap();
    let count = task(wasmpool_artifacts::WORDS, "count-words");
    let worker = pool.worker_pids();
    // 33 items of 8 MiB: 264 MiB in one chunk, over the 256 MiB of a frame.
    let text = "word ".repeat((8 << 20) / 5);
    let items = vec![text.as_str(); 33];
    let counts: Vec<u32> = pool.map_chunked(&count, &items, 33).unwrap();
    assert_eq!(counts, vec![((8 << 20) / 5) as u32; 33]);
    let alone = "x".repeat(wasmpool::MAX_FRAME_BYTES + 1);
    let err = pool.apply::<_, u32>(&count, (alone.as_str(),)).unwrap_err();
    let TaskError::ArgsTooLarge { size, limit, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        *size > *limit && *limit == wasmpool::MAX_FRAME_BYTES as u64,
        "{err}"
    );
    assert_eq!(pool.worker_pids(), worker, "the worker did nothing wrong");
    assert_eq!(pool.apply::<_, u32>(&count, ("still here",)).unwrap(), 2);
}

/// A module file is untrusted input: only a regular file is read, never blocking on a FIFO or
/// reading a device without end, and at most the loader's limit of it.
#[test]
fn module_files_are_regular_files_within_a_size() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("task.wasm");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a valid path and mode.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(
            Module::from_file(&fifo)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
    });
    let err = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("loading a FIFO does not block")
        .unwrap_err();
    assert!(err.contains("not a regular file"), "{err}");
    let err = Module::from_file("/dev/zero").unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let big = dir.path().join("big.wasm");
    std::fs::write(&big, SQUARE.wasm).unwrap();
    let err = Module::loader().max_bytes(1000).file(&big).unwrap_err();
    assert!(
        matches!(err, Error::ModuleTooLarge { limit: 1000, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("--max-module-size"), "{err}");
    assert!(Module::loader().max_bytes(1 << 20).file(&big).is_ok());
}

/// Compiling is untrusted work, done in a process of its own within limits: a module that
/// takes too long to compile, or too much memory, is a clear load error naming the limit, and
/// the host goes on.
#[test]
fn compiling_happens_in_a_process_of_its_own_within_limits() {
    // Modules of their own, so that no cache entry spares their compiles.
    let nonce = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    // One function of 100,000 additions: a second or so of Cranelift's time.
    let body = "local.get 0 i32.const 1 i32.add local.set 0 ".repeat(100_000);
    let wat = format!(
        r#"(module (func (export "f{nonce}") (param i32) (result i32) {body} local.get 0))"#
    );
    let quick = Module::loader().compile_timeout(std::time::Duration::from_millis(50));
    let started = std::time::Instant::now();
    let err = quick.bytes(wat.clone(), "giant.wat").unwrap_err();
    assert!(matches!(err, Error::CompileTimeout { .. }), "{err:?}");
    assert!(err.to_string().contains("--compile-timeout"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // 64 MiB of address space is less than the compiler itself needs.
    let small = Module::loader().compile_memory(64 << 20);
    let tiny = format!(r#"(module (func (export "g{nonce}")))"#);
    let err = small.bytes(tiny, "tiny.wat").unwrap_err();
    assert!(
        matches!(err, Error::CompileFailed { memory, .. } if memory == 64 << 20),
        "{err:?}"
    );
    assert!(err.to_string().contains("--compile-memory"), "{err}");
    // The same host loads and runs modules as before.
    let square = Module::loader()
        .bytes(SQUARE.wasm, "square.wasm")
        .unwrap()
        .task("square")
        .unwrap();
    assert_eq!(pool(1).apply::<_, i64>(&square, (7,)).unwrap(), 49);
}

/// A Rust guest that panics traps with `unreachable`; its error says why, read from what the
/// panic printed, and its backtrace starts at the guest's own frame, not in the panic
/// machinery.
#[test]
fn a_panic_is_reported_with_its_message_and_the_guests_own_frames() {
    let pool = crate::support::pool(1);
    let power = crate::support::task(wasmpool_artifacts::POWER, "power");
    let err = pool.apply::<_, i64>(&power, (2i64, 100u32)).unwrap_err();
    let TaskError::Trap {
        panic, backtrace, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    let panic = panic.as_deref().expect("the panic message is read");
    assert!(panic.starts_with("power overflows s64 (at "), "{panic}");
    assert_eq!(
        err.to_string(),
        format!("`power` panicked: {panic}"),
        "the message leads"
    );
    let backtrace = backtrace.as_deref().expect("a backtrace");
    let first_frame = backtrace
        .lines()
        .find(|l| l.contains(".wasm!"))
        .expect("a frame");
    assert!(first_frame.ends_with("!power"), "{backtrace}");
    assert!(backtrace.contains("frames of the panic machinery left out"));
    // A trap that is no panic keeps wasmtime's message and whole backtrace.
    let crash = crate::support::task(wasmpool_artifacts::TRAP, "maybe-crash");
    let err = pool.apply::<_, u32>(&crash, 5u32).unwrap_err();
    assert!(
        matches!(&err, TaskError::Trap { panic: None, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("wasm trap in `maybe-crash`: "),
        "{err}"
    );
}
