//! Loading a `.wasm` (or `.wat`) file: validating it, hashing it, telling a component from a
//! core module, listing its callable exports with their WIT signatures and its imports, and
//! checking that a worker can link it.
//!
//! This happens once, on the host, before any task runs: a garbage, truncated or non-wasm file,
//! or one that imports what workers do not provide, is an [`Error::InvalidModule`] at load
//! time, and every task's arguments are later checked against the signatures read here.

mod interface;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::compile::{CompileError, CompileLimits};
use crate::engine::Metering;
use crate::error::{Error, TaskError};
use crate::limits::{Grants, Limits};
use crate::shared_code::CodeFile;
use crate::values::json::args_from_json;
use crate::values::{Args, ArgsShape, Signature, Values, WitType};
use crate::wire::{ModuleId, ModuleKind};

pub(crate) use interface::{Interface, read_interface};

const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];

/// A validated WebAssembly module or component, ready to be run by any pool.
///
/// Cheap to clone. Load one with [`Module::from_file`] or [`Module::from_bytes`], then pick an
/// export with [`Module::task`].
#[derive(Clone)]
pub struct Module {
    inner: Arc<ModuleInner>,
}

struct ModuleInner {
    id: ModuleId,
    kind: ModuleKind,
    bytes: Arc<Vec<u8>>,
    origin: String,
    exports: Vec<Signature>,
    imports: Vec<String>,
    /// The limits of compiling it, for each variant compiled later.
    compile: CompileLimits,
    /// Who is told when a variant is compiled later.
    on_compile: Option<CompileHook>,
    /// The compiled code for each metering variant, made on first use (the loader's at load
    /// time): what workers load instead of compiling (see [`crate::shared_code`]).
    code: [OnceLock<Result<Arc<CodeFile>, String>>; 3],
}

/// Modules from this size up are announced in the log (at info level) before they are
/// compiled: a componentize-py task (18 MB) takes 10 to 20 seconds.
pub const LARGE_MODULE_BYTES: u64 = 1 << 20;

/// What [`Loader::on_compile`] is told: a module's code for one engine variant is not in the
/// cache, and is being compiled (once per machine, while the cache keeps it), or was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompileEvent<'a> {
    /// The compiler starts on the module.
    Started {
        /// The module, as [`Module::origin`] names it.
        origin: &'a str,
        /// Its size in bytes.
        bytes: u64,
    },
    /// The compiler is done with it, having compiled it or not (the load's result says).
    Finished {
        /// The module, as [`Module::origin`] names it.
        origin: &'a str,
        /// Its size in bytes.
        bytes: u64,
        /// How long it took.
        elapsed: Duration,
    },
}

/// A [`Loader::on_compile`] callback.
#[derive(Clone)]
struct CompileHook(Arc<dyn Fn(CompileEvent<'_>) + Send + Sync>);

impl fmt::Debug for CompileHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CompileHook")
    }
}

/// The module's code and interface for `metering`, from the cache or compiled behind walls;
/// a compile is logged (from [`LARGE_MODULE_BYTES`] up) and told to `hook`.
fn compile_or_cached(
    id: &ModuleId,
    kind: ModuleKind,
    metering: Metering,
    wasm: &[u8],
    origin: &str,
    limits: CompileLimits,
    hook: Option<&CompileHook>,
) -> Result<crate::code_cache::Cached, CompileError> {
    let cache = crate::code_cache::cache_dir();
    let bytes = wasm.len() as u64;
    let mut started = None;
    let compiling = || {
        if bytes >= LARGE_MODULE_BYTES {
            log::info!(
                target: "wasmpool::compile",
                "compiling {origin} ({}), once per machine while the cache keeps it",
                crate::error::Size(bytes)
            );
        }
        if let Some(hook) = hook {
            (hook.0)(CompileEvent::Started { origin, bytes });
        }
        started = Some(std::time::Instant::now());
    };
    let result =
        crate::code_cache::compiled(cache.as_deref(), metering, id, kind, compiling, || {
            crate::compile::compile(kind, metering, wasm, limits)
        });
    if let (Some(hook), Some(started)) = (hook, started) {
        (hook.0)(CompileEvent::Finished {
            origin,
            bytes,
            elapsed: started.elapsed(),
        });
    }
    result
}

