//! The WASI context of one task: nothing but what its grants allow (no files, no environment,
//! no arguments, no network, an empty stdin), with stdout and stderr captured in memory.
//!
//! The context is built when the guest first calls into WASI, not when its instance is made:
//! most tasks never print or read a clock, and building a context (seeding its random number
//! generators among other things) was about 5% of a fresh instance's cost. A task granted
//! directories gets its context at once, so that a directory that cannot be opened fails the
//! task before it starts, as [`RunFailure::Sandbox`].

use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use crate::limits::Grants;
use crate::wire::RunFailure;

use super::capture::Capture;

/// A WASI context of kind `C` (preview 2 for components, preview 1 for core modules), built on
/// first use.
pub(crate) struct Sandbox<C> {
    built: Option<C>,
    env: Vec<(String, String)>,
    stdout: Capture,
    stderr: Capture,
}

/// The two kinds of context a [`WasiCtxBuilder`] builds.
pub(crate) trait Context: Sized {
    fn build(builder: &mut WasiCtxBuilder) -> Self;
}

impl Context for WasiCtx {
    fn build(builder: &mut WasiCtxBuilder) -> Self {
        builder.build()
    }
}

impl Context for WasiP1Ctx {
    fn build(builder: &mut WasiCtxBuilder) -> Self {
        builder.build_p1()
    }
}

impl<C: Context> Sandbox<C> {
    /// The sandbox `grants` allow, writing to `stdout` and `stderr`. Fails only if a granted
    /// directory cannot be opened.
    pub(crate) fn new(
        grants: &Grants,
        stdout: &Capture,
        stderr: &Capture,
    ) -> Result<Self, RunFailure> {
        let built = if grants.dirs.is_empty() {
            None
        } else {
            let mut builder = builder(&grants.env, stdout, stderr);
            for dir in &grants.dirs {
                let perms = if dir.read_only {
                    FsPerms::ReadOnly
                } else {
                    FsPerms::ReadWrite
                };
                builder
                    .preopened_dir(&dir.host, &dir.guest, perms)
                    .map_err(|e| {
                        RunFailure::Sandbox(format!("cannot grant {}: {e:#}", dir.host.display()))
                    })?;
            }
            Some(C::build(&mut builder))
        };
        // Once built, the context holds the environment itself.
        let env = if built.is_some() {
            Vec::new()
        } else {
            grants.env.clone()
        };
        Ok(Sandbox {
            built,
            env,
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        })
    }

    /// The context, built now if this is the guest's first WASI call.
    pub(crate) fn get(&mut self) -> &mut C {
        let Sandbox {
            built,
            env,
            stdout,
            stderr,
        } = self;
        built.get_or_insert_with(|| C::build(&mut builder(env, stdout, stderr)))
    }
}

/// A builder with the captured output streams and the granted environment; the rest (stdin,
/// arguments, network, files) stays empty, as `WasiCtxBuilder` starts.
fn builder(env: &[(String, String)], stdout: &Capture, stderr: &Capture) -> WasiCtxBuilder {
    let mut builder = WasiCtxBuilder::new();
    builder.stdout(stdout.clone()).stderr(stderr.clone());
    for (key, value) in env {
        builder.env(key, value);
    }
    builder
}
