//! Compiled code, cached on disk: each module is compiled once per machine, not once per
//! worker per run, and its workers map the entry itself.
//!
//! Only the host compiles (behind walls: see [`crate::compile`]). It stores each artifact
//! (wasmtime's `precompile_component` / `precompile_module` output) under the cache
//! directory, keyed by the module's SHA-256, the metering variant, and a hash of the engine
//! configuration (`Engine::precompile_compatibility_hash`). An entry is the code itself from
//! its first byte (so that a worker can map the file as wasmtime's `deserialize_open_file`
//! does: see [`crate::shared_code`]), then the module's interface, then a trailer. Loading an
//! artifact is `unsafe` in wasmtime because the bytes are trusted to be its own output, so an
//! entry is never trusted blindly. Each file is **bound to what it was compiled from**: its
//! trailer names the module's SHA-256, its kind, the metering variant and the engine
//! configuration, and a read checks all of them against the module being loaded before any
//! byte of code is used (a checksum of the entry's own bytes alone would accept another
//! module's entry copied or linked into this one's place, and run it). A CRC-32C of
//! everything before it is checked on every read (the check is against corruption, a torn or
//! truncated file: someone who can write the user's cache directory can replace the user's
//! programs too, and is outside the threat model); the file must be a regular file (never a
//! link, a FIFO or a device, and opening one never blocks) owned by this user, and is written
//! under a temporary name then renamed, so a reader never sees half a file and a file once in
//! place never changes (a worker maps it for as long as it runs the module: a new entry is a
//! new file). A corrupt, truncated, foreign, misplaced or stale entry is logged, compiled again
//! and replaced. Artifacts from users are never accepted: the cache holds only what this host
//! produced.
//!
//! The directory: `$WASMPOOL_CACHE_DIR` if set (`off` turns the cache off), else
//! `$XDG_CACHE_HOME/wasmpool`, else `~/.cache/wasmpool`. Created with mode 0700. It holds at
//! most [`MAX_CACHE_BYTES`]: storing an entry past that removes the least recently used ones
//! (a read counts as a use), which also clears out, in time, the entries of other wasmpool
//! versions and engine configurations, as nothing reads those any more. Without a cache, the
//! code is kept in a sealed memfd for the life of the module.
//!
//! The cache also remembers the SHA-256 of module files (`ids/`, [`known_id`]), by their
//! device, inode, size, and modification and change times, so that a large module is not
//! hashed again at every load; any write to the file moves its change time, and then it is.

use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use wasmtime::Engine;

use crate::compile::CompileError;
use crate::engine::{Metering, host_engine};
use crate::module::Interface;
use crate::shared_code::{CodeFile, crc32c};
use crate::wire::Compiled;
use crate::wire::{ModuleId, ModuleKind};

/// How many bytes of entries the cache keeps at most.
pub(crate) const MAX_CACHE_BYTES: u64 = 1 << 30;

/// A temporary file this old was left by a writer that died: it is removed when the cache is
/// pruned.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// The last bytes of every cache file, with the format's version.
const MAGIC: &[u8; 8] = b"WPCODE04";

/// What the entries of earlier formats start with (they had a header, not a trailer): such an
/// entry is stale, not suspect.
const OLD_MAGIC: &[u8; 6] = b"WPCODE";

/// What an entry is bound to: the module it was compiled from, and how. Written in the trailer
/// of the entry and checked against the module being loaded before its code is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Binding {
    module: ModuleId,
    kind: ModuleKind,
    metering: Metering,
    /// The engine configuration and this version of wasmpool (see [`engine_key`]).
    engine: u64,
}

/// The trailer: the binding (32 + 1 + 1 + 8 bytes), the length of the interface (4 bytes)
/// and of the code (8 bytes), the CRC-32C of everything before it (4 bytes), the magic.
const TRAILER: usize = 42 + 4 + 8 + 4 + MAGIC.len();

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

/// A module's compiled code, as workers will load it, and its interface.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) code: CodeFile,
    pub(crate) interface: Interface,
}

