//! How this worker reaches the pool's shared objects, one operation at a time:
//!
//! - **mapped**, a local worker: the pool's region is mapped here, so a lock, a number or a
//!   ring is operated on in place; dicts, which the host holds, are one request each on the
//!   worker's shared-state socket;
//! - **over the link**, a worker behind a launcher (ssh, srun, kubectl exec), which cannot
//!   map a region on another machine: every operation is a [`SharedRequest`] written to the
//!   host with the worker's own frames, and the host's [`SharedReply`], which the link thread
//!   picks out of the host's frames (`worker/link.rs`), is waited for before the task goes
//!   on (the host's side: `crate::shared::remote`).
//!
//! Both give the same answers, so the imports (`worker/shared.rs`) do not tell them apart.
//! Waits are bounded by `wait_ms`, which the caller has already cut to its call's deadline.

use std::fs::File;
use std::io::{BufReader, Write};
use std::sync::Mutex;

use crate::shared::numbers::{self, Number};
use crate::shared::region::Region;
use crate::shared::ring::Ring;
use crate::shared::{Object, deadline_in_ms as deadline};
use crate::spin::SpinRead;
use crate::wire::{
    self, DictReply, DictRequest, SharedFailure, SharedOp, SharedReply, SharedRequest, WorkerMsg,
};
use crate::worker::Output;

/// This worker's shared state, from the host's `Shared` frame.
pub(super) struct WorkerShared {
    /// The pool whose grants this worker honours.
    pub(super) pool: u64,
    reach: Reach,
    /// What a lock this worker takes in the region holds (a local worker's pid).
    pid: u32,
}

enum Reach {
    Mapped {
        region: Region,
        socket: Mutex<Socket>,
    },
    OverLink(Mutex<OverLink>),
}

/// The shared-state socket: one request, one reply, in turn.
/// Both halves are plain files over the socket: `read` and `write`, which the worker's seccomp
/// filter allows, where a socket's own `recvfrom` and `sendto` are refused.
struct Socket {
    input: BufReader<SpinRead<File>>,
    output: File,
    buf: Vec<u8>,
    frame: Vec<u8>,
}

/// The link to the host: the worker's output, where requests go among its other frames, and
/// the answers the link thread picks out of the host's frames.
pub(crate) struct OverLink {
    output: Output<File>,
    replies: crossbeam_channel::Receiver<SharedReply>,
    frame: Vec<u8>,
}

impl OverLink {
    pub(crate) fn new(
        output: Output<File>,
        replies: crossbeam_channel::Receiver<SharedReply>,
    ) -> OverLink {
        OverLink {
            output,
            replies,
            frame: Vec::new(),
        }
    }

    /// Sends one request and waits for its answer.
    fn ask(&mut self, object: Object, op: SharedOp) -> wasmtime::Result<SharedReply> {
        wire::encode_frame(
            &WorkerMsg::Shared(SharedRequest { object, op }),
            &mut self.frame,
        )?;
        {
            let mut out = self.output.lock().unwrap_or_else(|e| e.into_inner());
            out.write_all(&self.frame)?;
            out.flush()?;
        }
        self.replies
            .recv()
            .map_err(|_| wasmtime::Error::msg("the link to the host ended"))
    }
}

/// An answer that is not one to what was asked.
fn unexpected(reply: &SharedReply) -> wasmtime::Error {
    wasmtime::Error::msg(format!("the host answered {reply:?}"))
}

/// A refusal by the host (an object it does not know, an index it would not take) ends the
/// call: the worker's own checks came first, so this is no answer the task can act on.
fn refused(failure: SharedFailure) -> wasmtime::Error {
    match failure {
        SharedFailure::Other(detail) => wasmtime::Error::msg(detail),
        SharedFailure::Gone => wasmtime::Error::msg("the pool is closing"),
        other => wasmtime::Error::msg(format!("{other:?}")),
    }
}

/// A worker's waits are wanted until they end: the host kills a worker whose pool ends.
fn always() -> bool {
    true
}

impl WorkerShared {
    /// A local worker's: the region mapped, dicts over `socket`.
    pub(super) fn mapped(pool: u64, region: Region, socket: File) -> std::io::Result<Self> {
        let output = socket.try_clone()?;
        Ok(WorkerShared {
            pool,
            reach: Reach::Mapped {
                region,
                socket: Mutex::new(Socket {
                    input: BufReader::new(SpinRead(socket)),
                    output,
                    buf: Vec::new(),
                    frame: Vec::new(),
                }),
            },
            pid: std::process::id(),
        })
    }

    /// A launched worker's: everything over its link.
    pub(super) fn over_link(pool: u64, link: OverLink) -> Self {
        WorkerShared {
            pool,
            reach: Reach::OverLink(Mutex::new(link)),
            pid: std::process::id(),
        }
    }

