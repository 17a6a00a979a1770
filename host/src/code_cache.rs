//! Compiled code, cached on disk: each module is compiled once per machine, not once per
//! worker per run.
//!
//! Only the host compiles. It stores each artifact (wasmtime's `precompile_component` /
//! `precompile_module` output) under the cache directory, keyed by the module's SHA-256, the
//! metering variant, and a hash of the engine configuration
//! (`Engine::precompile_compatibility_hash`), and sends it to workers, which load it with
//! `deserialize` instead of compiling. Loading an artifact is `unsafe` in wasmtime because the
//! bytes are trusted to be its own output, so an entry is never trusted blindly. Each file is
//! **bound to what it was compiled from**: its header, inside the checked bytes, names the
//! module's SHA-256, its kind, the metering variant and the engine configuration, and a read
//! checks all of them against the module being loaded before any byte of code is used (a
//! checksum of the entry's own bytes alone would accept another module's entry copied or
//! linked into this one's place, and run it). The code carries a SHA-256 checked on every
//! read; the file must be a regular file (never a link, a FIFO or a device, and opening one
//! never blocks) owned by this user, and is written under a temporary name then renamed, so a
//! reader never sees half a file. A corrupt, truncated, foreign, misplaced or stale entry is
//! logged, compiled again and replaced. Artifacts from users are never accepted: the cache
//! holds only what this host produced.
//!
//! The directory: `$WASMPOOL_CACHE_DIR` if set (`off` turns the cache off), else
//! `$XDG_CACHE_HOME/wasmpool`, else `~/.cache/wasmpool`. Created with mode 0700. It holds at
//! most [`MAX_CACHE_BYTES`]: storing an entry past that removes the least recently used ones
//! (a read counts as a use), which also clears out, in time, the entries of other wasmpool
//! versions and engine configurations, as nothing reads those any more.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::Engine;

use crate::compile::CompileError;
use crate::engine::{Metering, host_engine};
use crate::wire::Compiled;
use crate::wire::{ModuleId, ModuleKind};

/// How many bytes of entries the cache keeps at most.
pub(crate) const MAX_CACHE_BYTES: u64 = 1 << 30;

/// A temporary file this old was left by a writer that died: it is removed when the cache is
/// pruned.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// The first bytes of every cache file, with the format's version.
const MAGIC: &[u8; 8] = b"WPCODE03";

/// What an entry is bound to: the module it was compiled from, and how. Written at the head
/// of the entry and checked against the module being loaded before its code is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Binding {
    module: ModuleId,
    kind: ModuleKind,
    metering: Metering,
    /// The engine configuration and this version of wasmpool (see [`engine_key`]).
    engine: u64,
}

/// The header: the magic, the binding (32 + 1 + 1 + 8 bytes), the length of the interface
/// (4 bytes), and the SHA-256 of what follows: the interface (postcard), then the code.
const HEADER: usize = MAGIC.len() + 42 + 4 + 32;

impl Binding {
    fn new(engine: &Engine, metering: Metering, id: &ModuleId, kind: ModuleKind) -> Self {
        Binding {
            module: *id,
            kind,
            metering,
            engine: engine_key(engine, kind),
        }
    }

    fn encode(&self) -> [u8; 42] {
        let mut out = [0u8; 42];
        out[..32].copy_from_slice(&self.module);
        out[32] = match self.kind {
            ModuleKind::Component => 1,
            ModuleKind::Core => 2,
        };
        out[33] = self.metering.index() as u8 + 1;
        out[34..].copy_from_slice(&self.engine.to_le_bytes());
        out
    }

    /// What differs between this binding and the one `stored` encodes, if anything.
    fn mismatch(&self, stored: &[u8]) -> Option<&'static str> {
        let expected = self.encode();
        if stored[..32] != expected[..32] {
            Some("it was compiled from another module")
        } else if stored[32] != expected[32] {
            Some("it was compiled as another kind of module")
        } else if stored[33] != expected[33] {
            Some("it was compiled for another engine variant")
        } else if stored[34..42] != expected[34..42] {
            Some("it was compiled by another engine configuration or wasmpool version")
        } else {
            None
        }
    }
}

/// The engine configuration and the wasmpool version an artifact belongs to.
fn engine_key(engine: &Engine, kind: ModuleKind) -> u64 {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    kind.hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    hasher.finish()
}

/// Set by [`set_cache_dir`]: overrides the environment.
static OVERRIDE: Mutex<Option<Option<PathBuf>>> = Mutex::new(None);

