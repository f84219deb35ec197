//! The wall screen in a real browser: Debian's headless Chromium driven by playwright-core
//! (`tests/browser/wall_screen.mjs`), against the real vscc binary and the run's ClickHouse.
//! Screenshots at 1920×1080 and 3840×2160 land in `target/screenshots/`.

use crate::helpers as common;

#[test]
fn the_wall_screen_shows_live_correct_figures_drills_down_and_survives_a_restart() {
    let stdout = common::run_browser_script("wall_screen.mjs");
    assert!(stdout.contains("ok: the map has 10 districts"));
    assert!(stdout.contains("ok: a write is refused by ClickHouse"));
}
