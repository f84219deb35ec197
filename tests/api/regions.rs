//! Beyond Shenzhen: `org.region` roots the org tree at a province (or the nation). The shipped
//! definitions keep their meaning there — a metric of the city has a province figure too,
//! rolled up from the province's cities — and every figure equals the SQL recomputation. A
//! region the division codes do not have, or a metric naming a level the region's tree lacks,
//! is refused at start naming it.

use serde_json::{json, Value};

use crate::helpers::{compared_with_sql, sample_events, spawn_app_with, test_settings};

async fn refusal(settings: vscc::config::Settings) -> String {
    match vscc::app::Application::build(settings, false).await {
        Ok(_) => panic!("the start was not refused"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn a_province_rolls_its_cities_up_and_every_figure_equals_sql() {
    let mut settings = test_settings();
    settings.org.region = "44".into();
    let app = spawn_app_with(settings).await;
    let tree = app.state.tree.clone();
    let root = tree.node(tree.root());
    assert_eq!(
        (root.code.as_str(), root.name.as_str()),
        ("440000", "广东省")
    );
    assert_eq!(tree.count(vscc::domain::Level::City), 21);
    assert!(tree.count(vscc::domain::Level::Community) > 20_000);

    let events = sample_events(&tree, 4000, 53, 120, "gd");
    for chunk in events.chunks(1000) {
        let answer: Value = app.post_events(&json!(chunk)).await.json().await.unwrap();
        assert_eq!(answer["rejected"], 0, "{answer}");
    }
    app.wait_landed().await;

    // The province's figure of a metric written for Shenzhen's city is its cities' sum.
    let body = app.get_json("/api/v1/metrics?scope=440000").await;
    let nodes = body["nodes"].as_object().unwrap();
    let province = &nodes["440000"]["staffing_rate"];
    let cities: Vec<&Value> = nodes
        .iter()
        .filter(|(code, _)| code.as_str() != "440000")
        .map(|(_, m)| &m["staffing_rate"])
        .collect();
    assert_eq!(cities.len(), 21);
    let sum = |field: &str| {
        cities
            .iter()
            .map(|c| c[field].as_i64().unwrap_or(0))
            .sum::<i64>()
    };
    assert!(province["den"].as_i64().unwrap() > 0, "{province}");
    assert_eq!(province["num"].as_i64().unwrap(), sum("num"));
    assert_eq!(province["den"].as_i64().unwrap(), sum("den"));

    // Every figure of the province, its cities and their districts equals SQL (the streets and
    // communities are tens of thousands; the roll-up above them is checked through these).
    let shown: std::collections::HashSet<String> = tree
        .nodes()
        .filter(|(_, n)| n.level <= vscc::domain::Level::District)
        .map(|(_, n)| n.code.clone())
        .collect();
    let live: Vec<_> = app
        .state
        .hub
        .all_current()
        .into_iter()
        .filter(|(code, _)| shown.contains(code))
        .collect();
    assert!(live.len() > 140, "{} nodes", live.len());
    compared_with_sql(&app, &live, app.state.hub.now()).await;
    app.stop().await;
}

#[tokio::test]
async fn a_region_or_a_metric_level_the_codes_do_not_have_is_refused_naming_it() {
    let mut settings = test_settings();
    settings.org.region = "990000".into();
    let e = refusal(settings).await;
    assert!(e.contains("org.region '990000'"), "{e}");

    let mut settings = test_settings();
    settings.org.region = "guangdong".into();
    let e = refusal(settings).await;
    assert!(e.contains("org.region 'guangdong'"), "{e}");

    // A metric of the province in Shenzhen's tree.
    let mut settings = test_settings();
    let metrics = settings.ingest.spool_dir.with_extension("metrics");
    std::fs::create_dir_all(&metrics).unwrap();
    for e in std::fs::read_dir(&settings.catalogue.metrics_dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), metrics.join(e.file_name())).unwrap();
    }
    let file = metrics.join("business_meetings.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "levels = [\"city\", \"district\"]",
            "levels = [\"province\", \"city\"]",
        ),
    )
    .unwrap();
    settings.catalogue.metrics_dir = metrics;
    let e = refusal(settings).await;
    assert!(
        e.contains("business_meetings.toml") && e.contains("no province nodes"),
        "{e}"
    );
}
