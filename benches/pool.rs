//! The performance bench: every workload of issue 5 run in wasmpool, in native Rust with
//! rayon where it applies, and in Python's multiprocessing (`benches/python/py_baseline.py`), in one
//! run, printing each figure and the ratio to the peer. Machines are noisy: only ratios
//! measured side by side here mean anything.
//!
//! Run: `cargo build --release && cargo bench --bench pool` (about four minutes; add
//! `-- --no-python` to skip the Python peers, whose runs take about 90 s). The command-line
//! rows run this build's `target/release/wasmpool`, which `cargo build --release` makes.
//!
//! Besides the end-to-end figures it reports where a task's time goes: the cost of a fresh
//! instance plus the call inside a worker (measured in this process, no pipe), and the host's
//! own CPU time per item (all host threads, workers excluded), so that a regression shows
//! which side it is on. `-- --tiny-only` runs only the rows of tiny items (the maps of
//! `square`, the batch map of a million) against Python's tiny maps, in about 30 s. `-- --ssh`
//! runs only the rows of remote workers (ssh on 127.0.0.1, an sshd of its own, next to local
//! workers), which the full run ends with when sshd is installed. `-- --shared-code-only`
//! runs only the rows of the Python and JavaScript tasks (start-up, calls, the memory of
//! workers sharing their code) and of a small module's start-up, in about 15 s.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use wasmpool::{Module, Pool, TaskFuture, as_completed};
use wasmpool_artifacts::{ARITH, PRIMES, PURE, SQUARE};

const WORKERS: usize = 2;
/// Runs of each workload that takes a second or more; shorter ones get more (see
/// [`runs_for`]), as a spike of the machine's noise moves a 5 ms figure more.
const RUNS: usize = 5;

/// How many runs a workload of about `each` gets: enough that its median is not one spike.
fn runs_for(each: Duration) -> usize {
    if each < Duration::from_millis(20) {
        21
    } else if each < Duration::from_millis(300) {
        9
    } else {
        RUNS
    }
}

fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn pool() -> Pool {
    Pool::builder()
        .workers(WORKERS)
        .on_output(|_| {})
        .build()
        .expect("pool starts")
}

/// The reference kernel of `cpu_kernels.md`, natively, written exactly as specified.
#[inline(never)]
#[allow(clippy::manual_is_multiple_of)]
fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n % 2 == 0 {
        return false;
    }
    let mut d: u32 = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

fn count_primes_range(lo: u32, hi: u32) -> u32 {
    (lo..hi)
        .filter(|&n| is_prime(std::hint::black_box(n)))
        .count() as u32
}

fn ranges(limit: u32) -> Vec<(u32, u32)> {
    let step = limit / 64;
    (0..64).map(|k| (k * step, (k + 1) * step)).collect()
}

/// CPU time used so far by this process (all its threads; not its children, the workers).
fn host_cpu() -> Duration {
    cpu_of(libc::RUSAGE_SELF)
}

/// CPU time used so far by this process's waited-for children (and theirs): the workers of
/// pools that have been dropped, and the command-line runs with their workers.
fn children_cpu() -> Duration {
    cpu_of(libc::RUSAGE_CHILDREN)
}

/// User and system time of `who`, as getrusage(2) counts them.
fn cpu_of(who: libc::c_int) -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The median of `RUNS` runs of `f`, and the host CPU time per run it took (over all runs).
fn median_and_cpu(mut f: impl FnMut()) -> (Duration, Duration) {
    let before = host_cpu();
    let t = median(RUNS, &mut f);
    (t, (host_cpu() - before) / RUNS as u32)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Row {
    name: &'static str,
    ours: f64,
    unit: &'static str,
    peer: Option<f64>,
    peer_name: &'static str,
    higher_is_better: bool,
    target: &'static str,
}

/// Python's figures: every step of `py_baseline.py`, or only those named in `only`.
fn python_baseline(only: &[&str]) -> Option<serde_json::Value> {
    if std::env::args().any(|a| a == "--no-python") {
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python/py_baseline.py");
    eprintln!("running the Python peer ({script}, about 70 s)...");
    let out = std::process::Command::new("python3")
        .args([script, "--json"])
        .args(only.iter().flat_map(|step| ["--only", step]))
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// The `wasmpool` binary of this build (`cargo build --release` makes it), if it is there.
fn cli_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let binary = exe.parent()?.parent()?.join("wasmpool");
    binary.is_file().then_some(binary)
}

/// Wall time and CPU time (the process and all it waited for) of one run of `command`, with
/// `input` on its stdin and its stdout thrown away.
fn run_timed(command: &mut std::process::Command, input: &std::path::Path) -> (Duration, Duration) {
    let before = children_cpu();
    let start = Instant::now();
    let status = command
        .stdin(std::fs::File::open(input).unwrap())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the command starts");
    let wall = start.elapsed();
    assert!(status.success(), "{command:?}: {status}");
    (wall, children_cpu() - before)
}

/// Medians of `runs` runs of `command`: wall time and CPU time.
fn median_timed(
    runs: usize,
    mut command: impl FnMut() -> std::process::Command,
    input: &std::path::Path,
) -> (Duration, Duration) {
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..runs {
        let (wall, cpu) = run_timed(&mut command(), input);
        walls.push(wall);
        cpus.push(cpu);
    }
    walls.sort();
    cpus.sort();
    (walls[runs / 2], cpus[runs / 2])
}

/// The scaffold component of `wasmpool new --lang LANG` (`greet`, `divide`), built with the
/// tools CI installs under `target/authoring-tools/` (or on PATH) and kept under
/// `target/bench-components/`; `None`, said loudly, when the tools are not there.
fn authored_component(
    binary: &std::path::Path,
    lang: &str,
    tool: &str,
) -> Option<std::path::PathBuf> {
    let target = binary.parent()?.parent()?;
    let dir = target.join("bench-components");
    let project = dir.join(format!("bench-{lang}"));
    let built = project.join(format!("bench-{lang}.wasm"));
    if built.is_file() {
        return Some(built);
    }
    let tools = target.join("authoring-tools");
    let path = std::env::join_paths(
        [tools.join("venv/bin"), tools.join("npm/bin")]
            .into_iter()
            .chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            )),
    )
    .ok()?;
    let found = std::env::split_paths(&path).any(|d| d.join(tool).is_file());
    if !found {
        eprintln!(
            "\n==========\nSKIPPED the {lang} rows: {tool} is not in target/authoring-tools/ or on \
             PATH (.ci/run's authoring step installs it)\n=========="
        );
        return None;
    }
    let _ = std::fs::remove_dir_all(&project);
    std::fs::create_dir_all(&dir).ok()?;
    eprintln!("building a {lang} task with {tool} (about 20 s)...");
    let made = std::process::Command::new(binary)
        .args(["new", &format!("bench-{lang}"), "--lang", lang])
        .current_dir(&dir)
        .output()
        .ok()?;
    let build = std::process::Command::new(binary)
        .arg("build")
        .current_dir(&project)
        .env("PATH", &path)
        .output()
        .ok()?;
    if !(made.status.success() && build.status.success()) {
        eprintln!(
            "\n==========\nSKIPPED the {lang} rows: the build failed:\n{}{}\n==========",
            String::from_utf8_lossy(&made.stderr),
            String::from_utf8_lossy(&build.stderr)
        );
        return None;
    }
    let out = String::from_utf8_lossy(&build.stdout).trim().to_string();
    let component = project.join(out);
    std::fs::rename(&component, &built).ok()?;
    Some(built)
}

