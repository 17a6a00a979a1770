//! Everything that crosses the pipe between the host and a worker: the messages, the framing
//! and the codec. Nothing else in the crate knows the byte layout.
//!
//! A frame is a 4-byte little-endian length followed by that many bytes of a message encoded
//! with postcard (serde, compact, not self-describing). The first exchange is a handshake: the
//! host sends [`HostMsg::Hello`] with [`PROTOCOL_VERSION`]; the worker answers
//! [`WorkerMsg::Ready`], or [`WorkerMsg::Refused`] and exits when the versions differ.
//! A worker behind a launcher (ssh, srun, kubectl) is sent [`LinkSettings`] with its Hello:
//! it then answers with its engine's compatibility ([`EngineInfo`]), and both sides send
//! [`HostMsg::Heartbeat`] / [`WorkerMsg::Heartbeat`] frames while the link lasts (see
//! `pool/link.rs` and `worker/link.rs`).
//!
//! Numbers take a shortcut: a chunk whose arguments are all numbers of the same kinds, and a
//! run of results that are, travel packed ([`Packed`]: eight bytes a number, one copy a frame)
//! instead of as [`Value`]s one by one. How a value itself is encoded is
//! [`crate::values::wire`]'s.
//!
//! Because a worker speaks only this protocol on its stdin and stdout, it can as well be
//! reached through ssh or a batch scheduler: the transport is any byte pipe.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::engine::Metering;
use crate::limits::{Grants, Resolved};
use crate::module::Interface;
use crate::values::wire::Packed;
use crate::values::{Value, Values};

/// The protocol version both sides must agree on. Bump it on any change to the messages.
pub(crate) const PROTOCOL_VERSION: u32 = 10;

/// This build's wasmpool version, exchanged at the handshake (reported, not required to match).
pub(crate) const WASMPOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The largest frame either side accepts: bigger is a protocol error, not an allocation.
pub const MAX_FRAME_BYTES: usize = 256 << 20;

/// A module's identity: the SHA-256 of its bytes.
pub(crate) type ModuleId = [u8; 32];

/// Whether the bytes are a component or a core module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModuleKind {
    /// A WebAssembly component (WIT-typed exports).
    Component,
    /// A core WebAssembly module (numeric exports).
    Core,
}

/// Host to worker.
// `Run`'s chunk is the largest by far, and the one sent most: boxing it would cost an
// allocation per chunk to save bytes on the rare others.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum HostMsg {
    /// The first message: the host's protocol version.
    Hello {
        /// [`PROTOCOL_VERSION`] of the host.
        version: u32,
        /// How the worker sets itself up.
        settings: WorkerSettings,
        /// The host's wasmpool version, for the worker's refusal message. (New fields go
        /// after `settings`, whose layout older workers read: they then refuse cleanly.)
        wasmpool: String,
        /// Set for a worker behind a launcher: heartbeats, and its engine's compatibility.
        link: Option<LinkSettings>,
    },
    /// A module the worker will be asked to run; sent once per worker. The worker compiles it,
    /// caches it by id and answers [`WorkerMsg::Loaded`], so that compiling is never counted
    /// against a task's timeout.
    Load {
        /// SHA-256 of the wasm binary.
        id: ModuleId,
        /// Component or core module.
        kind: ModuleKind,
        /// The module, compiled by the host or to be compiled.
        code: Code,
        /// Which instrumented variant (see [`Metering`]).
        metering: Metering,
    },
    /// Run one chunk of calls of the same export; the worker answers with
    /// [`WorkerMsg::Outcomes`] batches that together carry one outcome per item, in order.
    Run(Chunk),
    /// To a compiling worker (see [`WorkerSettings::compile_memory`]): compile `wasm` for one
    /// engine variant and read its interface; answered by [`WorkerMsg::Compiled`].
    Compile {
        /// Component or core module.
        kind: ModuleKind,
        /// The engine variant to compile for.
        metering: Metering,
        /// The module, untrusted.
        #[serde(with = "byte_string")]
        wasm: Vec<u8>,
    },
    /// The pool's shared state (see [`crate::shared`]), sent once, right after the handshake.
    /// To a worker that can receive descriptors, the descriptors of the pool's shared-memory
    /// region and of its end of a shared-state socket came just before this frame, over its
    /// stderr; a worker behind a launcher gets none, and reaches every object with a
    /// [`WorkerMsg::Shared`] request over its link instead.
    Shared {
        /// The pool's id, which every shared grant carries.
        pool: u64,
        /// Set when no descriptors came: every use of an object goes over the link.
        over_link: bool,
    },
    /// Finish: the worker exits with status 0.
    Shutdown,
    /// The host is alive (to a worker with [`LinkSettings`]): never reaches the session, the
    /// worker's link thread takes it.
    Heartbeat,
    /// Answered at once with [`WorkerMsg::Pong`] carrying the same number: the host measures
    /// the round trip of a link with it.
    Ping(u64),
    /// The answer to a [`WorkerMsg::Shared`] request: never reaches the session, the worker's
    /// link thread hands it to the task's call that waits for it.
    SharedReply(SharedReply),
}