/// A failed compile as the error of loading `origin`.
fn compile_error(origin: &str, e: CompileError) -> Error {
    let origin = origin.to_string();
    match e {
        CompileError::Invalid(detail) => Error::InvalidModule { origin, detail },
        CompileError::Timeout(limit) => Error::CompileTimeout { origin, limit },
        CompileError::Died { cause, memory } => Error::CompileFailed {
            origin,
            memory,
            cause,
        },
        CompileError::Spawn(e) => e,
    }
}

/// The largest module file [`Module::from_file`] reads by default (see [`Loader::max_bytes`]).
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 256 << 20;

/// How module files are loaded: what [`Module::from_file`] does with the defaults.
///
/// A module file is untrusted input: only a regular file is read (a FIFO, a device such as
/// `/dev/zero`, a directory are refused, and opening one never blocks), and at most
/// [`Loader::max_bytes`] of it.
///
/// # Examples
/// ```no_run
/// let module = wasmpool::Module::loader().max_bytes(1 << 30).file("python-task.wasm")?;
/// # Ok::<(), wasmpool::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Loader {
    max_bytes: u64,
    compile: CompileLimits,
    metering: Metering,
    on_compile: Option<CompileHook>,
}

impl Default for Loader {
    fn default() -> Self {
        Loader {
            max_bytes: DEFAULT_MAX_MODULE_BYTES,
            compile: CompileLimits::default(),
            metering: Metering::Plain,
            on_compile: None,
        }
    }
}

impl Loader {
    /// How long compiling a module may take (default [`crate::DEFAULT_COMPILE_TIMEOUT`]): the
    /// compiler runs in a process of its own, killed past this, and the load is
    /// [`Error::CompileTimeout`].
    pub fn compile_timeout(mut self, timeout: Duration) -> Self {
        self.compile.timeout = timeout;
        self
    }

    /// How much memory compiling a module may take, as the address space of the process that
    /// compiles it, its own code included (default [`crate::DEFAULT_COMPILE_MEMORY`]); past it the
    /// load is [`Error::CompileFailed`].
    pub fn compile_memory(mut self, bytes: u64) -> Self {
        self.compile.memory = bytes;
        self
    }

    /// Compiles modules, at load, for the tasks that run with `limits` (a timeout and a fuel
    /// limit each need code of their own): a module for a pool with a timeout is then
    /// compiled once, not once to load it and again to run it.
    pub fn for_limits(mut self, limits: Limits) -> Self {
        self.metering = limits.resolve().metering;
        self
    }

