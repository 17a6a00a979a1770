//! The `hostile` task: functions that misbehave (loop forever, exhaust memory or the stack,
//! flood the output, block in the host) or probe the sandbox (files, environment, arguments,
//! network, stdin), for the sandbox and limits tests.

wit_bindgen::generate!({ path: "../../wit", world: "hostile" });

use std::hint::black_box;
use std::time::Duration;

/// The size of each block `memory-bomb` allocates.
const BLOCK: usize = 1 << 20;
/// `memory-bomb` writes one byte per page of this size.
const PAGE: usize = 4 << 10;
/// The length of the lines `stdout-flood` prints, newline included.
const LINE: usize = 128;
/// The size of the local array each frame of `stack-overflow` keeps alive.
const FRAME: usize = 256;

struct Hostile;

/// The guest side of `handles#counter`.
struct Count(u32);

impl exports::handles::Guest for Hostile {
    type Counter = Count;

    fn make() -> exports::handles::Counter {
        exports::handles::Counter::new(Count(0))
    }
}

impl exports::handles::GuestCounter for Count {
    fn new() -> Self {
        Count(0)
    }

    fn get(&self) -> u32 {
        self.0
    }
}

impl Guest for Hostile {
    fn make_symlink(target: String, link: String) -> Result<(), String> {
        // The one way stable std offers to make a symbolic link on WASI.
        #[allow(deprecated)]
        std::fs::soft_link(target, link).map_err(|e| e.to_string())
    }

    fn drop_last(mut xs: Vec<i64>) -> Vec<i64> {
        xs.pop();
        xs
    }

    fn spin_on_negative(xs: Vec<i64>) -> Vec<i64> {
        if xs.iter().any(|&x| x < 0) {
            Self::spin();
        }
        xs
    }

    fn spin() -> u32 {
        loop {
            black_box(());
        }
    }

    fn memory_bomb() -> u64 {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = vec![0u8; BLOCK];
            for page in block.chunks_mut(PAGE) {
                page[0] = 1;
            }
            blocks.push(block);
            black_box(&mut blocks);
        }
    }

    fn stack_overflow(depth: u64) -> u64 {
        recurse(depth)
    }

    fn huge_result(bytes: u64) -> String {
        let bytes = usize::try_from(bytes).expect("huge-result: bytes exceeds the address space");
        "x".repeat(bytes)
    }

    fn stdout_flood(bytes: u64) -> u64 {
        let text = "x".repeat(LINE - 1);
        let mut written = 0;
        while written < bytes {
            // At most LINE, so the conversion is lossless.
            let len = (bytes - written).min(LINE as u64) as usize;
            println!("{}", &text[..len - 1]);
            written += len as u64;
        }
        written
    }

    fn read_file(path: String) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }

    fn write_file(path: String, text: String) -> Result<(), String> {
        std::fs::write(path, text).map_err(|e| e.to_string())
    }

    fn list_dir(path: String) -> Result<Vec<String>, String> {
        let mut names = std::fs::read_dir(path)
            .map_err(|e| e.to_string())?
            .map(|entry| {
                entry
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        names.sort();
        Ok(names)
    }

    fn read_env() -> Vec<(String, String)> {
        std::env::vars().collect()
    }

    fn read_args() -> Vec<String> {
        std::env::args().collect()
    }

    fn open_socket(addr: String) -> Result<(), String> {
        std::net::TcpStream::connect(addr.as_str())
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn read_stdin() -> Result<String, String> {
        std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())
    }

    fn unreachable() -> u32 {
        core::arch::wasm32::unreachable()
    }

    fn block(millis: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(millis));
        millis
    }
}

/// Recurses `depth` levels deep and returns `depth`. Each frame's array is passed to
/// `black_box` before the recursive call and again after it, so it must stay on the (shadow)
/// stack across the call, and the call is not a tail call.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; FRAME];
    frame[0] = depth as u8;
    black_box(&mut frame);
    let reached = if depth == 0 {
        0
    } else {
        recurse(depth - 1) + 1
    };
    black_box(&frame);
    reached
}

export!(Hostile);