/// The first payload byte of a [`HostMsg::SharedReply`] frame (postcard writes an enum's
/// variant index as a varint, one byte below 128): how the worker's link thread picks the
/// answers to its task's requests out of the host's frames without decoding every frame.
pub(crate) const HOST_SHARED_REPLY_TAG: u8 = 8;

/// As [`HOST_SHARED_REPLY_TAG`], for a [`WorkerMsg::Shared`] request, which the host's link
/// thread hands to the worker's shared-state server instead of the driver (busy waiting for
/// the very task that asks).
pub(crate) const WORKER_SHARED_TAG: u8 = 8;

/// How a worker behind a launcher keeps its link: the host sends a [`HostMsg::Heartbeat`]
/// every `heartbeat_ms` and expects one back as often; either side that hears nothing from
/// the other for `silence_ms` takes the link as lost (the worker exits, the host kills the
/// launcher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkSettings {
    /// How often each side sends a heartbeat, in milliseconds.
    pub(crate) heartbeat_ms: u32,
    /// How long a side waits without a frame before it gives the link up, in milliseconds.
    pub(crate) silence_ms: u32,
}

/// A remote worker's engine, as it reports it at the handshake: whether code the host
/// compiled can run there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EngineInfo {
    /// SHA-256 of wasmtime's `precompile_compatibility_hash` of the engine configuration of
    /// each [`Metering`] variant (by [`Metering::index`]), on the worker's machine: the
    /// target, the CPU features Cranelift uses, the settings and wasmtime's version.
    pub(crate) compat: Vec<[u8; 32]>,
    /// The worker's target and CPU features, for messages (`x86_64-linux +avx2 +bmi2 ...`).
    pub(crate) target: String,
}

/// A module as the host sends it to a worker.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Code {
    /// Code the host compiled for the worker's engine configuration
    /// (`Engine::precompile_component` or `precompile_module`), loaded without compiling.
    /// Workers trust it as they trust the host that started them: it is the host's own
    /// compiler output, never bytes from a user (see [`crate::code_cache`]).
    Precompiled(#[serde(with = "byte_string")] Vec<u8>),
    /// The wasm binary, for the worker to compile.
    Wasm(#[serde(with = "byte_string")] Vec<u8>),
    /// As `Precompiled`, but in a file the worker maps instead of bytes in the frame: its
    /// descriptor came just before this frame, over the worker's stderr (see
    /// [`crate::shared_code`]), and holds `len` bytes of code from its start. Sent only to a
    /// worker that said, at its handshake, that it can receive descriptors.
    Descriptor {
        /// How many bytes of code the file holds from its start.
        len: u64,
    },
}

/// A byte string encoded as one (postcard: its length, then its bytes in one copy) rather
/// than as a sequence of numbers one at a time: the same bytes on the wire, but megabytes of
/// code no longer go through the encoder and the decoder a byte at a time.
mod byte_string {
    use serde::{Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> de::Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(byte) = seq.next_element()? {
                    bytes.push(byte);
                }
                Ok(bytes)
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Code::Precompiled(b) => write!(f, "Precompiled({} bytes)", b.len()),
            Code::Wasm(b) => write!(f, "Wasm({} bytes)", b.len()),
            Code::Descriptor { len } => write!(f, "Descriptor({len} bytes)"),
        }
    }
}

