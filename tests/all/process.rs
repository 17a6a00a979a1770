//! Process: one task in a worker process of its own.

use std::time::Duration;

use wasmpool::{ExitCause, Process, TaskError};
use wasmpool_artifacts::{HELLO, SLEEP};

use crate::support::{process_exists, task};

#[test]
fn start_join_and_result() {
    let hello = task(HELLO, "hello");
    let mut processes: Vec<Process> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| Process::new(&hello, (*n,)).unwrap())
        .collect();
    for p in &mut processes {
        p.start().unwrap();
    }
    let pids: Vec<u32> = processes.iter().map(|p| p.pid().unwrap()).collect();
    for (p, name) in processes.iter_mut().zip(["a", "b", "c", "d"]) {
        p.join();
        assert!(!p.is_alive());
        assert_eq!(
            p.result::<String>().unwrap().unwrap(),
            format!("hello, {name}!")
        );
        assert_eq!(p.exitcode(), Some(0));
    }
    assert!(pids.iter().all(|&pid| !process_exists(pid)));
}

#[test]
fn join_timeout_is_alive_and_kill() {
    let sleep = task(SLEEP, "sleep");
    let mut p = Process::new(&sleep, (10_000u32,)).unwrap();
    assert!(p.result::<u64>().is_none());
    p.start().unwrap();
    assert!(p.is_alive());
    assert!(!p.join_timeout(Duration::from_millis(50)));
    assert_eq!(p.exitcode(), None, "still running");
    p.kill();
    assert!(p.join_timeout(Duration::from_secs(10)));
    assert!(!p.is_alive());
    let err = p.result::<u64>().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            TaskError::WorkerCrashed {
                cause: ExitCause::Signal(9),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        p.exitcode(),
        Some(-9),
        "Python's exit code of a SIGKILLed process"
    );
}

#[test]
fn a_process_starts_once_and_relays_what_its_task_prints() {
    let hello = task(HELLO, "hello");
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = printed.clone();
    let mut p = Process::new(&hello, ("world",))
        .unwrap()
        .on_output(move |out| {
            sink.lock()
                .unwrap()
                .push((out.stream, out.text.to_string()))
        });
    p.start().unwrap();
    assert!(matches!(p.start(), Err(wasmpool::Error::AlreadyStarted)));
    p.join();
    assert_eq!(p.result::<String>().unwrap().unwrap(), "hello, world!");
    let printed = printed.lock().unwrap();
    assert!(
        printed.contains(&(wasmpool::GuestStream::Stdout, "hello, world!\n".to_string())),
        "{printed:?}"
    );
    assert!(
        printed.contains(&(
            wasmpool::GuestStream::Stderr,
            "greeting world\n".to_string()
        )),
        "{printed:?}"
    );
    // A trap is exit code 1, as a Python target that raised.
    let divide = task(wasmpool_artifacts::TRAP, "divide");
    let mut p = Process::new(&divide, (1u32, 0u32)).unwrap();
    p.start().unwrap();
    p.join();
    assert_eq!(p.exitcode(), Some(1));
}

#[test]
fn bad_arguments_fail_before_a_process_starts() {
    let sleep = task(SLEEP, "sleep");
    let err = Process::new(&sleep, ("soon",)).unwrap_err();
    assert!(
        err.to_string().contains("parameter `millis`: expected u32"),
        "{err}"
    );
}
