//! The options the commands share: how modules are loaded, and for those that start a pool,
//! workers and chunks, limits, grants. A value that cannot work (no workers, empty chunks, a
//! zero timeout) is refused with a sentence, as a usage error.

use std::time::Duration;

use clap::Args;
use wasmpool::{Grants, Launcher, Limits, Module, Pool, PoolBuilder, Task};

use crate::shared_state::{Objects, SharedArgs};
use crate::terminal;

/// The most worker processes a pool may start (each takes a few file descriptors and a thread
/// on the host, and about 10 MiB of memory).
const MAX_WORKERS: usize = 1024;

/// How the commands load a module. Compiling it happens in a process of its own, behind the
/// same walls as a task, within these limits.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Loading the module")]
pub(crate) struct LoadArgs {
    /// The largest module file to read: `256M`, `1G`, bytes.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "256M")]
    max_module_size: u64,
    /// How long compiling the module may take: `30s`, `5m`.
    #[arg(long, value_name = "TIME", value_parser = parse_timeout, default_value = "60s")]
    compile_timeout: Duration,
    /// How much memory compiling the module may take (the compiling process's address
    /// space): `2G`, `8G`.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "4G")]
    compile_memory: u64,
}

impl LoadArgs {
    /// The loader these options describe, compiling for tasks with `limits`.
    pub(crate) fn loader(&self, limits: Limits) -> wasmpool::Loader {
        Module::loader()
            .max_bytes(self.max_module_size)
            .compile_timeout(self.compile_timeout)
            .compile_memory(self.compile_memory)
            .for_limits(limits)
            .on_compile(crate::progress::on_compile())
    }
}

/// Options shared by the commands that run many items on a pool (`map`, `exec`).
#[derive(Debug, Clone, Args)]
pub(crate) struct PoolArgs {
    #[command(flatten)]
    workers: WorkerArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

/// How many workers, and how items travel to them.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Workers")]
struct WorkerArgs {
    /// Worker processes, 1 to 1024 (default: one per available core).
    #[arg(short = 'j', long = "workers", value_name = "N", value_parser = parse_workers)]
    workers: Option<usize>,
    /// Items per round trip to a worker (default: as many as take about 2 ms, one at first).
    #[arg(long, value_name = "N", value_parser = parse_chunksize)]
    chunksize: Option<usize>,
}

/// What each task may use and reach.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Sandbox (deny by default)")]
pub(crate) struct SandboxArgs {
    /// Wall-clock limit per task: `500ms`, `2s`, `1m` (default: none).
    #[arg(long, value_name = "TIME", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// Instruction budget per task, in fuel units (about one per wasm instruction).
    #[arg(long, value_name = "UNITS")]
    fuel: Option<u64>,
    /// Cap on each linear memory of a task: `64M`, `1G`, bytes (default: 1G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Cap on a task's stdout, and on its stderr (default: 1M).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_output: Option<u64>,
    /// Cap on a task's result (default: 64M).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_result: Option<u64>,
    /// Grant read-write access to a host directory, seen as GUEST (default: the same path).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Grant read-only access to a host directory, seen as GUEST.
    #[arg(long = "ro-dir", value_name = "HOST[::GUEST]")]
    ro_dirs: Vec<String>,
    /// Set an environment variable the task can read.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Run a task again (up to N times) if its worker process dies under it.
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: u32,
    #[command(flatten)]
    shared: SharedArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Workers on other machines, through ssh, Slurm or kubectl (see docs/cluster.md).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Workers elsewhere (ssh, Slurm, kubectl; see docs/cluster.md)")]
pub(crate) struct RemoteArgs {
    /// Remote workers: HOST:N for N workers on HOST, comma-separated (`node1:4,node2:8`); a
    /// host is a machine for ssh, a node for slurm, a pod for kubectl.
    #[arg(long, value_name = "HOST:N,...", value_parser = parse_hosts)]
    hosts: Option<Hosts>,
    /// How the remote workers are reached: `ssh` (the default), `slurm` (one srun step
    /// each), `kubectl` (kubectl exec into the pod).
    #[arg(long, value_name = "KIND", value_parser = ["ssh", "slurm", "kubectl"], conflicts_with = "worker_cmd")]
    launcher: Option<String>,
    /// A launcher of your own: an argv template run without a shell for each remote
    /// worker, `{host}`, `{slot}` and `{bin}` filled in (`ssh -p 2222 {host} {bin} worker`);
    /// without --hosts, `-j` workers of it.
    #[arg(long = "worker-cmd", value_name = "TEMPLATE", value_parser = parse_launcher)]
    worker_cmd: Option<Launcher>,
    /// Local workers beside the remote ones (default: none when there are remote ones).
    #[arg(long, value_name = "N", value_parser = parse_local)]
    local: Option<usize>,
    /// The wasmpool program on the remote machines, `{bin}` (default: `wasmpool`, found on
    /// the remote PATH).
    #[arg(long = "remote-bin", value_name = "PATH")]
    remote_bin: Option<String>,
    /// How long a remote worker may take to start (default: 2m); a start that waits (a
    /// Slurm step queued for resources) is reported meanwhile.
    #[arg(long = "startup-timeout", value_name = "TIME", value_parser = parse_timeout)]
    startup_timeout: Option<Duration>,
    /// How long a remote worker's link may stay silent before it is taken as lost
    /// (default: 5s; heartbeats go every fifth of it).
    #[arg(long = "link-timeout", value_name = "TIME", value_parser = parse_timeout)]
    link_timeout: Option<Duration>,
}

/// `--hosts`: each host and its number of workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hosts(Vec<(String, usize)>);

impl RemoteArgs {
    /// Whether any remote worker is asked for.
    fn any(&self) -> bool {
        self.hosts.is_some() || self.worker_cmd.is_some()
    }