/// The proportional resident memory (PSS) of a process, in KiB.
fn pss_kib(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The physical pages the processes `pids` have resident, each page once however many of them
/// map it: their resident memory as a whole, in MiB. `None` where page frame numbers cannot be
/// read (`/proc/PID/pagemap` shows them only to a process with `CAP_SYS_ADMIN`).
///
/// PSS does not answer this: a page shared with a process outside `pids` (this bench, which
/// maps the same binary and has loaded the same module) is charged partly to that process, so
/// one worker's PSS falls short of what it holds, by more than four workers' sum does.
fn resident_mib(pids: &[u32]) -> Option<f64> {
    use std::io::{Read, Seek, SeekFrom};
    const PAGE: u64 = 4096;
    let mut frames = std::collections::HashSet::new();
    let mut present = 0usize;
    for &pid in pids {
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
        let mut pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap")).ok()?;
        // Each mapping's range, and whether any of it is resident (its `Rss:` line): the
        // instance pool reserves gigabytes no page of which may be there.
        let mut range = None;
        let mut entries = Vec::new();
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((start, end)) = first.split_once('-')
                && let (Ok(start), Ok(end)) =
                    (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
            {
                range = Some((start, end));
            } else if let Some(rss) = line.strip_prefix("Rss:")
                && rss.trim() != "0 kB"
                && let Some((start, end)) = range.take()
            {
                let pages = ((end - start) / PAGE) as usize;
                entries.resize(pages * 8, 0u8);
                pagemap.seek(SeekFrom::Start(start / PAGE * 8)).ok()?;
                pagemap.read_exact(&mut entries).ok()?;
                for entry in entries.chunks_exact(8) {
                    let entry = u64::from_le_bytes(entry.try_into().unwrap());
                    if entry >> 63 == 1 {
                        present += 1;
                        frames.insert(entry & ((1 << 55) - 1));
                    }
                }
            }
        }
    }
    // Without the capability every frame number reads as 0.
    (present > 0 && !(frames.len() == 1 && frames.contains(&0)))
        .then(|| frames.len() as f64 * PAGE as f64 / (1 << 20) as f64)
}

/// For a Python and a JavaScript task: the cached start-up of `wasmpool run` (a process that
/// loads the module, starts a worker and prints the first result), the same inside this
/// process, a fresh instance and the call inside a worker's runner, a map on reused instances,
/// and what four workers holding the module take in memory against one.
fn authored_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    let Some(binary) = cli_binary() else {
        eprintln!(
            "no target/release/wasmpool: build it (cargo build --release) for the Python and JavaScript rows"
        );
        return rows;
    };
    // A cache of their own, here and for the command line: each compiles once, not once a run.
    let cache = binary
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("bench-components/cache");
    wasmpool::set_cache_dir(Some(cache.clone()));
    let row = |name: String, ours: f64, unit: &'static str, target: &'static str| Row {
        name: name.leak(),
        ours,
        unit,
        peer: None,
        peer_name: "",
        higher_is_better: unit == "items/s",
        target,
    };
    for (lang, tool) in [("python", "componentize-py"), ("js", "componentize-js")] {
        let Some(component) = authored_component(&binary, lang, tool) else {
            continue;
        };
        let size = std::fs::metadata(&component).map_or(0, |m| m.len());
        let name = |what: &str| match what.strip_prefix("  ") {
            Some(what) => format!("  {lang}: {what}"),
            None => format!("{lang} task ({} MB), {what}", size / 1_000_000),
        };
        // The first run compiles (once per machine): not counted.
        let run = || {
            let mut command = std::process::Command::new(&binary);
            command.arg("run").arg(&component).args(["greet", "bench"]);
            command.env("WASMPOOL_CACHE_DIR", &cache);
            command
        };
        let null = std::path::Path::new("/dev/null");
        run_timed(&mut run(), null);
        let (wall, _) = median_timed(runs_for(Duration::from_millis(50)), run, null);
        rows.push(row(
            name("cached `wasmpool run`"),
            wall.as_secs_f64() * 1e3,
            "ms",
            "<= 50 ms",
        ));

        let module = Module::from_file(&component).unwrap();
        let greet = module.task("greet").unwrap();
        let t = median(runs_for(Duration::from_millis(50)), || {
            let module = Module::from_file(&component).unwrap();
            let greet = module.task("greet").unwrap();
            let pool = Pool::builder()
                .workers(1)
                .on_output(|_| {})
                .build()
                .unwrap();
            let _: String = pool.apply(&greet, ("bench",)).unwrap();
        });
        rows.push(row(
            name("  load, pool, first call, in-process"),
            t.as_secs_f64() * 1e3,
            "ms",
            "",
        ));

        let args = [wasmpool::Value::String("bench".into())];
        let per_call = wasmpool::benching::instantiate_and_call(&greet, &args, 2_000);
        rows.push(row(
            name("  fresh instance + call, runner"),
            per_call.as_secs_f64() * 1e6,
            "us",
            "",
        ));

        let p = pool();
        let reused = greet.clone().with_instance_reuse();
        let items = 20_000;
        let names: Vec<String> = (0..items).map(|i| format!("n{i}")).collect();
        let _: Vec<String> = p.map(&reused, &names[..1000]).unwrap();
        let t = median(RUNS, || {
            let r: Vec<String> = p.map(&reused, &names).unwrap();
            assert_eq!(r.len(), items);
        });
        rows.push(row(
            name("  map(greet, 20k), reused instance"),
            items as f64 / t.as_secs_f64(),
            "items/s",
            "",
        ));
        drop(p);

        // Memory: the module held by one worker, then by four (every worker ran some items):
        // their physical pages, each counted once, or else the sum of their PSS.
        let mut resident = Vec::new();
        let mut pss = Vec::new();
        for workers in [1, 4] {
            let p = Pool::builder()
                .workers(workers)
                .chunksize(1)
                .on_output(|_| {})
                .build()
                .unwrap();
            let slow: Vec<&String> = names.iter().take(400).collect();
            let _: Vec<String> = p.map(&greet, slow).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            let pids = p.worker_pids();
            resident.push(resident_mib(&pids));
            pss.push(pids.iter().map(|&pid| pss_kib(pid)).sum::<u64>() as f64 / 1024.0);
            if pids.len() != workers {
                eprintln!("{lang}: {} of {workers} workers started", pids.len());
            }
        }
        if let [Some(one), Some(four)] = resident[..] {
            rows.push(row(
                name("  resident memory of 1 worker holding it"),
                one,
                "MiB",
                "",
            ));
            rows.push(row(
                name("  of 4 workers, each page once, against 1"),
                four / one,
                "x",
                "<= 1.5x",
            ));
            rows.push(row(
                name("  each worker more adds"),
                (four - one) / 3.0,
                "MiB",
                "",
            ));
        } else {
            eprintln!(
                "{lang}: page frames unreadable (not root): memory as PSS, which charges pages \
                 shared with this process partly to it"
            );
        }
        rows.push(row(name("  PSS of 1 worker holding it"), pss[0], "MiB", ""));
        rows.push(row(
            name("  PSS of 4 workers, against 1"),
            pss[1] / pss[0],
            "x",
            "",
        ));
    }
    rows.extend(small_code_rows());
    wasmpool::set_cache_dir(None);
    rows
}

