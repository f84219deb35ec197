//! The wall screen in a real browser: Debian's headless Chromium driven by playwright-core
//! (`tests/browser/wall_screen.mjs`), against the real vscc binary and the run's ClickHouse.
//! Screenshots at 1920×1080 and 3840×2160 land in `target/screenshots/`.

use crate::helpers as common;

use std::process::Command;

#[test]
fn the_wall_screen_shows_live_correct_figures_drills_down_and_survives_a_restart() {
    let settings = common::test_settings();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("node")
        .arg(format!("{root}/tests/browser/wall_screen.mjs"))
        .env("VENDOR_DIR", format!("{root}/var/web/node_modules"))
        .env("VSCC_BIN", env!("CARGO_BIN_EXE_vscc"))
        .env("CLICKHOUSE_URL", common::clickhouse_url())
        .env("DATABASE", &settings.clickhouse.database)
        .env("SPOOL_DIR", &settings.ingest.spool_dir)
        .env("PORT", port.to_string())
        .env("SCREENSHOTS", format!("{root}/target/screenshots"))
        .env(
            "SQL_USERS_DIR",
            std::env::var("VSCC_TEST_CLICKHOUSE_USERS_DIR").unwrap_or_default(),
        )
        .current_dir(root)
        .output()
        .expect("node runs (scripts/setup installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok: the map has 10 districts"));
    assert!(stdout.contains("ok: a write is refused by ClickHouse"));
}
