//! What a command that runs many items (`map`, `exec`) says when it ends: how many
//! items, how many failed and of what kind (`3 failed: 2 trap, 1 timeout`), the first failures
//! with their input line, how long items took (p50, p90, p99, max) when their times are known,
//! the wall time and the workers; on stderr for people, and with `--summary-json FILE` as one
//! JSON object for programs. It also carries the command's [`Progress`] bar, so that the
//! command makes one call per outcome.
//!
//! Its memory does not grow with the input: the item times go into a histogram of fixed size
//! ([`Histogram`]), and only the first [`FIRST_ERRORS`] failures are kept.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmpool::TaskError;

use crate::progress::Progress;
use crate::terminal;

/// How many failures the summary names, the ones of the earliest input lines.
pub(crate) const FIRST_ERRORS: usize = 10;

/// How much of a failure's message the JSON summary keeps (a guest's `err` can be long).
const MESSAGE_CHARS: usize = 2000;

/// How much of the first failure's message the line on stderr quotes.
const LINE_CHARS: usize = 100;

/// The running summary of a command: fed one outcome at a time, ended with [`Summary::finish`].
#[derive(Debug)]
pub(crate) struct Summary {
    command: &'static str,
    started: Instant,
    progress: Progress,
    /// The `--summary-json` file, created when the command starts so that a path that cannot
    /// be written is refused before any work is done; written when the command finishes, or,
    /// if it stops on its way (its output's reader gone, an error), when the summary is dropped.
    json: Option<(PathBuf, File)>,
    workers: usize,
    ok: u64,
    failed: u64,
    cancelled: u64,
    kinds: BTreeMap<&'static str, u64>,
    times: Histogram,
    /// The failures of the earliest lines, by input index, at most [`FIRST_ERRORS`].
    first_errors: Vec<FirstError>,
}

#[derive(Debug)]
struct FirstError {
    index: usize,
    kind: &'static str,
    message: String,
}

impl Summary {
    /// A summary for `command` (`"map"`) on `workers` workers, starting its clock now, with its
    /// progress bar, and the file `--summary-json` names (created now: an error if it cannot
    /// be).
    pub(crate) fn start(
        command: &'static str,
        progress: Progress,
        json: Option<&Path>,
        workers: usize,
    ) -> anyhow::Result<Summary> {
        let json = match json {
            Some(path) => Some((
                path.to_path_buf(),
                File::create(path)
                    .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?,
            )),
            None => None,
        };
        Ok(Summary {
            command,
            started: Instant::now(),
            progress,
            json,
            workers,
            ok: 0,
            failed: 0,
            cancelled: 0,
            kinds: BTreeMap::new(),
            times: Histogram::new(),
            first_errors: Vec::new(),
        })
    }

    /// One item's outcome: `index` is its input line's, counting from 0; `elapsed` its time in
    /// its worker, when known. A `cancelled` item (after a signal) is counted apart: it did not
    /// fail, it did not run.
    pub(crate) fn item(
        &mut self,
        index: usize,
        result: &Result<serde_json::Value, TaskError>,
        elapsed: Option<Duration>,
    ) {
        match result {
            Ok(_) => self.succeeded(elapsed),
            Err(TaskError::Cancelled { .. } | TaskError::PoolClosed { .. }) => self.cancelled(),
            Err(e) => self.failed(index, e.kind(), &e.to_string(), elapsed),
        }
    }

    /// An item that succeeded, in `elapsed` when known.
    pub(crate) fn succeeded(&mut self, elapsed: Option<Duration>) {
        if let Some(elapsed) = elapsed {
            self.times.record(elapsed);
        }
        self.ok += 1;
        self.progress.item(true);
    }

    /// An item cancelled before it ran.
    pub(crate) fn cancelled(&mut self) {
        self.cancelled += 1;
    }

    /// An item that failed, of `kind` (a task error's kind, or the command's own: `exit` for
    /// a program that exited non-zero), with `message`.
    pub(crate) fn failed(
        &mut self,
        index: usize,
        kind: &'static str,
        message: &str,
        elapsed: Option<Duration>,
    ) {
        if let Some(elapsed) = elapsed {
            self.times.record(elapsed);
        }
        self.failed += 1;
        self.progress.item(false);
        *self.kinds.entry(kind).or_default() += 1;
        if self.first_errors.len() < FIRST_ERRORS
            || self
                .first_errors
                .last()
                .is_some_and(|last| index < last.index)
        {
            let at = self
                .first_errors
                .partition_point(|first| first.index < index);
            self.first_errors.insert(
                at,
                FirstError {
                    index,
                    kind,
                    message: cut(message, MESSAGE_CHARS),
                },
            );
            self.first_errors.truncate(FIRST_ERRORS);
        }
    }