/// Worker-wide settings, fixed for the life of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WorkerSettings {
    /// The wasm stack size, in bytes.
    pub(crate) max_wasm_stack: usize,
    /// Whether the worker's seccomp filter lets file-system calls through (the pool grants
    /// directories).
    pub(crate) allow_files: bool,
    /// Whether to install the seccomp filter (always, for real workers; the in-process unit
    /// tests of the worker loop turn it off).
    pub(crate) lock_down: bool,
    /// Set for a worker that only compiles: its address space is capped at this many bytes,
    /// and it answers [`HostMsg::Compile`] instead of running tasks.
    pub(crate) compile_memory: Option<u64>,
}

/// A batch of calls to one export of one module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Chunk {
    /// Echoed in the reply.
    pub chunk_id: u64,
    /// The module, already sent with [`HostMsg::Load`].
    pub module: ModuleId,
    /// The export to call (`name`, or `interface#name`).
    pub func: String,
    /// The arguments of each call, already checked against the signature by the host.
    pub items: Items,
    /// The limits of each call.
    pub limits: Resolved,
    /// What each call may reach.
    pub grants: Grants,
    /// Call every item in one instance instead of a fresh one each (see
    /// [`crate::Task::with_instance_reuse`]); a failed call still discards the instance.
    pub reuse_instance: bool,
    /// The export is a whole program's entry point (see [`crate::Module::program`]): each
    /// item's two values are its arguments and its stdin, and its result is its exit code.
    pub program: bool,
    /// The export takes a list and returns a list (see [`crate::Task::batched`]): each item's
    /// one value is an element, and the export is called once with all the chunk's elements
    /// as its list (splitting the list when a call fails), each element of the list it
    /// returns the outcome of its item.
    pub batch: bool,
}

/// The arguments of a chunk's calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Items {
    /// One list of values per call.
    Values(Vec<Values>),
    /// Calls whose arguments are all numbers of the same kinds (most `map`s), packed.
    Packed(Packed),
}

/// The index of [`Items::Packed`] among `Items`' variants, as serde numbers them.
const PACKED_VARIANT: u32 = 1;

impl Items {
    /// How many calls.
    pub(crate) fn len(&self) -> usize {
        match self {
            Items::Values(items) => items.len(),
            Items::Packed(packed) => packed.len(),
        }
    }

    /// Encodes the calls `items` as [`Items`], packed when they are all numbers of the same
    /// kinds (the host's side: the arguments stay where they are).
    pub(crate) fn serialize_from<'a, S: serde::Serializer>(
        items: impl Iterator<Item = &'a [Value]> + Clone,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match Packed::of(items.clone()) {
            Some(packed) => {
                serializer.serialize_newtype_variant("Items", PACKED_VARIANT, "Packed", &packed)
            }
            None => serializer.serialize_newtype_variant("Items", 0, "Values", &SeqOf(items)),
        }
    }

    /// Encodes calls already packed as [`Items::Packed`], without copying them into one.
    pub(crate) fn serialize_packed<S: serde::Serializer>(
        packed: &Packed,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_variant("Items", PACKED_VARIANT, "Packed", packed)
    }
}

/// A sequence serialized from an iterator.
struct SeqOf<I>(I);

impl<'a, I: Iterator<Item = &'a [Value]> + Clone> Serialize for SeqOf<I> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.clone())
    }
}

/// [`HostMsg::Run`] as the host sends it: encoded to the same bytes as
/// `HostMsg::Run(Chunk { .. })`, but borrowing from the job instead of copying every argument
/// into a [`Chunk`] first. `items` serializes as [`Items`] (see [`Items::serialize_from`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunRef<'a, I> {
    pub chunk_id: u64,
    pub module: &'a ModuleId,
    pub func: &'a str,
    pub items: I,
    pub limits: &'a Resolved,
    pub grants: &'a Grants,
    pub reuse_instance: bool,
    pub program: bool,
    pub batch: bool,
}

/// The index of [`HostMsg::Run`] among `HostMsg`'s variants, as serde numbers them.
const RUN_VARIANT: u32 = 2;

impl<I: Serialize> Serialize for RunRef<'_, I> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Fields<'b, 'a, I>(&'b RunRef<'a, I>);
        impl<I: Serialize> Serialize for Fields<'_, '_, I> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let run = self.0;
                let mut chunk = serializer.serialize_struct("Chunk", 9)?;
                chunk.serialize_field("chunk_id", &run.chunk_id)?;
                chunk.serialize_field("module", run.module)?;
                chunk.serialize_field("func", run.func)?;
                chunk.serialize_field("items", &run.items)?;
                chunk.serialize_field("limits", run.limits)?;
                chunk.serialize_field("grants", run.grants)?;
                chunk.serialize_field("reuse_instance", &run.reuse_instance)?;
                chunk.serialize_field("program", &run.program)?;
                chunk.serialize_field("batch", &run.batch)?;
                chunk.end()
            }
        }
        serializer.serialize_newtype_variant("HostMsg", RUN_VARIANT, "Run", &Fields(self))
    }
}

