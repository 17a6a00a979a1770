//! Remote workers, for real: an sshd on 127.0.0.1 with throwaway keys, a Slurm cluster of one
//! node, and the real `kubectl` against an API server that is not there (see `cluster.rs`).
//! The remote worker is this test binary itself (`WASMPOOL_WORKER=remote EXE`: the library's
//! constructor makes it a worker), reached through the launchers' own code path.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmpool::{Error, Grants, Launcher, Pool, TaskError};
use wasmpool_artifacts::{SHARED, SQUARE};

use crate::cluster::{Netns, Slurm, Sshd, children_named, wait_none_under};
use crate::support::{process_exists, task};

/// This test binary, as the remote command (`{bin}`): the constructor in the library makes it
/// a worker when `WASMPOOL_WORKER` is set, whatever its arguments.
fn remote_bin() -> String {
    format!(
        "WASMPOOL_WORKER=remote {}",
        std::env::current_exe().unwrap().display()
    )
}

/// The ssh preset, with our sshd's client configuration.
pub(crate) fn ssh(sshd: &Sshd) -> Launcher {
    Launcher::ssh_with(["-F".to_string(), sshd.config().display().to_string()])
        .remote_bin(remote_bin())
}

fn squares(n: i64) -> Vec<i64> {
    (0..n).map(|x| x * x).collect()
}

#[test]
fn a_map_over_two_ssh_workers_and_a_local_one_is_correct_and_in_order() {
    let Some(sshd) = Sshd::start("remote::a_map_over_two_ssh_workers_and_a_local_one") else {
        return;
    };
    let pool = Pool::builder()
        .local(1)
        .remote(ssh(&sshd), "127.0.0.1", 2)
        .chunksize(3)
        .on_output(|_| {})
        .build()
        .unwrap();
    let slow = task(SQUARE, "slow-square");
    // 2 ms each: every worker gets chunks.
    let items: Vec<(i64, u32)> = (0..300).map(|x| (x, 2)).collect();
    let got: Vec<i64> = pool.starmap(&slow, &items).unwrap();
    assert_eq!(got, squares(300));
    assert_eq!(
        sshd.remote_workers().len(),
        2,
        "both ssh slots started a worker on the far side"
    );
    // Tiny items, many in flight: packed numbers over ssh, in order.
    let square = task(SQUARE, "square");
    let got: Vec<i64> = pool.map(&square, 0..20_000_i64).unwrap();
    assert_eq!(got, squares(20_000));
    let one: i64 = pool.apply(&square, (12,)).unwrap();
    assert_eq!(one, 144);
    drop(pool);
    let left = sshd.wait_no_remote_workers(Duration::from_secs(5));
    assert!(left.is_empty(), "remote workers left behind: {left:?}");
}

#[test]
fn killing_a_remote_worker_then_its_ssh_client_mid_run_loses_nothing() {
    let Some(sshd) = Sshd::start("remote::killing_a_remote_worker_then_its_ssh_client") else {
        return;
    };
    let pool = Pool::builder()
        .remote(ssh(&sshd), "127.0.0.1", 2)
        .retries(3)
        .chunksize(1)
        .on_output(|_| {})
        .build()
        .unwrap();
    let slow = task(SQUARE, "slow-square");
    let items: Vec<(i64, u32)> = (0..60).map(|x| (x, 40)).collect();
    let batch = pool.starmap_async::<_, i64>(&slow, &items);
    // Both workers at work.
    let started = Instant::now();
    while sshd.remote_workers().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no second worker"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let remote = sshd.remote_workers();
    let victim = remote[0];
    // SAFETY: SIGKILL to a remote worker our sshd started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(500));
    let clients = sshd.clients();
    assert!(!clients.is_empty(), "no ssh client");
    let before = sshd.remote_workers();
    // SAFETY: SIGKILL to an ssh client the pool started.
    unsafe { libc::kill(clients[0] as i32, libc::SIGKILL) };
    let got = batch.result().unwrap();
    assert_eq!(got, squares(60), "every task retried, nothing lost");
    assert!(!process_exists(victim) || !sshd.remote_workers().contains(&victim));
    // The worker behind the killed client ended with its link.
    let after = sshd.remote_workers();
    assert!(
        before.iter().filter(|pid| after.contains(pid)).count() < before.len(),
        "the worker behind the killed ssh client lives on: {before:?} -> {after:?}"
    );
    drop(pool);
    let left = sshd.wait_no_remote_workers(Duration::from_secs(5));
    assert!(left.is_empty(), "remote workers left behind: {left:?}");
}