    /// Asks the host over the link (a mapped worker never does: it has the region).
    fn ask(&self, object: Object, op: SharedOp) -> wasmtime::Result<SharedReply> {
        match &self.reach {
            Reach::Mapped { .. } => Err(wasmtime::Error::msg(
                "a worker with the region mapped asked the host over its link",
            )),
            Reach::OverLink(link) => link
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .ask(object, op),
        }
    }

    fn region(&self) -> Option<&Region> {
        match &self.reach {
            Reach::Mapped { region, .. } => Some(region),
            Reach::OverLink(_) => None,
        }
    }

    /// Takes `object`'s lock, waiting `wait_ms` at the most; whether it was abandoned.
    pub(super) fn acquire(
        &self,
        object: Object,
        wait_ms: Option<u32>,
    ) -> wasmtime::Result<Result<bool, SharedFailure>> {
        if let Some(region) = self.region() {
            let at = lock_at(object)?;
            return Ok(region
                .acquire(at, self.pid, deadline(wait_ms))
                .map_err(|_| SharedFailure::Timeout));
        }
        match self.ask(object, SharedOp::Acquire { wait_ms })? {
            SharedReply::Acquired { abandoned } => Ok(Ok(abandoned)),
            SharedReply::Failed(
                failure @ (SharedFailure::Timeout | SharedFailure::Closed | SharedFailure::Full),
            ) => Ok(Err(failure)),
            SharedReply::Failed(failure) => Err(refused(failure)),
            reply => Err(unexpected(&reply)),
        }
    }

    /// Gives `object`'s lock back, marked `abandoned` if its call failed.
    pub(super) fn release(&self, object: Object, abandoned: bool) -> wasmtime::Result<()> {
        if let Some(region) = self.region() {
            region.release(lock_at(object)?, self.pid, abandoned);
            return Ok(());
        }
        self.done(object, SharedOp::Release { abandoned })
    }

    /// `count` numbers of `object` from `start` (range checked by the caller).
    pub(super) fn read<N: Number>(
        &self,
        object: Object,
        start: u32,
        count: u32,
    ) -> wasmtime::Result<Vec<N>> {
        if let Some(region) = self.region() {
            let at = lock_at(object)?;
            return (start..start + count)
                .map(|i| Ok(N::load(word(region, at, i)?)))
                .collect();
        }
        match self.ask(object, SharedOp::Read { start, count })? {
            SharedReply::Words(words) if words.len() == count as usize => {
                Ok(words.into_iter().map(N::from_word).collect())
            }
            SharedReply::Failed(failure) => Err(refused(failure)),
            reply => Err(unexpected(&reply)),
        }
    }

    /// Stores `values` in `object` from `start` on (range checked by the caller).
    pub(super) fn write<N: Number>(
        &self,
        object: Object,
        start: u32,
        values: &[N],
    ) -> wasmtime::Result<()> {
        if let Some(region) = self.region() {
            let at = lock_at(object)?;
            for (i, v) in (start..).zip(values) {
                v.store(word(region, at, i)?);
            }
            return Ok(());
        }
        let words = values.iter().map(|v| v.to_word()).collect();
        self.done(object, SharedOp::Write { start, words })
    }

    /// Adds `delta` to number `index` of `object`; the new number.
    pub(super) fn add<N: Number>(
        &self,
        object: Object,
        index: u32,
        delta: N,
    ) -> wasmtime::Result<N> {
        if let Some(region) = self.region() {
            return Ok(N::add(word(region, lock_at(object)?, index)?, delta));
        }
        let delta = delta.to_word();
        self.word(object, SharedOp::Add { index, delta })
            .map(N::from_word)
    }

    /// An integer value's compare-and-swap; the value found.
    pub(super) fn compare_and_swap(
        &self,
        object: Object,
        expected: i64,
        new: i64,
    ) -> wasmtime::Result<i64> {
        if let Some(region) = self.region() {
            let word = word(region, lock_at(object)?, 0)?;
            return Ok(numbers::compare_and_swap(word, expected, new));
        }
        self.word(object, SharedOp::CompareAndSwap { expected, new })
            .map(i64::from_word)
    }

    /// Puts `item` into a queue, or sends it from a pipe end.
    pub(super) fn put(
        &self,
        object: Object,
        item: Vec<u8>,
        wait_ms: Option<u32>,
    ) -> wasmtime::Result<Result<(), SharedFailure>> {
        if let Some(region) = self.region() {
            let ring = ring(region, object, true)?;
            return Ok(ring.put(self.pid, &item, deadline(wait_ms), &always));
        }
        match self.ask(object, SharedOp::Put { item, wait_ms })? {
            SharedReply::Done => Ok(Ok(())),
            SharedReply::Failed(failure) => Ok(Err(failure)),
            reply => Err(unexpected(&reply)),
        }
    }

