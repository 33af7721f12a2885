//! Link-time layout of the `keel-proxy` binary, for a smaller resident set.
//!
//! The kernel maps a program's code in 64 KiB runs around each page fault ("fault-around"),
//! so what counts for RSS is how many 64 KiB windows of `.text` the running proxy touches,
//! not how many bytes it executes. Left to the linker, the ~1.5 MiB of functions a gateway
//! runs (startup, the HTTP/1.1 and HTTP/2 paths, the admin API) are spread over the whole
//! 7 MiB `.text`, and almost every window becomes resident (measured: 4.8 MiB of code at
//! startup, 5.2 MiB under load). Two linker options fix that:
//!
//! - `hot-text.ld`, a linker script, places those functions first and together (an output
//!   section `.text.hot` inserted before `.text`). The list is generated from a callgrind
//!   profile of the benchmark's loads (`bench/hot-text.sh`, which explains how it names
//!   functions so that the list survives dependency updates); names that match nothing are
//!   skipped, so a stale list costs memory, never correctness. `bench/hot-text.sh --check`
//!   says how much of it still matches a built binary. Measured with bench/proxy.sh's loads:
//!   resident code 5.2 → 2.2 MiB, peak RSS 10.1 → 6.4 MiB (with the option below).
//! - `-z pack-relative-relocs` (DT_RELR) stores the ~15,000 relative relocations of a PIE in
//!   a few KiB instead of 372 KiB that the dynamic loader reads, and so maps, at every start
//!   (measured: 0.5 MiB less RSS). It needs glibc 2.36 or later at run time (Debian 12,
//!   Ubuntu 22.10, RHEL 10; an older glibc refuses to start the binary, naming the missing
//!   `GLIBC_ABI_DT_RELR`). The binary stays position-independent: ASLR is unchanged.
//!
//! LLD (which Rust 1.90+ uses for `x86_64-unknown-linux-gnu`, and rust-toolchain.toml pins
//! such a toolchain) and GNU ld 2.38+ understand both; they are passed for that target only.
//! The script only in release builds: matching it against a debug build's far more numerous
//! sections adds ~20 s to every link, and debug builds are not measured for memory.
//! `KEEL_LINK_LAYOUT=off` leaves the linker's defaults (another linker, an older glibc).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=hot-text.ld");
    println!("cargo:rerun-if-env-changed=KEEL_LINK_LAYOUT");
    let target = env::var("TARGET").unwrap_or_default();
    let off = env::var("KEEL_LINK_LAYOUT").is_ok_and(|v| v == "off" || v == "0");
    if target != "x86_64-unknown-linux-gnu" || off {
        return;
    }
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let script = dir.join("hot-text.ld");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    if release && script.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=keel-proxy=-Wl,-T,{}",
            script.display()
        );
    }
    println!("cargo:rustc-link-arg-bin=keel-proxy=-Wl,-z,pack-relative-relocs");
}