    /// Calls `hook` when a module's code is not in the cache and the compiler starts on it,
    /// and again when it is done ([`CompileEvent`]), for this load and for the variants the
    /// module's tasks compile later: so that a front end can say what takes the time (an
    /// 18 MB Python component compiles for 10 to 20 seconds, once per machine). A module found
    /// in the cache calls nothing. The library itself never prints; it logs compiles of
    /// modules from [`LARGE_MODULE_BYTES`] up at info level.
    ///
    /// # Examples
    /// ```no_run
    /// use wasmpool::{CompileEvent, Module};
    /// let module = Module::loader()
    ///     .on_compile(|event| {
    ///         if let CompileEvent::Started { origin, .. } = event {
    ///             eprintln!("compiling {origin}...");
    ///         }
    ///     })
    ///     .file("python-task.wasm")?;
    /// # Ok::<(), wasmpool::Error>(())
    /// ```
    pub fn on_compile(mut self, hook: impl Fn(CompileEvent<'_>) + Send + Sync + 'static) -> Self {
        self.on_compile = Some(CompileHook(Arc::new(hook)));
        self
    }

    /// Validates a module or component given as bytes (binary wasm or `.wat` text), naming
    /// it `origin` in messages.
    pub fn bytes(
        &self,
        bytes: impl Into<Vec<u8>>,
        origin: impl Into<String>,
    ) -> Result<Module, Error> {
        Module::new(bytes.into(), origin.into(), self, None)
    }

    /// The largest module file read (default [`DEFAULT_MAX_MODULE_BYTES`]); a larger one is
    /// [`Error::ModuleTooLarge`].
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Reads and validates a `.wasm` component or core module (or a `.wat` text file).
    pub fn file(&self, path: impl AsRef<Path>) -> Result<Module, Error> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let path = path.as_ref();
        let origin = path.display().to_string();
        let read_error = |source| Error::Read {
            path: origin.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(read_error)?;
        let meta = file.metadata().map_err(read_error)?;
        if !meta.is_file() {
            let kind = if meta.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            return Err(read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("it is {kind}"),
            )));
        }
        let too_large = |size| Error::ModuleTooLarge {
            origin: origin.clone(),
            size,
            limit: self.max_bytes,
        };
        if meta.len() > self.max_bytes {
            return Err(too_large(meta.len()));
        }
        // Its hash, if the cache remembers it for the file as it is (see `code_cache::known_id`).
        let identity = crate::code_cache::FileIdentity::of(&meta);
        let cache = crate::code_cache::cache_dir();
        let known = cache
            .as_deref()
            .and_then(|dir| crate::code_cache::known_id(dir, &identity));
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // At most one byte past the limit: a file that grows while it is read is caught too.
        (&file)
            .take(self.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(too_large(bytes.len() as u64));
        }
        // A file that changed while it was read is hashed, and its hash not remembered.
        let unchanged = file
            .metadata()
            .is_ok_and(|after| crate::code_cache::FileIdentity::of(&after) == identity);
        let module = Module::new(bytes, origin.clone(), self, known.filter(|_| unchanged))?;
        if let (Some(dir), None, true) = (&cache, known, unchanged) {
            crate::code_cache::remember_id(dir, &identity, &module.id());
        }
        Ok(module)
    }
}

/// One export of one module: what a pool runs.
///
/// Cheap to clone; the same task can be used with any pool.
#[derive(Clone)]
pub struct Task {
    module: Module,
    sig: Arc<Signature>,
    limits: Limits,
    grants: Option<Arc<Grants>>,
    reuse_instance: bool,
    /// A whole program's entry point, called as [`Module::program`] says.
    program: bool,
    /// A batch export whose items are its list's elements (see [`Task::batched`]).
    batch: bool,
}

