//! The process walls, read from /proc: what a worker process gave up.

use wasmpool_artifacts::SQUARE;

use crate::support::{pool, run_alone_with_env, task};

fn proc_file(pid: u32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{name}")).unwrap_or_default()
}

/// The walls, checked in a process of this test binary's own, started with a secret in its
/// environment: the environment is set by the parent when it starts the process, never with
/// `set_var` in a running test binary, whose other tests read the environment concurrently.
#[test]
fn workers_start_with_nothing_to_spare() {
    let test = "walls::a_worker_of_a_host_with_a_secret";
    run_alone_with_env(test, ("WASMPOOL_TEST_SECRET", "hunter2"));
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

    // Only pipes, its stderr (a socket, as fd 2 and fd 1), /dev/null, anonymous memory and
    // the worker's own page map (which wasmtime's instance pool reads to reset only the pages
    // a task dirtied): no inherited files or sockets.
    assert_only_its_own_descriptors(pid);
}

/// The descriptors a worker holds are its pipes, its stderr (a unix socket, as fd 2 and fd 1,
/// on which the host sends it code descriptors), /dev/null, anonymous memory, its own page map
/// and the code of the modules it was sent as descriptors (cache entries, sealed memfds), read
/// only: nothing inherited, no other file or socket. Which code descriptors it holds.
pub(crate) fn assert_only_its_own_descriptors(pid: u32) -> Vec<String> {
    let own_pagemap = format!("/proc/{pid}/pagemap");
    let mut code = Vec::new();
    // Beyond its stdout and stderr, a worker holds one socket (as two descriptors, one it
    // reads and one it writes): its shared-state link to the host (see `wasmpool::shared`).
    let mut socket = None;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let entry = entry.unwrap();
        let fd: u32 = entry.file_name().to_string_lossy().parse().unwrap();
        let target = std::fs::read_link(entry.path()).unwrap();
        let target = target.to_string_lossy().into_owned();
        if target.starts_with("/memfd:wasmpool-code") || target.ends_with(".cwasm") {
            assert_code_is_read_only(pid, fd, &target);
            code.push(target);
            continue;
        }
        if target.starts_with("socket:") && fd > 2 {
            let first = socket.get_or_insert_with(|| target.clone());
            assert_eq!(*first, target, "worker has a second socket open as fd {fd}");
            continue;
        }
        assert!(
            target.starts_with("pipe:")
                || (target.starts_with("socket:") && (fd == 1 || fd == 2))
                || target.starts_with("anon_inode:")
                || target.starts_with("/memfd:")
                || target == "/dev/null"
                || target == own_pagemap,
            "worker has {target} open as fd {fd}"
        );
    }
    code
}

/// A code descriptor cannot be written through: a cache entry is open read-only, a memfd is
/// sealed against writes, growth, shrinking and new seals.
fn assert_code_is_read_only(pid: u32, fd: u32, target: &str) {
    let fdinfo = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let flags = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
        .unwrap();
    if target.ends_with(".cwasm") {
        assert_eq!(
            flags & libc::O_ACCMODE as u32,
            libc::O_RDONLY as u32,
            "{target}"
        );
        return;
    }
    // The same memfd, opened through the worker's descriptor table (the test is its parent).
    let memfd = std::fs::File::open(format!("/proc/{pid}/fd/{fd}")).unwrap();
    // SAFETY: fcntl on a descriptor we own.
    let seals = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&memfd), libc::F_GET_SEALS) };
    let all = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    assert_eq!(seals & all, all, "{target} is sealed");
}