/// The compiled code and interface of the module whose SHA-256 is `id`, for the engine of
/// `metering`: read from the cache in `dir` when a sound entry is there, otherwise made by
/// `compile` (which compiles behind walls: see [`crate::compile`]) and stored, when `dir` is
/// given. `compiling` is told just before `compile` runs.
pub(crate) fn compiled(
    dir: Option<&Path>,
    metering: Metering,
    id: &ModuleId,
    kind: ModuleKind,
    compiling: impl FnOnce(),
    compile: impl FnOnce() -> Result<Compiled, CompileError>,
) -> Result<Cached, CompileError> {
    let binding = Binding::new(host_engine(metering), metering, id, kind);
    let path = dir.map(|dir| entry_path(dir, &binding));
    if let Some(path) = &path {
        match read_entry(path, &binding) {
            Ok(Some(cached)) => return Ok(cached),
            Ok(None) => {}
            Err(why) => {
                log::warn!(target: "wasmpool::cache", "{}: {why}; rebuilding it", path.display())
            }
        }
    }
    compiling();
    let compiled = compile()?;
    if let (Some(dir), Some(path)) = (dir, &path) {
        // The entry just written, opened as any reader opens it, is what workers map.
        let stored = write_entry(path, &binding, &compiled)
            .map_err(|e| e.to_string())
            .and_then(|()| read_entry(path, &binding));
        match stored {
            Ok(Some(cached)) => {
                prune(dir, path, MAX_CACHE_BYTES);
                return Ok(cached);
            }
            Ok(None) => {
                log::warn!(target: "wasmpool::cache", "{}: gone as soon as stored", path.display())
            }
            Err(e) => {
                log::warn!(target: "wasmpool::cache", "cannot store {}: {e}", path.display())
            }
        }
    }
    Ok(Cached {
        code: CodeFile::in_memory(compiled.code),
        interface: compiled.interface,
    })
}

fn precompiled_kind(kind: ModuleKind) -> wasmtime::Precompiled {
    match kind {
        ModuleKind::Component => wasmtime::Precompiled::Component,
        ModuleKind::Core => wasmtime::Precompiled::Module,
    }
}

/// What identifies a module file's contents without reading them: its device and inode, its
/// size, and its modification and change times (the change time cannot be set: the kernel
/// moves it at every write, and every change of the other fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileIdentity {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn encode(&self) -> [u8; 56] {
        let mut out = [0u8; 56];
        let fields = [
            self.dev,
            self.ino,
            self.size,
            self.mtime.0 as u64,
            self.mtime.1 as u64,
            self.ctime.0 as u64,
            self.ctime.1 as u64,
        ];
        for (i, field) in fields.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&field.to_le_bytes());
        }
        out
    }
}

/// The first bytes of a remembered module hash.
const ID_MAGIC: &[u8; 8] = b"WPID0001";

/// How long after its last change a file's hash may be remembered: longer than any clock tick
/// the file system's times move by, so that a change after the hash was taken always moves
/// the change time (a file changed within the same tick as the change before it would not).
const SETTLED: Duration = Duration::from_secs(2);

/// `<dir>/ids/<device>-<inode>`: where the hash of a module file is remembered.
fn id_path(dir: &Path, file: &FileIdentity) -> PathBuf {
    dir.join("ids")
        .join(format!("{:x}-{:x}", file.dev, file.ino))
}

/// The SHA-256 of the module file whose identity is `file`, if it was remembered (by
/// [`remember_id`]) while the file was as it is now: the 18 MB of a Python task are then not
/// hashed again at every load (12 ms, a quarter of its start-up). A remembered hash is checked
/// against the file's whole identity, and only ever stored for a file that had not changed for
/// [`SETTLED`]: any write since moves the change time, and the hash is taken again.
pub(crate) fn known_id(dir: &Path, file: &FileIdentity) -> Option<ModuleId> {
    use std::os::unix::fs::OpenOptionsExt;
    let entry = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(id_path(dir, file))
        .ok()?;
    let meta = entry.metadata().ok()?;
    // SAFETY: geteuid cannot fail.
    if !meta.is_file() || meta.uid() != unsafe { libc::geteuid() } || meta.len() != 100 {
        return None;
    }
    let mut bytes = [0u8; 100];
    entry.read_exact_at(&mut bytes, 0).ok()?;
    let sum = u32::from_le_bytes(bytes[96..].try_into().expect("4 bytes"));
    if &bytes[..8] != ID_MAGIC || bytes[8..64] != file.encode() || crc32c(0, &bytes[..96]) != sum {
        return None;
    }
    // Marked as used, for `prune`.
    let _ = entry.set_modified(SystemTime::now());
    Some(bytes[64..96].try_into().expect("32 bytes"))
}