/// Worker to host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WorkerMsg {
    /// Handshake accepted.
    Ready {
        /// [`PROTOCOL_VERSION`] of the worker.
        version: u32,
        /// The worker's process id.
        pid: u32,
        /// Whether the worker can receive code descriptors on its stderr: it is a unix socket
        /// made by the worker's parent, the host that started it (see
        /// [`crate::shared_code::can_receive`]).
        descriptors: bool,
        /// The worker's wasmpool version.
        wasmpool: String,
        /// Its engine's compatibility, when the Hello asked (a worker behind a launcher).
        engine: Option<EngineInfo>,
    },
    /// Handshake refused; the worker exits after sending this.
    Refused {
        /// Why, for the host's error message.
        reason: String,
    },
    /// A module was compiled (or failed to: the error is reported again by each `Run`).
    Loaded {
        /// The module's id.
        id: ModuleId,
    },
    /// The outcomes of consecutive items of a [`Chunk`], starting at item `first`. A worker
    /// sends them as items finish (batched when they finish quickly), so the host always
    /// knows which item is running: the first one not yet reported.
    Outcomes {
        /// The chunk's id.
        chunk_id: u64,
        /// The index in the chunk of the first outcome.
        first: u32,
        /// One outcome per item, in order.
        outcomes: Vec<ItemOutcome>,
    },
    /// A compiling worker's answer: the compiled code and the module's interface, or why the
    /// module does not compile.
    Compiled(Result<Compiled, String>),
    /// Like `Outcomes`, for consecutive items that all succeeded, printed nothing, and
    /// returned numbers of the same kinds: their results, packed.
    Results {
        /// The chunk's id.
        chunk_id: u64,
        /// The index in the chunk of the first item.
        first: u32,
        /// Each item's results.
        results: Packed,
    },
    /// The worker is alive (a worker with [`LinkSettings`]): sent by its own thread, also
    /// while a task runs.
    Heartbeat,
    /// The answer to [`HostMsg::Ping`].
    Pong(u64),
    /// A task's use of a shared object, from a worker behind a launcher (which cannot map the
    /// pool's region): answered by one [`HostMsg::SharedReply`] before the task goes on.
    Shared(SharedRequest),
}

/// The payload of a [`HostMsg::Heartbeat`] frame (without its length): how a link thread
/// recognises one without decoding every frame.
pub(crate) fn host_heartbeat_payload() -> Vec<u8> {
    postcard::to_stdvec(&HostMsg::Heartbeat).expect("a unit variant encodes")
}

/// As [`host_heartbeat_payload`], for [`WorkerMsg::Heartbeat`].
pub(crate) fn worker_heartbeat_payload() -> Vec<u8> {
    postcard::to_stdvec(&WorkerMsg::Heartbeat).expect("a unit variant encodes")
}

/// A module compiled for one engine variant, as a compiling worker returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Compiled {
    /// wasmtime's compiled code (`precompile_component` or `precompile_module`).
    #[serde(with = "byte_string")]
    pub code: Vec<u8>,
    /// What the module offers and needs, read from that code.
    pub interface: Interface,
}

/// What one call produced: its results or why it failed, and what the guest printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ItemOutcome {
    /// The export's results, or the failure.
    pub result: Result<Values, RunFailure>,
    /// What the guest wrote to its stdout.
    pub stdout: Vec<u8>,
    /// What the guest wrote to its stderr.
    pub stderr: Vec<u8>,
}

