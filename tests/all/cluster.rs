//! A real cluster on this machine for the remote-worker tests: an OpenSSH server on 127.0.0.1
//! with throwaway keys, and a Slurm "cluster" (munged, slurmctld, slurmd) of one node, each
//! started by the test that needs it on ports of its own and stopped (by pid) when it is
//! dropped. (Shared with the command line's tests, `cli/tests/remote.rs`.)
//!
//! Without the programs (`/usr/sbin/sshd`, `slurmctld`), a test says so on stderr and passes
//! as skipped, unless `WASMPOOL_REQUIRE_CLUSTER=1` (as `.ci/cluster.sh` sets), where it fails.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether the cluster tests must run (CI), rather than be skipped without their programs.
pub(crate) fn required() -> bool {
    std::env::var_os("WASMPOOL_REQUIRE_CLUSTER").is_some_and(|v| v == "1")
}

/// Skips (loudly) or, when required, fails: `what` is missing.
pub(crate) fn skip(test: &str, what: &str) {
    if required() {
        panic!("{test}: {what}, and WASMPOOL_REQUIRE_CLUSTER=1 requires it");
    }
    eprintln!("SKIPPED {test}: {what} (install it, or see .ci/cluster.sh)");
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn run(command: &mut Command) {
    let out = command.output().expect("runs");
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An sshd of our own on 127.0.0.1 (see the module docs).
pub(crate) struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    pub(crate) port: u16,
    /// The namespace its clients run in, for one in a [`Netns`].
    head: Option<String>,
}

impl Sshd {
    /// Starts one, or `None` (skipped) when sshd is not installed.
    pub(crate) fn start(test: &str) -> Option<Sshd> {
        Sshd::start_with(test, None)
    }

    fn start_with(test: &str, net: Option<&Netns>) -> Option<Sshd> {
        let address = net.map_or("127.0.0.1", |_| Netns::FAR_ADDRESS);
        if !Path::new("/usr/sbin/sshd").exists() || !Path::new("/usr/bin/ssh").exists() {
            skip(test, "no OpenSSH server (/usr/sbin/sshd) or client");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("wasmpool-sshd-")
            .tempdir()
            .unwrap();
        let path = |name: &str| dir.path().join(name);
        for key in ["host_ed25519", "client_ed25519"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(path(key)));
        }
        std::fs::copy(path("client_ed25519.pub"), path("authorized_keys")).unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = free_port();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        std::fs::write(
            path("sshd_config"),
            format!(
                "Port {port}\nListenAddress {address}\nHostKey {host}\nPidFile {pid}\n\
                 AuthorizedKeysFile {keys}\nPermitRootLogin prohibit-password\n\
                 PubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n\
                 PrintMotd no\nMaxStartups 100:30:200\nMaxSessions 100\nLogLevel INFO\n",
                host = path("host_ed25519").display(),
                pid = path("sshd.pid").display(),
                keys = path("authorized_keys").display(),
            ),
        )
        .unwrap();
        std::fs::write(
            path("ssh_config"),
            format!(
                "Host *\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n\
                 \x20 StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n\
                 \x20 GlobalKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n\
                 \x20 ConnectTimeout 5\n",
                key = path("client_ed25519").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(path("sshd.log")).unwrap();
        let mut command = match net {
            Some(net) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", &net.far, "/usr/sbin/sshd"]);
                command
            }
            None => Command::new("/usr/sbin/sshd"),
        };
        let child = command
            .args(["-D", "-e", "-f"])
            .arg(path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("sshd starts");
        let sshd = Sshd {
            dir,
            child,
            port,
            head: net.map(|net| net.head.clone()),
        };
        let started = Instant::now();
        while !sshd.ssh(&[address, "true"]) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not come up: {}",
                std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(sshd)
    }

    /// As [`Sshd::start`], but in a network namespace of `net`'s far side, listening on its
    /// address; reach it with `ip netns exec HEAD ssh` ([`Netns::head`]).
    pub(crate) fn start_in(test: &str, net: &Netns) -> Option<Sshd> {
        Sshd::start_with(test, Some(net))
    }

    /// The client configuration (port, key, user).
    pub(crate) fn config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// Runs the ssh client with our configuration: whether it succeeded.
    pub(crate) fn ssh(&self, args: &[&str]) -> bool {
        let mut command = match &self.head {
            Some(head) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", head, "ssh"]);
                command
            }
            None => Command::new("ssh"),
        };
        command
            .arg("-F")
            .arg(self.config())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The ssh clients this process started with our configuration (the pool's launchers).
    pub(crate) fn clients(&self) -> Vec<u32> {
        let config = self.config().display().to_string();
        children_named("ssh")
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|line| String::from_utf8_lossy(&line).contains(&config))
            })
            .collect()
    }

    /// The sshd's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The processes our sshd started (on the "remote" side) that are wasmpool workers: their
    /// environment is exactly `WASMPOOL_WORKER=remote` (a remote worker clears its own).
    pub(crate) fn remote_workers(&self) -> Vec<u32> {
        remote_workers_under(self.pid())
    }

    /// Waits up to `limit` for no remote worker to remain; the ones that do.
    pub(crate) fn wait_no_remote_workers(&self, limit: Duration) -> Vec<u32> {
        wait_none_under(self.pid(), limit)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Its sessions first: one whose connection a partition cut would otherwise wait for
        // TCP to give up (minutes), holding its namespace.
        let listener = self.pid();
        let sessions: Vec<u32> = all_pids()
            .filter(|&pid| descends_from(pid, listener))
            .collect();
        for pid in sessions {
            // SAFETY: SIGKILL to a process our sshd started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The parent of `pid`, from `/proc`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` descends from `ancestor`.
fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..64 {
        match parent_of(pid) {
            Some(p) if p == ancestor => return true,
            Some(0) | Some(1) | None => return false,
            Some(p) => pid = p,
        }
    }
    false
}

/// Remote workers (environment exactly `WASMPOOL_WORKER=remote`) descending from `ancestor`;
/// with `ancestor` 0, all of them on the machine.
pub(crate) fn remote_workers_under(ancestor: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        // A zombie has no environment left to read: it is gone but for its entry.
        if environ == b"WASMPOOL_WORKER=remote\0"
            && (ancestor == 0 || descends_from(pid, ancestor))
            && !is_zombie(pid)
        {
            found.push(pid);
        }
    }
    found
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat[stat.rfind(')')? + 2..].to_string();
            after.chars().next()
        })
        .is_none_or(|state| state == 'Z' || state == 'X')
}

