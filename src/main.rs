/// glibc malloc spent ~45 % of the ingest path's CPU (perf, 1 M records); mimalloc is the
/// usual remedy for many small, cross-thread allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    if let Err(e) = vscc::cli::main().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
