//! Compiled code that workers map instead of receiving a copy each.
//!
//! A module's compiled code for one engine variant is a file the host holds open read-only:
//! its entry in the disk cache ([`crate::code_cache`], whose code starts at offset 0), or,
//! without a cache, a sealed memfd made once per module and variant ([`CodeFile::in_memory`]).
//! A worker that is to load a large module gets that descriptor, not the bytes: the host
//! passes it over the worker's stderr, which is a unix socket the host made
//! ([`send`]: `SCM_RIGHTS`), just before the `Load` frame that says so
//! ([`crate::wire::Code::Descriptor`]); the worker takes it ([`receive`]) and hands it to
//! wasmtime's `deserialize_open_file`, which maps it. The code's pages are then the page
//! cache's, one copy for every worker (and every run) that maps them, and so are the pages of
//! the module's initial memory (wasmtime maps a memory image from the file when the module
//! came from one); nothing is copied by the host, down the pipe or by the worker. Small modules
//! go the same way: measured, a 100 KB component's cached start-up (a pool of one worker, its
//! first call) took 2.6 ms so against 2.9 ms with its code in the frame, and each worker is
//! spared a copy. [`WorkerCommand::share_code_above`] keeps code under a size on the pipe
//! (for tests and benches).
//!
//! Why the worker's stderr: it already is a descriptor of the host's that a worker keeps
//! (`walls::enter_worker` closes every other), and nothing else travels from the host to the
//! worker on it, so a descriptor never interleaves with frames. A worker started through a
//! launcher (`ssh HOST wasmpool worker`) has another stderr: a worker says at its handshake
//! whether its stderr is a socket made by its parent, the host that named itself in
//! `WASMPOOL_WORKER` ([`can_receive`]), and the host sends descriptors only to a worker that
//! said so and is its own child; the others get the bytes.
//!
//! What a worker can do with such a descriptor: read and map the code it was sent to run,
//! nothing else. A cache entry is opened read-only (writing, truncating, `fchmod` need a
//! write or a file-system call the worker's seccomp filter refuses, and `ftruncate` of a
//! read-only descriptor fails); a memfd is sealed against writes, growth and shrinking before
//! it is ever sent. The filter lets `recvmsg` through on descriptor 2 only
//! (`walls::lock_down`).
//!
//! [`WorkerCommand::share_code_above`]: crate::WorkerCommand::share_code_above

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// The descriptor on which a worker receives code descriptors: its stderr.
pub(crate) const CODE_SOCKET_FD: RawFd = 2;

/// The default size from which compiled code goes to workers as a descriptor rather than
/// down the pipe (see [`crate::WorkerCommand::share_code_above`]): any.
pub(crate) const DEFAULT_SHARE_CODE_ABOVE: usize = 0;

/// A module's compiled code for one engine variant, as the host keeps it for its workers.
#[derive(Debug)]
pub(crate) struct CodeFile {
    held: Held,
    len: usize,
}

#[derive(Debug)]
enum Held {
    /// A read-only file whose first `len` bytes are the code: a cache entry, or a sealed
    /// memfd.
    File(File),
    /// The bytes, when no memfd could be made (the pipe is then the only way to a worker).
    Bytes(Arc<Vec<u8>>),
}

impl CodeFile {
    /// The code in the first `len` bytes of `file`, opened read-only (a cache entry, which
    /// is never written once it is in place: a new entry is a new file renamed over it).
    pub(crate) fn in_file(file: File, len: usize) -> CodeFile {
        CodeFile {
            held: Held::File(file),
            len,
        }
    }

    /// `code`, in a memfd of its own sealed against any change (or kept as bytes, if the
    /// kernel makes no memfd).
    pub(crate) fn in_memory(code: Vec<u8>) -> CodeFile {
        let len = code.len();
        let held = match sealed_memfd(&code) {
            Ok(file) => Held::File(file),
            Err(e) => {
                log::debug!(target: "wasmpool::cache", "no memfd for compiled code ({e}): workers get copies");
                Held::Bytes(Arc::new(code))
            }
        };
        CodeFile { held, len }
    }

    /// How many bytes of code.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The code's bytes, for a worker that gets them down its pipe.
    pub(crate) fn bytes(&self) -> io::Result<Arc<Vec<u8>>> {
        match &self.held {
            Held::Bytes(bytes) => Ok(Arc::clone(bytes)),
            Held::File(file) => {
                let mut bytes = vec![0; self.len];
                file.read_exact_at(&mut bytes, 0)?;
                Ok(Arc::new(bytes))
            }
        }
    }

    /// The descriptor to send to workers, if the code is in one.
    pub(crate) fn file(&self) -> Option<&File> {
        match &self.held {
            Held::File(file) => Some(file),
            Held::Bytes(_) => None,
        }
    }
}

