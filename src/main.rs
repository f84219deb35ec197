/// glibc malloc spent ~45 % of the ingest path's CPU (perf, 1 M records); mimalloc is the
/// usual remedy for many small, cross-thread allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    small_pages_only();
    if let Err(e) = vscc::cli::main().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// mimalloc asks for transparent huge pages on its large blocks; the request bodies, parsed
/// batches and log buffers come and go faster than it reuses them, so the kernel zeroed a fresh
/// 2 MiB page again and again (`clear_page`: 24 % of the server's CPU under `bench ingest`).
/// With 4 KiB pages the server spent 3.1–3.4 CPU-µs a record instead of 3.8–3.9.
fn small_pages_only() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and no pointers; it only sets a flag
    // on this process's address space, and a failure (an old kernel) leaves the default.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