impl ItemOutcome {
    /// A call that failed before it could run (it printed nothing).
    pub(crate) fn failed(why: RunFailure) -> Self {
        ItemOutcome {
            result: Err(why),
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }
}

/// Why a call failed inside the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum RunFailure {
    /// The guest trapped.
    Trap {
        /// What trapped.
        message: String,
        /// The wasm backtrace, if captured.
        backtrace: Option<String>,
    },
    /// The arguments did not fit (the host checks first; this is the worker's own check).
    BadInput(String),
    /// The call ran past its timeout and was interrupted.
    Timeout,
    /// The call used up its fuel.
    OutOfFuel,
    /// A linear memory tried to grow past its cap.
    MemoryLimit,
    /// A table tried to grow past its cap.
    TableLimit,
    /// The wasm stack overflowed.
    StackOverflow,
    /// The result was larger than allowed; its approximate encoded size.
    ResultTooLarge(u64),
    /// The guest wrote more to stdout or stderr than allowed.
    OutputLimit,
    /// The sandbox could not be set up as granted (a directory that cannot be opened).
    Sandbox(String),
    /// The module could not be compiled or instantiated, or has no such export.
    Module(String),
    /// A batch export returned a list of `got` results for a list of `expected` elements.
    BatchLength {
        /// How many elements the list had.
        expected: u64,
        /// How many results came back.
        got: u64,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// The pipe failed.
    #[error("pipe error: {0}")]
    Io(#[from] io::Error),
    /// The pipe closed in the middle of a frame.
    #[error("the pipe closed in the middle of a frame")]
    Truncated,
    /// The length prefix is larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes is larger than the limit of {MAX_FRAME_BYTES}")]
    TooLarge(usize),
    /// The payload is not a valid message.
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
}

/// A task's request to an object the host serves (a dict), on its
/// worker's shared-state socket (see [`crate::shared`]); answered by one [`DictReply`].
/// Objects are named by the index the host gave them, which the call's grant carried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum DictRequest {
    Get {
        dict: u64,
        key: String,
    },
    Set {
        dict: u64,
        key: String,
        #[serde(with = "byte_string")]
        value: Vec<u8>,
    },
    Delete {
        dict: u64,
        key: String,
    },
    Exists {
        dict: u64,
        key: String,
    },
    Keys {
        dict: u64,
        cursor: Option<u64>,
    },
    Increment {
        dict: u64,
        key: String,
        delta: u64,
    },
    GetMany {
        dict: u64,
        keys: Vec<String>,
    },
    SetMany {
        dict: u64,
        entries: Vec<(String, Vec<u8>)>,
    },
    DeleteMany {
        dict: u64,
        keys: Vec<String>,
    },
}

impl DictRequest {
    /// The dict it asks.
    pub(crate) fn dict(&self) -> u64 {
        match *self {
            DictRequest::Get { dict, .. }
            | DictRequest::Set { dict, .. }
            | DictRequest::Delete { dict, .. }
            | DictRequest::Exists { dict, .. }
            | DictRequest::Keys { dict, .. }
            | DictRequest::Increment { dict, .. }
            | DictRequest::GetMany { dict, .. }
            | DictRequest::SetMany { dict, .. }
            | DictRequest::DeleteMany { dict, .. } => dict,
        }
    }
}

/// The host's answer to a [`DictRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum DictReply {
    Done,
    Maybe(Option<Vec<u8>>),
    Number(u64),
    Flag(bool),
    Keys {
        keys: Vec<String>,
        cursor: Option<u64>,
    },
    Many(Vec<Option<(String, Vec<u8>)>>),
    Failed(SharedFailure),
}

/// A task's use of a shared object, from a worker that reaches the pool's objects over its
/// link (see [`HostMsg::Shared`]): the object as its grant carried it, which the host checks
/// is one of the pool's, and what to do with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SharedRequest {
    pub(crate) object: crate::shared::Object,
    pub(crate) op: SharedOp,
}

/// What a [`SharedRequest`] does. Waits are bounded by `wait_ms` (the shorter of the task's
/// own timeout and its call's deadline; `None`: until the pool ends); numbers travel as their
/// 64-bit words, the object saying whether a word is an integer or a float's bits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum SharedOp {
    /// Take the object's lock; answered [`SharedReply::Acquired`].
    Acquire { wait_ms: Option<u32> },
    /// Give the object's lock back (`abandoned` when the call holding it failed).
    Release { abandoned: bool },
    /// `count` numbers from `start`; answered [`SharedReply::Words`].
    Read { start: u32, count: u32 },
    /// Numbers from `start` on.
    Write { start: u32, words: Vec<u64> },
    /// Adds `delta` to number `index`; answered with the new number's [`SharedReply::Word`].
    Add { index: u32, delta: u64 },
    /// An integer value's compare-and-swap; answered with the word found.
    CompareAndSwap { expected: i64, new: i64 },
    /// Into a queue, or out of a pipe end.
    Put {
        #[serde(with = "byte_string")]
        item: Vec<u8>,
        wait_ms: Option<u32>,
    },
    /// Out of a queue, or into a pipe end; answered [`SharedReply::Item`].
    Get { wait_ms: Option<u32> },
    /// Whether a pipe end has a message waiting; answered [`SharedReply::Flag`].
    Poll { wait_ms: Option<u32> },
    /// How many items a queue holds; answered [`SharedReply::Count`].
    Len,
    /// Closes a queue, or the direction a pipe end sends in.
    Close,
    /// A dict's request, answered as on the shared-state socket.
    Dict(DictRequest),
}

