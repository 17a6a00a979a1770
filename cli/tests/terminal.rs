//! The `wasmpool` binary on a real terminal: a pseudo-terminal on its stderr, as a user's shell
//! gives it, with stdout on a pipe. The progress bar is drawn there and nowhere else, never
//! on stdout, not at all on a pipe or with `--quiet`, and what guests print while it is shown
//! reads whole. Also: the summary (`--summary-json`), every command's examples, the completion
//! scripts.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn wasmpool() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmpool"));
    // A terminal that can move its cursor, whatever the one running the tests is.
    cmd.env("TERM", "xterm-256color");
    cmd
}

/// Opened pseudo-terminals and started children, one at a time: a terminal's descriptors are
/// made close-on-exec at once, before another test's child could inherit them (and hold the
/// terminal open after its own child is gone).
static SPAWNING: Mutex<()> = Mutex::new(());

fn cloexec(fd: RawFd) {
    // SAFETY: fd is a descriptor this process just opened.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    assert_eq!(rc, 0, "fcntl: {}", std::io::Error::last_os_error());
}

/// A child whose stderr is a pseudo-terminal, 100 columns wide, read as it writes.
struct OnTerminal {
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    reader: JoinHandle<()>,
}

/// What the child wrote: on its stdout (a pipe) and on the terminal, as the bytes it sent.
struct Ran {
    status: std::process::ExitStatus,
    stdout: String,
    terminal: String,
}

impl OnTerminal {
    /// Starts `cmd` with its stderr on a new pseudo-terminal, its stdout on a pipe, and
    /// `stdin`.
    fn spawn_with(mut cmd: Command, stdin: Stdio) -> OnTerminal {
        let guard = SPAWNING.lock().unwrap_or_else(|e| e.into_inner());
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: two out-parameters, no name, default terminal settings, a valid size.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        cloexec(master);
        cloexec(slave);
        // SAFETY: both descriptors were just opened, and are owned here alone.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("wasmpool starts");
        // The Command held the only copy of the slave here: once the child and everything it
        // started are gone, reading the master ends.
        drop(cmd);
        drop(guard);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (screen, stop) = (Arc::clone(&screen), Arc::clone(&stop));
            std::thread::spawn(move || read_terminal(master, &screen, &stop))
        };
        OnTerminal {
            child,
            screen,
            stop,
            reader,
        }
    }

    /// Starts `cmd` with its stderr on a new pseudo-terminal, its stdout and stdin on pipes.
    fn spawn(cmd: Command) -> OnTerminal {
        OnTerminal::spawn_with(cmd, Stdio::piped())
    }

    /// What the terminal has been sent so far.
    fn terminal(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Feeds `input` to the child's stdin and closes it, waits for the child, and reads what
    /// is left on the terminal.
    fn finish(mut self, input: &[u8]) -> Ran {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(input);
        }
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let status = self.child.wait().unwrap();
        self.stop.store(true, Ordering::SeqCst);
        self.reader.join().unwrap();
        let terminal = String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned();
        Ran {
            status,
            stdout,
            terminal,
        }
    }
}

/// Reads the terminal's master side into `screen` until the terminal is closed (every copy of
/// its slave gone), or, once `stop` is set, until nothing more comes for a moment.
fn read_terminal(master: OwnedFd, screen: &Mutex<Vec<u8>>, stop: &AtomicBool) {
    let mut file = std::fs::File::from(master);
    let mut buf = [0u8; 4096];
    loop {
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd on the stack.
        let n = unsafe { libc::poll(&mut pfd, 1, 200) };
        if n == 0 {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            continue;
        }
        match file.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => screen.lock().unwrap().extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // EIO: the slave side is closed.
            Err(_) => return,
        }
    }
}