    /// How many items succeeded, failed, and were cancelled so far.
    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        (self.ok, self.failed, self.cancelled)
    }

    /// The command ends, interrupted by `signal` if one came, else with every input line
    /// done: the bar is drawn a last time, the `--summary-json` file written, and, unless
    /// `quiet` or interrupted (the command says so itself), the summary printed on stderr.
    pub(crate) fn finish(mut self, signal: Option<i32>, quiet: bool) -> anyhow::Result<()> {
        let wall = self.started.elapsed();
        let progress = std::mem::replace(&mut self.progress, Progress::hidden());
        match signal {
            None => progress.finish(),
            Some(_) => progress.abandon(),
        }
        self.write_json(wall, signal, signal.is_none())?;
        if !quiet && signal.is_none() {
            for line in lines(&self, wall) {
                terminal::summary(self.command, format_args!("{line}"));
            }
        }
        Ok(())
    }

    /// Writes the `--summary-json` file, if there is one still to write.
    fn write_json(
        &mut self,
        wall: Duration,
        signal: Option<i32>,
        complete: bool,
    ) -> anyhow::Result<()> {
        if let Some((path, mut file)) = self.json.take() {
            let doc = json(self, wall, signal, complete);
            serde_json::to_writer_pretty(&mut file, &doc)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(file))
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

impl Drop for Summary {
    /// A command that stops on its way (its output's reader gone, an error) still leaves a
    /// summary file of what it did, marked incomplete.
    fn drop(&mut self) {
        let wall = self.started.elapsed();
        let _ = self.write_json(wall, None, false);
    }
}

/// The items that ran: those that finished, well or not.
fn done(s: &Summary) -> u64 {
    s.ok + s.failed
}

/// Items a second over the wall time.
fn per_second(s: &Summary, wall: Duration) -> f64 {
    done(s) as f64 / wall.as_secs_f64().max(1e-9)
}

/// The kinds of failure, the commonest first: `2 trap, 1 timeout`.
fn kinds(s: &Summary) -> String {
    let mut kinds: Vec<(&str, u64)> = s.kinds.iter().map(|(k, n)| (*k, *n)).collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    kinds
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The summary for people, a line each: the counts and speed; the failures by kind, with
/// the first one; the item times.
fn lines(s: &Summary, wall: Duration) -> Vec<String> {
    let mut lines = vec![format!(
        "{} item{}, {} ok, {} failed, in {:.3} s ({:.0} items/s) on {} workers",
        done(s),
        if done(s) == 1 { "" } else { "s" },
        s.ok,
        s.failed,
        wall.as_secs_f64(),
        per_second(s, wall),
        s.workers,
    )];
    if let Some(first) = s.first_errors.first() {
        let message = first.message.lines().next().unwrap_or_default();
        lines.push(format!(
            "{} failed: {}; the first, line {}: {}: {}",
            s.failed,
            kinds(s),
            first.index + 1,
            first.kind,
            terminal::printable(&cut(message, LINE_CHARS)),
        ));
    }
    if let Some(p) = s.times.percentiles() {
        lines.push(format!(
            "item time p50 {}, p90 {}, p99 {}, max {}",
            human(p.p50),
            human(p.p90),
            human(p.p99),
            human(p.max),
        ));
    }
    lines
}

/// The summary for programs.
/// `complete`: every input line was read and has its outcome.
fn json(s: &Summary, wall: Duration, signal: Option<i32>, complete: bool) -> serde_json::Value {
    let times = s.times.percentiles().map(|p| {
        serde_json::json!({
            "p50": p.p50.as_secs_f64(),
            "p90": p.p90.as_secs_f64(),
            "p99": p.p99.as_secs_f64(),
            "max": p.max.as_secs_f64(),
        })
    });
    let first_errors: Vec<serde_json::Value> = s
        .first_errors
        .iter()
        .map(|e| serde_json::json!({"line": e.index + 1, "kind": e.kind, "message": e.message}))
        .collect();
    serde_json::json!({
        "command": s.command,
        "items": done(s),
        "ok": s.ok,
        "failed": s.failed,
        "cancelled": s.cancelled,
        "failures": s.kinds,
        "item_time_seconds": times,
        "wall_seconds": wall.as_secs_f64(),
        "items_per_second": per_second(s, wall),
        "workers": s.workers,
        "complete": complete,
        "interrupted": signal.map(signal_name),
        "first_errors": first_errors,
    })
}

/// A signal's name, for the summary.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        _ => "SIGINT",
    }
}