/// The host's answer to a [`SharedRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum SharedReply {
    Done,
    Acquired {
        abandoned: bool,
    },
    Word(u64),
    Words(Vec<u64>),
    Item(#[serde(with = "byte_string")] Vec<u8>),
    Flag(bool),
    Count(u64),
    Dict(DictReply),
    /// A wait that ended (`Timeout`, `Closed`, `Full`), or a request the host refuses
    /// (`Other`: an object that is not the pool's, an index past an array's end).
    Failed(SharedFailure),
}

/// Why a request to a served object failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SharedFailure {
    /// The wait ran out.
    Timeout,
    /// The queue or pipe is closed and holds nothing more.
    Closed,
    /// A bounded queue had no room.
    Full,
    /// Whoever waited is gone (its worker, or the pool, ended).
    Gone,
    /// No such object, a bad end, a number that is not one.
    Other(String),
}

/// Frames another thread read whole off a stream, read again as the stream would be: what a
/// link thread hands on, heartbeats taken out (the host's, `pool/link.rs`; the worker's,
/// `worker/link.rs`). The end of the channel is the end of the stream.
#[derive(Debug)]
pub(crate) struct FrameQueue {
    frames: crossbeam_channel::Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl FrameQueue {
    pub(crate) fn new(frames: crossbeam_channel::Receiver<Vec<u8>>) -> FrameQueue {
        FrameQueue {
            frames,
            current: Vec::new(),
            at: 0,
        }
    }

    /// Whether bytes are waiting, here or in the channel.
    pub(crate) fn has_pending(&self) -> bool {
        self.at < self.current.len() || !self.frames.is_empty()
    }

    /// Whether the stream has ended (the link thread saw the launcher's stdout close, or gave
    /// the link up) with nothing left to read.
    pub(crate) fn ended(&mut self) -> bool {
        if self.at < self.current.len() {
            return false;
        }
        match self.frames.try_recv() {
            Ok(frame) => {
                self.current = frame;
                self.at = 0;
                false
            }
            Err(crossbeam_channel::TryRecvError::Empty) => false,
            Err(crossbeam_channel::TryRecvError::Disconnected) => true,
        }
    }

    /// Waits up to `timeout` for bytes (or the end of the stream).
    pub(crate) fn wait_readable(&mut self, timeout: std::time::Duration) -> bool {
        if self.at < self.current.len() {
            return true;
        }
        match self.frames.recv_timeout(timeout) {
            Ok(frame) => {
                self.current = frame;
                self.at = 0;
                true
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => true,
        }
    }
}

impl Read for FrameQueue {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.frames.recv() {
                Ok(frame) => {
                    self.current = frame;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Encodes `msg` as one frame into `buf` (cleared first), ready to be written in one call.
pub(crate) fn encode_frame<T: Serialize>(msg: &T, buf: &mut Vec<u8>) -> Result<(), WireError> {
    buf.clear();
    buf.extend_from_slice(&[0; 4]);
    let mut buf_taken = std::mem::take(buf);
    buf_taken = postcard::to_extend(msg, buf_taken)?;
    let len = buf_taken.len() - 4;
    if len > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(len));
    }
    buf_taken[..4].copy_from_slice(&(len as u32).to_le_bytes());
    *buf = buf_taken;
    Ok(())
}

/// Writes `msg` as one frame and flushes.
pub(crate) fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), WireError> {
    let mut buf = Vec::new();
    encode_frame(msg, &mut buf)?;
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame. `Ok(None)` is a clean end of stream at a frame boundary.
pub(crate) fn read_frame<T: DeserializeOwned>(
    r: &mut impl Read,
    buf: &mut Vec<u8>,
) -> Result<Option<T>, WireError> {
    let mut len = [0u8; 4];
    match read_full(r, &mut len)? {
        0 => return Ok(None),
        4 => {}
        _ => return Err(WireError::Truncated),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(len));
    }
    // The buffer grows as the payload's bytes arrive: a length that lies costs the reader
    // nothing until the bytes it promises come (a buffer kept from earlier frames is reused).
    buf.clear();
    buf.reserve(len.min(FRAME_RESERVE));
    if r.take(len as u64).read_to_end(buf)? != len {
        return Err(WireError::Truncated);
    }
    Ok(Some(decode(buf)?))
}

/// How much room a frame's buffer is given before its payload arrives.
const FRAME_RESERVE: usize = 64 << 10;

/// Decodes one message payload (a frame without its length prefix). The fuzz target's entry.
pub(crate) fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(payload)
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_chunk() -> HostMsg {
        HostMsg::Run(Chunk {
            chunk_id: 7,
            module: [3; 32],
            func: "describe".into(),
            items: Items::Values(vec![smallvec::smallvec![
                Value::Record(vec![("name".into(), Value::String("Ada".into()))]),
                Value::Option(Some(Box::new(Value::Char('λ')))),
                Value::Result(Err(None)),
            ]]),
            limits: Resolved::default(),
            grants: Grants::new().env("A", "1"),
            reuse_instance: true,
            program: false,
            batch: false,
        })
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let mut pipe = Vec::new();
        let msgs = [
            HostMsg::Hello {
                version: PROTOCOL_VERSION,
                settings: WorkerSettings {
                    max_wasm_stack: 1 << 20,
                    allow_files: false,
                    lock_down: false,
                    compile_memory: None,
                },
                wasmpool: WASMPOOL_VERSION.into(),
                link: Some(LinkSettings {
                    heartbeat_ms: 1000,
                    silence_ms: 5000,
                }),
            },
            sample_chunk(),
            HostMsg::Heartbeat,
            HostMsg::Ping(7),
            HostMsg::Shutdown,
        ];
        for m in &msgs {
            write_frame(&mut pipe, m).unwrap();
        }
        let mut reader = pipe.as_slice();
        let mut buf = Vec::new();
        for m in &msgs {
            assert_eq!(
                read_frame::<HostMsg>(&mut reader, &mut buf)
                    .unwrap()
                    .as_ref(),
                Some(m)
            );
        }
        assert!(
            read_frame::<HostMsg>(&mut reader, &mut buf)
                .unwrap()
                .is_none()
        );
    }

    /// A heartbeat is one small frame, whose payload the link threads recognise by its bytes.
    #[test]
    fn heartbeats_are_one_byte_payloads() {
        assert_eq!(host_heartbeat_payload().len(), 1);
        assert_eq!(worker_heartbeat_payload().len(), 1);
        assert_eq!(
            decode::<WorkerMsg>(&worker_heartbeat_payload()).unwrap(),
            WorkerMsg::Heartbeat
        );
        assert_ne!(
            postcard::to_stdvec(&HostMsg::Ping(0)).unwrap(),
            host_heartbeat_payload()
        );
    }

    /// The link threads route shared-state frames by their first byte: it must be the
    /// variant's, whatever the request or reply.
    #[test]
    fn shared_state_frames_are_told_by_their_first_byte() {
        let request = WorkerMsg::Shared(SharedRequest {
            object: crate::shared::Object::Value { at: 64 },
            op: SharedOp::Put {
                item: vec![1; 300],
                wait_ms: Some(5),
            },
        });
        let bytes = postcard::to_stdvec(&request).unwrap();
        assert_eq!(bytes[0], WORKER_SHARED_TAG);
        assert_eq!(decode::<WorkerMsg>(&bytes).unwrap(), request);
        let reply = HostMsg::SharedReply(SharedReply::Failed(SharedFailure::Closed));
        assert_eq!(
            postcard::to_stdvec(&reply).unwrap()[0],
            HOST_SHARED_REPLY_TAG
        );
        for other in [
            postcard::to_stdvec(&WorkerMsg::Pong(3)).unwrap(),
            worker_heartbeat_payload(),
        ] {
            assert_ne!(other[0], WORKER_SHARED_TAG);
        }
        for other in [
            postcard::to_stdvec(&HostMsg::Ping(3)).unwrap(),
            postcard::to_stdvec(&HostMsg::Shutdown).unwrap(),
            host_heartbeat_payload(),
        ] {
            assert_ne!(other[0], HOST_SHARED_REPLY_TAG);
        }
    }

    #[test]
    fn a_length_that_lies_costs_nothing_until_its_bytes_come() {
        let mut lying = (200u32 << 20).to_le_bytes().to_vec();
        lying.extend_from_slice(b"ten bytes.");
        let mut buf = Vec::new();
        assert!(matches!(
            read_frame::<HostMsg>(&mut lying.as_slice(), &mut buf),
            Err(WireError::Truncated)
        ));
        assert!(
            buf.capacity() < 1 << 20,
            "{} bytes for a frame of 10",
            buf.capacity()
        );
    }

    #[test]
    fn truncated_and_oversized_frames_are_errors() {
        let mut pipe = Vec::new();
        write_frame(&mut pipe, &sample_chunk()).unwrap();
        let cut = &pipe[..pipe.len() - 1];
        let mut buf = Vec::new();
        assert!(matches!(
            read_frame::<HostMsg>(&mut &cut[..], &mut buf),
            Err(WireError::Truncated)
        ));
        assert!(matches!(
            read_frame::<HostMsg>(&mut &pipe[..2], &mut buf),
            Err(WireError::Truncated)
        ));
        let huge = (u32::MAX).to_le_bytes();
        assert!(matches!(
            read_frame::<HostMsg>(&mut &huge[..], &mut buf),
            Err(WireError::TooLarge(_))
        ));
    }

    /// The host's borrowed encoding of arguments.
    struct Borrowed<'a>(&'a [Values]);

