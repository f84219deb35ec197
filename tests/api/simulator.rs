//! The simulated Shenzhen: reproducible, plan-shaped, located records inside their district.

use std::collections::HashMap;

use time::{Date, Month, OffsetDateTime, Weekday};
use vscc::config::Settings;
use vscc::Simulator;
use vscc::{load_org_tree, DistrictMap};

fn reference() -> (vscc::domain::OrgTree, DistrictMap) {
    let s = Settings::load(None).unwrap();
    let tree = load_org_tree(&s.reference.divisions_dir, &s.org.region).unwrap();
    let map = DistrictMap::load(
        &s.reference.boundaries_dir,
        &tree,
        s.reference.simplify_tolerance_deg,
    )
    .unwrap();
    (tree, map)
}

fn run(
    tree: &vscc::domain::OrgTree,
    map: &DistrictMap,
    seed: u64,
    until: Date,
) -> Vec<serde_json::Value> {
    let mut sim = Simulator::new(tree, map, seed, 0.02);
    let mut out = Vec::new();
    while let Some((_, events)) = sim.next_day(until) {
        out.extend(events);
    }
    out
}

#[test]
fn same_seed_same_records_and_a_longer_run_extends_a_shorter_one() {
    let (tree, map) = reference();
    let end = Date::from_calendar_date(2020, Month::June, 30).unwrap();
    let a = run(&tree, &map, 7, end);
    let b = run(&tree, &map, 7, end);
    assert!(a.len() > 1000, "{} records", a.len());
    assert_eq!(a, b);
    assert_ne!(a, run(&tree, &map, 8, end), "another seed, another history");
    let shorter = run(
        &tree,
        &map,
        7,
        Date::from_calendar_date(2020, Month::March, 31).unwrap(),
    );
    let a_ids: std::collections::HashSet<&str> =
        a.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(shorter
        .iter()
        .all(|e| a_ids.contains(e["id"].as_str().unwrap())));
}

#[test]
fn records_follow_the_plan_story() {
    let (tree, map) = reference();
    let events = run(
        &tree,
        &map,
        1,
        Date::from_calendar_date(2022, Month::December, 31).unwrap(),
    );
    let parse =
        |s: &str| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    let mut by_kind: HashMap<&str, usize> = HashMap::new();
    let mut located = 0;
    let mut veterans_hired = (0, 0);
    for e in &events {
        let kind = e["kind"].as_str().unwrap();
        *by_kind.entry(kind).or_default() += 1;
        if kind == "appeal.received" {
            let day = parse(e["at"].as_str().unwrap())
                .to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap());
            assert!(
                !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday),
                "appeals arrive on weekdays"
            );
            if let Some(loc) = e.get("location") {
                let org = tree.get(e["org"].as_str().unwrap()).unwrap();
                let district = tree
                    .node(
                        tree.ancestor_at(org, vscc::domain::Level::District)
                            .unwrap(),
                    )
                    .code
                    .clone();
                let at = map
                    .locate(loc["lon"].as_f64().unwrap(), loc["lat"].as_f64().unwrap())
                    .unwrap();
                assert_eq!(
                    at.code, district,
                    "a located appeal lies inside its own district"
                );
                located += 1;
            }
        }
        if kind == "staff.hired" {
            veterans_hired.1 += 1;
            veterans_hired.0 += usize::from(e["data"]["veteran"] == true);
        }
        if kind == "station.rated" {
            let stars = e["data"]["stars"].as_i64().unwrap();
            assert!((0..=5).contains(&stars));
        }
    }
    for kind in [
        "staffing.reported",
        "staff.hired",
        "staff.headcount",
        "training.class_held",
        "training.attended",
        "station.rated",
        "appeal.received",
        "appeal.accepted",
        "appeal.closed",
        "veteran.registered",
        "archive.completed",
    ] {
        assert!(
            by_kind.get(kind).copied().unwrap_or(0) > 0,
            "{kind} is simulated"
        );
    }
    assert!(located > 100, "appeals carry locations ({located})");
    let share = veterans_hired.0 as f64 / veterans_hired.1 as f64;
    assert!(
        (0.25..0.42).contains(&share),
        "about a third of hires are veterans ({share:.2})"
    );
    // Some stations lose a star between ratings (能进能出).
    let mut last: HashMap<&str, i64> = HashMap::new();
    let mut drops = 0;
    for e in events.iter().filter(|e| e["kind"] == "station.rated") {
        let stars = e["data"]["stars"].as_i64().unwrap();
        if last
            .insert(e["org"].as_str().unwrap(), stars)
            .is_some_and(|prev| stars < prev)
        {
            drops += 1;
        }
    }
    assert!(drops > 0, "ratings can fall");
}