/// A memfd holding `code`, sealed: nobody, the host included, can write, grow or shrink it
/// from now on, or remove the seals.
fn sealed_memfd(code: &[u8]) -> io::Result<File> {
    // SAFETY: memfd_create with a valid NUL-terminated name and flags; the descriptor it
    // returns is ours alone.
    let fd = unsafe {
        libc::memfd_create(
            c"wasmpool-code".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all_at(code, 0)?;
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Sends `file` over `socket` (the host's end of a worker's stderr) as one byte carrying the
/// descriptor. Never blocks and never raises `SIGPIPE`: a worker that left a descriptor
/// unread, or died, is an error here.
pub(crate) fn send(socket: &UnixStream, file: &File) -> io::Result<()> {
    send_descriptors(socket, &[file.as_raw_fd()])
}

/// Sends `fds` (one or two) over `socket` as one byte carrying them, as [`send`] does.
pub(crate) fn send_descriptors(socket: &UnixStream, fds: &[RawFd]) -> io::Result<()> {
    assert!(
        (1..=MAX_FDS).contains(&fds.len()),
        "one message carries 1 to {MAX_FDS} descriptors"
    );
    let mut buffers = OneByteMessage::new();
    let mut msg = buffers.header();
    msg.msg_controllen = control_space(fds.len()) as _;
    // SAFETY: the control buffer has room for one header and MAX_FDS descriptors
    // (CONTROL_BYTES), so CMSG_FIRSTHDR is not null and CMSG_DATA points inside it, with room
    // for `fds`; the message's buffers outlive the call.
    let sent = unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(FD_BYTES * fds.len() as libc::c_uint) as _;
        let data = libc::CMSG_DATA(header).cast::<RawFd>();
        for (i, &fd) in fds.iter().enumerate() {
            std::ptr::write_unaligned(data.add(i), fd);
        }
        libc::sendmsg(
            socket.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    match sent {
        1 => Ok(()),
        n if n < 0 => Err(io::Error::last_os_error()),
        _ => Err(io::Error::other("the descriptor's byte was not sent")),
    }
}

const FD_BYTES: libc::c_uint = std::mem::size_of::<RawFd>() as libc::c_uint;
/// The most descriptors one message carries: a code file, or the shared region and socket.
const MAX_FDS: usize = 2;
// SAFETY: CMSG_SPACE only computes a size.
const CONTROL_BYTES: usize =
    unsafe { libc::CMSG_SPACE(FD_BYTES * MAX_FDS as libc::c_uint) } as usize;

fn control_space(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE(FD_BYTES * fds as libc::c_uint) as usize }
}

/// The buffers of a message of one byte with room for up to [`MAX_FDS`] descriptors beside
/// it: what [`send`] fills and [`receive`] reads.
struct OneByteMessage {
    byte: [u8; 1],
    iov: libc::iovec,
    control: [u8; CONTROL_BYTES],
}

impl OneByteMessage {
    fn new() -> Self {
        OneByteMessage {
            byte: [0],
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            control: [0; CONTROL_BYTES],
        }
    }

    /// A message header pointing into these buffers, valid while they stay where they are
    /// (the caller keeps them on its stack until `sendmsg` or `recvmsg` returns).
    fn header(&mut self) -> libc::msghdr {
        self.iov = libc::iovec {
            iov_base: self.byte.as_mut_ptr().cast(),
            iov_len: self.byte.len(),
        };
        // SAFETY: a zeroed msghdr is a valid empty one.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut self.iov;
        msg.msg_iovlen = 1;
        msg.msg_control = self.control.as_mut_ptr().cast();
        msg.msg_controllen = self.control.len() as _;
        msg
    }
}

/// In a worker: the `count` descriptors the host sent on stderr just before the frame that
/// announced them. They are there already when the frame is (the host sends them first), so
/// this never waits: nothing there is an error, as is any other number of descriptors.
pub(crate) fn receive_descriptors(count: usize, what: &str) -> Result<Vec<OwnedFd>, String> {
    let mut buffers = OneByteMessage::new();
    let mut msg = buffers.header();
    // SAFETY: recvmsg into buffers that outlive the call; descriptors it receives are made
    // close-on-exec.
    let got = unsafe {
        libc::recvmsg(
            CODE_SOCKET_FD,
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if got < 0 {
        return Err(format!(
            "no descriptor came with the {what}: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: CMSG_FIRSTHDR and CMSG_DATA read the control buffer recvmsg filled, within the
    // length it set; a header is checked before its data is read, and only as many
    // descriptors as its length holds are read.
    let fds: Vec<OwnedFd> = unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        if header.is_null()
            || (*header).cmsg_level != libc::SOL_SOCKET
            || (*header).cmsg_type != libc::SCM_RIGHTS
        {
            Vec::new()
        } else {
            let data_len = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
            let data = libc::CMSG_DATA(header).cast::<RawFd>();
            (0..data_len / FD_BYTES as usize)
                .map(|i| OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))))
                .collect()
        }
    };
    if got != 1 || msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() != count {
        return Err(format!(
            "the {what}'s descriptors did not come as sent (too many open files, or another \
             number of them)"
        ));
    }
    Ok(fds)
}

/// In a worker: the code descriptor the host sent just before the `Load` frame that announced
/// it, `len` bytes of code or more; anything but one descriptor of a regular file of at least
/// `len` bytes is an error.
pub(crate) fn receive(len: u64) -> Result<File, String> {
    let fd = receive_descriptors(1, "module's code")?
        .pop()
        .expect("one descriptor");
    let file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the code descriptor's size: {e}"))?;
    if !meta.is_file() || meta.len() < len {
        return Err(format!(
            "the code descriptor is not a file of {len} bytes or more"
        ));
    }
    Ok(file)
}

/// In a worker, before its seccomp filter: whether its stderr is a unix socket made by
/// `host`, its parent (the pid `WASMPOOL_WORKER` named, which `walls::first_walls` checked is
/// its parent's): then the host can send it code descriptors there.
pub(crate) fn can_receive(host: Option<libc::pid_t>) -> bool {
    let Some(host) = host else {
        return false;
    };
    // SAFETY: a zeroed ucred is a valid one to be filled.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt into a buffer of the length given.
    let rc = unsafe {
        libc::getsockopt(
            CODE_SOCKET_FD,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    // SAFETY: getppid cannot fail.
    rc == 0 && cred.pid == host && unsafe { libc::getppid() } == host
}

/// CRC-32C (Castagnoli) of `bytes`, continuing from `crc` (0 to start): the cache's check
/// that an entry's bytes are those that were written. A hardware instruction where the CPU
/// has one (SSE 4.2: about 8 GB/s here, where SHA-256, even with the CPU's SHA extensions,
/// managed 1.5), a table otherwise.
pub(crate) fn crc32c(crc: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE 4.2, just checked.
        return unsafe { crc32c_sse42(crc, bytes) };
    }
    crc32c_table(crc, bytes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn crc32c_sse42(crc: u32, bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};
    let mut state = u64::from(!crc);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        state = _mm_crc32_u64(state, u64::from_le_bytes(word.try_into().expect("8 bytes")));
    }
    let mut state = state as u32;
    for &byte in words.remainder() {
        state = _mm_crc32_u8(state, byte);
    }
    !state
}

fn crc32c_table(crc: u32, bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut bit = 0;
            while bit < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
                bit += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut state = !crc;
    for &byte in bytes {
        state = TABLE[((state ^ u32::from(byte)) & 0xff) as usize] ^ (state >> 8);
    }
    !state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value_in_pieces_too() {
        // The check value of CRC-32C, and the same through both ways and in pieces.
        assert_eq!(crc32c(0, b"123456789"), 0xe306_9283);
        assert_eq!(crc32c_table(0, b"123456789"), 0xe306_9283);
        let data: Vec<u8> = (0..10_007u32).map(|i| (i * 31 % 251) as u8).collect();
        let whole = crc32c(0, &data);
        assert_eq!(crc32c_table(0, &data), whole);
        let (a, b) = data.split_at(4093);
        assert_eq!(crc32c(crc32c(0, a), b), whole);
    }

    #[test]
    fn a_memfd_of_code_is_sealed_and_a_descriptor_travels_over_a_socket() {
        let code = CodeFile::in_memory(b"\x7fELF and the rest".to_vec());
        let file = code.file().expect("a memfd");
        // SAFETY: fcntl on a descriptor we own.
        let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
        let all = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        assert_eq!(seals & all, all);
        assert!(file.write_at(b"x", 0).is_err(), "sealed against writes");
        assert_eq!(code.bytes().unwrap().as_slice(), b"\x7fELF and the rest");

        let (ours, theirs) = UnixStream::pair().unwrap();
        send(&ours, file).unwrap();
        // What a worker does, on a descriptor of its own (not this test process's stderr).
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = [0u8; CONTROL_BYTES];
        // SAFETY: as in `receive`.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() as _;
        // SAFETY: as in `receive`.
        let got = unsafe { libc::recvmsg(theirs.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        assert_eq!(got, 1);
        // SAFETY: as in `receive`.
        let fd = unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            assert_eq!((*header).cmsg_type, libc::SCM_RIGHTS);
            std::ptr::read_unaligned(libc::CMSG_DATA(header).cast::<RawFd>())
        };
        // SAFETY: received just now.
        let received = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut head = [0u8; 4];
        received.read_exact_at(&mut head, 0).unwrap();
        assert_eq!(&head, b"\x7fELF");
    }
}