/// A remembered module hash not used for this long is removed when the cache is pruned.
const STALE_ID_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Remembers `id` as the SHA-256 of the module file whose identity is `file` (just hashed, and
/// unchanged while it was read), if the file had not changed for [`SETTLED`] (see
/// [`known_id`]). Best effort: a failure only means hashing again next time.
pub(crate) fn remember_id(dir: &Path, file: &FileIdentity, id: &ModuleId) {
    let changed = std::time::UNIX_EPOCH
        + Duration::new(
            file.ctime.0.max(0) as u64,
            file.ctime.1.clamp(0, 999_999_999) as u32,
        );
    if SystemTime::now()
        .duration_since(changed)
        .unwrap_or_default()
        < SETTLED
    {
        return;
    }
    let mut bytes = Vec::with_capacity(100);
    bytes.extend_from_slice(ID_MAGIC);
    bytes.extend_from_slice(&file.encode());
    bytes.extend_from_slice(id);
    let sum = crc32c(0, &bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    let path = id_path(dir, file);
    let write = || -> std::io::Result<()> {
        let ids = path.parent().expect("in a directory");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(ids)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let temp = ids.join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&temp, &bytes)?;
        std::fs::rename(&temp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
    };
    if let Err(e) = write() {
        log::debug!(target: "wasmpool::cache", "cannot remember the hash of a module in {}: {e}", path.display());
    }
}

/// `<dir>/<engine configuration>/<module hash>-<metering>.cwasm`.
fn entry_path(dir: &Path, binding: &Binding) -> PathBuf {
    let id: String = binding.module.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{:016x}", binding.engine))
        .join(format!("{id}-{:?}.cwasm", binding.metering))
}

/// The code and interface stored at `path` for `binding`: `None` if there is no entry (or an
/// entry of another format), an error if there is one that cannot be trusted (not a regular
/// file of this user, not an entry, bound to something else, corrupt, or not wasmtime's code
/// of its kind). A sound entry is marked as just used (its modification time), for [`prune`].
/// Its code is not copied: the entry stays open, for workers to map.
fn read_entry(path: &Path, binding: &Binding) -> Result<Option<Cached>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    // Never through a link, and never blocking: a FIFO put here would otherwise hang the
    // read until someone writes to it.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
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
    let size = meta.len() as usize;
    let read = |at: usize, len: usize| {
        let mut bytes = vec![0; len];
        file.read_exact_at(&mut bytes, at as u64)
            .map(|()| bytes)
            .map_err(|e| e.to_string())
    };
    if size >= OLD_MAGIC.len() && read(0, OLD_MAGIC.len())? == OLD_MAGIC {
        // An entry of an earlier format, from another wasmpool: stale, not suspect.
        log::debug!(target: "wasmpool::cache", "{}: an entry of another format; rebuilding it", path.display());
        return Ok(None);
    }
    if size < TRAILER {
        return Err("not a wasmpool cache entry, or truncated".into());
    }
    let trailer = read(size - TRAILER, TRAILER)?;
    if &trailer[TRAILER - MAGIC.len()..] != MAGIC {
        return Err("not a wasmpool cache entry, or truncated".into());
    }
    if let Some(why) = binding.mismatch(&trailer[..42]) {
        return Err(why.into());
    }
    let number = |at: usize, len: usize| {
        let mut le = [0u8; 8];
        le[..len].copy_from_slice(&trailer[at..at + len]);
        u64::from_le_bytes(le) as usize
    };
    let interface_len = number(42, 4);
    let code_len = number(46, 8);
    let sum = number(54, 4) as u32;
    let body = size - TRAILER;
    if code_len.checked_add(interface_len) != Some(body) {
        return Err("its lengths do not add up to its size: truncated".into());
    }
    // Everything before the checksum, in pieces that stay in the processor's cache.
    let mut crc = 0;
    let mut piece = vec![0u8; CHECK_PIECE];
    let mut at = 0;
    while at < body {
        let len = CHECK_PIECE.min(body - at);
        file.read_exact_at(&mut piece[..len], at as u64)
            .map_err(|e| e.to_string())?;
        crc = crc32c(crc, &piece[..len]);
        at += len;
    }
    crc = crc32c(crc, &trailer[..54]);
    if crc != sum {
        return Err("its checksum does not match its contents".into());
    }
    if !is_wasmtime_code(&file, code_len, binding.kind) {
        return Err("not wasmtime code of this kind".into());
    }
    let interface = postcard::from_bytes(&read(code_len, interface_len)?)
        .map_err(|e| format!("its interface does not decode: {e}"))?;
    let _ = file.set_modified(SystemTime::now());
    Ok(Some(Cached {
        code: CodeFile::in_file(file, code_len),
        interface,
    }))
}

/// How many bytes of an entry are read at a time to check it.
const CHECK_PIECE: usize = 256 << 10;

/// Whether the `len` bytes at the head of `file` are wasmtime's code of `kind`, as far as
/// wasmtime can tell from its headers (it reads them through the descriptor's `/proc` link, the
/// same open file; where `/proc` is not there to ask, the workers' own check as they load the
/// code stands alone).
fn is_wasmtime_code(file: &File, len: usize, kind: ModuleKind) -> bool {
    use std::os::fd::AsRawFd;
    let mut head = [0u8; 4];
    if len < head.len() || file.read_exact_at(&mut head, 0).is_err() || &head != b"\x7fELF" {
        return false;
    }
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    if std::fs::metadata(&link).is_err() {
        return true;
    }
    // An error now is the file's: its headers do not parse.
    Engine::detect_precompiled_file(&link).is_ok_and(|found| found == Some(precompiled_kind(kind)))
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
        let age = now.duration_since(used).unwrap_or_default();
        if name.starts_with('.') && name.ends_with(".tmp") {
            if age > STALE_TEMP_AGE {
                let _ = std::fs::remove_file(&path);
            }
        } else if path.parent().is_some_and(|d| d.ends_with("ids")) {
            if age > STALE_ID_AGE {
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
/// directory, renamed): the code, the interface, the trailer.
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
    let mut trailer = Vec::with_capacity(TRAILER);
    trailer.extend_from_slice(&binding.encode());
    trailer.extend_from_slice(&(interface.len() as u32).to_le_bytes());
    trailer.extend_from_slice(&(compiled.code.len() as u64).to_le_bytes());
    let crc = crc32c(crc32c(crc32c(0, &compiled.code), &interface), &trailer);
    trailer.extend_from_slice(&crc.to_le_bytes());
    trailer.extend_from_slice(MAGIC);
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(&compiled.code)?;
    file.write_all(&interface)?;
    file.write_all(&trailer)?;
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
        let cached = compiled(
            Some(dir),
            metering,
            &id,
            ModuleKind::Core,
            || {},
            || {
                crate::worker::compile::compile(ModuleKind::Core, metering, &wasm)
                    .map_err(CompileError::Invalid)
            },
        )
        .unwrap();
        assert!(cached.code.file().is_some(), "the code is in a file");
        cached.code.bytes().unwrap().to_vec()
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
            .map(|entry| entry.map(|cached| cached.code.bytes().unwrap().to_vec()))
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
        assert_eq!(
            &bytes[..good.len()],
            good.as_slice(),
            "the code comes first"
        );
        let middle = good.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read(&path).unwrap_err().contains("checksum"));
        assert_eq!(compile(dir.path()), good);
        assert_eq!(read(&path).unwrap(), Some(good.clone()));

        std::fs::write(&path, &bytes[..20]).unwrap();
        assert!(read(&path).unwrap_err().contains("truncated"));
        assert_eq!(compile(dir.path()), good);
        std::fs::write(&path, &bytes[bytes.len() / 3..]).unwrap();
        assert!(read(&path).unwrap_err().contains("truncated"));
        assert_eq!(compile(dir.path()), good);

        // A well-formed entry whose code is not wasmtime's is rebuilt too.
        let interface = std::fs::read(&path).unwrap()[good.len()..bytes.len() - TRAILER].to_vec();
        let forged_code = b"\x7fELF, or so it says".to_vec();
        let forged = Compiled {
            code: forged_code,
            interface: postcard::from_bytes(&interface).unwrap(),
        };
        write_entry(&path, &binding_of([3; 32], Metering::Plain), &forged).unwrap();
        assert_eq!(read(&path).unwrap_err(), "not wasmtime code of this kind");
        assert_eq!(compile(dir.path()), good);

        // An entry of the earlier format (a header, not a trailer) is stale: rebuilt, quietly.
        let mut old = b"WPCODE03".to_vec();
        old.extend_from_slice(&bytes);
        std::fs::write(&path, &old).unwrap();
        assert_eq!(read(&path).unwrap(), None);
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

    /// A file's identity, as if it had last changed `ago`.
    fn identity(ino: u64, size: u64, ago: Duration) -> FileIdentity {
        let changed = SystemTime::now() - ago;
        let since = changed.duration_since(std::time::UNIX_EPOCH).unwrap();
        let time = (since.as_secs() as i64, i64::from(since.subsec_nanos()));
        FileIdentity {
            dev: 7,
            ino,
            size,
            mtime: time,
            ctime: time,
        }
    }

    #[test]
    fn a_module_hash_is_remembered_for_its_file_as_it_was_only() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let file = identity(42, 1000, hour);
        assert_eq!(known_id(dir.path(), &file), None);
        remember_id(dir.path(), &file, &[9; 32]);
        assert_eq!(known_id(dir.path(), &file), Some([9; 32]));
        // Any change to the file moves its change time (or its size): not the file hashed.
        let changed = FileIdentity {
            ctime: (file.ctime.0, file.ctime.1 + 1),
            ..file
        };
        assert_eq!(known_id(dir.path(), &changed), None);
        let grown = FileIdentity { size: 1001, ..file };
        assert_eq!(known_id(dir.path(), &grown), None);
        // A file that changed a moment ago may change again within the same tick of its
        // clock, unseen: its hash is not remembered.
        let fresh = identity(43, 1000, Duration::from_millis(100));
        remember_id(dir.path(), &fresh, &[8; 32]);
        assert_eq!(known_id(dir.path(), &fresh), None);
        // A damaged record is no record.
        let path = id_path(dir.path(), &file);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[70] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(known_id(dir.path(), &file), None);
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