impl Module {
    /// Reads and validates a `.wasm` component or core module (or a `.wat` text file).
    ///
    /// # Examples
    /// ```no_run
    /// let module = wasmpool::Module::from_file("square.wasm")?;
    /// let square = module.task("square")?;
    /// # Ok::<(), wasmpool::Error>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Module, Error> {
        Self::loader().file(path)
    }

    /// A [`Loader`] with the defaults, to load modules with other limits.
    pub fn loader() -> Loader {
        Loader::default()
    }

    /// Validates a module or component given as bytes (binary wasm or `.wat` text).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Module, Error> {
        Self::from_bytes_named(bytes, "(from bytes)")
    }

    /// As [`Module::from_bytes`], with `origin` naming the module in messages and in
    /// [`Module::origin`] (the command line names its built-in tasks `builtin:NAME`).
    pub fn from_bytes_named(
        bytes: impl Into<Vec<u8>>,
        origin: impl Into<String>,
    ) -> Result<Module, Error> {
        Self::loader().bytes(bytes, origin)
    }

    /// A module of `bytes`, whose SHA-256 is `known` when the cache remembered it for the file
    /// they were read from (otherwise it is taken here).
    fn new(
        bytes: Vec<u8>,
        origin: String,
        loader: &Loader,
        known: Option<ModuleId>,
    ) -> Result<Module, Error> {
        let invalid = |detail: String| Error::InvalidModule {
            origin: origin.clone(),
            detail,
        };
        let was_binary = bytes.starts_with(WASM_MAGIC);
        let bytes = if was_binary {
            bytes
        } else if looks_like_text(&bytes) {
            wat::parse_bytes(&bytes)
                .map_err(|e| invalid(format!("invalid WebAssembly text: {e}")))?
                .into_owned()
        } else if bytes.is_empty() {
            return Err(invalid("the file is empty".into()));
        } else {
            return Err(invalid(
                "not a WebAssembly binary (it does not start with \\0asm)".into(),
            ));
        };
        let version: [u8; 4] = bytes
            .get(4..8)
            .and_then(|v| v.try_into().ok())
            .unwrap_or_default();
        let kind = if version == CORE_VERSION {
            ModuleKind::Core
        } else if version == COMPONENT_VERSION {
            ModuleKind::Component
        } else {
            return Err(invalid(format!(
                "unknown WebAssembly binary version {version:02x?}"
            )));
        };
        let id: ModuleId = match known {
            // Remembered for binary files only: text is parsed first.
            Some(id) if was_binary => id,
            _ => Sha256::digest(&bytes).into(),
        };
        // Compiling validates the module (behind walls, in a process of its own: see
        // `crate::compile`); the code is kept for the workers, and cached on disk so that the
        // next run skips the compile. It is compiled for the engine variant the loader was
        // told the tasks will need, so that a module for tasks with a timeout is compiled once.
        let metering = loader.metering;
        let compiled = compile_or_cached(
            &id,
            kind,
            metering,
            &bytes,
            &origin,
            loader.compile,
            loader.on_compile.as_ref(),
        )
        .map_err(|e| compile_error(&origin, e))?;
        let Interface {
            exports,
            imports,
            link_error,
        } = compiled.interface;
        if let Some(why) = link_error {
            return Err(invalid(format!(
                "a worker cannot link it: {why} (workers provide WASI 0.2 to components and \
                 WASI preview 1 to core modules, nothing else)"
            )));
        }
        let code: [OnceLock<Result<Arc<CodeFile>, String>>; 3] = Default::default();
        let _ = code[metering.index()].set(Ok(Arc::new(compiled.code)));
        Ok(Module {
            inner: Arc::new(ModuleInner {
                id,
                kind,
                bytes: Arc::new(bytes),
                origin,
                exports,
                imports,
                compile: loader.compile,
                on_compile: loader.on_compile.clone(),
                code,
            }),
        })
    }

    /// The compiled code of this module for workers of one metering variant (compiled on
    /// first use, behind walls, or read from the disk cache), or why it cannot be compiled.
    pub(crate) fn code(&self, metering: Metering) -> Result<Arc<CodeFile>, String> {
        let inner = &self.inner;
        inner.code[metering.index()]
            .get_or_init(|| {
                compile_or_cached(
                    &inner.id,
                    inner.kind,
                    metering,
                    &inner.bytes,
                    &inner.origin,
                    inner.compile,
                    inner.on_compile.as_ref(),
                )
                .map(|compiled| Arc::new(compiled.code))
                .map_err(|e| compile_error(&inner.origin, e).to_string())
            })
            .clone()
    }

    /// The export named `name`, as a task any pool can run.
    ///
    /// Names are as [`Module::exports`] lists them: `square`, or `iface#func` for a function
    /// inside an exported interface (the full `ns:pkg/iface#func` works too). An export whose
    /// signature holds a resource, a stream or a future is [`Error::UnsupportedExport`]: such
    /// values cannot leave the worker.
    pub fn task(&self, name: &str) -> Result<Task, Error> {
        let found = self
            .inner
            .exports
            .iter()
            .find(|sig| sig.name == name || short_name(&sig.name) == name)
            .ok_or_else(|| Error::NoSuchExport {
                name: name.to_string(),
                origin: self.inner.origin.clone(),
                available: self.export_names(),
            })?;
        if let Some(what) = found.unsupported() {
            return Err(Error::UnsupportedExport {
                name: found.name.clone(),
                origin: self.inner.origin.clone(),
                what: what.to_string(),
            });
        }
        Ok(Task {
            module: self.clone(),
            sig: Arc::new(found.clone()),
            limits: Limits::new(),
            grants: None,
            reuse_instance: false,
            program: false,
            batch: false,
        })
    }

    /// The module as a whole program, as `wasmpool exec` runs it: a component's
    /// `wasi:cli/run` entry point (what `cargo build --target wasm32-wasip2` makes of a binary
    /// crate) or a core module's `_start` (a WASI preview-1 command). The task takes the
    /// program's arguments (`args: list<string>`, after its name, which is `main`) and its
    /// stdin (`stdin: string`), and returns its exit code (`s32`): 0 when it returns, the code
    /// it exits with (a component can only exit with 0 or 1: `wasi:cli/exit` has no other),
    /// 1 for `wasi:cli/run`'s `err`. What it prints comes back as any task's output does (see
    /// [`crate::StreamOptions::capture_output`]). A program runs in a fresh instance every
    /// time; limits and grants apply as to any task.
    ///
    /// # Examples
    /// ```no_run
    /// # let pool = wasmpool::Pool::new()?;
    /// let program = wasmpool::Module::from_file("grader.wasm")?.program()?;
    /// let code: i32 = pool.apply(&program, (vec!["--strict"], "1 2 3\n"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn program(&self) -> Result<Task, Error> {
        let entry = self.inner.exports.iter().find(|sig| match self.kind() {
            ModuleKind::Component => {
                sig.name.starts_with("wasi:cli/run@")
                    && sig.name.ends_with("#run")
                    && sig.params.is_empty()
            }
            ModuleKind::Core => sig.name == "_start" && sig.params.is_empty(),
        });
        let Some(entry) = entry else {
            return Err(Error::NotAProgram {
                origin: self.inner.origin.clone(),
                available: self.export_names(),
            });
        };
        let sig = Signature {
            name: entry.name.clone(),
            params: vec![
                ("args".into(), WitType::List(Box::new(WitType::String))),
                ("stdin".into(), WitType::String),
            ],
            results: vec![WitType::S32],
        };
        Ok(Task {
            module: self.clone(),
            sig: Arc::new(sig),
            limits: Limits::new(),
            grants: None,
            reuse_instance: false,
            program: true,
            batch: false,
        })
    }

    /// The callable exports and their signatures.
    pub fn exports(&self) -> &[Signature] {
        &self.inner.exports
    }

    /// What the module imports: for a component, the interfaces (`wasi:cli/stdout@0.2.6`, ...);
    /// for a core module, `module.name` per import. Every import is paid for at every
    /// instantiation, so a task that imports nothing gets the cheapest fresh instances (see
    /// the built-in `pure` task).
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// Component or core module.
    pub fn kind(&self) -> ModuleKind {
        self.inner.kind
    }

    /// Where the module came from (its path), for messages.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The SHA-256 of the binary, in hex: the module's identity in worker caches.
    pub fn hash_hex(&self) -> String {
        self.inner.id.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn id(&self) -> ModuleId {
        self.inner.id
    }

    pub(crate) fn bytes(&self) -> &Arc<Vec<u8>> {
        &self.inner.bytes
    }

    fn export_names(&self) -> String {
        let names: Vec<&str> = self.inner.exports.iter().map(|s| s.name.as_str()).collect();
        if names.is_empty() {
            "(none)".to_string()
        } else {
            names.join(", ")
        }
    }
}

