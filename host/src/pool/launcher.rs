//! [`Launcher`]: an argv template that reaches a worker elsewhere (ssh, Slurm's srun, kubectl
//! exec, or any command whose stdio reaches a `wasmpool worker`), made into one
//! [`WorkerCommand`] per worker slot.

use std::time::Duration;

use crate::error::Error;

use super::worker_command::WorkerCommand;

/// How to reach workers on other machines: an argv template, run without a shell once per
/// worker slot, whose stdin and stdout reach a `wasmpool worker` there. `{host}` is replaced by
/// the host (a machine for ssh, a node for Slurm, a pod for kubectl), `{slot}` by the slot's
/// number on that host (0, 1, ...), `{bin}` by the remote program ([`Launcher::remote_bin`],
/// `wasmpool` by default, found on the remote `PATH`).
///
/// The presets: [`Launcher::ssh`], [`Launcher::slurm`], [`Launcher::kubectl`]. Every launched
/// worker raises the same walls as a local one, on its own machine; heartbeats flow both
/// ways, so that a lost link is found within seconds and no remote worker outlives its pool
/// (see [`WorkerCommand::launched`]). `docs/cluster.md` has the set-ups.
///
/// # Examples
/// ```no_run
/// use wasmpool::{Launcher, Pool};
/// let pool = Pool::builder()
///     .local(2)
///     .ssh("node1", 4)
///     .remote(Launcher::slurm().remote_bin("/opt/wasmpool/bin/wasmpool"), "n3", 8)
///     .launcher(Launcher::parse("ssh -p 2222 gateway wasmpool worker")?, 2)
///     .build()?;
/// # Ok::<(), wasmpool::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    template: Vec<String>,
    remote_bin: String,
    heartbeat: Option<(Duration, Duration)>,
    startup: Option<Duration>,
}

impl Launcher {
    /// A launcher from an argv template (`["ssh", "{host}", "{bin}", "worker"]`).
    pub fn new(template: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Launcher {
            template: template.into_iter().map(Into::into).collect(),
            remote_bin: "wasmpool".into(),
            heartbeat: None,
            startup: None,
        }
    }

    /// A launcher from a command line, split into words as a shell would split it (spaces
    /// separate words; `'...'` and `"..."` quote, `\` escapes), but never run by a shell:
    /// `ssh -F ~/cluster.conf {host} {bin} worker` is not expanded (write the path out).
    pub fn parse(template: &str) -> Result<Self, Error> {
        let words = split_words(template).map_err(|detail| Error::Spawn {
            program: template.to_string(),
            detail,
        })?;
        if words.is_empty() {
            return Err(Error::Spawn {
                program: template.to_string(),
                detail: "a launcher needs a program".into(),
            });
        }
        Ok(Launcher::new(words))
    }

    /// `ssh -T -e none -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 -o
    /// ServerAliveCountMax=3 {host} {bin} worker`: no terminal, a transparent binary stream,
    /// never a password prompt (keys or an agent only), a bounded connect, and ssh's own
    /// keep-alive beside wasmpool's heartbeats.
    /// Your `~/.ssh/config` applies (a `ControlMaster` there makes each further worker's start
    /// a few milliseconds).
    pub fn ssh() -> Self {
        Launcher::ssh_with(std::iter::empty::<String>())
    }

    /// [`Launcher::ssh`] with more ssh options before the host (`["-F", "cluster.conf"]`,
    /// `["-p", "2222"]`, `["-i", "key"]`).
    pub fn ssh_with(options: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut template: Vec<String> = ["ssh", "-T", "-e", "none"]
            .into_iter()
            .map(String::from)
            .collect();
        template.extend(options.into_iter().map(Into::into));
        template.extend(
            [
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ServerAliveInterval=5",
                "-o",
                "ServerAliveCountMax=3",
                "{host}",
                "{bin}",
                "worker",
            ]
            .map(String::from),
        );
        Launcher::new(template)
    }

    /// `srun -N1 -n1 -u --input=0 -J wasmpool --nodelist={host} {bin} worker`, one job step
    /// per slot, inside an allocation (`salloc`, `sbatch`) or as a job of its own outside one:
    /// `-u` because srun otherwise holds output back until a newline, `--input=0` so that
    /// stdin goes to the one task. A step waiting for resources is reported as starting (see
    /// [`WorkerCommand::startup_timeout`]).
    pub fn slurm() -> Self {
        Launcher::new([
            "srun",
            "-N1",
            "-n1",
            "-u",
            "--input=0",
            "-J",
            "wasmpool",
            "--nodelist={host}",
            "{bin}",
            "worker",
        ])
    }