/// The cached start-up of a small module (a pool of one worker, its first call) with its code
/// down the pipe (as a worker behind a launcher gets it) and as a descriptor (the default),
/// run in turns: what `WorkerCommand::share_code_above`'s default is set by.
fn small_code_rows() -> Vec<Row> {
    let square = Module::from_bytes(SQUARE.wasm)
        .unwrap()
        .task("square")
        .unwrap();
    let ways = [
        ("cached start-up, small module, code by pipe", usize::MAX),
        ("  the same, code as a descriptor", 0),
    ];
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..41 {
        for (i, (_, above)) in ways.iter().enumerate() {
            let command = wasmpool::WorkerCommand::current_exe()
                .unwrap()
                .share_code_above(*above);
            let t = Instant::now();
            let pool = Pool::builder()
                .workers(1)
                .worker_command(command)
                .on_output(|_| {})
                .build()
                .unwrap();
            assert_eq!(pool.apply::<_, i64>(&square, (7,)).unwrap(), 49);
            times[i].push(t.elapsed());
        }
    }
    ways.iter()
        .zip(&mut times)
        .map(|((name, _), times)| {
            times.sort();
            Row {
                name,
                ours: times[times.len() / 2].as_secs_f64() * 1e3,
                unit: "ms",
                peer: None,
                peer_name: "",
                higher_is_better: false,
                target: "",
            }
        })
        .collect()
}