    impl Serialize for Borrowed<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            Items::serialize_from(self.0.iter().map(|v| v.as_slice()), serializer)
        }
    }

    #[test]
    fn a_borrowed_run_encodes_as_the_owned_one_packed_or_not() {
        let HostMsg::Run(mut chunk) = sample_chunk() else {
            unreachable!()
        };
        let numbers: Vec<Values> = (0..5)
            .map(|i| smallvec::smallvec![Value::S64(i), Value::F32(0.5)])
            .collect();
        let mixed = vec![numbers[0].clone(), smallvec::smallvec![Value::S64(1)]];
        let Items::Values(general) = chunk.items.clone() else {
            unreachable!()
        };
        for (args, packs) in [(general, false), (numbers, true), (mixed, false)] {
            chunk.items = match Packed::of(args.iter().map(|v| v.as_slice())) {
                Some(packed) => Items::Packed(packed),
                None => Items::Values(args.clone()),
            };
            assert_eq!(matches!(chunk.items, Items::Packed(_)), packs);
            let borrowed = RunRef {
                chunk_id: chunk.chunk_id,
                module: &chunk.module,
                func: &chunk.func,
                items: Borrowed(&args),
                limits: &chunk.limits,
                grants: &chunk.grants,
                reuse_instance: chunk.reuse_instance,
                program: chunk.program,
                batch: chunk.batch,
            };
            let (mut owned_bytes, mut borrowed_bytes) = (Vec::new(), Vec::new());
            encode_frame(&HostMsg::Run(chunk.clone()), &mut owned_bytes).unwrap();
            encode_frame(&borrowed, &mut borrowed_bytes).unwrap();
            assert_eq!(owned_bytes, borrowed_bytes);
        }
    }

    proptest! {
        /// Any byte string fed to the frame reader gives a message or an error, never a panic.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = Vec::new();
            let _ = read_frame::<HostMsg>(&mut bytes.as_slice(), &mut buf);
            let _ = read_frame::<WorkerMsg>(&mut bytes.as_slice(), &mut buf);
            let _ = decode::<HostMsg>(&bytes);
        }

        /// A valid frame with any bytes flipped decodes or fails cleanly.
        #[test]
        fn corrupted_frames_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut pipe = Vec::new();
            write_frame(&mut pipe, &sample_chunk()).unwrap();
            for (at, byte) in flips {
                let i = at % pipe.len();
                pipe[i] ^= byte;
            }
            let mut buf = Vec::new();
            let _ = read_frame::<HostMsg>(&mut pipe.as_slice(), &mut buf);
        }
    }
}
