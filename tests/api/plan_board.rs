//! The plan board in a real browser (`tests/browser/plan_board.mjs`): every metric × the city
//! and its districts, equal to REST, live, drillable, legible at 1920×1080 and 3840×2160.
//! Screenshots land in `target/screenshots/`.

use crate::helpers as common;

use std::process::Command;

#[test]
fn the_plan_board_shows_every_metric_for_the_city_and_each_district_live_and_drills_down() {
    let settings = common::test_settings();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("node")
        .arg(format!("{root}/tests/browser/plan_board.mjs"))
        .env("VENDOR_DIR", format!("{root}/var/web/node_modules"))
        .env("VSCC_BIN", env!("CARGO_BIN_EXE_vscc"))
        .env("CLICKHOUSE_URL", common::clickhouse_url())
        .env("DATABASE", &settings.clickhouse.database)
        .env("SPOOL_DIR", &settings.ingest.spool_dir)
        .env("PORT", common::free_port().to_string())
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
    assert!(stdout.contains("ok: 1920×1080: all"));
    assert!(stdout.contains("ok: 3840×2160: all"));
    assert!(stdout.contains("live"));
    assert!(stdout.contains("the click opens"));
}