/// At most `chars` characters of `text`, with `...` when it was cut.
fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// A duration for people: `850 µs`, `12.3 ms`, `4.56 s`.
fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1e-3 {
        format!("{:.0} µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{secs:.2} s")
    }
}

/// The percentiles the summary gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Percentiles {
    pub(crate) p50: Duration,
    pub(crate) p90: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

/// Durations counted in buckets whose width grows with their value (16 to each power of two of
/// nanoseconds, exact below 32 ns): a fixed 7.8 KiB whatever the count, and a percentile off
/// by at most 1/32 of its value (it is the middle of its bucket, kept within the smallest and
/// largest duration seen, which are exact and are the first and last ranks).
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    min: u64,
    max: u64,
}

/// Sub-buckets to each power of two, as a number of bits.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for any `u64` of nanoseconds.
const BUCKETS: usize = ((64 - SUB_BITS as usize) << SUB_BITS) + SUB as usize;

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    pub(crate) fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket(ns)] += 1;
        self.total += 1;
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    /// The duration at quantile `q` (0 < q <= 1), by nearest rank; `None` with no durations.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        // The ends are known exactly.
        if rank == self.total {
            return Some(Duration::from_nanos(self.max));
        }
        if rank == 1 {
            return Some(Duration::from_nanos(self.min));
        }
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, width) = bounds(i);
                let mid = low.saturating_add(width / 2);
                return Some(Duration::from_nanos(mid.clamp(self.min, self.max)));
            }
        }
        unreachable!("the counts add up to the total")
    }

    pub(crate) fn percentiles(&self) -> Option<Percentiles> {
        Some(Percentiles {
            p50: self.quantile(0.50)?,
            p90: self.quantile(0.90)?,
            p99: self.quantile(0.99)?,
            max: Duration::from_nanos(self.max),
        })
    }
}

