#[tokio::main]
async fn main() {
    if let Err(e) = vscc::cli::main().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
