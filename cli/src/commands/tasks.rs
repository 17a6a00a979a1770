//! `wasmpool tasks`: the tasks built into the binary, and a way to write them out as files.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::builtin::OFFERED;

/// List the built-in tasks, or write them out as files to try the CLI on.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  wasmpool tasks --export ./tasks && wasmpool inspect tasks/records.wasm"
)]
pub(crate) struct TasksCommand {
    /// Write every built-in task into this directory (created if needed).
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
}

impl TasksCommand {
    pub(crate) fn execute(self) -> anyhow::Result<i32> {
        let mut out = std::io::stdout().lock();
        match self.export {
            Some(dir) => {
                std::fs::create_dir_all(&dir)?;
                for task in OFFERED {
                    let path = dir.join(task.file_name);
                    std::fs::write(&path, task.wasm)?;
                    writeln!(out, "{}", path.display())?;
                }
            }
            None => {
                for task in OFFERED {
                    writeln!(out, "builtin:{:<10} {}", task.name, task.description)?;
                }
            }
        }
        Ok(0)
    }
}
