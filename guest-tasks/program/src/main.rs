//! The `program` task: a whole program, as `wasmpool exec` runs submissions. It reads numbers
//! from its stdin (whitespace-separated), prints their sum on stdout and how many it read on
//! stderr. Its arguments change what it does, to exercise exit codes and failures:
//! `--exit N` exits with N after printing, `--panic` panics, `--args` prints its arguments
//! instead, `--spin` never ends. A word that is not a number is an error: a message on stderr
//! and exit code 2 (which a component reports as 1: `wasi:cli/exit` knows only success and
//! failure).

use std::io::Read;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--args") {
        println!("{}", args.join(" "));
        return;
    }
    if args.iter().any(|a| a == "--panic") {
        panic!("asked to panic");
    }
    if args.iter().any(|a| a == "--spin") {
        let mut n = 0u64;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("cannot read stdin: {e}");
        std::process::exit(2);
    }
    let mut sum = 0i64;
    let mut count = 0;
    for word in input.split_whitespace() {
        match word.parse::<i64>() {
            Ok(n) => {
                sum += n;
                count += 1;
            }
            Err(_) => {
                eprintln!("not a number: {word}");
                std::process::exit(2);
            }
        }
    }
    println!("{sum}");
    eprintln!("read {count} numbers");
    if let Some(code) = args
        .iter()
        .position(|a| a == "--exit")
        .and_then(|i| args.get(i + 1))
    {
        std::process::exit(code.parse().unwrap_or(1));
    }
}