impl Task {
    /// The export's name.
    pub fn name(&self) -> &str {
        &self.sig.name
    }

    /// The export's WIT signature.
    pub fn signature(&self) -> &Signature {
        &self.sig
    }

    /// The module the export belongs to.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// This task with its own limits, over the pool's: only the fields set here change.
    ///
    /// # Examples
    /// ```no_run
    /// # use std::time::Duration;
    /// # let module = wasmpool::Module::from_file("untrusted.wasm")?;
    /// let quick = module.task("solve")?.with_limits(wasmpool::Limits::new().timeout(Duration::from_secs(1)));
    /// # Ok::<(), wasmpool::Error>(())
    /// ```
    pub fn with_limits(mut self, limits: Limits) -> Task {
        self.limits = limits.or(self.limits);
        self
    }

    /// This task with its own grants, instead of the pool's. Granted directories must exist.
    pub fn with_grants(mut self, grants: Grants) -> Result<Task, Error> {
        grants.check()?;
        self.grants = Some(Arc::new(grants));
        Ok(self)
    }

    /// This task with the items of each chunk (of `map`, `starmap`, `imap`...) called one
    /// after another in one instance, instead of each in a fresh one: for tiny pure
    /// functions, where instantiating costs far more than the call (measured: about 10 µs to
    /// instantiate a small component, 0.2 µs to call it).
    ///
    /// What it shares and what it does not:
    /// - Only items of the same chunk of the same call share an instance; separate
    ///   `submit`s and different callers never do.
    /// - Whatever an item leaves in the instance's memory and globals, the next item of the
    ///   chunk sees: use it only for tasks that keep no state between calls.
    /// - A call that fails (a trap, a limit) discards the instance: the next item gets a
    ///   fresh one.
    /// - The timeout and fuel limits apply to each call; the memory and output caps to the
    ///   instance, over all the calls it serves.
    ///
    /// # Examples
    /// ```no_run
    /// # let pool = wasmpool::Pool::new()?;
    /// let square = wasmpool::Module::from_file("square.wasm")?.task("square")?.with_instance_reuse();
    /// let squares: Vec<i64> = pool.map(&square, 0..1_000_000_i64)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_instance_reuse(mut self) -> Task {
        self.reuse_instance = true;
        self
    }

    /// Whether [`Task::with_instance_reuse`] was asked for (never for a program, which runs
    /// once per instance).
    pub fn reuses_instance(&self) -> bool {
        self.reuse_instance && !self.program
    }

    /// Whether the task is a whole program (see [`Module::program`]).
    pub fn is_program(&self) -> bool {
        self.program
    }

    /// This batch export as a task whose items are the elements of its list: for an export
    /// `f: func(xs: list<T>) -> list<R>`, a task `f: func(xs: T) -> R`, which every method of
    /// a pool runs as it runs any task (one item, one outcome, in the same order, with the
    /// same errors), except that each chunk is one call of `f` with the chunk's items as its
    /// list, and the `R` at position `i` of the list `f` returns is item `i`'s result. Tiny
    /// items go many times faster so: one call of a component costs about 0.4 µs inside
    /// wasmtime, where squaring a number costs a nanosecond. [`crate::Pool::map_batched`] and
    /// [`crate::Pool::imap_batched`] take the export itself.
    ///
    /// The lists are as long as the pool's chunks ([`crate::PoolBuilder::chunksize`],
    /// Python's heuristic for `map`; [`crate::PoolBuilder::imap_chunksize`], as many items as
    /// take about two milliseconds for the streams). What differs from one call per item:
    /// - **Failures stay per item.** A list call that fails (a trap, a limit) is split in two
    ///   halves, each called again in a fresh instance, and so on down to the items that
    ///   fail alone, each with the error of its own one-element call (its panic message, its
    ///   stderr); every other item gets its result. Finding one failing item among `n` costs
    ///   `2 * log2(n)` more calls, over about `2n` elements in all (24 calls over 8190
    ///   elements for one bad item in a list of 4096), about twice that for two; when every
    ///   item fails, `2n - 1` calls in all, about twice what a map without batches makes. For an error that is no trap, return
    ///   `list<result<R, E>>`: an `err` element is that item's [`TaskError::Guest`], with no
    ///   call repeated. An export returning `result<list<R>, E>` is refused, as its error
    ///   could not say which item failed.
    /// - **A list of the wrong length** (not one result per element) fails every item of the
    ///   call with [`TaskError::BatchLength`], which says how many results were expected and
    ///   how many came.
    /// - **Limits apply per call**, that is per chunk: the timeout and the fuel bound each list
    ///   call (and each call of the halving), the memory and output caps its instance; the
    ///   result-size limit bounds each item's result. A limit that fires is split like a
    ///   trap, so a list too large for the memory cap is called in smaller parts.
    /// - **What a call prints** comes with the first item of the call that succeeded (with
    ///   each failing item, what its own call printed); the other items print nothing.
    /// - **Instances**: each call has a fresh instance, as each item does without batches;
    ///   [`Task::with_instance_reuse`] changes nothing. Single submissions (`submit`, `apply`)
    ///   are each one call of a one-element list: the pool never puts several callers' items
    ///   in one list.
    /// - A worker that dies during a list call fails the first item not yet reported (or
    ///   runs it again, with [`crate::PoolBuilder::retries`]); the others are sent to its
    ///   replacement.
    ///
    /// An export of another shape (not one `list` parameter, not one `list` result), a core
    /// module's export and a program are [`Error::NotBatchable`], with why. A task already
    /// batched is returned as it is; its limits and grants are kept.
    ///
    /// # Examples
    /// ```no_run
    /// # let pool = wasmpool::Pool::new()?;
    /// // square-many: func(xs: list<s64>) -> list<s64>
    /// let square_many = wasmpool::Module::from_file("square.wasm")?.task("square-many")?;
    /// let batched = square_many.batched()?;
    /// assert_eq!(batched.signature().to_string(), "square-many: func(xs: s64) -> s64");
    /// let squares: Vec<i64> = pool.map(&batched, 0..1_000_000_i64)?;
    /// assert_eq!(squares[1000], 1_000_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batched(&self) -> Result<Task, Error> {
        if self.batch {
            return Ok(self.clone());
        }
        let refuse = |why: String| Error::NotBatchable {
            name: self.name().to_string(),
            origin: self.module.origin().to_string(),
            why,
        };
        if self.program {
            return Err(refuse("it is a whole program's entry point".into()));
        }
        if self.module.kind() == ModuleKind::Core {
            return Err(refuse(
                "it is a core module's export, which takes and returns numbers only".into(),
            ));
        }
        let sig = &self.sig;
        let (param, elem) = match sig.params.as_slice() {
            [(param, WitType::List(elem))] => (param, elem),
            [(param, other)] => {
                return Err(refuse(format!(
                    "its parameter `{param}` is of type {other}, not a list"
                )));
            }
            params => {
                return Err(refuse(format!(
                    "it takes {} parameters, not one list",
                    params.len()
                )));
            }
        };
        let result = match sig.results.as_slice() {
            [WitType::List(result)] => result,
            [
                WitType::Result {
                    ok: Some(ok),
                    err: Some(_),
                },
            ] if matches!(**ok, WitType::List(_)) => {
                return Err(refuse(format!(
                    "it returns {}: an error for the whole list cannot say which item failed \
                     (return list<result<R, E>> for an error per item, or trap)",
                    sig.results[0]
                )));
            }
            [] => return Err(refuse("it returns nothing".into())),
            [other] => return Err(refuse(format!("it returns {other}, not a list"))),
            many => return Err(refuse(format!("it returns {} results", many.len()))),
        };
        let element = Signature {
            name: sig.name.clone(),
            params: vec![(param.clone(), (**elem).clone())],
            results: vec![(**result).clone()],
        };
        Ok(Task {
            module: self.module.clone(),
            sig: Arc::new(element),
            limits: self.limits,
            grants: self.grants.clone(),
            reuse_instance: self.reuse_instance,
            program: false,
            batch: true,
        })
    }

    /// Whether the task is a batch export's, its items the elements of the list (see
    /// [`Task::batched`]).
    pub fn is_batched(&self) -> bool {
        self.batch
    }

    /// The arguments of one call from JSON, checked against the signature, as
    /// [`crate::Pool::apply`] takes them: an array is spread over the parameters (`[2, 10]`
    /// for `power(base, exponent)`), and a value that is not an array is the one argument of
    /// a one-parameter export (`7` for `square(x)`). An object gives the arguments by name
    /// (`{"base": 2, "exponent": 10}`; for a one-parameter export only when its key is the
    /// parameter's name and the parameter is not a record, whose own form is an object). A
    /// mismatch is [`TaskError::BadInput`] naming the parameter and the WIT type it expects.
    ///
    /// # Examples
    /// ```no_run
    /// let power = wasmpool::Module::from_file("power.wasm")?.task("power")?;
    /// assert!(power.args_from_json(&serde_json::json!([2, 10])).is_ok());
    /// assert!(power.args_from_json(&serde_json::json!({"base": 2, "exponent": 10})).is_ok());
    /// let err = power.args_from_json(&serde_json::json!([2, -1])).unwrap_err();
    /// assert!(err.to_string().contains("parameter `exponent`: expected u32, got -1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn args_from_json(&self, json: &serde_json::Value) -> Result<Args, TaskError> {
        self.checked(json, ArgsShape::Spread)
    }

    /// The one argument of a call from JSON, checked against the signature, as
    /// [`crate::Pool::map`] takes each item: the value is the argument itself, an array
    /// included (`[1, 2]` for `sum(xs: list<s64>)`). For an export of several parameters this
    /// is [`TaskError::BadInput`], unless the value is an object that gives them by name, as
    /// [`Task::args_from_json`] takes them.
    pub fn arg_from_json(&self, json: &serde_json::Value) -> Result<Args, TaskError> {
        self.checked(json, ArgsShape::Single)
    }

    fn checked(&self, json: &serde_json::Value, shape: ArgsShape) -> Result<Args, TaskError> {
        match args_from_json(&self.sig, json, shape) {
            Ok(values) => Ok(Args {
                values,
                checked: Arc::clone(&self.sig),
            }),
            Err(e) => Err(e.for_task(self.name())),
        }
    }

    /// The values of `args`, if they were checked against this task's signature: arguments
    /// checked for another export are this call's bad input, not a guest's surprise.
    pub(crate) fn accept(&self, args: Args) -> Result<Values, TaskError> {
        if Arc::ptr_eq(&args.checked, &self.sig) || *args.checked == *self.sig {
            return Ok(args.values);
        }
        Err(TaskError::BadInput {
            func: self.name().to_string(),
            detail: format!(
                "these arguments were checked for `{}`, not for `{}`",
                args.checked, self.sig
            ),
            param: None,
        })
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    pub(crate) fn grants(&self) -> Option<&Arc<Grants>> {
        self.grants.as_ref()
    }
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module")
            .field("origin", &self.inner.origin)
            .field("kind", &self.inner.kind)
            .field("hash", &self.hash_hex())
            .field("exports", &self.export_names())
            .finish()
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("signature", &self.sig.to_string())
            .field("module", &self.module.inner.origin)
            .finish()
    }
}

