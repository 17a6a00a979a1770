//! The process walls, read from /proc: what a worker process gave up.

use wasmpool_artifacts::SQUARE;

use crate::support::{pool, task};

fn proc_file(pid: u32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{name}")).unwrap_or_default()
}

/// The walls, checked in a process of this test binary's own, started with a secret in its
/// environment: the environment is set by the parent when it starts the process, never with
/// `set_var` in a running test binary, whose other tests read the environment concurrently.
#[test]
fn workers_start_with_nothing_to_spare() {
    let test = "walls::a_worker_of_a_host_with_a_secret";
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--ignored", "--test-threads", "1"])
        .env("WASMPOOL_TEST_SECRET", "hunter2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run by workers_start_with_nothing_to_spare, in a process of its own"]
fn a_worker_of_a_host_with_a_secret() {
    assert_eq!(
        std::env::var("WASMPOOL_TEST_SECRET").as_deref(),
        Ok("hunter2"),
        "the host has the secret"
    );
    let pool = pool(1);
    let square = task(SQUARE, "square");
    assert_eq!(pool.apply::<_, i64>(&square, (3,)).unwrap(), 9);
    let pid = pool.worker_pids()[0];

    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars: Vec<&[u8]> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .collect();
    let switch = format!("WASMPOOL_WORKER={}", std::process::id());
    assert_eq!(
        vars,
        [switch.as_bytes()],
        "only the worker switch, naming its host, is set"
    );

    let status = proc_file(pid, "status");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')),
        "{status}"
    );

    let limits = proc_file(pid, "limits");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(core.split_whitespace().nth(4) == Some("0"), "{core}");
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(files.contains("256"), "{files}");

    // A process group of its own.
    // SAFETY: getpgid on a pid of ours.
    assert_eq!(unsafe { libc::getpgid(pid as i32) }, pid as i32);

    // Only pipes, /dev/null, anonymous memory and the worker's own page map (which wasmtime's
    // instance pool reads to reset only the pages a task dirtied): no inherited files or
    // sockets.
    let own_pagemap = format!("/proc/{pid}/pagemap");
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let target = std::fs::read_link(entry.unwrap().path()).unwrap();
        let target = target.to_string_lossy();
        assert!(
            target.starts_with("pipe:")
                || target.starts_with("anon_inode:")
                || target.starts_with("/memfd:")
                || target == "/dev/null"
                || target == own_pagemap,
            "worker has {target} open"
        );
    }
}