    /// Takes an item from a queue, or a message that came to a pipe end.
    pub(super) fn get(
        &self,
        object: Object,
        wait_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Vec<u8>, SharedFailure>> {
        if let Some(region) = self.region() {
            let ring = ring(region, object, false)?;
            return Ok(ring.get(self.pid, deadline(wait_ms), &always));
        }
        match self.ask(object, SharedOp::Get { wait_ms })? {
            SharedReply::Item(item) => Ok(Ok(item)),
            SharedReply::Failed(failure) => Ok(Err(failure)),
            reply => Err(unexpected(&reply)),
        }
    }

    /// Whether a message waits at a pipe end (or it is closed), after waiting `wait_ms`.
    pub(super) fn poll(&self, object: Object, wait_ms: Option<u32>) -> wasmtime::Result<bool> {
        if let Some(region) = self.region() {
            return ring(region, object, false)?
                .poll(deadline(wait_ms), &always)
                .map_err(refused);
        }
        match self.ask(object, SharedOp::Poll { wait_ms })? {
            SharedReply::Flag(waiting) => Ok(waiting),
            SharedReply::Failed(failure) => Err(refused(failure)),
            reply => Err(unexpected(&reply)),
        }
    }

    /// How many items a queue holds.
    pub(super) fn len(&self, object: Object) -> wasmtime::Result<u64> {
        if let Some(region) = self.region() {
            return Ok(ring(region, object, false)?.len());
        }
        match self.ask(object, SharedOp::Len)? {
            SharedReply::Count(n) => Ok(n),
            SharedReply::Failed(failure) => Err(refused(failure)),
            reply => Err(unexpected(&reply)),
        }
    }

    /// Closes a queue, or the direction a pipe end sends in.
    pub(super) fn close(&self, object: Object) -> wasmtime::Result<()> {
        if let Some(region) = self.region() {
            ring(region, object, true)?.close();
            return Ok(());
        }
        self.done(object, SharedOp::Close)
    }

    /// A dict request, answered by the host.
    pub(super) fn dict(&self, object: Object, request: DictRequest) -> wasmtime::Result<DictReply> {
        match &self.reach {
            Reach::Mapped { socket, .. } => {
                let mut socket = socket.lock().unwrap_or_else(|e| e.into_inner());
                let socket = &mut *socket;
                wire::encode_frame(&request, &mut socket.frame)?;
                socket.output.write_all(&socket.frame)?;
                match wire::read_frame::<DictReply>(&mut socket.input, &mut socket.buf)? {
                    Some(reply) => Ok(reply),
                    None => Err(wasmtime::Error::msg(
                        "the host closed the shared-state socket",
                    )),
                }
            }
            Reach::OverLink(_) => match self.ask(object, SharedOp::Dict(request))? {
                SharedReply::Dict(reply) => Ok(reply),
                SharedReply::Failed(failure) => Ok(DictReply::Failed(failure)),
                reply => Err(unexpected(&reply)),
            },
        }
    }

    /// A request answered `Done`.
    fn done(&self, object: Object, op: SharedOp) -> wasmtime::Result<()> {
        match self.ask(object, op)? {
            SharedReply::Done => Ok(()),
            SharedReply::Failed(failure) => Err(refused(failure)),
            reply => Err(unexpected(&reply)),
        }
    }

    /// A request answered with one number's word.
    fn word(&self, object: Object, op: SharedOp) -> wasmtime::Result<u64> {
        match self.ask(object, op)? {
            SharedReply::Word(word) => Ok(word),
            SharedReply::Failed(failure) => Err(refused(failure)),
            reply => Err(unexpected(&reply)),
        }
    }
}

/// Where the lock of a lock, value or array is.
fn lock_at(object: Object) -> wasmtime::Result<u64> {
    object
        .lock_at()
        .ok_or_else(|| wasmtime::Error::msg(format!("{object:?} has no lock")))
}

/// The word of number `index` of the object at `at`.
fn word(region: &Region, at: u64, index: u32) -> wasmtime::Result<&std::sync::atomic::AtomicU64> {
    numbers::element(region, at, index)
        .ok_or_else(|| wasmtime::Error::msg("a shared object outside the region"))
}

/// The ring an item goes into (`sending`) or comes out of.
fn ring(region: &Region, object: Object, sending: bool) -> wasmtime::Result<Ring<'_>> {
    Ring::of(region, object, sending)
        .ok_or_else(|| wasmtime::Error::msg("a shared queue outside the region"))
}