/// `wasmpool map` over a million lines of `seq`, against Python's `Pool.map` with JSON in and
/// out on the same lines (`benches/json_map.py`), and the CPU it spends per item (its workers
/// included) against the library's `map` of the same items.
fn command_line_rows(square: &wasmpool::Task, python: bool) -> Vec<Row> {
    const LINES: i64 = 1_000_000;
    let Some(binary) = cli_binary() else {
        eprintln!("no target/release/wasmpool: build it (cargo build --release) for the CLI rows");
        return Vec::new();
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("lines");
    let text: String = (1..=LINES).map(|n| format!("{n}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let per_item = |d: Duration| d.as_secs_f64() * 1e6 / LINES as f64;
    let cli = |reuse: bool| {
        let binary = binary.clone();
        move || {
            let mut command = std::process::Command::new(&binary);
            command.args(["map", "builtin:square", "square", "-j", "2", "-q"]);
            if reuse {
                command.arg("--reuse-instance");
            }
            command
        }
    };
    let (reuse_wall, reuse_cpu) = median_timed(RUNS, cli(true), &input);
    let (fresh_wall, _) = median_timed(3, cli(false), &input);
    let batch = {
        let binary = binary.clone();
        move || {
            let mut command = std::process::Command::new(&binary);
            command.args([
                "map",
                "builtin:square",
                "square-many",
                "--batch",
                "-j",
                "2",
                "-q",
            ]);
            command
        }
    };
    let (batch_wall, batch_cpu) = median_timed(RUNS, batch, &input);
    let py_wall = python.then(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/json_map.py");
        let python = || {
            let mut command = std::process::Command::new("python3");
            command.args([script, "2"]);
            command
        };
        median_timed(3, python, &input).0
    });
    let py_rate = py_wall.map(|t| LINES as f64 / t.as_secs_f64());

    // The library's map of the same items, its pool's start and end included, as the CLI's.
    let mut library_cpu = Vec::new();
    for _ in 0..RUNS {
        let before = host_cpu() + children_cpu();
        let p = pool();
        let task = square.clone().with_instance_reuse();
        let r: Vec<i64> = p.map(&task, 1..=LINES).unwrap();
        assert_eq!(r.len(), LINES as usize);
        drop(p);
        library_cpu.push(host_cpu() + children_cpu() - before);
    }
    library_cpu.sort();
    let library = per_item(library_cpu[RUNS / 2]);
    let cli_cpu = per_item(reuse_cpu);
    vec![
        Row {
            name: "wasmpool map, 1M JSON lines, --reuse-instance",
            ours: LINES as f64 / reuse_wall.as_secs_f64(),
            unit: "items/s",
            peer: py_rate,
            peer_name: "Python",
            higher_is_better: true,
            target: "> 1x",
        },
        Row {
            name: "wasmpool map --batch (square-many), 1M JSON lines",
            ours: LINES as f64 / batch_wall.as_secs_f64(),
            unit: "items/s",
            peer: py_rate,
            peer_name: "Python",
            higher_is_better: true,
            target: ">= 1.5x",
        },
        Row {
            name: "wasmpool map, 1M JSON lines, fresh instances",
            ours: LINES as f64 / fresh_wall.as_secs_f64(),
            unit: "items/s",
            peer: py_rate,
            peer_name: "Python",
            higher_is_better: true,
            target: "",
        },
        Row {
            name: "CPU per item, wasmpool map --reuse-instance",
            ours: cli_cpu,
            unit: "us",
            peer: Some(library),
            peer_name: "library",
            higher_is_better: false,
            target: "",
        },
        Row {
            name: "  the CLI's own, over the library's map",
            ours: cli_cpu - library,
            unit: "us",
            peer: None,
            peer_name: "",
            higher_is_better: false,
            target: "<= 0.2 us",
        },
        Row {
            name: "CPU per item, wasmpool map --batch",
            ours: per_item(batch_cpu),
            unit: "us",
            peer: None,
            peer_name: "",
            higher_is_better: false,
            target: "",
        },
    ]
}

#[path = "../tests/all/cluster.rs"]
mod cluster;

/// Remote workers through ssh on 127.0.0.1 (an sshd of the bench's own, as the tests start
/// it), next to local ones: the apply round trip, and maps of small tasks. The remote worker
/// is this bench binary (`WASMPOOL_WORKER=remote`: the library's constructor makes it one).
fn ssh_rows(square: &wasmpool::Task) -> Vec<Row> {
    let Some(sshd) = cluster::Sshd::start("bench --ssh") else {
        return Vec::new();
    };
    let launcher =
        wasmpool::Launcher::ssh_with(["-F".to_string(), sshd.config().display().to_string()])
            .remote_bin(format!(
                "WASMPOOL_WORKER=remote {}",
                std::env::current_exe().unwrap().display()
            ));
    let quiet = |b: wasmpool::PoolBuilder| b.on_output(|_| {}).build().unwrap();
    let local1 = quiet(Pool::builder().local(1));
    let ssh1 = quiet(Pool::builder().remote(launcher.clone(), "127.0.0.1", 1));
    let round_trip = |pool: &Pool| {
        let _: i64 = pool.apply(square, (3,)).unwrap();
        let mut times: Vec<Duration> = (0..2001)
            .map(|i| {
                let t = Instant::now();
                let _: i64 = pool.apply(square, (i as i64,)).unwrap();
                t.elapsed()
            })
            .collect();
        times.sort();
        times[times.len() / 2]
    };
    let local_rt = round_trip(&local1);
    let ssh_rt = round_trip(&ssh1);
    // Shared state from a task: mapped memory in a local worker, one request over the link
    // per operation in a remote one (a locked increment is four: acquire, get, set, release).
    let shared_op = |pool: &Pool, func: &str, per_call: u32| {
        let counter = pool.value(&format!("{func} counter"), 0).unwrap();
        let lock = pool.lock(&format!("{func} lock")).unwrap();
        let grants = wasmpool::Grants::new()
            .shared_as("counter", &counter)
            .shared_as("lock", &lock);
        let task = Module::from_bytes(wasmpool_artifacts::SHARED.wasm)
            .unwrap()
            .task(func)
            .unwrap()
            .with_grants(grants)
            .unwrap();
        let call = || {
            let _: i64 = if func == "locked-increment" {
                pool.apply(&task, ("lock", "counter", per_call)).unwrap()
            } else {
                pool.apply(&task, ("counter", per_call)).unwrap()
            };
        };
        call();
        median(RUNS, call).as_secs_f64() * 1e6 / f64::from(per_call)
    };
    let local_locked = shared_op(&local1, "locked-increment", 200_000);
    let ssh_locked = shared_op(&ssh1, "locked-increment", 2_000);
    let local_add = shared_op(&local1, "atomic-add", 200_000);
    let ssh_add = shared_op(&ssh1, "atomic-add", 5_000);
    drop((local1, ssh1));
    let local2 = quiet(Pool::builder().local(WORKERS));
    let ssh2 = quiet(Pool::builder().remote(launcher.clone(), "127.0.0.1", WORKERS));
    let mixed = quiet(Pool::builder().local(1).remote(launcher, "127.0.0.1", 1));
    let rate = |pool: &Pool, n: i64, chunk: Option<usize>| {
        let _: Vec<i64> = pool.map(square, 0..1000_i64).unwrap();
        let time = median(RUNS, || {
            let got: Vec<i64> = match chunk {
                Some(c) => pool.map_chunked(square, 0..n, c).unwrap(),
                None => pool.map(square, 0..n).unwrap(),
            };
            assert_eq!(got.len() as i64, n);
        });
        n as f64 / time.as_secs_f64() / 1e3
    };
    let local_map = rate(&local2, 200_000, None);
    let ssh_map = rate(&ssh2, 200_000, None);
    let mixed_map = rate(&mixed, 200_000, None);
    let local_small = rate(&local2, 20_000, Some(1));
    let ssh_small = rate(&ssh2, 20_000, Some(1));
    let row = |name, ours, unit, peer, higher_is_better| Row {
        name,
        ours,
        unit,
        peer: Some(peer),
        peer_name: "local",
        higher_is_better,
        target: "",
    };
    vec![
        row(
            "apply round trip, 1 ssh worker (loopback)",
            ssh_rt.as_secs_f64() * 1e6,
            "us",
            local_rt.as_secs_f64() * 1e6,
            false,
        ),
        row(
            "locked increment from a task, 1 ssh worker",
            ssh_locked,
            "us",
            local_locked,
            false,
        ),
        row(
            "atomic add from a task, 1 ssh worker",
            ssh_add,
            "us",
            local_add,
            false,
        ),
        row(
            "map(square, 200k), 2 ssh workers",
            ssh_map,
            "k/s",
            local_map,
            true,
        ),
        row(
            "map(square, 200k), 1 local + 1 ssh",
            mixed_map,
            "k/s",
            local_map,
            true,
        ),
        row(
            "map(square, 20k, chunksize=1), 2 ssh",
            ssh_small,
            "k/s",
            local_small,
            true,
        ),
    ]
}

fn main() {
    if std::env::args().any(|a| a == "--shared-state-only") {
        // Only the rows of shared state between tasks, against Python's.
        print_rows(shared_state_rows());
        return;
    }
    if std::env::args().any(|a| a == "--ssh") {
        // Only the rows of remote workers, through an sshd on 127.0.0.1.
        let square = Module::from_bytes(SQUARE.wasm)
            .unwrap()
            .task("square")
            .unwrap();
        print_rows(ssh_rows(&square));
        return;
    }
    if std::env::args().any(|a| a == "--shared-code-only") {
        // Only the rows of large components and of how code reaches the workers.
        print_rows(authored_rows());
        return;
    }
    let square_module = Module::from_bytes(SQUARE.wasm).unwrap();
    let square = square_module.task("square").unwrap();
    // The same function in a guest without std, which imports nothing (see `guest-tasks/pure`).
    let pure_square = Module::from_bytes(PURE.wasm)
        .unwrap()
        .task("square")
        .unwrap();
    // The same function again, in a core module (`guest-tasks/core/arith.wat`).
    let core_square = Module::from_bytes(ARITH.wasm)
        .unwrap()
        .task("square")
        .unwrap();
    let count = Module::from_bytes(PRIMES.wasm)
        .unwrap()
        .task("count-primes-range")
        .unwrap();
    let tiny_only = std::env::args().any(|a| a == "--tiny-only");
    let py = python_baseline(if tiny_only { &["tiny_map"] } else { &[] });
    let py_get = |path: &[&str]| -> Option<f64> {
        let mut v = py.as_ref()?;
        for key in path {
            v = v.get(key)?;
        }
        v.as_f64()
    };
    let mut rows = Vec::new();

    // 1. and 1b. tiny items.
    let p = pool();
    let (tiny, host_cpu_rows) = tiny_rows(&p, &square_module, &pure_square, &core_square, &py_get);
    rows.extend(tiny);
    if tiny_only {
        // Only the tiny-item rows, against Python's tiny maps: for iterating on them.
        for (name, cpu) in host_cpu_names().into_iter().zip(host_cpu_rows) {
            rows.push(host_cpu_row(name, cpu));
        }
        print_rows(rows);
        return;
    }

    // 2. map with chunksize 1.
    let n1 = 20_000i64;
    let t = median(RUNS, || {
        let r: Vec<i64> = p.map_chunked(&square, 0..n1, 1).unwrap();
        assert_eq!(r.len(), n1 as usize);
    });
    rows.push(Row {
        name: "map(square, 20k, chunksize=1)",
        ours: n1 as f64 / t.as_secs_f64(),
        unit: "items/s",
        peer: py_get(&["tiny_map", "chunksize_1_n20000", "items_per_s"]),
        peer_name: "Python",
        higher_is_better: true,
        target: ">= 3x",
    });

    // 3. apply_async round trip.
    let calls = 5000;
    let mut lat: Vec<Duration> = (0..calls)
        .map(|i| {
            let t = Instant::now();
            let v: i64 = p.apply_async(&square, (i as i64,)).result().unwrap();
            assert_eq!(v, (i * i) as i64);
            t.elapsed()
        })
        .collect();
    lat.sort();
    rows.push(Row {
        name: "apply_async(square).result() round trip, median",
        ours: lat[calls / 2].as_secs_f64() * 1e6,
        unit: "us",
        peer: py_get(&["apply_async_roundtrip", "us_per_roundtrip"]),
        peer_name: "Python",
        higher_is_better: false,
        target: "<= 30 us",
    });
    for (name, at) in [
        ("  the same, 10th percentile", calls / 10),
        ("  the same, 90th percentile", calls * 9 / 10),
    ] {
        rows.push(Row {
            name,
            ours: lat[at].as_secs_f64() * 1e6,
            unit: "us",
            peer: None,
            peer_name: "",
            higher_is_better: false,
            target: "",
        });
    }

    // 4. submit + as_completed, 20k tasks.
    let tasks = 20_000i64;
    let t = median(RUNS, || {
        let futures: Vec<TaskFuture<i64>> = (0..tasks).map(|i| p.submit(&square, (i,))).collect();
        let sum: i64 = as_completed(&futures).map(|f| f.result().unwrap()).sum();
        assert_eq!(sum, 2_666_466_670_000);
    });
    rows.push(Row {
        name: "submit + as_completed, 20k tasks",
        ours: tasks as f64 / t.as_secs_f64(),
        unit: "tasks/s",
        peer: py_get(&["futures_submit", "tasks_per_s"]),
        peer_name: "Python",
        higher_is_better: true,
        target: ">= 100k/s",
    });

    // 5. CPU-bound: prime count, against native rayon on the same cores, and 1 vs 2 workers.
    for (limit, expected) in [(200_000u32, 17_984u32), (2_000_000, 148_933)] {
        let rs = ranges(limit);
        let one = Pool::builder()
            .workers(1)
            .chunksize(1)
            .on_output(|_| {})
            .build()
            .unwrap();
        let _: Vec<u32> = one.starmap(&count, &rs).unwrap();
        // About 5 ms (200k) and 100 ms (2M) on two workers.
        let runs = runs_for(Duration::from_millis(if limit == 200_000 {
            5
        } else {
            100
        }));
        let wasm_one = median(runs, || {
            let c: Vec<u32> = one.starmap(&count, &rs).unwrap();
            assert_eq!(c.iter().sum::<u32>(), expected);
        });
        drop(one);
        let rayon_pool = rayon::ThreadPoolBuilder::new()
            .num_threads(WORKERS)
            .build()
            .unwrap();
        let native = median(runs, || {
            let c: u32 =
                rayon_pool.install(|| rs.par_iter().map(|&(a, b)| count_primes_range(a, b)).sum());
            assert_eq!(c, expected);
        });
        let two = Pool::builder()
            .workers(WORKERS)
            .chunksize(1)
            .on_output(|_| {})
            .build()
            .unwrap();
        let _: Vec<u32> = two.starmap(&count, &rs).unwrap();
        let wasm_two = median(runs, || {
            let c: Vec<u32> = two.starmap(&count, &rs).unwrap();
            assert_eq!(c.iter().sum::<u32>(), expected);
        });
        drop(two);
        let label: &'static str = if limit == 200_000 {
            "primes < 200k, 64 ranges, 2 workers"
        } else {
            "primes < 2M, 64 ranges, 2 workers"
        };
        rows.push(Row {
            name: label,
            ours: wasm_two.as_secs_f64() * 1e3,
            unit: "ms",
            peer: Some(native.as_secs_f64() * 1e3),
            peer_name: "rayon",
            higher_is_better: false,
            target: "within 1.3x of rayon",
        });
        let py_key = if limit == 200_000 {
            "cpu_bound"
        } else {
            "cpu_bound_2m"
        };
        rows.push(Row {
            name: "  the same, against Python's Pool.map",
            ours: wasm_two.as_secs_f64() * 1e3,
            unit: "ms",
            peer: py_get(&[py_key, "pool2_map_default", "median_s"]).map(|s| s * 1e3),
            peer_name: "Python",
            higher_is_better: false,
            target: "",
        });
        rows.push(Row {
            name: if limit == 200_000 {
                "  speed-up 1 -> 2 workers (200k)"
            } else {
                "  speed-up 1 -> 2 workers (2M)"
            },
            ours: wasm_one.as_secs_f64() / wasm_two.as_secs_f64(),
            unit: "x",
            peer: None,
            peer_name: "",
            higher_is_better: true,
            target: ">= 1.8x",
        });
    }

    // 6. start-up to first result: on a first ever run (an empty compile cache: the host
    // compiles the module), then with the compiled module cached on disk. Loading the module
    // is part of both.
    let cache = tempfile::tempdir().unwrap();
    // Timed up to the first result; the pool's shutdown is timed apart (Python's figure
    // includes its close and join).
    let mut shutdowns = Vec::new();
    let mut start_up = |fresh_cache: bool| {
        let runs = 9;
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                if fresh_cache {
                    let _ = std::fs::remove_dir_all(cache.path());
                }
                wasmpool::set_cache_dir(Some(cache.path().to_path_buf()));
                let t = Instant::now();
                let task = Module::from_bytes(SQUARE.wasm)
                    .unwrap()
                    .task("square")
                    .unwrap();
                let fresh = Pool::builder()
                    .workers(WORKERS)
                    .on_output(|_| {})
                    .build()
                    .unwrap();
                let v: i64 = fresh.apply(&task, (3,)).unwrap();
                assert_eq!(v, 9);
                let first = t.elapsed();
                let t = Instant::now();
                fresh.join();
                shutdowns.push(t.elapsed());
                first
            })
            .collect();
        times.sort();
        times[runs / 2]
    };
    for (name, fresh_cache, target) in [
        ("start-up to first result, first ever run", true, "<= 60 ms"),
        (
            "start-up to first result, compiled code cached",
            false,
            "<= 15 ms",
        ),
    ] {
        let t = start_up(fresh_cache);
        rows.push(Row {
            name,
            ours: t.as_secs_f64() * 1e3,
            unit: "ms",
            peer: py_get(&["startup", "pool2_fork", "median_ms"]),
            peer_name: "Python",
            higher_is_better: false,
            target,
        });
    }
    wasmpool::set_cache_dir(None);
    shutdowns.sort();
    rows.push(Row {
        name: "  then the pool's close and join",
        ours: shutdowns[shutdowns.len() / 2].as_secs_f64() * 1e3,
        unit: "ms",
        peer: None,
        peer_name: "",
        higher_is_better: false,
        target: "",
    });

    // 7. idle worker memory.
    std::thread::sleep(Duration::from_millis(200));
    let rss: Vec<u64> = p.worker_pids().iter().map(|&pid| rss_kib(pid)).collect();
    rows.push(Row {
        name: "idle worker resident memory (max)",
        ours: *rss.iter().max().unwrap_or(&0) as f64 / 1024.0,
        unit: "MiB",
        peer: None,
        peer_name: "",
        higher_is_better: false,
        target: "<= 25 MiB",
    });

    // 8. where the time goes: a fresh instance and the call, inside a worker (no pipe), and the
    // host's CPU time per item of the maps above.
    for (name, task) in [
        ("fresh instance + call, in a worker's runner", &square),
        ("  the same, guest without WASI", &pure_square),
    ] {
        let per_call =
            wasmpool::benching::instantiate_and_call(task, &[wasmpool::Value::S64(7)], 20_000);
        rows.push(Row {
            name,
            ours: per_call.as_secs_f64() * 1e6,
            unit: "us",
            peer: None,
            peer_name: "",
            higher_is_better: false,
            target: "",
        });
    }
    // A call on a reused instance, inside a worker's runner: the component, and the core
    // module through raw values and, as before them, through `Func::call`.
    for (name, task, raw) in [
        (
            "a call on a reused instance, in a worker's runner",
            &square,
            true,
        ),
        ("  the same, core module, raw values", &core_square, true),
        ("  the same, core module, Func::call", &core_square, false),
    ] {
        let per_call =
            wasmpool::benching::reused_call(task, &[wasmpool::Value::S64(7)], 1_000_000, raw);
        rows.push(Row {
            name,
            ours: per_call.as_secs_f64() * 1e9,
            unit: "ns",
            peer: None,
            peer_name: "",
            higher_is_better: false,
            target: "",
        });
    }
    for (name, cpu) in host_cpu_names().into_iter().zip(host_cpu_rows) {
        rows.push(host_cpu_row(name, cpu));
    }

    // 8b. tasks written in Python and JavaScript (componentize-py, componentize-js: components
    // of 12 to 18 MB), when their tools are there; and small code down the pipe against the
    // same code as a descriptor.
    rows.extend(authored_rows());

    // 9. the command line, with JSON in and out, against Python's Pool.map with JSON in and out
    // on the same lines, and its CPU per item against the library's map of the same items.
    rows.extend(command_line_rows(&square, py.is_some()));
    // 10. remote workers through ssh on 127.0.0.1, next to local ones (when sshd is here).
    rows.extend(ssh_rows(&square));
    // 11. shared state between tasks.
    rows.extend(shared_state_rows());
    print_rows(rows);
}

