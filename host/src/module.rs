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
    /// The compiled code for each metering variant, made on first use (the loader's at load
    /// time): what workers load instead of compiling.
    code: [OnceLock<Result<Arc<Vec<u8>>, String>>; 3],
}

/// The module's code and interface for `metering`, from the cache or compiled behind walls.
fn compile_or_cached(
    id: &ModuleId,
    kind: ModuleKind,
    metering: Metering,
    wasm: &[u8],
    limits: CompileLimits,
) -> Result<crate::wire::Compiled, CompileError> {
    let cache = crate::code_cache::cache_dir();
    crate::code_cache::compiled(cache.as_deref(), metering, id, kind, || {
        crate::compile::compile(kind, metering, wasm, limits)
    })
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
}

impl Default for Loader {
    fn default() -> Self {
        Loader {
            max_bytes: DEFAULT_MAX_MODULE_BYTES,
            compile: CompileLimits::default(),
            metering: Metering::Plain,
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

    /// Validates a module or component given as bytes (binary wasm or `.wat` text), naming
    /// it `origin` in messages.
    pub fn bytes(
        &self,
        bytes: impl Into<Vec<u8>>,
        origin: impl Into<String>,
    ) -> Result<Module, Error> {
        Module::new(bytes.into(), origin.into(), self)
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
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // At most one byte past the limit: a file that grows while it is read is caught too.
        file.take(self.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(too_large(bytes.len() as u64));
        }
        Module::new(bytes, origin.clone(), self)
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

    fn new(bytes: Vec<u8>, origin: String, loader: &Loader) -> Result<Module, Error> {
        let invalid = |detail: String| Error::InvalidModule {
            origin: origin.clone(),
            detail,
        };
        let bytes = if bytes.starts_with(WASM_MAGIC) {
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
        let id: ModuleId = Sha256::digest(&bytes).into();
        // Compiling validates the module (behind walls, in a process of its own: see
        // `crate::compile`); the code is kept for the workers, and cached on disk so that the
        // next run skips the compile. It is compiled for the engine variant the loader was
        // told the tasks will need, so that a module for tasks with a timeout is compiled once.
        let metering = loader.metering;
        let compiled = compile_or_cached(&id, kind, metering, &bytes, loader.compile)
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
        let code: [OnceLock<Result<Arc<Vec<u8>>, String>>; 3] = Default::default();
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
                code,
            }),
        })
    }

    /// The compiled code of this module for workers of one metering variant (compiled on
    /// first use, behind walls, or read from the disk cache), or why it cannot be compiled.
    pub(crate) fn code(&self, metering: Metering) -> Result<Arc<Vec<u8>>, String> {
        let inner = &self.inner;
        inner.code[metering.index()]
            .get_or_init(|| {
                compile_or_cached(&inner.id, inner.kind, metering, &inner.bytes, inner.compile)
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