/// `ns:pkg/iface@1.0.0#func` is also reachable as `iface#func`.
fn short_name(full: &str) -> String {
    match full.split_once('#') {
        Some((iface, func)) => {
            let iface = iface.rsplit('/').next().unwrap_or(iface);
            let iface = iface.split('@').next().unwrap_or(iface);
            format!("{iface}#{func}")
        }
        None => full.to_string(),
    }
}

fn looks_like_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| {
        let s = s.trim_start();
        s.starts_with('(') || s.starts_with(";;")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        let err = Module::from_bytes(b"hello, not wasm".to_vec()).unwrap_err();
        assert!(
            err.to_string().contains("not a WebAssembly binary"),
            "{err}"
        );
        let err = Module::from_bytes(Vec::new()).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = Module::from_bytes(b"\0asm\x01\0\0\0\x01\x05".to_vec()).unwrap_err();
        assert!(matches!(err, Error::InvalidModule { .. }), "{err}");
        let err = Module::from_bytes(b"\0asm\x09\0\0\0".to_vec()).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown WebAssembly binary version"),
            "{err}"
        );
    }

    #[test]
    fn core_modules_list_numeric_exports() {
        let wat = r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
                              (memory (export "memory") 1))"#;
        let module = Module::from_bytes(wat.as_bytes().to_vec()).unwrap();
        assert_eq!(module.kind(), ModuleKind::Core);
        assert_eq!(module.exports().len(), 1);
        assert_eq!(
            module.exports()[0].to_string(),
            "add: func(p0: s32, p1: s32) -> s32"
        );
        let err = module.task("sub").unwrap_err();
        assert!(err.to_string().contains("its exports are: add"), "{err}");
        assert_eq!(module.task("add").unwrap().name(), "add");
    }

    #[test]
    fn short_names_drop_the_package() {
        assert_eq!(short_name("wasmpool:tasks/math#square"), "math#square");
        assert_eq!(short_name("square"), "square");
        assert_eq!(
            short_name("wasmpool:tasks/math@0.1.0#square"),
            "math#square"
        );
    }
}