/// The tiny-item rows (1 and 1b of the full run), on `p`: maps of 200k `square`s four ways,
/// and a million through the batch export `square-many` against the same million one call
/// each; with the host's CPU per item of the four maps. `py_get` reads Python's figures.
fn tiny_rows(
    p: &Pool,
    square_module: &Module,
    pure_square: &wasmpool::Task,
    core_square: &wasmpool::Task,
    py_get: &dyn Fn(&[&str]) -> Option<f64>,
) -> (Vec<Row>, Vec<f64>) {
    let square = square_module.task("square").unwrap();
    // 1. tiny map, default chunks: a fresh instance per item (the default), then with instance
    // reuse within each chunk, then fresh instances of a guest that imports nothing.
    let _: Vec<i64> = p.map(&square, 0..10_000i64).unwrap();
    let n = 200_000i64;
    let mut rows = Vec::new();
    let mut host_cpu_rows = Vec::new();
    for (label, task, target) in [
        (
            "map(square, 200k), fresh instance per item",
            square.clone(),
            ">= 150k/s",
        ),
        (
            "map(square, 200k), instance reused per chunk",
            square.clone().with_instance_reuse(),
            ">= 1.0x",
        ),
        (
            "map(square, 200k), fresh, guest without WASI",
            pure_square.clone(),
            ">= 150k/s",
        ),
        (
            "map(square, 200k), instance reused, core module",
            core_square.clone().with_instance_reuse(),
            ">= 1.0x",
        ),
    ] {
        let _: Vec<i64> = p.map(&task, 0..10_000i64).unwrap();
        let (t, cpu) = median_and_cpu(|| {
            let r: Vec<i64> = p.map(&task, 0..n).unwrap();
            assert_eq!(r[(n - 1) as usize], (n - 1) * (n - 1));
        });
        rows.push(Row {
            name: label,
            ours: n as f64 / t.as_secs_f64(),
            unit: "items/s",
            peer: py_get(&["tiny_map", "default", "items_per_s"]),
            peer_name: "Python",
            higher_is_better: true,
            target,
        });
        host_cpu_rows.push(cpu.as_secs_f64() * 1e9 / n as f64);
    }

    // 1b. a million tiny items through the batch export `square-many`: each chunk one call
    // with the chunk's items as its list, against Python's Pool.map of a million, and the map
    // of one call per item (instance reused) of the same million.
    let square_many = square_module.task("square-many").unwrap();
    let million = 1_000_000i64;
    let reused = square.clone().with_instance_reuse();
    let _: Vec<i64> = p.map_batched(&square_many, 0..10_000i64).unwrap();
    let mut batch_cpu = Duration::ZERO;
    for (label, batched, target) in [
        ("map_batched(square-many, 1M)", true, ">= 2x"),
        ("  map(square, 1M), instance reused", false, ""),
    ] {
        let (t, cpu) = median_and_cpu(|| {
            let r: Vec<i64> = if batched {
                p.map_batched(&square_many, 0..million).unwrap()
            } else {
                p.map(&reused, 0..million).unwrap()
            };
            assert_eq!(r[(million - 1) as usize], (million - 1) * (million - 1));
        });
        if batched {
            batch_cpu = cpu;
        }
        rows.push(Row {
            name: label,
            ours: million as f64 / t.as_secs_f64(),
            unit: "items/s",
            peer: py_get(&["tiny_map", "default_n1000000", "items_per_s"]),
            peer_name: "Python",
            higher_is_better: true,
            target,
        });
    }
    rows.push(Row {
        name: "  host CPU per item, map_batched",
        ours: batch_cpu.as_secs_f64() * 1e9 / million as f64,
        unit: "ns",
        peer: None,
        peer_name: "",
        higher_is_better: false,
        target: "",
    });

    (rows, host_cpu_rows)
}

