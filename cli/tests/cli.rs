//! The `wasmpool` binary, run as a user would: real processes, real wasm, stdout and stderr
//! checked separately.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn wasmpool(args: &[&str], stdin: &str) -> Output {
    wasmpool_bytes(args, stdin.as_bytes())
}

fn wasmpool_bytes(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmpool"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wasmpool starts");
    // A command that refuses its options exits before it reads: its stdin may be closed.
    let fed = child.stdin.take().unwrap().write_all(stdin);
    assert!(
        fed.as_ref().is_ok()
            || fed
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe),
        "{fed:?}"
    );
    child.wait_with_output().unwrap()
}

/// The binary started with `args`, its three streams piped, for a test that talks to it while
/// it runs.
fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_wasmpool"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wasmpool starts")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_prints_the_result_as_json() {
    let out = wasmpool(&["run", "builtin:power", "power", "2", "10"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1024\n");
    let out = wasmpool(
        &["run", "builtin:words", "word-count", "the cat and the hat"],
        "",
    );
    assert!(
        stdout(&out).starts_with(r#"[{"count":2,"word":"the"}"#),
        "{}",
        stdout(&out)
    );
}

#[test]
fn run_relays_guest_output_to_stderr_only() {
    let out = wasmpool(&["run", "builtin:hello", "hello", "world"], "");
    assert!(out.status.success());
    assert_eq!(stdout(&out), "\"hello, world!\"\n");
    assert!(
        stderr(&out).contains("[task 0] hello, world!"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("[task 0 stderr] greeting world"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_reports_traps_and_bad_input_with_exit_code_1() {
    let out = wasmpool(&["run", "builtin:trap", "maybe-crash", "5"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("wasm `unreachable` instruction executed"),
        "{}",
        stderr(&out)
    );
    let out = wasmpool(&["run", "builtin:square", "square", "seven"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("parameter `x`: expected s64, got \"seven\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_errors_are_clear() {
    let out = wasmpool(&["run", "builtin:square", "cube", "1"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no export named `cube`"),
        "{}",
        stderr(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, "not wasm").unwrap();
    let out = wasmpool(&["inspect", garbage.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid module"), "{}", stderr(&out));
}

#[test]
fn map_keeps_input_order_and_reports_failed_lines() {
    let input: String = (0..100).map(|i| format!("{i}\n")).collect();
    let out = wasmpool(&["map", "builtin:square", "square", "-j", "2"], &input);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        (0..100).map(|i| (i * i).to_string()).collect::<Vec<_>>()
    );
    assert!(
        stderr(&out).contains("100 items, 100 ok, 0 failed"),
        "{}",
        stderr(&out)
    );

    let out = wasmpool(
        &["map", "builtin:trap", "maybe-crash"],
        "4\n5\nnot json\n\n6\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "a line for every line, the blank one too");
    assert_eq!(lines[0], 16);
    assert_eq!(lines[1]["error"]["kind"], "trap");
    assert_eq!(lines[2]["error"]["kind"], "bad-input");
    assert_eq!(lines[3]["error"]["kind"], "bad-input");
    assert_eq!(lines[4], 36);
}

#[test]
fn map_spreads_arrays_and_writes_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    std::fs::write(&input, "[2, 3]\n[3, 2]\n[4, 4]\n[5, 2]\n").unwrap();
    let out = wasmpool(
        &[
            "map",
            "builtin:power",
            "power",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "8\n9\n256\n25\n");
}

#[test]
fn map_unordered_tags_each_line_with_its_index() {
    let out = wasmpool(
        &[
            "map",
            "builtin:square",
            "slow-square",
            "--unordered",
            "-j",
            "2",
            "--chunksize",
            "1",
        ],
        "[0, 400]\n[1, 0]\n[2, 0]\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines.last().unwrap(),
        &serde_json::json!({"index": 0, "result": 0})
    );
}

#[test]
fn map_output_pipes_into_head() {
    let mut child = spawn(&["map", "builtin:square", "square", "-q"]);
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 0..200_000 {
            if writeln!(stdin, "{i}").is_err() {
                break;
            }
        }
    });
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 2];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    drop(out); // the reader goes away, as `| head -1` does
    let status = child.wait().unwrap();
    feeder.join().unwrap();
    assert_eq!(&first, b"0\n");
    assert!(
        status.success(),
        "a closed stdout is not a failure: {status:?}"
    );
}

#[test]
fn inspect_lists_signatures() {
    let out = wasmpool(&["inspect", "builtin:records"], "");
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("component"), "{text}");
    assert!(
        text.contains(
            "area: func(s: variant { circle(f64), rectangle(tuple<f64, f64>), point }) -> f64"
        ),
        "{text}"
    );
    assert!(text.contains("imports: wasi:"), "{text}");
    // A batch export says what a line of `map --batch` is.
    let out = wasmpool(&["inspect", "builtin:square"], "");
    let text = stdout(&out);
    assert!(
        text.contains("    map line: [1]\n    map --batch line (one element): 1\n"),
        "{text}"
    );
    assert_eq!(text.matches("--batch").count(), 1, "{text}");
    let out = wasmpool(&["inspect", "--json", "builtin:square"], "");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["exports"][2]["batch_example"], "1");
    assert_eq!(doc["exports"][0]["batch_example"], serde_json::Value::Null);
    let out = wasmpool(&["inspect", "builtin:pure"], "");
    assert!(
        stdout(&out).contains("imports: nothing"),
        "{}",
        stdout(&out)
    );
    let out = wasmpool(&["inspect", "--json", "builtin:arith"], "");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["kind"], "core module");
    assert_eq!(doc["imports"], serde_json::json!([]));
    assert_eq!(
        doc["exports"][0]["signature"],
        "add: func(p0: s32, p1: s32) -> s32"
    );
}

#[test]
fn tasks_export_writes_files_the_cli_can_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = wasmpool(&["tasks", "--export", dir.path().to_str().unwrap()], "");
    assert!(out.status.success());
    let square = dir.path().join("square.wasm");
    assert!(stdout(&out).contains(square.to_str().unwrap()));
    let out = wasmpool(&["run", square.to_str().unwrap(), "square", "-12"], "");
    assert_eq!(stdout(&out), "144\n", "{}", stderr(&out));
    let out = wasmpool(&["tasks"], "");
    assert!(stdout(&out).contains("builtin:primes"), "{}", stdout(&out));
}

#[test]
fn demo_runs_and_reports_speed_ups() {
    let out = wasmpool(&["demo", "--items", "4", "-j", "2"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("speed-up"), "{text}");
    assert!(text.contains("148933 primes"), "{text}");
    assert!(text.contains("maybe-crash(7) = 49"), "{text}");
}

#[test]
fn help_describes_every_command() {
    let out = wasmpool(&["--help"], "");
    let text = stdout(&out);
    for cmd in ["run", "map", "inspect", "demo", "tasks"] {
        assert!(text.contains(cmd), "{text}");
    }
    assert!(
        !text.contains("worker protocol"),
        "the worker command is hidden: {text}"
    );
}

/// The child processes of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        found.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    found
}

/// Whether a process is still running (a zombie waiting to be reaped counts as dead).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn wait_for(mut condition: impl FnMut() -> bool, within: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    condition()
}

#[test]
fn ctrl_c_stops_the_map_prints_what_finished_and_exits_130() {
    let mut child = spawn(&[
        "map",
        "builtin:sleep",
        "sleep",
        "-j",
        "2",
        "--chunksize",
        "1",
    ]);
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    // 400 tasks of 50 ms on 2 workers: 10 s of work, interrupted after about one.
    stdin.write_all("50\n".repeat(400).as_bytes()).unwrap();
    assert!(wait_for(
        || children(pid).len() == 2,
        std::time::Duration::from_secs(10)
    ));
    let workers = children(pid);
    std::thread::sleep(std::time::Duration::from_millis(800));
    // SAFETY: SIGINT to the child we started.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("interrupted by SIGINT"), "{err}");
    assert!(err.contains("cancelled"), "{err}");
    // Every line sits at its input's position: what finished, and a `cancelled` error for
    // what had started or was queued; lines never read have no line.
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() < 400, "{} lines", lines.len());
    let finished = lines.iter().filter(|v| v.is_u64()).count();
    let cancelled = lines
        .iter()
        .filter(|v| v["error"]["kind"] == "cancelled")
        .count();
    assert!(finished > 0 && cancelled > 0, "{lines:?}");
    assert_eq!(finished + cancelled, lines.len(), "{lines:?}");
    assert!(
        lines.iter().filter_map(|v| v.as_u64()).all(|ms| ms >= 50),
        "{lines:?}"
    );
    assert!(
        workers.iter().all(|&w| !alive(w)),
        "workers left behind: {workers:?}"
    );
}

#[test]
fn workers_die_with_a_host_killed_by_sigkill() {
    let mut child = spawn(&["map", "builtin:sleep", "sleep", "-j", "2"]);
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    // Two items: a worker for each of the two slots.
    stdin.write_all(b"60000\n60000\n").unwrap();
    assert!(wait_for(
        || children(pid).len() == 2,
        std::time::Duration::from_secs(10)
    ));
    let workers = children(pid);
    child.kill().unwrap(); // SIGKILL: the host gets no chance to clean up
    child.wait().unwrap();
    drop(stdin);
    // The parent-death signal ends the orphaned workers.
    assert!(
        wait_for(
            || workers.iter().all(|&w| !alive(w)),
            std::time::Duration::from_secs(5)
        ),
        "orphaned workers: {workers:?}"
    );
}

#[test]
fn the_binary_carries_the_tasks_it_offers_and_no_test_fixture() {
    let binary = std::fs::read(env!("CARGO_BIN_EXE_wasmpool")).unwrap();
    let carries = |needle: &[u8]| binary.windows(needle.len()).any(|w| w == needle);
    // An export name of `primes`, which `wasmpool tasks` offers...
    assert!(carries(b"count-primes-range"));
    // ...and of `hostile`, a fixture of the test suite, which it does not.
    assert!(!carries(b"memory-bomb"));
    let out = wasmpool(&["run", "builtin:hostile", "spin"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no such built-in task"),
        "{}",
        stderr(&out)
    );
    let listed = stdout(&wasmpool(&["tasks"], ""));
    assert!(!listed.contains("hostile"), "{listed}");
    assert_eq!(listed.lines().count(), 12, "{listed}");
}

#[test]
fn map_gives_every_input_line_exactly_one_output_line() {
    // A line that is not UTF-8 and a blank line are each their own bad input; the run goes on.
    let out = wasmpool_bytes(&["map", "builtin:square", "square"], b"1\n2\n\xff\n\n5\n");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(
        (&lines[0], &lines[1], &lines[4]),
        (&1.into(), &4.into(), &25.into())
    );
    assert_eq!(lines[2]["error"]["kind"], "bad-input");
    assert!(
        lines[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 3 is not JSON")
    );
    assert_eq!(lines[3]["error"]["kind"], "bad-input");
    assert!(
        lines[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 4 is blank")
    );
    // A bad line is quoted in short, whatever its length.
    let long = format!("{}\n", "x".repeat(1 << 20));
    let out = wasmpool(&["map", "builtin:square", "square"], &long);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).len() < 400, "{} bytes", stdout(&out).len());
    assert!(stdout(&out).contains("(1048576 bytes)"), "{}", stdout(&out));
}

#[test]
fn map_refuses_an_input_it_cannot_read_and_never_empties_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = wasmpool(&["map", "builtin:square", "square", "-i", d], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("it is a directory"),
        "{}",
        stderr(&out)
    );
    let data = dir.path().join("data");
    std::fs::write(&data, "1\n2\n").unwrap();
    let data = data.to_str().unwrap();
    let out = wasmpool(
        &["map", "builtin:square", "square", "-i", data, "-o", data],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is also the output"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(data).unwrap(), "1\n2\n");
}

#[test]
fn map_writes_each_result_as_soon_as_it_is_done() {
    // One line in, stdin left open: the result must come out while the input has not ended.
    let mut child = spawn(&["map", "builtin:sleep", "sleep", "-q"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"100\n").unwrap();
    stdin.flush().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut out, &mut line);
        let _ = tx.send(line);
    });
    let first = rx.recv_timeout(std::time::Duration::from_secs(10));
    drop(stdin);
    let status = child.wait().unwrap();
    let first = first.expect("no result while the input was open");
    assert!(first.trim().parse::<u64>().unwrap() >= 100, "{first}");
    assert!(status.success());
}

#[test]
fn a_closed_stdout_ends_a_slow_map_at_once() {
    // 60 items of 500 ms on 2 workers: 15 s of work, stopped when the reader goes away.
    let mut child = spawn(&["map", "builtin:sleep", "sleep", "-j", "2"]);
    let pid = child.id();
    child
        .stdin
        .take()
        .unwrap()
        .write_all("500\n".repeat(60).as_bytes())
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert!(first.trim().parse::<u64>().unwrap() >= 500, "{first}");
    let workers = children(pid);
    let closed = std::time::Instant::now();
    drop(out);
    let status = child.wait_with_output().unwrap();
    assert!(
        closed.elapsed() < std::time::Duration::from_secs(3),
        "ran on for {:?} after its reader left",
        closed.elapsed()
    );
    assert!(status.status.success(), "quietly: {}", stderr(&status));
    assert!(stderr(&status).is_empty(), "quietly: {}", stderr(&status));
    assert!(workers.iter().all(|&w| !alive(w)), "workers left behind");
}

/// How many bytes written to a child's stdin it has not read yet.
fn unread(stdin: &std::process::ChildStdin) -> i32 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD on a pipe we own (either end counts what waits in it) into an int.
    if unsafe { libc::ioctl(stdin.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
        return -1;
    }
    n
}

#[test]
fn sighup_is_handled_like_sigterm() {
    let mut child = spawn(&["map", "builtin:sleep", "sleep", "-j", "1"]);
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"5000\n").unwrap();
    assert!(wait_for(
        || children(pid).len() == 1,
        std::time::Duration::from_secs(10)
    ));
    // The line read (a signal before it is read leaves it unread, with no line out), then
    // a moment for its task to start.
    assert!(wait_for(
        || unread(&stdin) == 0,
        std::time::Duration::from_secs(10)
    ));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let workers = children(pid);
    // SAFETY: SIGHUP to the child we started.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(129), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupted by SIGHUP"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("cancelled"), "{}", stdout(&out));
    assert!(workers.iter().all(|&w| !alive(w)), "workers left behind");
}

#[test]
fn guest_output_cannot_move_the_terminal() {
    let out = wasmpool(
        &[
            "run",
            "builtin:hello",
            "hello",
            "\u{1b}[2J\rwasmpool map: 0 failed",
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !out.stderr.contains(&0x1b) && !out.stderr.contains(&b'\r'),
        "{:?}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("[task 0] hello, \\u{1b}[2J\\rwasmpool map: 0 failed!"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn options_that_cannot_work_are_usage_errors() {
    for (args, says) in [
        (&["-j", "0"][..], "at least one worker"),
        (&["-j", "100000"][..], "more than the 1024"),
        (&["--chunksize", "0"][..], "at least one item"),
        (&["--timeout", "0s"][..], "leave --timeout out"),
    ] {
        let mut all = vec!["map", "builtin:square", "square"];
        all.extend_from_slice(args);
        let out = wasmpool(&all, "1\n");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty());
    }
    // A chunk size far larger than the input is only as large as the input.
    let out = wasmpool(
        &[
            "map",
            "builtin:square",
            "square",
            "--chunksize",
            "1000000000",
        ],
        "3\n4\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "9\n16\n");
    // A module larger than allowed names the flag that raises the limit.
    let dir = tempfile::tempdir().unwrap();
    let exported = wasmpool(&["tasks", "--export", dir.path().to_str().unwrap()], "");
    assert!(exported.status.success());
    let square = dir.path().join("square.wasm");
    let out = wasmpool(
        &[
            "run",
            square.to_str().unwrap(),
            "square",
            "3",
            "--max-module-size",
            "1K",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--max-module-size"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn compiling_has_limits_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let giant = dir.path().join("giant.wat");
    let nonce = std::process::id();
    let body = "local.get 0 i32.const 1 i32.add local.set 0 ".repeat(100_000);
    std::fs::write(
        &giant,
        format!(
            r#"(module (func (export "f{nonce}") (param i32) (result i32) {body} local.get 0))"#
        ),
    )
    .unwrap();
    let out = wasmpool(
        &[
            "inspect",
            giant.to_str().unwrap(),
            "--compile-timeout",
            "50ms",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("took longer than the limit of 50ms"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_guest_error_cannot_move_the_terminal_either() {
    // parse-int returns err(its own message), which quotes the text it was given.
    let out = wasmpool(&["run", "builtin:fallible", "parse-int", "\u{1b}[2Jx"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(!out.stderr.contains(&0x1b), "{:?}", stderr(&out));
    assert!(stderr(&out).contains("\\u{1b}[2Jx"), "{}", stderr(&out));
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn a_failed_items_error_carries_its_panic_and_its_stderr() {
    let out = wasmpool(
        &["map", "builtin:power", "power", "-q"],
        "[2,10]\n[2,100]\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out);
    assert_eq!(lines[0], serde_json::json!(1024));
    let error = &lines[1]["error"];
    assert_eq!(error["kind"], "trap");
    let panic = error["panic"].as_str().unwrap();
    assert!(panic.starts_with("power overflows s64 (at "), "{panic}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("`power` panicked: power overflows s64"),
        "{error}"
    );
    assert!(
        error["stderr"]
            .as_str()
            .unwrap()
            .contains("power overflows s64"),
        "{error}"
    );
    // The backtrace starts at the guest's own frame; the panic stays off the shared stderr.
    let backtrace = error["backtrace"].as_str().unwrap();
    assert!(
        backtrace.contains("frames of the panic machinery left out"),
        "{backtrace}"
    );
    assert!(
        !stderr(&out).contains("power overflows"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn map_capture_puts_each_items_output_in_its_line() {
    let out = wasmpool(
        &["map", "builtin:hello", "hello", "--capture", "-q"],
        "\"Ada\"\n\"Bob\"\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(
        lines[1],
        serde_json::json!({"ok": "hello, Bob!", "stdout": "hello, Bob!\n", "stderr": "greeting Bob\n"})
    );
    assert_eq!(stderr(&out), "");
    // Without --capture, the output goes to stderr labelled with its input line.
    let out = wasmpool(
        &["map", "builtin:hello", "hello", "-q"],
        "\"Ada\"\n\"Bob\"\n",
    );
    assert!(
        stderr(&out).contains("[line 2] hello, Bob!"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("[line 1 stderr] greeting Ada"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn map_takes_raw_lines_and_arguments_by_name() {
    let out = wasmpool(
        &["map", "builtin:hello", "hello", "--raw", "--capture", "-q"],
        "Ada\r\n\n\"quoted\" {not json}\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["ok"], "hello, Ada!");
    assert_eq!(lines[1]["ok"], "hello, !");
    assert_eq!(lines[2]["ok"], "hello, \"quoted\" {not json}!");
    let out = wasmpool(&["map", "builtin:square", "square", "--raw"], "7\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a function of one string"),
        "{}",
        stderr(&out)
    );
    let out = wasmpool(
        &["map", "builtin:power", "power", "-q"],
        "{\"base\": 2, \"exponent\": 10}\n{\"base\": 2}\n",
    );
    let lines = json_lines(&out);
    assert_eq!(lines[0], serde_json::json!(1024));
    assert!(
        lines[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing: exponent"),
        "{}",
        lines[1]
    );
    // `run` takes them the same way.
    let out = wasmpool(
        &[
            "run",
            "builtin:power",
            "power",
            "{\"base\": 3, \"exponent\": 2}",
        ],
        "",
    );
    assert_eq!(stdout(&out), "9\n", "{}", stderr(&out));
}

#[test]
fn exec_runs_a_program_once_per_line() {
    let out = wasmpool(&["exec", "builtin:program", "-q"], "1 2 3\n4 x\n");
    assert_eq!(out.status.code(), Some(1), "a run exited non-zero");
    let lines = json_lines(&out);
    assert_eq!(
        lines,
        [
            serde_json::json!({"exit": 0, "stdout": "6\n", "stderr": "read 3 numbers\n"}),
            serde_json::json!({"exit": 1, "stdout": "", "stderr": "not a number: x\n"}),
        ]
    );
    let out = wasmpool(
        &["exec", "builtin:program", "--args", "-q", "--", "--args"],
        "[\"a b\", \"c\"]\nd e\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines[0]["stdout"], "--args a b c\n");
    assert_eq!(lines[1]["stdout"], "--args d e\n");
    let out = wasmpool(
        &[
            "exec",
            "builtin:program",
            "--json",
            "--timeout",
            "300ms",
            "-q",
            "--unordered",
        ],
        "{\"stdin\": \"5 5\"}\n{\"args\": [\"--spin\"]}\n{\"argv\": []}\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let mut lines = json_lines(&out);
    lines.sort_by_key(|l| l["index"].as_u64());
    assert_eq!(lines[0]["exit"], 0);
    assert_eq!(lines[0]["stdout"], "10\n");
    assert_eq!(lines[1]["error"]["kind"], "timeout");
    assert_eq!(lines[2]["error"]["kind"], "bad-input");
    // The summary counts a non-zero exit as a failure, as the exit code does.
    let out = wasmpool(&["exec", "builtin:program"], "1\nx\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("2 items, 1 ok, 1 failed") && stderr(&out).contains("1 exit"),
        "{}",
        stderr(&out)
    );
    let out = wasmpool(&["exec", "builtin:square"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a program"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_file_is_named_once() {
    let out = wasmpool(&["run", "no-such.wasm", "f"], "");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).matches("No such file or directory").count(),
        1,
        "{}",
        stderr(&out)
    );
}

#[test]
fn inspect_says_a_program_is_run_by_exec() {
    let out = wasmpool(&["inspect", "builtin:program"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("`wasmpool exec builtin:program` runs it"),
        "{}",
        stdout(&out)
    );
    let out = wasmpool(&["inspect", "builtin:program", "--json"], "");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["program"], true);
    let doc: serde_json::Value =
        serde_json::from_slice(&wasmpool(&["inspect", "builtin:square", "--json"], "").stdout)
            .unwrap();
    assert_eq!(doc["program"], false);
}

#[test]
fn map_batch_gives_every_input_line_exactly_one_output_line_in_order() {
    let batch = ["map", "builtin:square", "square-many", "--batch", "-q"];
    let out = wasmpool_bytes(&batch, b"1\n-2\nx\n\xff\n\n[3]\n4000000000\n5\n");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 8, "{lines:?}");
    assert_eq!(
        (&lines[0], &lines[1], &lines[7]),
        (&1.into(), &4.into(), &25.into())
    );
    for (at, says) in [
        (2, "line 3 is not JSON"),
        (3, "line 4 is not JSON"),
        (4, "line 5 is blank"),
        (5, "expected s64"),
    ] {
        assert_eq!(lines[at]["error"]["kind"], "bad-input", "{}", lines[at]);
        let message = lines[at]["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    // The item that traps fails alone, with its own call's panic and stderr.
    let error = &lines[6]["error"];
    assert_eq!(error["kind"], "trap");
    assert!(
        error["panic"]
            .as_str()
            .unwrap()
            .starts_with("square overflows s64"),
        "{error}"
    );
    assert!(
        error["stderr"]
            .as_str()
            .unwrap()
            .contains("square overflows s64"),
        "{error}"
    );

    // Many lines: in order, one each, as `map` without --batch gives them. From a file, not a
    // pipe this test would write while the command, blocked on its own full stdout, does not
    // read.
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("lines");
    let text: String = (1..=20_000).map(|n| format!("{n}\n")).collect();
    std::fs::write(&lines, text).unwrap();
    let lines = lines.to_str().unwrap();
    let mut from_file = batch.to_vec();
    from_file.extend(["-i", lines]);
    let out = wasmpool(&from_file, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let expected: String = (1..=20_000_i64).map(|n| format!("{}\n", n * n)).collect();
    assert_eq!(stdout(&out), expected);
    // --unordered: each line once, with its index.
    let mut unordered = from_file.clone();
    unordered.push("--unordered");
    let out = wasmpool(&unordered, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let mut seen: Vec<(u64, i64)> = json_lines(&out)
        .iter()
        .map(|l| (l["index"].as_u64().unwrap(), l["result"].as_i64().unwrap()))
        .collect();
    seen.sort_unstable();
    let want: Vec<(u64, i64)> = (0..20_000_i64)
        .map(|i| (i as u64, (i + 1) * (i + 1)))
        .collect();
    assert_eq!(seen, want);
    // --capture: an object per line; the failing item's stderr in its own line.
    let mut capture = batch.to_vec();
    capture.push("--capture");
    let out = wasmpool(&capture, "2\n4000000000\n3\n");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["ok"], 4);
    assert_eq!(lines[2]["ok"], 9);
    assert_eq!(lines[1]["error"]["kind"], "trap");
    assert!(
        lines[1]["stderr"]
            .as_str()
            .unwrap()
            .contains("square overflows s64"),
        "{}",
        lines[1]
    );
}

#[test]
fn map_batch_refuses_an_export_of_another_shape() {
    for (func, why) in [
        ("square", "its parameter `x` is of type s64, not a list"),
        ("slow-square", "it takes 2 parameters"),
    ] {
        let out = wasmpool(&["map", "builtin:square", func, "--batch"], "1\n");
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
        let text = stderr(&out);
        assert!(text.contains("cannot be mapped in batches"), "{text}");
        assert!(text.contains(why), "{text}");
    }
    let out = wasmpool(
        &["map", "builtin:square", "square-many", "--batch", "--raw"],
        "1\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("of type s64, not a string"),
        "{}",
        stderr(&out)
    );
}

/// `--value`, `--queue`, `--dict` and friends: objects made for the run, granted to every
/// item, and their final state written by `--state`.
#[test]
fn shared_objects_are_granted_to_every_item_and_their_state_written() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared.wasm");
    std::fs::write(&shared, wasmpool_artifacts::SHARED.wasm).unwrap();
    let shared = shared.to_str().unwrap();
    let state = dir.path().join("state.json");
    let input = "[\"lock\", \"counter\", 1000]\n".repeat(4);
    let out = wasmpool(
        &[
            "map",
            shared,
            "locked-increment",
            "-j",
            "2",
            "--lock",
            "lock",
            "--value",
            "counter=0",
            "--value",
            "total=0.5",
            "--array",
            "hist=[1,2]",
            "--dict",
            "d",
            "--queue",
            "jobs",
            "--state",
            state.to_str().unwrap(),
        ],
        &input,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        state,
        serde_json::json!({"counter": 4000, "total": 0.5, "hist": [1, 2], "d": {}, "jobs": []})
    );

    // Items a task put on a queue and set in a dict, shown as their JSON in `--state -`.
    let out = wasmpool(
        &["map", shared, "produce", "--queue", "jobs", "--state", "-"],
        "[\"jobs\", 7, 2]\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("{\"jobs\":[7,8]}"), "{stderr}");

    // A name that was not made is not granted: that item's error, the run goes on.
    let out = wasmpool(&["run", shared, "open-value", "missing"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not-granted(missing)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = wasmpool(&["map", shared, "atomic-add", "--value", "c"], "");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed --value is a usage error"
    );
}