/// Kinds that exist only as definition files are simulated from their `[simulate]` tables,
/// accepted by the API like any other, and every metric over them — as every other — equals
/// the SQL generated from the same definitions.
#[tokio::test]
async fn kinds_defined_only_as_files_are_simulated_accepted_and_counted() {
    let app = crate::helpers::spawn_app().await;
    let (tree, map) = reference();
    let catalogue = app.state.hub.catalogue();
    let mut sim = Simulator::new(&tree, &map, 11, 0.02).with_kinds(&catalogue.kinds);
    let end = Date::from_calendar_date(2020, Month::June, 30).unwrap();
    let mut by_kind: HashMap<String, usize> = HashMap::new();
    while let Some((_, events)) = sim.next_day(end) {
        for e in &events {
            *by_kind
                .entry(e["kind"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        for chunk in events.chunks(2000) {
            let answer: serde_json::Value = app
                .post_events(&serde_json::json!(chunk))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(answer["rejected"], 0, "{answer}");
        }
    }
    let simulated: Vec<&str> = catalogue
        .kinds
        .all()
        .filter(|d| d.simulate.is_some())
        .map(|d| d.kind.as_str())
        .collect();
    // Every kind beyond the contract's eleven (which the simulator's code makes) is simulated
    // from its file, but for the tasks' steps (made by the task handling; the demo's units take
    // them through the tasks API).
    assert_eq!(
        simulated.len(),
        catalogue.kinds.all().filter(|d| !d.made_by_tasks).count() - 11,
        "{simulated:?}"
    );
    for kind in &simulated {
        assert!(
            by_kind.get(*kind).copied().unwrap_or(0) > 0,
            "no {kind} records: {by_kind:?}"
        );
    }
    app.wait_landed().await;
    let live = app.state.hub.all_current();
    // The new metrics have figures at the city, not "no data".
    let city = &live.iter().find(|(code, _)| code == "440300").unwrap().1;
    for name in [
        "five_haves",
        "full_time_street_staff",
        "legal_aid_stations",
        "red_star_volunteers",
        "honor_plaques",
        "hardship_books",
        "return_visits",
        "work_orders",
        "work_order_take_hours",
        "volunteer_hours",
        "feedback",
    ] {
        let id = catalogue.parse_name(name).unwrap();
        let figure = &city.iter().find(|(m, _)| *m == id).unwrap().1;
        assert!(figure.value.is_some(), "{name}: {figure:?}");
    }
    crate::helpers::compared_with_sql(&app, &live, app.state.hub.now()).await;
    app.stop().await;
}

/// Reporting completeness over the simulated Shenzhen, where the simulator makes some units
/// report late and some not at all: on a day past a month's due day, every node's reporting
/// figures equal the SQL recomputation, and the figures show both kinds of shortfall.
#[tokio::test]
async fn a_months_reports_some_late_some_silent_equal_the_sql_recomputation() {
    let app = crate::helpers::spawn_app().await;
    let (tree, map) = reference();
    let catalogue = app.state.hub.catalogue();
    let mut sim = Simulator::new(&tree, &map, 5, 0.01).with_kinds(&catalogue.kinds);
    let end = Date::from_calendar_date(2020, Month::February, 12).unwrap();
    while let Some((_, events)) = sim.next_day(end) {
        for chunk in events.chunks(2000) {
            let answer: serde_json::Value = app
                .post_events(&serde_json::json!(chunk))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(answer["rejected"], 0, "{answer}");
        }
    }
    app.wait_landed().await;
    // 12 February 2020: past February's headcount due day (the 5th).
    let now = OffsetDateTime::parse(
        "2020-02-12T20:00:00+08:00",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let reporting: Vec<_> = catalogue
        .metrics
        .iter()
        .filter(|m| m.measure.type_name() == "reporting")
        .map(|m| m.id)
        .collect();
    let live: Vec<_> = app
        .state
        .hub
        .read(now, |agg| agg.all_figures(now))
        .into_iter()
        .map(|(code, figures)| {
            let kept = figures
                .into_iter()
                .filter(|(m, _)| reporting.contains(m))
                .collect::<Vec<_>>();
            (code, kept)
        })
        .collect();
    let city = &live.iter().find(|(code, _)| code == "440300").unwrap().1;
    let headcount = catalogue.parse_name("headcount_reporting").unwrap();
    let f = &city.iter().find(|(m, _)| *m == headcount).unwrap().1;
    let den = f.den.unwrap();
    let received = f.extras["received_staff.headcount"];
    assert!(den > 800, "every unit is expected past the 5th: {f:?}");
    assert!(received < den, "some units sent nothing: {f:?}");
    assert!(f.num < received, "some sent late: {f:?}");
    crate::helpers::compared_with_sql(&app, &live, now).await;
    app.stop().await;
}