/// The names of the host-CPU rows of [`tiny_rows`]'s four maps, in their order.
fn host_cpu_names() -> [&'static str; 4] {
    [
        "host CPU per item, map (fresh instances)",
        "host CPU per item, map (instance reuse)",
        "host CPU per item, map (fresh, without WASI)",
        "host CPU per item, map (reused, core module)",
    ]
}

/// A row of the host's CPU per item, in nanoseconds (a tiny item's is tens of them).
fn host_cpu_row(name: &'static str, cpu: f64) -> Row {
    Row {
        name,
        ours: cpu,
        unit: "ns",
        peer: None,
        peer_name: "",
        higher_is_better: false,
        target: "",
    }
}

/// Shared state between tasks (`wasmpool:shared`, `wasi:keyvalue`), per operation, against
/// Python's `multiprocessing` equivalents in the same run (`benches/python/shared_baseline.py`):
/// each figure is the time of tasks that loop over one operation, divided by the operations
/// (two tasks in two workers for the lock; a producer and a consumer, a pinger and an echoer,
/// each in its own worker).
fn shared_state_rows() -> Vec<Row> {
    use wasmpool::Grants;
    let py = if std::env::args().any(|a| a == "--no-python") {
        None
    } else {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/python/shared_baseline.py"
        );
        eprintln!("running the Python shared-state peer ({script}, about 25 s)...");
        std::process::Command::new("python3")
            .args([script, "--json"])
            .output()
            .ok()
            .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
    };
    let py_us = |key: &str| py.as_ref()?.get(key)?.get("median_us")?.as_f64();
    let module = Module::from_bytes(wasmpool_artifacts::SHARED.wasm).unwrap();
    let p = pool();
    let counter = p.value("counter", 0).unwrap();
    let lock = p.lock("lock").unwrap();
    let jobs = p.queue("jobs").unwrap();
    let (a, b) = p.pipe("p").unwrap();
    let d = p.dict("d").unwrap();
    let grants = Grants::new()
        .shared(&counter)
        .shared(&lock)
        .shared(&jobs)
        .shared(&a)
        .shared(&b)
        .shared(&d);
    let task = |name: &str| {
        module
            .task(name)
            .unwrap()
            .with_grants(grants.clone())
            .unwrap()
    };
    let per_op = |ops: u32, f: &mut dyn FnMut()| {
        f();
        median(5, f).as_secs_f64() * 1e6 / f64::from(ops)
    };
    let mut rows = Vec::new();
    let mut row = |name: &'static str, ours: f64, key: &str, target: &'static str| {
        rows.push(Row {
            name,
            ours,
            unit: "us",
            peer: py_us(key),
            peer_name: "Python",
            higher_is_better: false,
            target,
        });
    };

    let n = 200_000u32;
    let locked = task("locked-increment");
    let us = per_op(2 * n, &mut || {
        let runs: Vec<_> = (0..2)
            .map(|_| p.submit::<_, i64>(&locked, ("lock", "counter", n)))
            .collect();
        for r in runs {
            r.result().unwrap();
        }
    });
    row(
        "shared: locked increment, 2 tasks",
        us,
        "locked_increment",
        ">= 3x",
    );
    let us = per_op(n, &mut || {
        p.apply::<_, i64>(&locked, ("lock", "counter", n)).unwrap();
    });
    row("  the same, one task (no contention)", us, "", "");

    let add = task("atomic-add");
    let us = per_op(n, &mut || {
        p.apply::<_, i64>(&add, ("counter", n)).unwrap();
    });
    row("shared: atomic add", us, "atomic_add", ">= 3x");

    let items = 50_000u32;
    let produce = task("produce");
    let consume = task("consume");
    let us = per_op(items, &mut || {
        let got = p.submit::<_, Vec<i64>>(&consume, ("jobs", items));
        p.apply::<_, ()>(&produce, ("jobs", 0i64, items)).unwrap();
        assert_eq!(got.result().unwrap().len(), items as usize);
    });
    row(
        "shared: queue, put in one worker, get in another",
        us,
        "queue",
        ">= 2x",
    );

    let trips = 20_000u32;
    let echo = task("pipe-echo");
    let ping = task("pipe-ping");
    let us = per_op(trips, &mut || {
        let echoing = p.submit::<_, ()>(&echo, ("p.b", trips));
        p.apply::<_, u32>(&ping, ("p.a", trips)).unwrap();
        echoing.result().unwrap();
    });
    row("shared: pipe round trip", us, "pipe_round_trip", ">= 2x");

    let sets = 20_000u32;
    let set_many = task("dict-set-many-times");
    let us = per_op(sets, &mut || {
        p.apply::<_, ()>(&set_many, ("d", sets)).unwrap();
    });
    row("shared: dict set", us, "dict_set", ">= 2x");
    rows
}

/// The table of `rows`, and what its ratios mean.
fn print_rows(rows: Vec<Row>) {
    println!(
        "\n{:<46} {:>14} {:<8} {:>14} {:>8}  target",
        "workload", "wasmpool", "unit", "peer", "ratio"
    );
    println!("{}", "-".repeat(110));
    for r in rows {
        let (peer, ratio) = match r.peer {
            Some(peer) => {
                let ratio = if r.higher_is_better {
                    r.ours / peer
                } else {
                    peer / r.ours
                };
                (format!("{peer:.1} {}", r.peer_name), format!("{ratio:.2}x"))
            }
            None => (String::from("-"), String::from("-")),
        };
        // A ratio of ours (a target of 1.5x) wants its second decimal.
        let ours = match r.unit {
            "x" => format!("{:.2}", r.ours),
            _ => format!("{:.1}", r.ours),
        };
        println!(
            "{:<46} {:>14} {:<8} {:>14} {:>8}  {}",
            r.name, ours, r.unit, peer, ratio, r.target
        );
    }
    println!(
        "\nratio: how many times better wasmpool is than the peer (>1 is better), on this machine, in this run."
    );
}