    /// `kubectl exec -i {host} -- {bin} worker`: `{host}` is a pod (`-n NAMESPACE`, `-c
    /// CONTAINER` go in a template of your own: `Launcher::parse("kubectl exec -i -n jobs
    /// {host} -c worker -- wasmpool worker")`).
    pub fn kubectl() -> Self {
        Launcher::new(["kubectl", "exec", "-i", "{host}", "--", "{bin}", "worker"])
    }

    /// The preset of that name: `ssh`, `slurm` or `kubectl`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "ssh" => Some(Launcher::ssh()),
            "slurm" | "srun" => Some(Launcher::slurm()),
            "kubectl" | "kubernetes" | "k8s" => Some(Launcher::kubectl()),
            _ => None,
        }
    }

    /// The program `{bin}` stands for: `wasmpool` (the remote `PATH`'s) by default.
    pub fn remote_bin(mut self, path: impl Into<String>) -> Self {
        self.remote_bin = path.into();
        self
    }

    /// The heartbeat of its workers' links (see [`WorkerCommand::heartbeat`]).
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.heartbeat = Some((interval, timeout));
        self
    }

    /// How long its workers' links may stay silent before they are taken as lost, with a
    /// heartbeat every fifth of it: [`Launcher::heartbeat`] as the command line's
    /// `--link-timeout` and Python's `link_timeout=` give it.
    pub fn link_timeout(self, timeout: Duration) -> Self {
        self.heartbeat(timeout / 5, timeout)
    }

    /// How long its workers may take to start (see [`WorkerCommand::startup_timeout`]).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup = Some(timeout);
        self
    }

    /// The argv template.
    pub fn template(&self) -> &[String] {
        &self.template
    }

    /// Whether the template names a host (`{host}`).
    pub fn names_host(&self) -> bool {
        self.template.iter().any(|word| word.contains("{host}"))
    }

    /// The command of slot `slot` on `host`: the template with its placeholders filled in.
    pub fn command(&self, host: Option<&str>, slot: usize) -> Result<WorkerCommand, Error> {
        let describe = || self.template.join(" ");
        if self.names_host() && host.is_none_or(str::is_empty) {
            return Err(Error::Spawn {
                program: describe(),
                detail: "the launcher's template has `{host}`, and no host was given".into(),
            });
        }
        let host_name = host.unwrap_or_default();
        let words: Vec<String> = self
            .template
            .iter()
            .map(|word| {
                word.replace("{host}", host_name)
                    .replace("{slot}", &slot.to_string())
                    .replace("{bin}", &self.remote_bin)
            })
            .collect();
        let Some((program, args)) = words.split_first() else {
            return Err(Error::Spawn {
                program: describe(),
                detail: "a launcher needs a program".into(),
            });
        };
        let label = match host {
            Some(host) if !host.is_empty() => host.to_string(),
            _ => program.clone(),
        };
        let mut command = WorkerCommand::new(program).args(args).launched(label);
        if let Some((interval, timeout)) = self.heartbeat {
            command = command.heartbeat(interval, timeout);
        }
        if let Some(startup) = self.startup {
            command = command.startup_timeout(startup);
        }
        Ok(command)
    }
}

/// Splits a command line into words as a POSIX shell would (quotes and backslashes), without
/// expanding anything.
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a `'` is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a `\"` is not closed".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a `\"` is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("a `\\` ends the line".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_as_a_shell_would_and_fill_their_placeholders() {
        let launcher =
            Launcher::parse(r#"ssh -o 'ProxyJump=a b' "{host}" env X=\"{slot}\" {bin} worker"#)
                .unwrap()
                .remote_bin("/opt/wp");
        let command = launcher.command(Some("node1"), 3).unwrap();
        assert_eq!(command.program().to_str(), Some("ssh"));
        let args: Vec<_> = command
            .arguments()
            .iter()
            .map(|a| a.to_str().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "-o",
                "ProxyJump=a b",
                "node1",
                "env",
                "X=\"3\"",
                "/opt/wp",
                "worker"
            ]
        );
        assert_eq!(command.host(), Some("node1"));
        assert!(command.link().is_some());
        assert!(Launcher::parse("ssh 'open").is_err());
        assert!(Launcher::parse("   ").is_err());
        assert!(Launcher::ssh().command(None, 0).is_err());
        let slurm = Launcher::slurm().command(Some("n2"), 0).unwrap();
        assert!(slurm.describe().contains("srun -N1 -n1 -u --input=0"));
        assert!(slurm.describe().contains("--nodelist=n2 wasmpool worker"));
        let kubectl = Launcher::kubectl().command(Some("pod-7"), 0).unwrap();
        assert_eq!(
            kubectl.describe(),
            "kubectl exec -i pod-7 -- wasmpool worker"
        );
        let ssh = Launcher::ssh_with(["-p", "2222"])
            .command(Some("h"), 0)
            .unwrap();
        assert!(
            ssh.describe()
                .starts_with("ssh -T -e none -p 2222 -o BatchMode=yes")
        );
    }
}
