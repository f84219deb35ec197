//! A metric's page (`/metric/<id>`): the nodes at risk farthest from the target first, from
//! REST; and the page itself in a real browser (`tests/browser/metric_page.mjs`).

use crate::helpers as common;

use common::spawn_app;
use serde_json::{json, Value};
use vscc::domain::org::Level;

fn registered(id: &str, org: &str, person: &str, kind: &str) -> Value {
    json!({"id": id, "kind": kind, "org": org, "at": "2021-03-01T10:00:00+08:00",
        "data": {"person_id": person}})
}

/// Archive coverage (target 100 % by 2022-12-31, so short is missed): one community at 25 %,
/// one at 50 %, one complete. The list has the short communities and every node above them
/// that is short, farthest first, each figure as `/api/v1/metrics` gives it; none that met.
#[tokio::test]
async fn the_nodes_at_risk_are_listed_farthest_from_the_target_first() {
    let app = spawn_app().await;
    let tree = &app.state.tree;
    // Three communities of three different streets.
    let mut picked: Vec<String> = Vec::new();
    let mut streets = std::collections::HashSet::new();
    for (_, node) in tree.nodes() {
        if node.level == Level::Community && streets.insert(node.parent) {
            picked.push(node.code.clone());
        }
        if picked.len() == 3 {
            break;
        }
    }
    let (quarter, half, whole) = (&picked[0], &picked[1], &picked[2]);
    let mut events = Vec::new();
    for (org, registered_n, archived_n) in [(quarter, 4, 1), (half, 2, 1), (whole, 1, 1)] {
        for i in 0..registered_n {
            let person = format!("P-{org}-{i}");
            events.push(registered(
                &format!("r-{org}-{i}"),
                org,
                &person,
                "veteran.registered",
            ));
            if i < archived_n {
                events.push(registered(
                    &format!("a-{org}-{i}"),
                    org,
                    &person,
                    "archive.completed",
                ));
            }
        }
    }
    assert_eq!(app.post_events(&json!(events)).await.status(), 200);

    let answer = app
        .get_json("/api/v1/at-risk?metric=archive_coverage&scope=440300&limit=1000")
        .await;
    let nodes = answer["nodes"].as_array().unwrap();
    assert_eq!(answer["total"].as_u64().unwrap() as usize, nodes.len());
    let codes: Vec<&str> = nodes.iter().map(|n| n["code"].as_str().unwrap()).collect();
    // The 25 % community first (its street, with nothing else, is as far: a tie goes by code).
    let farthest: Vec<&str> = nodes
        .iter()
        .filter(|n| (n["shortfall"].as_f64().unwrap() - 0.75).abs() < 1e-12)
        .map(|n| n["code"].as_str().unwrap())
        .collect();
    assert!(
        farthest.contains(&quarter.as_str()) && codes[..farthest.len()] == farthest[..],
        "{codes:?}"
    );
    assert!(codes.contains(&half.as_str()));
    assert!(
        !codes.contains(&whole.as_str()),
        "a node that met is not at risk"
    );
    assert!(
        !codes.contains(&"440300"),
        "the scope itself is the page's figure"
    );
    let shortfalls: Vec<f64> = nodes
        .iter()
        .map(|n| n["shortfall"].as_f64().unwrap())
        .collect();
    assert!(
        shortfalls.windows(2).all(|w| w[0] >= w[1]),
        "{shortfalls:?}"
    );
    for n in nodes {
        let code = n["code"].as_str().unwrap();
        assert!(
            matches!(n["status"].as_str(), Some("missed" | "at_risk")),
            "{n}"
        );
        let value = n["value"].as_f64().unwrap();
        assert!(
            (n["shortfall"].as_f64().unwrap() - (1.0 - value)).abs() < 1e-12,
            "{n}"
        );
        // The same figure REST gives for the node among its parent's children.
        let idx = tree.get(code).unwrap();
        let parent = &tree.node(tree.node(idx).parent.unwrap()).code;
        let rest = app
            .get_json(&format!(
                "/api/v1/metrics?scope={parent}&metrics=archive_coverage"
            ))
            .await;
        assert_eq!(
            rest["nodes"][code]["archive_coverage"]["value"], n["value"],
            "{code}"
        );
        assert_eq!(
            rest["nodes"][code]["archive_coverage"]["status"],
            n["status"]
        );
        assert_eq!(
            n["parent_name"],
            json!(tree.node(tree.node(idx).parent.unwrap()).name)
        );
    }
    // Four levels down the tree: a community, its street and district are all short.
    let quarter_street = &tree
        .node(tree.node(tree.get(quarter).unwrap()).parent.unwrap())
        .code;
    assert!(codes.contains(&quarter_street.as_str()));

    // A cut list keeps the total; a narrower scope lists only what is under it.
    let cut = app
        .get_json("/api/v1/at-risk?metric=archive_coverage&limit=1")
        .await;
    assert_eq!(cut["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(cut["total"], answer["total"]);
    // Cut per level: the farthest of each level, with every level's full count — many far
    // communities do not push the districts out of a page's list.
    let per_level = app
        .get_json("/api/v1/at-risk?metric=archive_coverage&limit=1&per_level=true")
        .await;
    let counted: u64 = per_level["by_level"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(Some(counted), answer["total"].as_u64(), "{per_level}");
    let full = answer["nodes"].as_array().unwrap();
    let levels = per_level["by_level"].as_object().unwrap();
    assert!(
        levels.len() >= 2,
        "more than one level is short: {levels:?}"
    );
    let firsts: Vec<&Value> = per_level["nodes"].as_array().unwrap().iter().collect();
    assert_eq!(firsts.len(), levels.len(), "one node of each level");
    for (level, count) in levels {
        let of_level: Vec<&Value> = full.iter().filter(|n| n["level"] == *level).collect();
        assert_eq!(Some(of_level.len() as u64), count.as_u64(), "{level}");
        let first = firsts.iter().find(|n| n["level"] == *level).unwrap();
        assert_eq!(first["code"], of_level[0]["code"], "the farthest {level}");
    }
    let street = app
        .get_json(&format!(
            "/api/v1/at-risk?metric=archive_coverage&scope={quarter_street}"
        ))
        .await;
    let under: Vec<&str> = street["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["code"].as_str().unwrap())
        .collect();
    assert_eq!(under, vec![quarter.as_str()]);

    // Bad requests name the parameter.
    for (path, field) in [
        ("/api/v1/at-risk?metric=nope", "metric"),
        ("/api/v1/at-risk?metric=staffing_rate,visits", "metric"),
        ("/api/v1/at-risk", "metric"),
        ("/api/v1/at-risk?metric=visits&limit=0", "limit"),
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 400, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["field"], field, "{path}: {body}");
    }
    // The page exists for a metric of the catalogue only.
    assert_eq!(app.get("/metric/archive_coverage").await.status(), 200);
    assert_eq!(app.get("/metric/nope").await.status(), 404);
    app.stop().await;
}

/// The page in a real browser at 1920×1080 and 3840×2160.
#[test]
fn a_metric_page_shows_its_figure_map_league_trend_and_nodes_at_risk_live() {
    let stdout = common::run_browser_script("metric_page.mjs");
    assert!(stdout.contains("ok: 1920×1080: the at-risk list"));
    assert!(stdout.contains("ok: 3840×2160: the at-risk list"));
    assert!(stdout.contains("live"));
    assert!(stdout.contains("drills"));
}