/// The screen that `bytes` leave on a terminal: what a user sees once they are written, line by
/// line (a tiny terminal: text, `\r`, `\n`, cursor up and down, erase in line; other escape
/// sequences move nothing).
fn screen(bytes: &str) -> Vec<String> {
    let mut lines: Vec<Vec<char>> = vec![Vec::new()];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = bytes.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => col = 0,
            '\n' => {
                row += 1;
                if row == lines.len() {
                    lines.push(Vec::new());
                }
            }
            '\u{1b}' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut param = String::new();
                let mut end = ' ';
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() || c == '~' {
                        end = c;
                        break;
                    }
                    param.push(c);
                }
                let n: usize = param.trim_start_matches('?').parse().unwrap_or(1);
                match end {
                    'A' => row = row.saturating_sub(n),
                    'B' => {
                        row += n;
                        while row >= lines.len() {
                            lines.push(Vec::new());
                        }
                    }
                    'K' if param == "2" => lines[row].clear(),
                    'K' => lines[row].truncate(col),
                    'G' => col = n.saturating_sub(1),
                    _ => {}
                }
            }
            c => {
                let line = &mut lines[row];
                while line.len() < col {
                    line.push(' ');
                }
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
    }
    lines
        .into_iter()
        .map(|l| l.into_iter().collect::<String>().trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The lines of a screen that are a progress bar: they start with its clock.
fn bars(screen: &[String]) -> Vec<&String> {
    screen.iter().filter(|l| l.starts_with("00:00:")).collect()
}

fn input_file(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("input.jsonl");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn the_bar_is_drawn_on_the_terminal_and_never_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_file(
        &dir,
        &(1..=10).map(|i| format!("{i}\n")).collect::<String>(),
    );
    let mut cmd = wasmpool();
    cmd.args(["map", "builtin:square", "square", "-j", "2", "-i", &input]);
    let ran = OnTerminal::spawn(cmd).finish(b"");
    assert!(ran.status.success(), "{}", ran.terminal);
    // The results, exactly, and nothing of the terminal's.
    let want: String = (1..=10).map(|i| format!("{}\n", i * i)).collect();
    assert_eq!(ran.stdout, want);
    // The bar was drawn (it moves the cursor), and left on screen, exact, above the summary.
    assert!(ran.terminal.contains('\u{1b}'), "{:?}", ran.terminal);
    let shown = screen(&ran.terminal);
    let bars = bars(&shown);
    assert_eq!(bars.len(), 1, "{shown:#?}");
    assert!(bars[0].contains("] 10/10, "), "{shown:#?}");
    assert!(bars[0].contains(" items/s, 0 failed"), "{shown:#?}");
    let bar_at = shown.iter().position(|l| l == bars[0]).unwrap();
    assert!(
        shown[bar_at + 1].starts_with("wasmpool map: 10 items, 10 ok, 0 failed"),
        "{shown:#?}"
    );
    assert!(
        shown[bar_at + 2].starts_with("wasmpool map: item time p50 "),
        "{shown:#?}"
    );
}

#[test]
fn stdin_from_a_file_has_a_total_from_where_it_is() {
    use std::io::{Seek, SeekFrom};
    let dir = tempfile::tempdir().unwrap();
    let input = input_file(&dir, "1\n2\n3\n4\n");
    // The first line already read, as a shell's `read` leaves it: three lines to go.
    let mut stdin = std::fs::File::open(&input).unwrap();
    stdin.seek(SeekFrom::Start(2)).unwrap();
    let mut cmd = wasmpool();
    cmd.args(["map", "builtin:square", "square"]);
    let ran = OnTerminal::spawn_with(cmd, Stdio::from(stdin)).finish(b"");
    assert!(ran.status.success(), "{}", ran.terminal);
    assert_eq!(ran.stdout, "4\n9\n16\n");
    let shown = screen(&ran.terminal);
    let bars = bars(&shown);
    assert_eq!(bars.len(), 1, "{shown:#?}");
    assert!(bars[0].contains("] 3/3, "), "{shown:#?}");
}

#[test]
fn the_bar_counts_failures_and_counts_a_pipe_without_a_total() {
    let mut cmd = wasmpool();
    cmd.args(["map", "builtin:trap", "maybe-crash", "-j", "2"]);
    let ran = OnTerminal::spawn(cmd).finish(b"4\n5\nnot json\n\n6\n");
    assert_eq!(ran.status.code(), Some(1), "{}", ran.terminal);
    assert_eq!(ran.stdout.lines().count(), 5, "{}", ran.stdout);
    assert!(!ran.stdout.contains('\u{1b}'), "{:?}", ran.stdout);
    let shown = screen(&ran.terminal);
    let bars = bars(&shown);
    assert_eq!(bars.len(), 1, "{shown:#?}");
    // From a pipe there is no total: a count.
    assert!(bars[0].contains(" 5 items, "), "{shown:#?}");
    assert!(bars[0].ends_with(" items/s, 3 failed"), "{shown:#?}");
    assert!(
        shown
            .iter()
            .any(|l| l.starts_with("wasmpool map: 5 items, 2 ok, 3 failed, in")),
        "{shown:#?}"
    );
}

#[test]
fn no_bar_on_a_pipe() {
    let mut child = wasmpool()
        .args(["map", "builtin:square", "square", "-j", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"1\n2\n3\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n4\n9\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains('\u{1b}') && !err.contains('\r'), "{err:?}");
    assert!(!err.contains("items/s,"), "{err:?}");
    assert!(
        err.starts_with("wasmpool map: 3 items, 3 ok, 0 failed"),
        "{err:?}"
    );
}

#[test]
fn no_bar_with_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_file(&dir, "1\n2\n3\n");
    let mut cmd = wasmpool();
    cmd.args(["map", "builtin:square", "square", "--quiet", "-i", &input]);
    let ran = OnTerminal::spawn(cmd).finish(b"");
    assert!(ran.status.success());
    assert_eq!(ran.stdout, "1\n4\n9\n");
    // Nothing at all: no bar, no summary.
    assert_eq!(ran.terminal, "");
}

#[test]
fn what_guests_print_while_the_bar_is_shown_reads_whole() {
    let names: String = (1..=20).map(|i| format!("\"n{i}\"\n")).collect();
    let mut cmd = wasmpool();
    cmd.args([
        "map",
        "builtin:hello",
        "hello",
        "-j",
        "2",
        "--chunksize",
        "1",
    ]);
    let ran = OnTerminal::spawn(cmd).finish(names.as_bytes());
    assert!(ran.status.success(), "{}", ran.terminal);
    assert_eq!(ran.stdout.lines().count(), 20);
    assert!(!ran.stdout.contains('\u{1b}'));
    // On the screen: every line a guest printed, whole, on a line of its own; the bar once,
    // at the end, above the summary; nothing else.
    let shown = screen(&ran.terminal);
    for i in 1..=20 {
        for line in [
            format!("[line {i}] hello, n{i}!"),
            format!("[line {i} stderr] greeting n{i}"),
        ] {
            assert_eq!(
                shown.iter().filter(|l| **l == line).count(),
                1,
                "{line:?} in {shown:#?}"
            );
        }
    }
    // The bar was on screen while they were printed: drawn before the last of them.
    let drawn = ran.terminal.find(" items/s, 0 failed").unwrap();
    let last = ran.terminal.rfind("[line ").unwrap();
    assert!(drawn < last, "{:?}", ran.terminal);
    let bars = bars(&shown);
    assert_eq!(bars.len(), 1, "{shown:#?}");
    // 40 lines of the guests', the bar, the summary's two.
    assert_eq!(shown.len(), 40 + 1 + 2, "{shown:#?}");
    assert!(shown[40].contains(" 20 items, "), "{shown:#?}");
    assert!(
        shown[41].starts_with("wasmpool map: 20 items, 20 ok"),
        "{shown:#?}"
    );
}

#[test]
fn an_interrupted_map_leaves_its_bar_and_says_so_below_it() {
    let mut cmd = wasmpool();
    cmd.args([
        "map",
        "builtin:sleep",
        "sleep",
        "-j",
        "2",
        "--chunksize",
        "1",
    ]);
    let mut run = OnTerminal::spawn(cmd);
    let mut stdin = run.child.stdin.take().unwrap();
    // 200 tasks of 50 ms on 2 workers: 5 s of work, interrupted once some are done.
    stdin.write_all("50\n".repeat(200).as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bars(&screen(&run.terminal()))
        .iter()
        .any(|b| !b.contains(" 0 items"))
    {
        assert!(Instant::now() < deadline, "{}", run.terminal());
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: SIGINT to the child we started.
    unsafe { libc::kill(run.child.id() as i32, libc::SIGINT) };
    let ran = run.finish(b"");
    drop(stdin);
    assert_eq!(ran.status.code(), Some(130), "{}", ran.terminal);
    let shown = screen(&ran.terminal);
    assert_eq!(bars(&shown).len(), 1, "{shown:#?}");
    let last = shown.last().unwrap();
    assert!(
        last.starts_with("wasmpool map: interrupted by SIGINT"),
        "{shown:#?}"
    );
    assert!(shown[shown.len() - 2].starts_with("00:00:"), "{shown:#?}");
}

#[test]
fn the_summary_names_failures_by_kind_and_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("summary.json");
    let mut child = wasmpool()
        .args([
            "map",
            "builtin:trap",
            "maybe-crash",
            "-j",
            "2",
            "--summary-json",
        ])
        .arg(&json)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"4\n5\nnot json\n\n6\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wasmpool map: 3 failed: 2 bad-input, 1 trap; the first, line 2: trap: "),
        "{err}"
    );
    assert!(err.contains("wasmpool map: item time p50 "), "{err}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["command"], "map");
    assert_eq!(
        (doc["items"].as_u64(), doc["ok"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(doc["failed"], 3);
    assert_eq!(doc["cancelled"], 0);
    assert_eq!(
        doc["failures"],
        serde_json::json!({"bad-input": 2, "trap": 1})
    );
    assert_eq!(doc["workers"], 2);
    assert_eq!(doc["interrupted"], serde_json::Value::Null);
    assert_eq!(doc["complete"], true);
    assert!(doc["wall_seconds"].as_f64().unwrap() > 0.0, "{doc}");
    let times = &doc["item_time_seconds"];
    for p in ["p50", "p90", "p99", "max"] {
        assert!(times[p].as_f64().is_some_and(|t| t > 0.0), "{doc}");
    }
    assert!(times["p50"].as_f64() <= times["max"].as_f64(), "{doc}");
    let first: Vec<(u64, &str)> = doc["first_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(first, [(2, "trap"), (3, "bad-input"), (4, "bad-input")]);
    assert!(
        doc["first_errors"][2]["message"]
            .as_str()
            .unwrap()
            .contains("line 4 is blank"),
        "{doc}"
    );
}

#[test]
fn a_map_whose_reader_goes_away_still_leaves_its_summary_file() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("summary.json");
    let mut child = wasmpool()
        .args([
            "map",
            "builtin:square",
            "square",
            "-j",
            "2",
            "--summary-json",
        ])
        .arg(&json)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        // Until the map stops reading: it stops when its output's reader is gone.
        for i in 0..10_000_000u64 {
            if writeln!(stdin, "{i}").is_err() {
                return;
            }
        }
    });
    // Read one line, then go away, as `| head -1` does.
    let mut first = [0u8; 2];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let status = child.wait().unwrap();
    feeder.join().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(&first, b"0\n");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["complete"], false, "{doc}");
    assert_eq!(doc["workers"], 2, "{doc}");
    assert!(doc["items"].as_u64().unwrap() >= 1, "{doc}");
}

#[test]
fn a_summary_file_that_cannot_be_written_is_refused_before_any_work() {
    let out = wasmpool()
        .args([
            "map",
            "builtin:square",
            "square",
            "--summary-json",
            "/nonexistent/dir/summary.json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot create /nonexistent/dir/summary.json"),
        "{err}"
    );
}

/// The visible subcommands, as `wasmpool --help` lists them.
fn subcommands() -> Vec<String> {
    let out = wasmpool().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let commands = help
        .split("Commands:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no command list in {help}"));
    commands
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_ends_its_help_with_an_example() {
    let commands = subcommands();
    for expected in ["run", "map", "inspect", "demo", "tasks", "completions"] {
        assert!(commands.iter().any(|c| c == expected), "{commands:?}");
    }
    for command in &commands {
        let out = wasmpool().args([command, "--help"]).output().unwrap();
        assert!(out.status.success(), "{command}");
        let help = String::from_utf8(out.stdout).unwrap();
        let example = help
            .rfind("Example")
            .unwrap_or_else(|| panic!("`wasmpool {command} --help` has no example:\n{help}"));
        // The examples come last, and show the command itself.
        assert!(
            !help[example..].contains("Options:"),
            "`wasmpool {command} --help`: examples before the options:\n{help}"
        );
        assert!(
            help[example..].contains(&format!("wasmpool {command}")),
            "`wasmpool {command} --help`: the example does not run it:\n{help}"
        );
    }
}

#[test]
fn completion_scripts_parse_and_know_the_commands() {
    let out = wasmpool().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    for command in subcommands() {
        assert!(script.contains(&command), "no {command} in the bash script");
    }
    assert!(script.contains("--summary-json"));
    // The hidden worker command is not offered.
    assert!(!script.contains("subcmd__worker"), "{script}");
    let mut bash = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    bash.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let checked = bash.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    for shell in ["zsh", "fish"] {
        let out = wasmpool().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("map") && script.contains("summary-json"),
            "{shell}"
        );
    }
}