/// Where compiled code is cached from now on in this process: `Some(dir)`, or `None` for no
/// cache. Overrides `$WASMPOOL_CACHE_DIR`.
pub fn set_cache_dir(dir: Option<PathBuf>) {
    *OVERRIDE.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir);
}

/// The cache directory in use, if any (see the module docs for how it is chosen).
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(chosen) = OVERRIDE.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        return chosen;
    }
    match std::env::var_os("WASMPOOL_CACHE_DIR") {
        Some(dir) if dir == "off" || dir.is_empty() => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("wasmpool")),
    }
}

/// The compiled code and interface of the module whose SHA-256 is `id`, for the engine of
/// `metering`: read from the cache in `dir` when a sound entry is there, otherwise made by
/// `compile` (which compiles behind walls: see [`crate::compile`]) and stored, when `dir` is
/// given.
pub(crate) fn compiled(
    dir: Option<&Path>,
    metering: Metering,
    id: &ModuleId,
    kind: ModuleKind,
    compile: impl FnOnce() -> Result<Compiled, CompileError>,
) -> Result<Compiled, CompileError> {
    let binding = Binding::new(host_engine(metering), metering, id, kind);
    let path = dir.map(|dir| entry_path(dir, &binding));
    if let Some(path) = &path {
        match read_entry(path, &binding) {
            Ok(Some(compiled))
                if Engine::detect_precompiled(&compiled.code) == Some(precompiled_kind(kind)) =>
            {
                return Ok(compiled);
            }
            Ok(Some(_)) => {
                log::warn!(target: "wasmpool::cache", "{}: not wasmtime code of this kind; rebuilding it", path.display())
            }
            Ok(None) => {}
            Err(why) => {
                log::warn!(target: "wasmpool::cache", "{}: {why}; rebuilding it", path.display())
            }
        }
    }
    let compiled = compile()?;
    if let (Some(dir), Some(path)) = (dir, &path) {
        match write_entry(path, &binding, &compiled) {
            Ok(()) => prune(dir, path, MAX_CACHE_BYTES),
            Err(e) => {
                log::warn!(target: "wasmpool::cache", "cannot store {}: {e}", path.display())
            }
        }
    }
    Ok(compiled)
}

fn precompiled_kind(kind: ModuleKind) -> wasmtime::Precompiled {
    match kind {
        ModuleKind::Component => wasmtime::Precompiled::Component,
        ModuleKind::Core => wasmtime::Precompiled::Module,
    }
}

/// `<dir>/<engine configuration>/<module hash>-<metering>.cwasm`.
fn entry_path(dir: &Path, binding: &Binding) -> PathBuf {
    let id: String = binding.module.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{:016x}", binding.engine))
        .join(format!("{id}-{:?}.cwasm", binding.metering))
}

/// The code and interface stored at `path` for `binding`: `None` if there is no entry, an
/// error if there is one that cannot be trusted (not a regular file of this user, not an
/// entry, bound to something else, or corrupt). A sound entry is marked as just used (its
/// modification time), for [`prune`].
fn read_entry(path: &Path, binding: &Binding) -> Result<Option<Compiled>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    // Never through a link, and never blocking: a FIFO put here would otherwise hang the
    // read until someone writes to it.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err("it is a symbolic link, not an entry this host wrote".into());
        }
        Err(e) => return Err(e.to_string()),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    // SAFETY: geteuid cannot fail.
    if meta.uid() != unsafe { libc::geteuid() } {
        return Err(format!("owned by uid {}, not by this user", meta.uid()));
    }
    if meta.len() > MAX_CACHE_BYTES {
        return Err(format!("{} bytes, larger than the whole cache", meta.len()));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| e.to_string())?;
    if bytes.starts_with(&MAGIC[..6]) && !bytes.starts_with(MAGIC) {
        // An entry of another format version, from another wasmpool: stale, not suspect.
        log::debug!(target: "wasmpool::cache", "{}: an entry of another format; rebuilding it", path.display());
        return Ok(None);
    }
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a wasmpool cache entry, or truncated".into());
    }
    let (stored, rest) = bytes[MAGIC.len()..].split_at(42);
    if let Some(why) = binding.mismatch(stored) {
        return Err(why.into());
    }
    let (interface_len, rest) = rest.split_at(4);
    let interface_len = u32::from_le_bytes(interface_len.try_into().expect("4")) as usize;
    let (sum, payload) = rest.split_at(32);
    if Sha256::digest(payload).as_slice() != sum {
        return Err("its checksum does not match its contents".into());
    }
    if interface_len > payload.len() {
        return Err("its interface is longer than the entry".into());
    }
    let (interface, code) = payload.split_at(interface_len);
    let interface = postcard::from_bytes(interface)
        .map_err(|e| format!("its interface does not decode: {e}"))?;
    let _ = file.set_modified(SystemTime::now());
    Ok(Some(Compiled {
        code: code.to_vec(),
        interface,
    }))
}

