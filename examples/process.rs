//! The tutorial's first example: four processes, each running one task, then joined.
//! Run: `cargo run --release --example process`

use wasmpool::{GuestStream, Module, Process};
use wasmpool_artifacts::HELLO;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hello = Module::from_bytes(HELLO.wasm)?.task("hello")?;
    let mut processes = Vec::new();
    for i in 0..4 {
        // Each process is a new worker OS process with its own wasm sandbox.
        // What the task prints comes back when it ends: here, its stdout goes to ours.
        let mut p = Process::new(&hello, (format!("worker {i}"),))?.on_output(|out| {
            if out.stream == GuestStream::Stdout {
                print!("printed by task: {}", out.text);
            }
        });
        p.start()?;
        processes.push(p);
    }
    for p in &mut processes {
        p.join();
        let greeting: String = p.result().expect("joined")?;
        println!("{greeting} (exit code {:?})", p.exitcode());
    }
    println!("All workers finished");
    Ok(())
}
