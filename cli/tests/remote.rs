//! The command line's remote workers: `--hosts`, `--launcher`, `--worker-cmd`, `--local`,
//! `--remote-bin`, against a real sshd, a real Slurm cluster of one node and the real
//! kubectl (the harness is the library tests', `tests/all/cluster.rs`).

#[path = "../../tests/all/cluster.rs"]
mod cluster;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cluster::{Slurm, Sshd};

const WASMPOOL: &str = env!("CARGO_BIN_EXE_wasmpool");

fn wasmpool(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(WASMPOOL)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wasmpool starts");
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// A `--worker-cmd` through our sshd, with its client configuration.
fn ssh_template(sshd: &Sshd) -> String {
    format!(
        "ssh -F {} -T {{host}} {{bin}} worker",
        sshd.config().display()
    )
}

fn numbers(n: u64) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

fn squares(n: u64) -> String {
    (1..=n).map(|i| format!("{}\n", i * i)).collect()
}

#[test]
fn map_and_run_over_ssh_workers_with_a_template_of_ones_own() {
    let Some(sshd) = Sshd::start("cli remote::map_and_run_over_ssh_workers") else {
        return;
    };
    let template = ssh_template(&sshd);
    let started = Instant::now();
    let out = wasmpool(
        &[
            "map",
            "builtin:square",
            "square",
            "--hosts",
            "127.0.0.1:2",
            "--worker-cmd",
            &template,
            "--remote-bin",
            WASMPOOL,
            "--local",
            "1",
            "--chunksize",
            "50",
        ],
        &numbers(5000),
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), squares(5000));
    eprintln!(
        "map of 5000 over 2 ssh + 1 local workers: {:.2?}",
        started.elapsed()
    );
    let out = wasmpool(
        &[
            "run",
            "builtin:power",
            "power",
            "2",
            "10",
            "--hosts",
            "127.0.0.1",
            "--worker-cmd",
            &template,
            "--remote-bin",
            WASMPOOL,
        ],
        "",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1024\n");
    let left = sshd.wait_no_remote_workers(Duration::from_secs(5));
    assert!(left.is_empty(), "remote workers left behind: {left:?}");
}

#[test]
fn map_over_srun_workers_with_the_slurm_preset() {
    let Some(slurm) = Slurm::start("cli remote::map_over_srun_workers") else {
        return;
    };
    let conf = slurm.conf().display().to_string();
    let out = wasmpool(
        &[
            "map",
            "builtin:square",
            "square",
            "--launcher",
            "slurm",
            "--hosts",
            "localhost:2",
            "--remote-bin",
            WASMPOOL,
        ],
        &numbers(3000),
        &[("SLURM_CONF", &conf)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", slurm.logs());
    assert_eq!(String::from_utf8_lossy(&out.stdout), squares(3000));
}

#[test]
fn kubectl_against_an_unreachable_api_server_is_a_clear_usage_error() {
    if Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        cluster::skip(
            "cli remote::kubectl_against_an_unreachable_api_server",
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
    let out = wasmpool(
        &[
            "map",
            "builtin:square",
            "square",
            "--launcher",
            "kubectl",
            "--hosts",
            "worker-pod-0:2",
        ],
        "1\n",
        &[("KUBECONFIG", &config.display().to_string())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("kubectl exec -i worker-pod-0 -- wasmpool worker"),
        "{stderr}"
    );
    assert!(stderr.contains("exited with code 1"), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1 was refused"), "{stderr}");
}

#[test]
fn remote_options_that_cannot_work_are_usage_errors() {
    for (args, says) in [
        (&["--hosts", "node1:0"][..], "1 to 1024 workers"),
        (&["--hosts", "node1:x"][..], "not a number of workers"),
        (&["--launcher", "telnet", "--hosts", "a"][..], "telnet"),
        (&["--worker-cmd", "ssh 'open"][..], "is not closed"),
        (
            &[
                "--launcher",
                "ssh",
                "--worker-cmd",
                "ssh {host}",
                "--hosts",
                "a",
            ][..],
            "cannot be used with",
        ),
    ] {
        let mut all = vec!["map", "builtin:square", "square"];
        all.extend_from_slice(args);
        let out = wasmpool(&all, "1\n", &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// `--value`, `--lock`, `--dict` reach the items that run behind ssh as the local ones: one
/// count, exact, in `--state`.
#[test]
fn shared_objects_reach_items_on_ssh_workers() {
    let Some(sshd) = Sshd::start("cli remote::shared_objects_reach_items_on_ssh_workers") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared.wasm");
    std::fs::write(&shared, wasmpool_artifacts::SHARED.wasm).unwrap();
    let template = ssh_template(&sshd);
    let out = wasmpool(
        &[
            "map",
            shared.to_str().unwrap(),
            "locked-increment",
            "--hosts",
            "127.0.0.1:2",
            "--worker-cmd",
            &template,
            "--remote-bin",
            WASMPOOL,
            "--local",
            "1",
            "--chunksize",
            "1",
            "--lock",
            "lock",
            "--value",
            "counter=0",
            "--state",
            "-",
        ],
        &"[\"lock\", \"counter\", 300]\n".repeat(9),
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 9);
    assert!(stderr.contains("\"counter\":2700"), "{stderr}");
}