#[test]
fn a_stopped_ssh_client_is_found_by_heartbeat_and_replaced() {
    let Some(sshd) = Sshd::start("remote::a_stopped_ssh_client_is_found_by_heartbeat") else {
        return;
    };
    let silence = Duration::from_millis(1500);
    let launcher = ssh(&sshd).heartbeat(Duration::from_millis(250), silence);
    let pool = Pool::builder()
        .remote(launcher, "127.0.0.1", 1)
        .retries(1)
        .chunksize(1)
        .on_output(|_| {})
        .build()
        .unwrap();
    let slow = task(SQUARE, "slow-square");
    let items: Vec<(i64, u32)> = (0..20).map(|x| (x, 100)).collect();
    let batch = pool.starmap_async::<_, i64>(&slow, &items);
    std::thread::sleep(Duration::from_millis(500));
    let [client] = sshd.clients()[..] else {
        panic!("one ssh client expected: {:?}", sshd.clients());
    };
    let behind = sshd.remote_workers();
    assert_eq!(behind.len(), 1);
    // SAFETY: SIGSTOP to the ssh client the pool started.
    unsafe { libc::kill(client as i32, libc::SIGSTOP) };
    let stopped = Instant::now();
    // Replaced: a new client, once the silence has told.
    let replaced = loop {
        let now = sshd.clients();
        if now.iter().any(|&pid| pid != client) {
            break stopped.elapsed();
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "the stopped link was not replaced"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!(
        "a stopped ssh client was found and replaced after {replaced:.2?} (silence {silence:?})"
    );
    assert!(replaced >= silence, "{replaced:?}");
    assert!(replaced < silence * 3, "{replaced:?}");
    assert_eq!(batch.result().unwrap(), squares(20));
    // The stopped client was killed (a stopped process dies of SIGKILL) and reaped, and the
    // worker behind it is gone.
    assert!(!sshd.clients().contains(&client));
    let started = Instant::now();
    while sshd.remote_workers().contains(&behind[0]) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the worker behind the stopped client lives on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(pool);
    let left = sshd.wait_no_remote_workers(Duration::from_secs(5));
    assert!(left.is_empty(), "remote workers left behind: {left:?}");
}

/// The head of `a_head_killed_by_sigkill_leaves_no_remote_worker`: a pool of two ssh workers
/// that says `ready` once both work, then waits to be killed.
#[test]
#[ignore = "run by a_head_killed_by_sigkill_leaves_no_remote_worker"]
fn head_that_waits_to_be_killed() {
    let Some(config) = std::env::var_os("WASMPOOL_TEST_SSH_CONFIG") else {
        return;
    };
    let launcher = Launcher::ssh_with(["-F".to_string(), config.to_string_lossy().into_owned()])
        .remote_bin(remote_bin());
    let pool = Pool::builder()
        .remote(launcher, "127.0.0.1", 2)
        .chunksize(1)
        .on_output(|_| {})
        .build()
        .unwrap();
    let slow = task(SQUARE, "slow-square");
    let _: Vec<i64> = pool.starmap(&slow, [(1_i64, 50_u32), (2, 50)]).unwrap();
    println!("ready");
    // Long items keep both workers busy when the head dies.
    let _ = pool.starmap::<_, i64>(&slow, [(1_i64, 60_000_u32), (2, 60_000)]);
}

#[test]
fn a_head_killed_by_sigkill_leaves_no_remote_worker() {
    let Some(sshd) = Sshd::start("remote::a_head_killed_by_sigkill_leaves_no_remote_worker") else {
        return;
    };
    let mut head = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "remote::head_that_waits_to_be_killed",
            "--ignored",
        ])
        .args(["--nocapture", "--test-threads", "1"])
        .env("WASMPOOL_TEST_SSH_CONFIG", sshd.config())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(head.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.trim().ends_with("ready"))),
        "the head did not start"
    );
    std::thread::sleep(Duration::from_millis(300));
    let remote = sshd.remote_workers();
    assert_eq!(remote.len(), 2, "{remote:?}");
    head.kill().unwrap();
    let killed = Instant::now();
    head.wait().unwrap();
    let left = wait_none_under(sshd.pid(), Duration::from_secs(10));
    eprintln!(
        "after the head's SIGKILL, its remote workers were gone in {:.2?}",
        killed.elapsed()
    );
    assert!(
        left.is_empty(),
        "remote workers outlived their head: {left:?}"
    );
}

