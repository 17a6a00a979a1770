//! A Rust guest's panic, read back from what it left: Rust's panic handler prints the message
//! to stderr and then traps with `unreachable`, so the trap alone says nothing of why. The
//! message is found in the task's stderr, and the dozen frames of panic machinery on top of
//! the backtrace are left out, so that the first frame shown is the guest's own. Pure logic.

/// The message of the last panic `stderr` reports, with its location: `power overflows s64
/// (at power/src/lib.rs:9:36)`. Reads the format of Rust since 1.73 (`thread '<unnamed>'
/// panicked at FILE:LINE:COL:` then the message on the lines after it) and the older one
/// (`panicked at 'MESSAGE', FILE:LINE:COL`).
pub(crate) fn panic_message(stderr: &[u8]) -> Option<String> {
    const MARK: &str = "panicked at ";
    const MAX_CHARS: usize = 1000;
    let text = String::from_utf8_lossy(stderr);
    let start = text.rfind(MARK)?;
    // The panic's line must be a `thread '...' panicked at` line, not any text that says so.
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    if !text[line_start..start].starts_with("thread '") {
        return None;
    }
    let rest = &text[start + MARK.len()..];
    let (first, after) = rest.split_once('\n').unwrap_or((rest, ""));
    let message = if let Some(location) = first.strip_suffix(':') {
        let message: Vec<&str> = after
            .lines()
            .take_while(|line| !line.starts_with("note: "))
            .collect();
        let message = message.join("\n");
        let message = message.trim();
        if message.is_empty() {
            format!("(no message) (at {location})")
        } else {
            format!("{message} (at {location})")
        }
    } else if let Some(quoted) = first.strip_prefix('\'')
        && let Some((message, location)) = quoted.rsplit_once("', ")
    {
        format!("{message} (at {location})")
    } else {
        return None;
    };
    Some(match message.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &message[..cut]),
        None => message,
    })
}

/// `backtrace` (wasmtime's rendering, innermost frame first) without the frames of Rust's panic
/// machinery above the guest's own code, and a line that says how many were left out. A
/// backtrace in which no frame is the guest's is returned whole.
pub(crate) fn without_panic_frames(backtrace: &str) -> String {
    let lines: Vec<&str> = backtrace.lines().collect();
    let is_frame = |line: &str| {
        let line = line.trim_start();
        line.split_once(':')
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let Some(first_frame) = lines.iter().position(|l| is_frame(l)) else {
        return backtrace.to_string();
    };
    let Some(own) = lines[first_frame..]
        .iter()
        .position(|line| is_frame(line) && !is_machinery(line))
        .map(|i| first_frame + i)
    else {
        return backtrace.to_string();
    };
    let hidden = lines[first_frame..own]
        .iter()
        .filter(|l| is_frame(l))
        .count();
    if hidden == 0 {
        return backtrace.to_string();
    }
    let mut kept: Vec<String> = lines[..first_frame].iter().map(|l| l.to_string()).collect();
    kept.push(format!(
        "    ({hidden} frames of the panic machinery left out)"
    ));
    kept.extend(lines[own..].iter().map(|l| l.to_string()));
    kept.join("\n")
}

/// Whether a backtrace line is a frame of the standard library's panic and abort path (or a
/// source line below one).
fn is_machinery(line: &str) -> bool {
    let Some((_, function)) = line.split_once('!') else {
        // A `at file:line` line under a frame, or a frame without a name.
        return true;
    };
    let function = function.trim();
    function == "abort"
        || ["std", "core", "alloc", "__rustc", "__rust", "rust_"]
            .iter()
            .any(|root| {
                function.starts_with(&format!("{root}["))
                    || function.starts_with(&format!("{root}::"))
            })
        || function.starts_with("__rust")
        || function.starts_with("rust_begin_unwind")
        || function.starts_with("rust_panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STDERR: &str = "\nthread '<unnamed>' (1) panicked at power/src/lib.rs:9:36:\n\
                          power overflows s64\n\
                          note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";

    #[test]
    fn a_panic_message_is_read_with_its_location() {
        assert_eq!(
            panic_message(STDERR.as_bytes()).as_deref(),
            Some("power overflows s64 (at power/src/lib.rs:9:36)")
        );
        let old = "thread 'main' panicked at 'boom', src/lib.rs:3:5\nnote: ...\n";
        assert_eq!(
            panic_message(old.as_bytes()).as_deref(),
            Some("boom (at src/lib.rs:3:5)")
        );
        let two_lines = "thread '<unnamed>' panicked at a.rs:1:1:\nline one\nline two\n";
        assert_eq!(
            panic_message(two_lines.as_bytes()).as_deref(),
            Some("line one\nline two (at a.rs:1:1)")
        );
    }

    #[test]
    fn text_that_only_mentions_a_panic_is_not_one() {
        assert_eq!(panic_message(b"the parser panicked at line 3\n"), None);
        assert_eq!(panic_message(b""), None);
        assert_eq!(panic_message(b"plain output\n"), None);
    }

    #[test]
    fn the_panic_machinery_is_left_out_of_a_backtrace() {
        let bt = "error while executing at wasm backtrace:\n\
            \x20   0:   0x3edb - power.wasm!abort\n\
            \x20   1:   0x2b39 - power.wasm!std[d123]::sys::pal::wasi::helpers::abort_internal\n\
            \x20   3:   0x1c9d - power.wasm!__rustc[b797]::__rust_abort\n\
            \x20   5:   0x2b25 - power.wasm!__rustc[b797]::rust_panic\n\
            \x20  10:    0xcb1 - power.wasm!core[6d9e]::panicking::panic_fmt\n\
            \x20  11:    0xc0a - power.wasm!core[6d9e]::option::expect_failed\n\
            \x20  12:    0xb93 - power.wasm!power\n\
            \x20  13:    0xa00 - power.wasm!power#export";
        let trimmed = without_panic_frames(bt);
        assert_eq!(
            trimmed,
            "error while executing at wasm backtrace:\n\
             \x20   (6 frames of the panic machinery left out)\n\
             \x20  12:    0xb93 - power.wasm!power\n\
             \x20  13:    0xa00 - power.wasm!power#export"
        );
        // Nothing of the guest's own: kept whole.
        let only_std = "    0:   0x1 - m.wasm!core[1]::panicking::panic";
        assert_eq!(without_panic_frames(only_std), only_std);
    }
}