    /// `builder` with the remote workers, and the local ones (`local` unless --local says
    /// otherwise; none by default when there are remote ones).
    fn apply(&self, builder: PoolBuilder, local: usize) -> PoolBuilder {
        if !self.any() {
            return builder.local(local);
        }
        let mut launcher = match (&self.worker_cmd, self.launcher.as_deref()) {
            (Some(template), _) => template.clone(),
            (None, kind) => Launcher::preset(kind.unwrap_or("ssh")).expect("a known kind"),
        };
        if let Some(bin) = &self.remote_bin {
            launcher = launcher.remote_bin(bin);
        }
        if let Some(timeout) = self.startup_timeout {
            launcher = launcher.startup_timeout(timeout);
        }
        if let Some(timeout) = self.link_timeout {
            launcher = launcher.link_timeout(timeout);
        }
        let mut builder = builder.local(self.local.unwrap_or(0));
        match &self.hosts {
            Some(Hosts(hosts)) => {
                for (host, slots) in hosts {
                    builder = builder.remote(launcher.clone(), host, *slots);
                }
            }
            None => builder = builder.launcher(launcher, local.max(1)),
        }
        builder
    }
}

impl PoolArgs {
    /// A pool builder with these options, `default_workers` unless `-j` says otherwise, and
    /// guest output relayed to the terminal.
    pub(crate) fn builder(&self, default_workers: usize) -> PoolBuilder {
        let mut builder = Pool::builder().on_output(terminal::guest_output);
        if let Some(n) = self.workers.chunksize {
            builder = builder.chunksize(n).imap_chunksize(n);
        }
        let builder = self.sandbox.apply(builder);
        self.sandbox
            .remote
            .apply(builder, self.workers.workers.unwrap_or(default_workers))
    }
}

impl SandboxArgs {
    /// A pool of one worker for one task, with these limits and grants, and guest output
    /// relayed to the terminal.
    pub(crate) fn one_worker(&self) -> PoolBuilder {
        let builder = self.apply(Pool::builder().on_output(terminal::guest_output));
        self.remote.apply(builder, 1)
    }
}

impl PoolArgs {
    /// See [`SandboxArgs::with_shared`].
    pub(crate) fn with_shared(&self, pool: &Pool, task: Task) -> anyhow::Result<(Task, Objects)> {
        self.sandbox.with_shared(pool, task)
    }

