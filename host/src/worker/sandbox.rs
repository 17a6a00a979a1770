//! The WASI context of one task: nothing but what its grants allow (no files, no environment,
//! no arguments, no network, an empty stdin), with stdout and stderr captured in memory. A
//! whole program (`wasmpool exec`) also gets its arguments and its stdin, per call.
//!
//! The context is built when the guest first calls into WASI, not when its instance is made:
//! most tasks never print or read a clock, and building a context (seeding its random number
//! generators among other things) was about 5% of a fresh instance's cost. A task granted
//! directories gets its context at once, so that a directory that cannot be opened fails the
//! task before it starts, as [`RunFailure::Sandbox`].

use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
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
    /// The grants, kept to build the context again when a program's input comes after it was
    /// built (only for a task granted directories, whose context is built at once).
    grants: Option<Grants>,
    /// A whole program's arguments and stdin, given before its call (see [`Sandbox::set_input`]).
    input: Option<ProgramInput>,
}

/// What a whole program gets besides its grants: its arguments (`argv[1..]`; `argv[0]` is the
/// program's name) and its stdin.
pub(crate) struct ProgramInput {
    pub(crate) args: Vec<String>,
    pub(crate) stdin: bytes::Bytes,
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
            Some(build_granted(grants, stdout, stderr, None)?)
        };
        // Once built, the context holds the environment itself.
        let env = if built.is_some() {
            Vec::new()
        } else {
            grants.env.clone()
        };
        Ok(Sandbox {
            grants: built.is_some().then(|| grants.clone()),
            built,
            env,
            stdout: stdout.clone(),
            stderr: stderr.clone(),
            input: None,
        })
    }

    /// Gives a whole program its arguments and stdin, before it is called: the context is
    /// built with them (again, if it was built at once for granted directories).
    pub(crate) fn set_input(&mut self, input: ProgramInput) -> Result<(), RunFailure> {
        if let Some(grants) = &self.grants {
            self.built = Some(build_granted(
                grants,
                &self.stdout,
                &self.stderr,
                Some(&input),
            )?);
        } else {
            self.built = None;
        }
        self.input = Some(input);
        Ok(())
    }

    /// The context, built now if this is the guest's first WASI call.
    pub(crate) fn get(&mut self) -> &mut C {
        let Sandbox {
            built,
            env,
            stdout,
            stderr,
            input,
            ..
        } = self;
        built.get_or_insert_with(|| C::build(&mut builder(env, stdout, stderr, input.as_ref())))
    }
}

/// The context of a task granted directories, each opened now: one that cannot be opened
/// fails the task before it starts.
fn build_granted<C: Context>(
    grants: &Grants,
    stdout: &Capture,
    stderr: &Capture,
    input: Option<&ProgramInput>,
) -> Result<C, RunFailure> {
    let mut builder = builder(&grants.env, stdout, stderr, input);
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
    Ok(C::build(&mut builder))
}

/// A builder with the captured output streams, the granted environment, and a program's
/// arguments and stdin; the rest (network, files) stays empty, as `WasiCtxBuilder` starts.
fn builder(
    env: &[(String, String)],
    stdout: &Capture,
    stderr: &Capture,
    input: Option<&ProgramInput>,
) -> WasiCtxBuilder {
    let mut builder = WasiCtxBuilder::new();
    builder.stdout(stdout.clone()).stderr(stderr.clone());
    if let Some(input) = input {
        builder
            .arg("main")
            .args(&input.args)
            .stdin(MemoryInputPipe::new(input.stdin.clone()));
    }
    for (key, value) in env {
        builder.env(key, value);
    }
    builder
}