/// Keeps the entries under `dir` within `max` bytes in all, removing the least recently used
/// first (never `keep`, the entry just stored), and the temporary files of writers that died.
fn prune(dir: &Path, keep: &Path, max: u64) {
    let now = SystemTime::now();
    let mut entries = Vec::new();
    let subdirs = std::fs::read_dir(dir).into_iter().flatten().flatten();
    for file in subdirs.flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten()) {
        let path = file.path();
        let Ok(meta) = file.metadata() else { continue };
        let used = meta.modified().unwrap_or(now);
        let name = file.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            if now.duration_since(used).unwrap_or_default() > STALE_TEMP_AGE {
                let _ = std::fs::remove_file(&path);
            }
        } else if name.ends_with(".cwasm") {
            entries.push((used, meta.len(), path));
        }
    }
    let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
    entries.sort();
    for (_, len, path) in entries {
        if total <= max {
            break;
        }
        if path != keep && std::fs::remove_file(&path).is_ok() {
            log::debug!(target: "wasmpool::cache", "removed {} (the cache holds at most {max} bytes)", path.display());
            total -= len;
        }
    }
}

/// Stores `compiled`, bound to `binding`, at `path` atomically (a temporary file in the same
/// directory, renamed).
fn write_entry(path: &Path, binding: &Binding, compiled: &Compiled) -> std::io::Result<()> {
    let interface = postcard::to_allocvec(&compiled.interface).map_err(std::io::Error::other)?;
    let dir = path.parent().expect("entries live in a directory");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // Unique per process and per write, so that two writers never share a temporary file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let temp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut file = std::fs::File::create(&temp)?;
    let mut sum = Sha256::new();
    sum.update(&interface);
    sum.update(&compiled.code);
    file.write_all(MAGIC)?;
    file.write_all(&binding.encode())?;
    file.write_all(&(interface.len() as u32).to_le_bytes())?;
    file.write_all(&sum.finalize())?;
    file.write_all(&interface)?;
    file.write_all(&compiled.code)?;
    drop(file);
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::host_engine as engine;

    const WAT: &str = r#"(module (func (export "one") (result i32) i32.const 1))"#;
    const OTHER: &str = r#"(module (func (export "two") (result i32) i32.const 2))"#;

    /// The code of `wat` (known by `id`) for `metering`, through the cache in `dir` (compiled
    /// in this process: what is under test is the cache, not the compiling process).
    fn compile_as(dir: &Path, wat: &str, id: ModuleId, metering: Metering) -> Vec<u8> {
        let wasm = wat::parse_str(wat).unwrap();
        compiled(Some(dir), metering, &id, ModuleKind::Core, || {
            crate::worker::compile::compile(ModuleKind::Core, metering, &wasm)
                .map_err(CompileError::Invalid)
        })
        .unwrap()
        .code
    }

    fn compile(dir: &Path) -> Vec<u8> {
        compile_as(dir, WAT, [3; 32], Metering::Plain)
    }

    fn binding_of(id: ModuleId, metering: Metering) -> Binding {
        Binding::new(engine(metering), metering, &id, ModuleKind::Core)
    }

    fn the_entry(dir: &Path) -> PathBuf {
        entry_path(dir, &binding_of([3; 32], Metering::Plain))
    }

    fn read(path: &Path) -> Result<Option<Vec<u8>>, String> {
        read_entry(path, &binding_of([3; 32], Metering::Plain))
            .map(|entry| entry.map(|compiled| compiled.code))
    }

    #[test]
    fn an_entry_is_stored_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = compile(dir.path());
        let path = the_entry(dir.path());
        assert!(path.exists());
        assert_eq!(read(&path).unwrap(), Some(first.clone()));
        assert_eq!(compile(dir.path()), first);
        let mode = std::fs::metadata(path.parent().unwrap()).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn corrupt_or_truncated_entries_are_detected_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let good = compile(dir.path());
        let path = the_entry(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read(&path).unwrap_err().contains("checksum"));
        assert_eq!(compile(dir.path()), good);
        assert_eq!(read(&path).unwrap(), Some(good.clone()));

        std::fs::write(&path, &bytes[..20]).unwrap();
        assert!(read(&path).unwrap_err().contains("truncated"));
        assert_eq!(compile(dir.path()), good);

        // A well-formed entry whose code is not wasmtime's is rebuilt too.
        let mut forged = MAGIC.to_vec();
        forged.extend_from_slice(&binding_of([3; 32], Metering::Plain).encode());
        forged.extend_from_slice(&0u32.to_le_bytes());
        forged.extend_from_slice(&Sha256::digest(b"junk"));
        forged.extend_from_slice(b"junk");
        std::fs::write(&path, &forged).unwrap();
        assert_eq!(compile(dir.path()), good);
    }

    #[test]
    fn the_cache_keeps_its_most_recently_used_entries_within_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let old_config = dir.path().join("0000000000000001");
        let config = dir.path().join("0000000000000002");
        std::fs::create_dir_all(&old_config).unwrap();
        std::fs::create_dir_all(&config).unwrap();
        let hours_ago = |h: u64| SystemTime::now() - Duration::from_secs(h * 3600);
        let entry = |dir: &Path, name: &str, used: SystemTime| {
            let path = dir.join(name);
            std::fs::write(&path, [0u8; 100]).unwrap();
            std::fs::File::open(&path)
                .unwrap()
                .set_modified(used)
                .unwrap();
            path
        };
        let oldest = entry(&old_config, "a-Plain.cwasm", hours_ago(50));
        let older = entry(&config, "b-Plain.cwasm", hours_ago(40));
        let recent = entry(&config, "c-Plain.cwasm", hours_ago(1));
        let dead_writer = entry(&config, ".c-Plain.cwasm.1.0.tmp", hours_ago(2));
        let live_writer = entry(&config, ".c-Plain.cwasm.2.0.tmp", SystemTime::now());
        // The entry just stored is kept even if it is the oldest.
        let stored = entry(&config, "d-Plain.cwasm", hours_ago(100));
        prune(dir.path(), &stored, 250);
        for (path, kept) in [
            (&oldest, false),
            (&older, false),
            (&recent, true),
            (&stored, true),
            (&dead_writer, false),
            (&live_writer, true),
        ] {
            assert_eq!(path.exists(), kept, "{}", path.display());
        }
        // Reading an entry marks it as used.
        let path = the_entry(dir.path());
        compile(dir.path());
        std::fs::File::open(&path)
            .unwrap()
            .set_modified(hours_ago(500))
            .unwrap();
        assert!(read(&path).unwrap().is_some());
        let used = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(used > hours_ago(1));
    }

    #[test]
    fn the_key_tells_metering_variants_apart() {
        let dir = Path::new("/cache");
        let plain = entry_path(dir, &binding_of([1; 32], Metering::Plain));
        let fuel = entry_path(dir, &binding_of([1; 32], Metering::EpochsAndFuel));
        assert_ne!(plain.parent(), fuel.parent());
        assert_ne!(plain.file_name(), fuel.file_name());
    }

    /// An entry is bound to what it was compiled from: another module's entry, or the same
    /// module's other variant, copied or linked into its place is refused and rebuilt, never
    /// run (a checksum of the entry's own bytes would accept either).
    #[test]
    fn an_entry_in_another_ones_place_is_refused_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let one = compile(dir.path());
        let two = compile_as(dir.path(), OTHER, [4; 32], Metering::Plain);
        let path = the_entry(dir.path());
        let other = entry_path(dir.path(), &binding_of([4; 32], Metering::Plain));
        std::fs::copy(&other, &path).unwrap();
        assert_eq!(
            read(&path).unwrap_err(),
            "it was compiled from another module"
        );
        assert_eq!(compile(dir.path()), one, "rebuilt from the right module");
        assert_ne!(one, two);
        // A link to it, in its place.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&other, &path).unwrap();
        assert!(read(&path).unwrap_err().contains("symbolic link"));
        assert_eq!(compile(dir.path()), one);
        // The same module's epochs variant over its plain one.
        let epochs = compile_as(dir.path(), WAT, [3; 32], Metering::Epochs);
        let epochs_path = entry_path(dir.path(), &binding_of([3; 32], Metering::Epochs));
        std::fs::copy(&path, &epochs_path).unwrap();
        let refused = read_entry(&epochs_path, &binding_of([3; 32], Metering::Epochs));
        assert!(
            refused.unwrap_err().contains("another"),
            "the plain code is not the epochs code"
        );
        assert_eq!(
            compile_as(dir.path(), WAT, [3; 32], Metering::Epochs),
            epochs
        );
    }

    #[test]
    fn a_fifo_in_the_cache_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let good = compile(dir.path());
        let path = the_entry(dir.path());
        std::fs::remove_file(&path).unwrap();
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid path and mode.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let cache = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(compile(&cache));
        });
        let rebuilt = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the read of a FIFO does not hang");
        assert_eq!(rebuilt, good);
    }
}