    /// The limits every task gets.
    pub(crate) fn limits(&self) -> Limits {
        self.sandbox.limits()
    }
}

impl SandboxArgs {
    /// The limits every task gets.
    pub(crate) fn limits(&self) -> Limits {
        let mut limits = Limits::new();
        limits.timeout = self.timeout;
        limits.fuel = self.fuel;
        limits.max_memory = self.max_memory;
        limits.max_output_bytes = self.max_output;
        limits.max_result_bytes = self.max_result;
        limits
    }

    /// Makes the run's shared objects in `pool` and grants them to `task`, beside the
    /// directories and variables every task is granted.
    pub(crate) fn with_shared(&self, pool: &Pool, task: Task) -> anyhow::Result<(Task, Objects)> {
        self.shared.apply(pool, task, self.grants())
    }

    fn apply(&self, builder: PoolBuilder) -> PoolBuilder {
        builder
            .limits(self.limits())
            .grants(self.grants())
            .retries(self.retries)
    }

    fn grants(&self) -> Grants {
        let mut grants = Grants::new();
        for (spec, read_only) in self
            .dirs
            .iter()
            .map(|d| (d, false))
            .chain(self.ro_dirs.iter().map(|d| (d, true)))
        {
            let (host, guest) = spec.split_once("::").unwrap_or((spec, spec));
            grants = if read_only {
                grants.read_only_dir(host, guest)
            } else {
                grants.dir(host, guest)
            };
        }
        for (key, value) in &self.env {
            grants = grants.env(key, value);
        }
        grants
    }
}

fn parse_workers(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("a pool needs at least one worker".into()),
        Ok(n) if n > MAX_WORKERS => Err(format!(
            "{n} workers is more than the {MAX_WORKERS} a pool may start"
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a number of workers")),
    }
}

fn parse_local(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > MAX_WORKERS => Err(format!(
            "{n} workers is more than the {MAX_WORKERS} a pool may start"
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a number of workers")),
    }
}

fn parse_hosts(text: &str) -> Result<Hosts, String> {
    let mut hosts = Vec::new();
    for spec in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (host, slots) = match spec.rsplit_once(':') {
            Some((host, n)) => {
                let n = n
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| format!("`{spec}`: `{n}` is not a number of workers (HOST:N)"))?;
                (host.trim(), n)
            }
            None => (spec, 1),
        };
        if host.is_empty() {
            return Err(format!("`{spec}` names no host (HOST:N)"));
        }
        if slots == 0 || slots > MAX_WORKERS {
            return Err(format!("`{spec}`: a host takes 1 to {MAX_WORKERS} workers"));
        }
        hosts.push((host.to_string(), slots));
    }
    if hosts.is_empty() {
        return Err("--hosts needs at least one HOST:N".into());
    }
    Ok(Hosts(hosts))
}

fn parse_launcher(text: &str) -> Result<Launcher, String> {
    Launcher::parse(text).map_err(|e| e.to_string())
}

fn parse_chunksize(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("a chunk holds at least one item".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a number of items")),
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(
            "a timeout of 0 would stop every task before it starts (leave --timeout out for none)"
                .into(),
        ),
        timeout => Ok(timeout),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 2s or 1m"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown time unit `{other}` (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 64M or 1G"))?;
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use K, M or G)")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("=x").is_err());
    }

    #[test]
    fn values_that_cannot_work_are_refused() {
        assert!(parse_workers("0").unwrap_err().contains("at least one"));
        assert!(parse_workers("1025").unwrap_err().contains("1024"));
        assert_eq!(parse_workers("8"), Ok(8));
        assert!(parse_chunksize("0").is_err());
        assert_eq!(parse_chunksize("1000000000"), Ok(1_000_000_000));
        assert!(
            parse_timeout("0s")
                .unwrap_err()
                .contains("leave --timeout out")
        );
        assert!(parse_timeout("0ms").is_err());
        assert_eq!(parse_timeout("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(
            parse_hosts("node1:4, node2:8,node3"),
            Ok(Hosts(vec![
                ("node1".into(), 4),
                ("node2".into(), 8),
                ("node3".into(), 1)
            ]))
        );
        assert!(parse_hosts("node1:0").is_err());
        assert!(parse_hosts("node1:x").unwrap_err().contains("not a number"));
        assert!(parse_hosts(":4").is_err());
        assert!(parse_hosts(",").is_err());
        assert!(parse_launcher("ssh 'x").is_err());
    }
}