/// Waits up to `limit` for no remote worker under `ancestor`; the ones that remain.
pub(crate) fn wait_none_under(ancestor: u32, limit: Duration) -> Vec<u32> {
    let started = Instant::now();
    loop {
        let left = remote_workers_under(ancestor);
        if left.is_empty() || started.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The children of this process whose program is `name` (the launchers a pool started).
pub(crate) fn children_named(name: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if parent_of(pid) != Some(me) || is_zombie(pid) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == name {
            found.push(pid);
        }
    }
    found
}

/// A Slurm cluster of one node on 127.0.0.1, with a munged of its own (see the module docs);
/// as `../shared/research/cluster/slurm_local.sh` sets it up, on ports and a munge socket of
/// its own so that it never meets another.
pub(crate) struct Slurm {
    dir: tempfile::TempDir,
    pids: Vec<(String, u32)>,
}

impl Slurm {
    /// Starts one, or `None` (skipped) when Slurm or munge is not installed.
    pub(crate) fn start(test: &str) -> Option<Slurm> {
        for program in [
            "/usr/sbin/slurmctld",
            "/usr/sbin/slurmd",
            "/usr/sbin/munged",
        ] {
            if !Path::new(program).exists() {
                skip(test, &format!("no {program} (slurm-wlm, munge)"));
                return None;
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("wasmpool-slurm-")
            .tempdir()
            .unwrap();
        let d = dir.path().to_path_buf();
        for sub in ["state", "spool", "log", "munge"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let mut slurm = Slurm {
            dir,
            pids: Vec::new(),
        };
        // munged, as root, with a key and a socket of its own.
        let key = d.join("munge/munge.key");
        let mut bytes = vec![0u8; 1024];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .unwrap();
        std::fs::write(&key, &bytes).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o400))
            .unwrap();
        std::fs::set_permissions(
            d.join("munge"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let socket = d.join("munge/munge.socket");
        run(Command::new("/usr/sbin/munged")
            .arg("--force")
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--key-file={}", key.display()))
            .arg(format!(
                "--pid-file={}",
                d.join("munge/munged.pid").display()
            ))
            .arg(format!("--log-file={}", d.join("log/munged.log").display()))
            .arg(format!("--seed-file={}", d.join("munge/seed").display())));
        slurm.adopt("munged", &d.join("munge/munged.pid"));
        let ctld_port = free_port();
        let slurmd_port = free_port();
        let cpus = 8;
        let conf = d.join("slurm.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=wp{ctld_port}\nSlurmctldHost=localhost\nSlurmUser=root\nSlurmdUser=root\n\
                 AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={socket}\n\
                 MpiDefault=none\nProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
                 SwitchType=switch/none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
                 SchedulerType=sched/backfill\nReturnToService=2\nSlurmctldPort={ctld_port}\n\
                 SlurmdPort={slurmd_port}\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool/%n\n\
                 SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd-%n.pid\n\
                 SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd-%n.log\n\
                 JobCompType=jobcomp/none\nAccountingStorageType=accounting_storage/none\n\
                 JobAcctGatherType=jobacct_gather/none\nInactiveLimit=0\n\
                 SlurmdParameters=config_overrides\nKillWait=5\nMinJobAge=30\n\
                 SlurmctldTimeout=30\nSlurmdTimeout=30\n\
                 NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\n\
                 PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP \
                 OverSubscribe=NO\n",
                socket = socket.display(),
                d = d.display(),
            ),
        )
        .unwrap();
        std::fs::create_dir_all(d.join("spool/localhost")).unwrap();
        run(Command::new("slurmctld").arg("-i").arg("-f").arg(&conf));
        slurm.adopt("slurmctld", &d.join("slurmctld.pid"));
        run(Command::new("slurmd")
            .args(["-N", "localhost", "-f"])
            .arg(&conf));
        slurm.adopt("slurmd", &d.join("slurmd-localhost.pid"));
        let started = Instant::now();
        loop {
            let out = slurm
                .command("sinfo")
                .args(["-h", "-N", "-o", "%t"])
                .output();
            let state = out
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            if state == "idle" {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the Slurm node is `{state}`: {}",
                slurm.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(slurm)
    }

    /// Waits for the daemon's pid file and keeps its pid, for `Drop`.
    fn adopt(&mut self, name: &str, pid_file: &Path) {
        let started = Instant::now();
        loop {
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                self.pids.push((name.to_string(), pid));
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{name} wrote no pid file: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemons' logs, for a failure's message.
    pub(crate) fn logs(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.dir.path().join("log"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(15).collect();
            let _ = writeln!(
                text,
                "--- {}\n{}",
                entry.path().display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        text
    }

    /// `SLURM_CONF` for the client programs (srun, sinfo, scancel).
    pub(crate) fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// A Slurm client program with our configuration.
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", self.conf());
        command
    }

    /// The slurmd's pid.
    pub(crate) fn slurmd(&self) -> u32 {
        self.pids
            .iter()
            .find(|(name, _)| name == "slurmd")
            .map(|(_, pid)| *pid)
            .expect("slurmd")
    }

    /// The step daemons of this cluster (their environment names its configuration).
    fn steps(&self) -> Vec<u32> {
        let marker = format!("SLURM_CONF={}", self.conf().display());
        all_pids()
            .filter(|&pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "slurmstepd")
                    && std::fs::read(format!("/proc/{pid}/environ"))
                        .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == marker.as_bytes()))
            })
            .collect()
    }

    /// Kills the slurmd (as a node that crashed), its step daemons and the workers under
    /// them, all at once, leaving slurmctld to find out in its own time.
    pub(crate) fn crash_node(&self) {
        let slurmd = self.slurmd();
        let steps = self.steps();
        let workers: Vec<u32> = remote_workers_under(0)
            .into_iter()
            .filter(|&pid| steps.iter().any(|&step| descends_from(pid, step)))
            .collect();
        for pid in std::iter::once(slurmd).chain(steps).chain(workers) {
            // SAFETY: SIGKILL to the node's daemon, its step daemons and their workers.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// Every pid on the machine.
fn all_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|s| s.parse().ok()))
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // Step daemons whose daemons go away would linger: they go first.
        for pid in self.steps() {
            // SAFETY: SIGKILL to a step daemon of our cluster.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        // slurmd first, munged last; each by its pid, waited for.
        for (_, pid) in self.pids.iter().rev() {
            // SAFETY: SIGTERM to a daemon we started.
            unsafe { libc::kill(*pid as i32, libc::SIGTERM) };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(5)
                && std::fs::metadata(format!("/proc/{pid}")).is_ok()
                && !is_zombie(*pid)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: SIGKILL to a daemon we started that did not stop.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}

/// Two network namespaces joined by a veth pair, as `../shared/research/cluster/netns_hosts.sh`
/// makes them: the head (10.251.0.1) and a far host (10.251.0.2), names of this process's own;
/// [`Netns::partition`] takes the far end's link down, silently (no FIN, no RST reaches
/// either side). Deleted when dropped.
pub(crate) struct Netns {
    pub(crate) head: String,
    pub(crate) far: String,
    veth: String,
}

impl Netns {
    pub(crate) const FAR_ADDRESS: &'static str = "10.251.0.2";

    /// Makes them, or `None` (skipped) without `ip` or the right to make namespaces.
    pub(crate) fn new(test: &str) -> Option<Netns> {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let net = Netns {
            head: format!("wph{tag}"),
            far: format!("wpf{tag}"),
            veth: format!("wpv{tag}"),
        };
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let (a, b) = (format!("{}a", net.veth), format!("{}b", net.veth));
        let made = ip(&["netns", "add", &net.head])
            && ip(&["netns", "add", &net.far])
            && ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])
            && ip(&["link", "set", &a, "netns", &net.head])
            && ip(&["link", "set", &b, "netns", &net.far])
            && ip(&["-n", &net.head, "addr", "add", "10.251.0.1/30", "dev", &a])
            && ip(&["-n", &net.far, "addr", "add", "10.251.0.2/30", "dev", &b])
            && ip(&["-n", &net.head, "link", "set", "lo", "up"])
            && ip(&["-n", &net.far, "link", "set", "lo", "up"])
            && ip(&["-n", &net.head, "link", "set", &a, "up"])
            && ip(&["-n", &net.far, "link", "set", &b, "up"]);
        if !made {
            skip(test, "no network namespaces (`ip netns`, as root)");
            return None;
        }
        Some(net)
    }

    /// Takes the far end's link down: from now on nothing crosses, not even a FIN.
    pub(crate) fn partition(&self) {
        run(Command::new("ip").args([
            "-n",
            &self.far,
            "link",
            "set",
            &format!("{}b", self.veth),
            "down",
        ]));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.head, &self.far] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}