#[test]
fn a_host_that_cannot_be_reached_is_given_up_while_the_rest_goes_on() {
    let Some(sshd) = Sshd::start("remote::a_host_that_cannot_be_reached") else {
        return;
    };
    // A port where nothing listens: ssh fails at once (connection refused).
    let nowhere = Launcher::ssh_with([
        "-F".to_string(),
        sshd.config().display().to_string(),
        "-p".to_string(),
        "1".to_string(),
    ]);
    let pool = Pool::builder()
        .remote(ssh(&sshd), "127.0.0.1", 1)
        .remote(nowhere.clone(), "127.0.0.1", 2)
        .on_output(|_| {})
        .build()
        .unwrap();
    let square = task(SQUARE, "square");
    let got: Vec<i64> = pool.map(&square, 0..1000_i64).unwrap();
    assert_eq!(got, squares(1000));
    drop(pool);
    // Alone, it is the pool's error, with ssh's own words.
    let err = Pool::builder()
        .remote(nowhere, "127.0.0.1", 2)
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Handshake(_)), "{err:?}");
    assert!(text.contains("ssh -T"), "{text}");
    assert!(text.contains("exited with code 255"), "{text}");
    assert!(text.to_lowercase().contains("connection refused"), "{text}");
}

#[test]
fn kubectl_against_an_unreachable_api_server_reports_its_failure_and_stderr() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        crate::cluster::skip(
            "remote::kubectl_against_an_unreachable_api_server",
            "no kubectl",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kubeconfig");
    std::fs::write(
        &config,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: \
         https://127.0.0.1:1\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: \
         nobody\ncurrent-context: gone\nusers:\n- name: nobody\n  user:\n    token: none\n",
    )
    .unwrap();
    // The preset's template, with the configuration given on its command line.
    let mut template = vec![
        "kubectl".to_string(),
        format!("--kubeconfig={}", config.display()),
        "--request-timeout=5s".into(),
    ];
    template.extend(Launcher::kubectl().template()[1..].iter().cloned());
    let started = Instant::now();
    let err = Pool::builder()
        .remote(Launcher::new(template), "worker-pod-0", 2)
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Handshake(_)), "{err:?}");
    assert!(
        text.contains("exec -i worker-pod-0 -- wasmpool worker"),
        "{text}"
    );
    assert!(
        text.contains("its launcher ended before a worker answered"),
        "{text}"
    );
    assert!(text.contains("exited with code 1"), "{text}");
    assert!(text.contains("127.0.0.1:1 was refused"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// The Slurm launcher with our cluster's configuration, and the remote command as env sets
/// it (srun passes its arguments to the program as they are: no remote shell).
fn srun(slurm: &Slurm) -> Launcher {
    let mut template = vec![
        "env".to_string(),
        format!("SLURM_CONF={}", slurm.conf().display()),
    ];
    let preset = Launcher::slurm();
    let bin = preset.template().iter().position(|w| w == "{bin}").unwrap();
    template.extend(preset.template()[..bin].iter().cloned());
    template.extend([
        "env".to_string(),
        "WASMPOOL_WORKER=remote".into(),
        std::env::current_exe().unwrap().display().to_string(),
    ]);
    Launcher::new(template)
}

#[test]
fn slurm_workers_map_and_a_crashed_node_is_found_by_heartbeat() {
    let Some(slurm) = Slurm::start("remote::slurm_workers_map_and_a_crashed_node") else {
        return;
    };
    let silence = Duration::from_secs(2);
    let launcher = srun(&slurm)
        .heartbeat(Duration::from_millis(500), silence)
        .startup_timeout(Duration::from_secs(20));
    let pool = Pool::builder()
        .local(1)
        .remote(launcher, "localhost", 2)
        .retries(3)
        .chunksize(1)
        .on_output(|_| {})
        .build()
        .unwrap_or_else(|e| panic!("{e}\n{}", slurm.logs()));
    let square = task(SQUARE, "square");
    let got: Vec<i64> = pool.map(&square, 0..2000_i64).unwrap();
    assert_eq!(got, squares(2000));
    // Shared state reaches srun's workers through the host, as it reaches ssh's.
    let counter = pool.value("counter", 0).unwrap();
    let add = task(SHARED, "atomic-add")
        .with_grants(Grants::new().shared(&counter))
        .unwrap();
    let _: Vec<i64> = pool.starmap(&add, [("counter", 1000u32); 6]).unwrap();
    assert_eq!(counter.get(), 6000);
    let slow = task(SQUARE, "slow-square");
    let items: Vec<(i64, u32)> = (0..40).map(|x| (x, 100)).collect();
    let batch = pool.starmap_async::<_, i64>(&slow, &items);
    let started = Instant::now();
    while children_named("srun").len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no second srun"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let launchers = children_named("srun");
    slurm.crash_node();
    let crashed = Instant::now();
    // Found: the host kills the srun of each lost worker once its link falls silent.
    while launchers
        .iter()
        .any(|&pid| children_named("srun").contains(&pid))
    {
        assert!(
            crashed.elapsed() < Duration::from_secs(30),
            "the crashed node's workers were not found lost"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let found = crashed.elapsed();
    eprintln!(
        "a crashed Slurm node was found after {found:.2?} (silence {silence:?}; srun's own: 45 s)"
    );
    assert!(found < silence * 3, "{found:?}");
    assert_eq!(
        batch.result().unwrap(),
        squares(40),
        "retried on the local worker"
    );
    drop(pool);
}

#[test]
fn a_remote_worker_reports_its_engine_and_the_walls_hold_there() {
    let Some(sshd) = Sshd::start("remote::a_remote_worker_reports_its_engine") else {
        return;
    };
    // Heartbeats flow while a task runs longer than the link's silence, behind the remote
    // worker's seccomp filter.
    let launcher = ssh(&sshd).heartbeat(Duration::from_millis(100), Duration::from_millis(500));
    let pool = Pool::builder()
        .remote(launcher, "127.0.0.1", 1)
        .on_output(|_| {})
        .build()
        .unwrap();
    let slow = task(SQUARE, "slow-square");
    let got: i64 = pool.apply(&slow, (9, 2_000)).unwrap();
    assert_eq!(got, 81);
    drop(pool);
    let pool = Pool::builder()
        .remote(ssh(&sshd), "127.0.0.1", 1)
        .limits(wasmpool::Limits::new().timeout(Duration::from_millis(200)))
        .on_output(|_| {})
        .build()
        .unwrap();
    // A limit fires remotely as locally.
    let spin = task(wasmpool_artifacts::HOSTILE, "spin");
    match pool.apply::<_, u32>(&spin, ()) {
        Err(TaskError::Timeout { .. }) => {}
        other => panic!("{other:?}"),
    }
    // No socket, no file: the remote worker's seccomp filter.
    let socket = task(wasmpool_artifacts::HOSTILE, "open-socket");
    let got: Result<(), _> = pool.apply(&socket, ("127.0.0.1:22",));
    assert!(matches!(got, Err(TaskError::Guest { .. })), "{got:?}");
    let env = task(wasmpool_artifacts::HOSTILE, "read-env");
    let got: Vec<(String, String)> = pool.apply(&env, ()).unwrap();
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn a_launcher_that_prints_a_banner_is_told_apart_from_a_worker() {
    let banner = Launcher::new(["sh", "-c", "echo 'Welcome to node1!'; sleep 30"]);
    let started = Instant::now();
    let err = Pool::builder().launcher(banner, 1).build().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("other than the worker protocol"), "{text}");
    assert!(text.contains("Welcome to node1!"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_silent_partition_is_found_on_both_sides() {
    let test = "remote::a_silent_partition_is_found_on_both_sides";
    let Some(net) = Netns::new(test) else {
        return;
    };
    let Some(sshd) = Sshd::start_in(test, &net) else {
        return;
    };
    // The ssh client runs in the head's namespace.
    let mut template: Vec<String> = ["ip", "netns", "exec", &net.head].map(String::from).into();
    template.extend(
        Launcher::ssh_with(["-F".to_string(), sshd.config().display().to_string()])
            .template()
            .iter()
            .cloned(),
    );
    let silence = Duration::from_millis(1500);
    let launcher = Launcher::new(template)
        .remote_bin(remote_bin())
        .heartbeat(Duration::from_millis(250), silence)
        .startup_timeout(Duration::from_secs(3));
    let pool = Pool::builder()
        .local(1)
        .remote(launcher, Netns::FAR_ADDRESS, 1)
        .retries(2)
        .chunksize(1)
        .on_output(|_| {})
        .build()
        .unwrap();
    let slow = task(SQUARE, "slow-square");
    let items: Vec<(i64, u32)> = (0..16).map(|x| (x, 200)).collect();
    let batch = pool.starmap_async::<_, i64>(&slow, &items);
    let started = Instant::now();
    let far = loop {
        if let [one] = sshd.remote_workers()[..] {
            break one;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no remote worker"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    net.partition();
    let cut = Instant::now();
    // The far worker hears nothing more from its host, and ends itself.
    while process_exists(far) && sshd.remote_workers().contains(&far) {
        assert!(
            cut.elapsed() < Duration::from_secs(10),
            "the partitioned worker lives on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let far_side = cut.elapsed();
    // The host hears nothing more from its worker, and its tasks go to the local one.
    assert_eq!(batch.result().unwrap(), squares(16));
    eprintln!(
        "a silent partition: the far worker exited after {far_side:.2?} (silence {silence:?}), \
         the map finished on the local worker after {:.2?}",
        cut.elapsed()
    );
    assert!(far_side < silence * 3, "{far_side:?}");
    drop(pool);
}

#[test]
fn a_remote_worker_whose_engine_differs_compiles_for_itself() {
    let Some(sshd) = Sshd::start("remote::a_remote_worker_whose_engine_differs") else {
        return;
    };
    // A worker that reports an engine unlike the host's (the test hook of `worker.rs`) is
    // sent the wasm, never the host's code, and compiles it itself behind its walls.
    let foreign = Launcher::ssh_with(["-F".to_string(), sshd.config().display().to_string()])
        .remote_bin(format!(
            "WASMPOOL_WORKER=remote-foreign-engine {}",
            std::env::current_exe().unwrap().display()
        ));
    let pool = Pool::builder()
        .remote(foreign, "127.0.0.1", 1)
        .limits(wasmpool::Limits::new().timeout(Duration::from_secs(5)))
        .on_output(|_| {})
        .build()
        .unwrap();
    let square = task(SQUARE, "square");
    let got: Vec<i64> = pool.map(&square, 0..500_i64).unwrap();
    assert_eq!(got, squares(500));
    let words = task(wasmpool_artifacts::WORDS, "count-words");
    let n: u32 = pool.apply(&words, ("one two three",)).unwrap();
    assert_eq!(n, 3);
}

#[test]
fn a_remote_worker_lost_while_idle_is_replaced_before_the_next_task() {
    let Some(sshd) = Sshd::start("remote::a_remote_worker_lost_while_idle") else {
        return;
    };
    // No retries: the next task must not be charged with the idle worker's death.
    let pool = Pool::builder()
        .remote(ssh(&sshd), "127.0.0.1", 1)
        .on_output(|_| {})
        .build()
        .unwrap();
    let square = task(SQUARE, "square");
    let one: i64 = pool.apply(&square, (5,)).unwrap();
    assert_eq!(one, 25);
    let [far] = sshd.remote_workers()[..] else {
        panic!("{:?}", sshd.remote_workers());
    };
    // SAFETY: SIGKILL to the remote worker our sshd started.
    unsafe { libc::kill(far as i32, libc::SIGKILL) };
    let left = Instant::now();
    while sshd.clients().len() == 1 && left.elapsed() < Duration::from_secs(5) {
        // The ssh client ends with its session.
        std::thread::sleep(Duration::from_millis(20));
        if !sshd.remote_workers().contains(&far) {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let two: i64 = pool.apply(&square, (6,)).unwrap();
    assert_eq!(two, 36);
    assert!(!sshd.remote_workers().contains(&far));
}

#[test]
fn a_slurm_worker_queued_for_resources_is_reported_as_waiting() {
    let Some(slurm) = Slurm::start("remote::a_slurm_worker_queued_for_resources") else {
        return;
    };
    // Every CPU of the node taken by another job: a worker's step must wait.
    let mut blocker = slurm
        .command("srun")
        .args(["-N1", "--exclusive", "-J", "blocker", "sleep", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !slurm
        .command("squeue")
        .args(["-h", "-t", "R", "-n", "blocker"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty())
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            slurm.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let launcher = srun(&slurm).startup_timeout(Duration::from_secs(3));
    let started = Instant::now();
    let err = Pool::builder()
        .remote(launcher, "localhost", 1)
        .build()
        .unwrap_err();
    let text = err.to_string();
    let waited = started.elapsed();
    let _ = blocker.kill();
    let _ = blocker.wait();
    assert!(text.contains("start-up deadline"), "{text}");
    assert!(text.contains("queued and waiting for resources"), "{text}");
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}

#[test]
fn a_stream_over_a_slow_link_keeps_enough_in_flight_to_hide_it() {
    if Command::new("python3").arg("--version").output().is_err() {
        crate::cluster::skip("remote::a_stream_over_a_slow_link", "no python3");
        return;
    }
    // A worker behind a link of 20 ms each way (40 ms round trip): a relay that holds every
    // byte back that long.
    let relay = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/all/delay_link.py");
    let exe = std::env::current_exe().unwrap().display().to_string();
    let slow_link = Launcher::new([
        "python3",
        relay,
        "20",
        "env",
        "WASMPOOL_WORKER=remote",
        &exe,
    ]);
    let pool = Pool::builder()
        .launcher(slow_link, 1)
        .on_output(|_| {})
        .build()
        .unwrap();
    let square = task(SQUARE, "square");
    let started = Instant::now();
    let got: Vec<i64> = pool
        .imap::<_, i64>(&square, 0..20_000_i64)
        .collect::<Result<_, _>>()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(got, squares(20_000));
    eprintln!("a stream of 20k tiny items over a 40 ms round trip: {took:.2?}");
    // A round trip per chunk of one item (what a stream of one chunk in flight would do)
    // would take 800 s; chunks in flight cover the link.
    assert!(took < Duration::from_secs(15), "{took:?}");
}
