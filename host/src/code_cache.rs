//! Compiled code, cached on disk: each module is compiled once per machine, not once per
//! worker per run.
//!
//! Only the host compiles. It stores each artifact (wasmtime's `precompile_component` /
//! `precompile_module` output) under the cache directory, keyed by the module's SHA-256, the
//! metering variant, and a hash of the engine configuration
//! (`Engine::precompile_compatibility_hash`), and sends it to workers, which load it with
//! `deserialize` instead of compiling. Loading an artifact is `unsafe` in wasmtime because the
//! bytes are trusted to be its own output, so an entry is never trusted blindly: each file
//! carries a SHA-256 of its contents that is checked on every read, must be owned by this
//! user, and is written under a temporary name then renamed, so a reader never sees half a
//! file. A corrupt, truncated, foreign or stale entry is logged, compiled again and replaced.
//! Artifacts from users are never accepted: the cache holds only what this host produced.
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

use crate::engine::Metering;
use crate::wire::{ModuleId, ModuleKind};

/// How many bytes of entries the cache keeps at most.
pub(crate) const MAX_CACHE_BYTES: u64 = 1 << 30;

/// A temporary file this old was left by a writer that died: it is removed when the cache is
/// pruned.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// The first bytes of every cache file, with the format's version.
const MAGIC: &[u8; 8] = b"WPCODE01";
const HEADER: usize = MAGIC.len() + 32;

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

/// The precompiled code of `wasm` (whose SHA-256 is `id`) for `engine`: read from the cache
/// in `dir` when a sound entry is there, otherwise compiled now (and stored, when `dir` is
/// given). A compile error is the module's fault and is returned as text.
pub(crate) fn precompiled(
    dir: Option<&Path>,
    engine: &Engine,
    metering: Metering,
    id: &ModuleId,
    kind: ModuleKind,
    wasm: &[u8],
) -> Result<Vec<u8>, String> {
    let path = dir.map(|dir| entry_path(dir, engine, metering, id, kind));
    if let Some(path) = &path {
        match read_entry(path) {
            Ok(Some(code)) if Engine::detect_precompiled(&code) == Some(precompiled_kind(kind)) => {
                return Ok(code);
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
    let code = match kind {
        ModuleKind::Component => engine.precompile_component(wasm),
        ModuleKind::Core => engine.precompile_module(wasm),
    }
    .map_err(|e| format!("{e:#}"))?;
    if let (Some(dir), Some(path)) = (dir, &path) {
        match write_entry(path, &code) {
            Ok(()) => prune(dir, path, MAX_CACHE_BYTES),
            Err(e) => {
                log::warn!(target: "wasmpool::cache", "cannot store {}: {e}", path.display())
            }
        }
    }
    Ok(code)
}

fn precompiled_kind(kind: ModuleKind) -> wasmtime::Precompiled {
    match kind {
        ModuleKind::Component => wasmtime::Precompiled::Component,
        ModuleKind::Core => wasmtime::Precompiled::Module,
    }
}

/// Forgets a cache entry that turned out to be unusable (wasmtime refused to load it).
pub(crate) fn evict(
    dir: Option<&Path>,
    engine: &Engine,
    metering: Metering,
    id: &ModuleId,
    kind: ModuleKind,
) {
    if let Some(dir) = dir {
        let _ = std::fs::remove_file(entry_path(dir, engine, metering, id, kind));
    }
}

/// `<dir>/<engine configuration>/<module hash>-<metering>.cwasm`.
fn entry_path(
    dir: &Path,
    engine: &Engine,
    metering: Metering,
    id: &ModuleId,
    kind: ModuleKind,
) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    kind.hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{:016x}", hasher.finish()))
        .join(format!("{id}-{metering:?}.cwasm"))
}

/// The code stored at `path`: `None` if there is no entry, an error if there is one that
/// cannot be trusted. A sound entry is marked as just used (its modification time), for
/// [`prune`].
fn read_entry(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| e.to_string())?;
    let owner = file.metadata().map_err(|e| e.to_string())?.uid();
    // SAFETY: geteuid cannot fail.
    if owner != unsafe { libc::geteuid() } {
        return Err(format!("owned by uid {owner}, not by this user"));
    }
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a wasmpool cache entry, or truncated".into());
    }
    let (sum, code) = bytes[MAGIC.len()..].split_at(32);
    if Sha256::digest(code).as_slice() != sum {
        return Err("its checksum does not match its contents".into());
    }
    let _ = file.set_modified(SystemTime::now());
    Ok(Some(code.to_vec()))
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

/// Stores `code` at `path` atomically (a temporary file in the same directory, renamed).
fn write_entry(path: &Path, code: &[u8]) -> std::io::Result<()> {
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
    file.write_all(MAGIC)?;
    file.write_all(&Sha256::digest(code))?;
    file.write_all(code)?;
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

    fn compile(dir: &Path) -> Vec<u8> {
        let wasm = wat::parse_str(WAT).unwrap();
        let id = [3; 32];
        precompiled(
            Some(dir),
            engine(Metering::Plain),
            Metering::Plain,
            &id,
            ModuleKind::Core,
            &wasm,
        )
        .unwrap()
    }

    fn the_entry(dir: &Path) -> PathBuf {
        let engine = engine(Metering::Plain);
        entry_path(dir, engine, Metering::Plain, &[3; 32], ModuleKind::Core)
    }

    #[test]
    fn an_entry_is_stored_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = compile(dir.path());
        let path = the_entry(dir.path());
        assert!(path.exists());
        assert_eq!(read_entry(&path).unwrap(), Some(first.clone()));
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
        assert!(read_entry(&path).unwrap_err().contains("checksum"));
        assert_eq!(compile(dir.path()), good);
        assert_eq!(read_entry(&path).unwrap(), Some(good.clone()));

        std::fs::write(&path, &bytes[..20]).unwrap();
        assert!(read_entry(&path).unwrap_err().contains("truncated"));
        assert_eq!(compile(dir.path()), good);

        // A well-formed entry whose code is not wasmtime's is rebuilt too.
        let mut forged = MAGIC.to_vec();
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
        assert!(read_entry(&path).unwrap().is_some());
        let used = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(used > hours_ago(1));
    }

    #[test]
    fn the_key_tells_metering_variants_apart() {
        let dir = Path::new("/cache");
        let plain = entry_path(
            dir,
            engine(Metering::Plain),
            Metering::Plain,
            &[1; 32],
            ModuleKind::Core,
        );
        let fuel = entry_path(
            dir,
            engine(Metering::EpochsAndFuel),
            Metering::EpochsAndFuel,
            &[1; 32],
            ModuleKind::Core,
        );
        assert_ne!(plain.parent(), fuel.parent());
        assert_ne!(plain.file_name(), fuel.file_name());
    }
}
