//! `wasmpool completions SHELL`: a completion script for the shell, on stdout.

use clap::Args;
use clap_complete::Shell;

/// Print a completion script for a shell: subcommands, options and their values.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wasmpool completions bash > ~/.local/share/bash-completion/completions/wasmpool\n  wasmpool completions zsh > ~/.zfunc/_wasmpool   # with fpath+=~/.zfunc in ~/.zshrc\n  wasmpool completions fish > ~/.config/fish/completions/wasmpool.fish"
)]
pub(crate) struct CompletionsCommand {
    /// The shell to complete in.
    shell: Shell,
}

impl CompletionsCommand {
    /// Writes the script for `cli`, the whole command line, less its hidden subcommands
    /// (`worker`), which a completion would otherwise offer.
    pub(crate) fn execute(self, cli: clap::Command) -> anyhow::Result<i32> {
        let mut shown = clap::Command::new(env!("CARGO_BIN_NAME"))
            .version(env!("CARGO_PKG_VERSION"))
            .subcommands(cli.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
        if let Some(about) = cli.get_about() {
            shown = shown.about(about.clone());
        }
        let mut out = std::io::stdout().lock();
        clap_complete::generate(self.shell, &mut shown, env!("CARGO_BIN_NAME"), &mut out);
        Ok(0)
    }
}
