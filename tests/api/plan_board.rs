//! The plan board in a real browser (`tests/browser/plan_board.mjs`): every metric × the city
//! and its districts, equal to REST, live, drillable, legible at 1920×1080 and 3840×2160; and
//! the daily brief, printed. Screenshots land in `target/screenshots/`.

use crate::helpers as common;

#[test]
fn the_plan_board_shows_every_metric_for_the_city_and_each_district_live_and_drills_down() {
    let stdout = common::run_browser_script("plan_board.mjs");
    assert!(stdout.contains("ok: 1920×1080: all"));
    assert!(stdout.contains("ok: 3840×2160: all"));
    assert!(stdout.contains("live"));
    assert!(stdout.contains("the click opens"));
}