/// The bucket of `ns`: below `2 * SUB`, itself; above, its power of two and the next
/// `SUB_BITS` bits.
fn bucket(ns: u64) -> usize {
    if ns < 2 * SUB {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // at least SUB_BITS + 1
    let sub = (ns >> (exp - SUB_BITS)) & (SUB - 1);
    (((exp - SUB_BITS + 1) as usize) << SUB_BITS) + sub as usize
}

/// The smallest value of bucket `i`, and how many values it holds.
fn bounds(i: usize) -> (u64, u64) {
    if i < 2 * SUB as usize {
        return (i as u64, 1);
    }
    let exp = (i >> SUB_BITS) as u32 + SUB_BITS - 1;
    let sub = (i as u64) & (SUB - 1);
    let shift = exp - SUB_BITS;
    ((SUB + sub) << shift, 1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_its_bucket() {
        let mut values: Vec<u64> = (0..5000).collect();
        for shift in 0..64 {
            let p = 1u64 << shift;
            values.extend([p - 1, p, p + 1, p.saturating_mul(3) / 2]);
        }
        values.push(u64::MAX);
        for v in values {
            let i = bucket(v);
            assert!(i < BUCKETS, "{v} -> {i}");
            let (low, width) = bounds(i);
            assert!(
                low <= v && v - low < width,
                "{v} in bucket {i}: [{low}, +{width})"
            );
            // Within 1/16 of the value: the middle of the bucket is within 1/32.
            assert!(
                width == 1 || width <= low / SUB,
                "{v}: width {width} of {low}"
            );
        }
        // Buckets are in order of their values.
        for i in 1..BUCKETS {
            let (low, width) = bounds(i - 1);
            assert_eq!(low + width, bounds(i).0, "bucket {i}");
        }
    }

    #[test]
    fn percentiles_are_within_their_bound() {
        let mut h = Histogram::new();
        assert_eq!(h.percentiles(), None);
        // 1 µs to 10 ms, evenly: the true p50 is 5 ms, p90 9 ms, p99 9.9 ms.
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        let p = h.percentiles().unwrap();
        let near = |got: Duration, want_us: f64| {
            let got = got.as_secs_f64() * 1e6;
            assert!(
                (got - want_us).abs() <= want_us / 32.0,
                "{got} µs, want {want_us}"
            );
        };
        near(p.p50, 5000.0);
        near(p.p90, 9000.0);
        near(p.p99, 9900.0);
        assert_eq!(p.max, Duration::from_millis(10));
    }

    #[test]
    fn small_and_single_values_are_exact() {
        let mut h = Histogram::new();
        h.record(Duration::from_millis(7));
        let p = h.percentiles().unwrap();
        assert_eq!(
            (p.p50, p.p99, p.max),
            (
                Duration::from_millis(7),
                Duration::from_millis(7),
                Duration::from_millis(7)
            )
        );
        let mut h = Histogram::new();
        for ns in [3, 5, 8, 13, 21] {
            h.record(Duration::from_nanos(ns));
        }
        assert_eq!(h.quantile(0.5), Some(Duration::from_nanos(8)));
        assert_eq!(h.quantile(0.2), Some(Duration::from_nanos(3)));
        assert_eq!(h.quantile(1.0), Some(Duration::from_nanos(21)));
        // A duration too long for u64 nanoseconds still counts, as the longest.
        h.record(Duration::MAX);
        assert_eq!(h.quantile(1.0), Some(Duration::from_nanos(u64::MAX)));
    }

    #[test]
    fn a_million_items_take_no_more_memory_than_one() {
        let mut h = Histogram::new();
        for i in 0..1_000_000u64 {
            h.record(Duration::from_nanos(1000 + i % 997));
        }
        assert_eq!(h.total, 1_000_000);
        assert_eq!(std::mem::size_of_val(&*h.counts), BUCKETS * 8);
        let p = h.percentiles().unwrap();
        assert!(p.p50 >= Duration::from_nanos(1000) && p.p50 <= Duration::from_nanos(1996));
    }

    fn failure(kind: &str) -> Result<serde_json::Value, TaskError> {
        Err(match kind {
            "bad-input" => TaskError::BadInput {
                func: "f".into(),
                detail: "line is blank".into(),
                param: None,
            },
            _ => TaskError::Cancelled { func: "f".into() },
        })
    }

    #[test]
    fn failures_are_named_by_kind_and_the_earliest_lines_kept() {
        let mut s = Summary::start("map", Progress::hidden(), None, 2).unwrap();
        // In completion order: the lines kept are the earliest, whatever came first.
        for index in (0..30).rev() {
            s.item(index, &failure("bad-input"), None);
        }
        s.item(
            30,
            &Ok(serde_json::json!(1)),
            Some(Duration::from_millis(2)),
        );
        s.item(31, &failure("cancelled"), None);
        assert_eq!((s.ok, s.failed, s.cancelled), (1, 30, 1));
        assert_eq!(kinds(&s), "30 bad-input");
        let kept: Vec<usize> = s.first_errors.iter().map(|e| e.index).collect();
        assert_eq!(kept, (0..10).collect::<Vec<_>>());
        let doc = json(&s, Duration::from_secs(1), None, true);
        assert_eq!(doc["items"], 31);
        assert_eq!(doc["failures"]["bad-input"], 30);
        assert_eq!(doc["first_errors"][0]["line"], 1);
        assert_eq!(doc["first_errors"].as_array().unwrap().len(), FIRST_ERRORS);
        assert_eq!(doc["item_time_seconds"]["max"], 0.002);
        let text = lines(&s, Duration::from_secs(1));
        assert!(
            text[1].starts_with("30 failed: 30 bad-input; the first, line 1: bad-input: "),
            "{text:?}"
        );
        assert!(text[2].starts_with("item time p50 2.0 ms"), "{text:?}");
    }

    #[test]
    fn a_summary_dropped_on_its_way_still_writes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        let mut s = Summary::start("map", Progress::hidden(), Some(&path), 3).unwrap();
        // Created at the start, empty until the end.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        s.item(0, &Ok(serde_json::json!(1)), None);
        drop(s);
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            (doc["items"].as_u64(), doc["workers"].as_u64()),
            (Some(1), Some(3))
        );
        assert_eq!(doc["complete"], false);
        assert_eq!(doc["item_time_seconds"], serde_json::Value::Null);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_nanos(850_400)), "850 µs");
        assert_eq!(human(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(human(Duration::from_millis(4560)), "4.56 s");
        assert_eq!(cut("abcdef", 3), "abc...");
        assert_eq!(cut("abc", 3), "abc");
    }
}
