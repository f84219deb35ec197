//! The demo's tasks (督办), through the tasks API as their users would use it: the city's
//! tasks of the last days carried over (issued, passed down, signed, answered, submitted —
//! some late, some never signed — accepted or returned, each step at the moment it happened),
//! one issued as the demo starts, and simulated units that sign and answer what is sent to them
//! while the demo runs (the city accepts what its own demo tasks get back).

use std::time::Duration as StdDuration;

use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::domain::{Level, OrgTree};

/// How a unit answers, fixed per task and unit: most are prompt, some slow, a few never sign.
#[derive(Clone, Copy, PartialEq)]
enum Habit {
    Prompt,
    SignsLate,
    SubmitsLate,
    Silent,
}

fn roll(task: &str, org: &str, salt: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(format!("{task}/{org}").as_bytes(), salt)
}

fn habit(task: &str, org: &str) -> Habit {
    match roll(task, org, 1) % 100 {
        0..=9 => Habit::Silent,
        10..=24 => Habit::SignsLate,
        25..=39 => Habit::SubmitsLate,
        _ => Habit::Prompt,
    }
}

/// A share of `span` picked for (task, org, salt): between `lo` and `hi` of it.
fn part(task: &str, org: &str, salt: u64, span: Duration, lo: f64, hi: f64) -> Duration {
    let r = (roll(task, org, salt) % 10_000) as f64 / 10_000.0;
    Duration::seconds((span.whole_seconds() as f64 * (lo + (hi - lo) * r)) as i64)
}

const FEEDBACK: [&str; 4] = [
    "已召开专题会议部署，明确专人负责",
    "已完成一半对象的入户走访，发现问题正在整改",
    "已与相关部门对接，正在协调解决",
    "已建立工作台账，逐项销号推进",
];
const DONE: [&str; 3] = [
    "已全部完成，台账已更新，详见附件清单",
    "已按要求办结，整改问题已逐项销号",
    "已完成排查，情况已录入系统",
];

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "GET {path}: {}", r.status());
        Ok(r.json().await?)
    }

    /// A step, at `at` (None: now). Refusals (a restarted demo finds it done) are logged.
    async fn step(
        &self,
        task: &str,
        org: &str,
        action: &str,
        mut body: Value,
        at: Option<OffsetDateTime>,
    ) -> bool {
        if let Some(at) = at {
            body["at"] = crate::domain::time::rfc3339(at).into();
        }
        match self
            .post(
                &format!("/api/v1/tasks/{task}/assignments/{org}/{action}"),
                body,
            )
            .await
        {
            Ok((200, _)) => true,
            Ok((status, answer)) => {
                tracing::debug!(task, org, action, status, %answer, "demo step not taken");
                false
            }
            Err(e) => {
                tracing::debug!(task, org, action, error = %e, "demo step not sent");
                false
            }
        }
    }
}

/// The steps of one assignment from `from` (issued or passed down) to now, as its unit's habit
/// has it; answers when it was submitted, if it was.
async fn play_history(
    api: &Api,
    task: &str,
    org: &str,
    from: OffsetDateTime,
    due: OffsetDateTime,
    now: OffsetDateTime,
    judge: bool,
) -> Option<OffsetDateTime> {
    let h = habit(task, org);
    if h == Habit::Silent {
        return None;
    }
    let day = Duration::hours(24);
    let signed = from
        + if h == Habit::SignsLate {
            day + part(task, org, 2, day, 0.1, 0.6)
        } else {
            part(task, org, 2, day, 0.02, 0.5)
        };
    if signed > now || !api.step(task, org, "sign", json!({}), Some(signed)).await {
        return None;
    }
    let said = signed + part(task, org, 3, due - from, 0.1, 0.3);
    if said > now {
        return None;
    }
    let text = FEEDBACK[(roll(task, org, 4) % FEEDBACK.len() as u64) as usize];
    api.step(task, org, "feedback", json!({ "text": text }), Some(said))
        .await;
    let submitted = if h == Habit::SubmitsLate {
        due + part(task, org, 5, day, 0.1, 1.5)
    } else {
        said + part(task, org, 5, due - said, 0.2, 0.9)
    };
    if submitted > now {
        return None;
    }
    let text = DONE[(roll(task, org, 6) % DONE.len() as u64) as usize];
    api.step(
        task,
        org,
        "submit",
        json!({ "text": text }),
        Some(submitted),
    )
    .await;
    if !judge {
        return Some(submitted);
    }
    let looked = submitted + part(task, org, 7, day, 0.05, 0.5);
    if looked > now {
        return Some(submitted);
    }
    if roll(task, org, 8) % 7 == 0 {
        api.step(
            task,
            org,
            "return",
            json!({ "reason": "材料不全，请补充走访名单和整改台账" }),
            Some(looked),
        )
        .await;
        let again = looked + part(task, org, 9, day, 0.2, 0.8);
        if again > now {
            return Some(submitted);
        }
        api.step(
            task,
            org,
            "submit",
            json!({ "text": "已补充走访名单和整改台账" }),
            Some(again),
        )
        .await;
        let accepted = again + part(task, org, 10, day, 0.05, 0.3);
        if accepted <= now {
            api.step(task, org, "accept", json!({}), Some(accepted))
                .await;
        }
    } else {
        api.step(task, org, "accept", json!({}), Some(looked)).await;
    }
    Some(submitted)
}

/// The units of `level` below the given orgs (by the tree: 大鹏新区's streets carry 龙岗's code
/// prefix).
fn codes(tree: &OrgTree, under: &[&str], level: Level) -> Vec<String> {
    under
        .iter()
        .filter_map(|u| tree.get(u))
        .flat_map(|u| tree.subtree(u))
        .map(|n| tree.node(n))
        .filter(|n| n.level == level)
        .map(|n| n.code.clone())
        .collect()
}

/// Issues a task; false when it was issued before (a restarted demo).
async fn issue(api: &Api, body: Value) -> bool {
    match api.post("/api/v1/tasks", body).await {
        Ok((201, _)) => true,
        Ok((200, _)) => false,
        Ok((status, answer)) => {
            tracing::warn!(status, %answer, "demo task not issued");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "demo task not issued");
            false
        }
    }
}

/// The demo's tasks of the last days, and units answering while the demo runs.
pub(super) async fn run(base: String, token: String, tree: std::sync::Arc<OrgTree>) {
    let api = Api {
        http: reqwest::Client::new(),
        base,
        token,
    };
    // The server answers first (the history of records is sent meanwhile).
    for _ in 0..600 {
        if api.get("/api/v1/tasks").await.is_ok() {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(500)).await;
    }
    let now = OffsetDateTime::now_utc();
    let stamp = crate::domain::time::local_date(now)
        .to_string()
        .replace('-', "");
    let rfc = crate::domain::time::rfc3339;

    // Ten days ago: every unit below the root (Shenzhen's districts, a province's cities),
    // passed down to theirs; due three days ago.
    let visits = format!("demo-{stamp}-visits");
    let (issued, due) = (now - Duration::days(10), now - Duration::days(3));
    let children = |code: &str| -> Vec<String> {
        tree.get(code)
            .map(|i| {
                tree.node(i)
                    .children
                    .iter()
                    .map(|&c| tree.node(c).code.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let districts = children(&tree.node(tree.root()).code);
    if issue(&api, json!({"id": visits, "title": "困难退役军人节前走访慰问", "instruction":
        "各区组织街道对辖区困难退役军人逐户走访慰问，摸清生活、就业、医疗困难，建立问题台账，逐项解决并反馈。",
        "due": rfc(due), "priority": "normal", "units": districts, "at": rfc(issued)})).await
    {
        for d in &districts {
            let signed = issued + part(&visits, d, 2, Duration::hours(20), 0.05, 0.6);
            if !api.step(&visits, d, "sign", json!({}), Some(signed)).await {
                continue;
            }
            let streets = children(d);
            let passed = signed + Duration::hours(2);
            if !api.step(&visits, d, "delegate", json!({"units": streets}), Some(passed)).await {
                continue;
            }
            let mut last = passed;
            let mut all = true;
            for s in &streets {
                match play_history(&api, &visits, s, passed, due, now, true).await {
                    Some(at) => last = last.max(at),
                    None => all = false,
                }
            }
            // The district reports done once its streets did, later when one of them was.
            if all {
                let at = (last + Duration::hours(3)).min(now);
                api.step(&visits, d, "submit", json!({"text": "全区各街道已完成走访，问题台账已汇总"}), Some(at)).await;
                if at + Duration::hours(6) <= now {
                    api.step(&visits, d, "accept", json!({}), Some(at + Duration::hours(6))).await;
                }
            }
        }
    }

    // Two days ago, urgent: the streets of 福田 and 罗湖, on their star ratings; due in five days.
    let stars = format!("demo-{stamp}-stars");
    let (issued, due) = (now - Duration::days(2), now + Duration::days(5));
    let streets = codes(&tree, &["440303", "440304"], Level::Street);
    if issue(&api, json!({"id": stars, "title": "星级服务站创建整改", "instruction":
        "对照星级评定标准自查服务站（五有、人员、制度），列出差距和整改时间表，整改完成后申请复评。",
        "due": rfc(due), "priority": "urgent", "units": streets, "at": rfc(issued),
        "source": {"metric": "street_star_demo_share", "scope": "440300"}})).await
    {
        for s in &streets {
            play_history(&api, &stars, s, issued, due, now, true).await;
        }
    }

    // Now: 龙岗's streets, answered live while the demo runs.
    let live_task = format!("demo-{stamp}-appeals");
    let streets = codes(&tree, &["440307"], Level::Street);
    issue(
        &api,
        json!({"id": live_task, "title": "信访积案化解攻坚", "instruction":
        "对本街道超过 60 天未办结的信访件逐件分析原因，明确包案领导，限期化解，每周反馈进展。",
        "due": rfc(now + Duration::days(3)), "priority": "urgent", "units": streets,
        "source": {"metric": "open_appeals", "scope": "440307"}}),
    )
    .await;
    tracing::info!("demo tasks issued; simulated units answer them");
    answer_live(&api, now).await;
}

/// Units answering the tasks issued since `since` (the demo's own, and those its users issue):
/// in seconds rather than hours, some slowly, a few never; the city accepts or returns what its
/// demo tasks get back (users' own tasks are theirs to accept).
async fn answer_live(api: &Api, since: OffsetDateTime) {
    let mut every = tokio::time::interval(StdDuration::from_secs(3));
    'tick: loop {
        every.tick().await;
        let Ok(list) = api.get("/api/v1/tasks?state=open").await else {
            continue;
        };
        let now = OffsetDateTime::now_utc();
        let mut budget = 3;
        for t in list["tasks"].as_array().into_iter().flatten() {
            let issued = t["issued_at"].as_str().and_then(|s| {
                OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            });
            let (Some(id), Some(issued)) = (t["id"].as_str(), issued) else {
                continue;
            };
            if issued < since - Duration::minutes(1) {
                continue;
            }
            let Ok(view) = api.get(&format!("/api/v1/tasks/{id}")).await else {
                continue;
            };
            let ours = id.starts_with("demo-");
            let mut queue: Vec<&Value> = view["assignments"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            while let Some(a) = queue.pop() {
                queue.extend(a["children"].as_array().into_iter().flatten());
                if budget == 0 {
                    continue 'tick;
                }
                let (Some(org), Some(state)) = (a["org"].as_str(), a["state"].as_str()) else {
                    continue;
                };
                let h = habit(id, org);
                let age = (now - issued).whole_seconds();
                let wait = |salt: u64, lo: i64, hi: i64| {
                    lo + (roll(id, org, salt) % (hi - lo) as u64) as i64
                };
                let took = match state {
                    "issued"
                        if h != Habit::Silent
                            && age > wait(2, 5, if h == Habit::SignsLate { 240 } else { 60 }) =>
                    {
                        api.step(id, org, "sign", json!({}), None).await
                    }
                    "signed" if age > wait(3, 40, 150) => {
                        let text = FEEDBACK[(roll(id, org, 4) % FEEDBACK.len() as u64) as usize];
                        api.step(id, org, "feedback", json!({"text": text}), None)
                            .await
                    }
                    "in_progress" | "returned"
                        if age > wait(5, 120, if h == Habit::SubmitsLate { 900 } else { 400 }) =>
                    {
                        let text = DONE[(roll(id, org, 6) % DONE.len() as u64) as usize];
                        api.step(id, org, "submit", json!({"text": text}), None)
                            .await
                    }
                    "submitted" if ours && age > wait(7, 200, 600) => {
                        let returned = a["feedback"]
                            .as_array()
                            .is_some_and(|f| f.iter().any(|s| s["step"] == "return"));
                        if roll(id, org, 8) % 6 == 0 && !returned {
                            api.step(
                                id,
                                org,
                                "return",
                                json!({"reason": "请补充具体化解措施和时间表"}),
                                None,
                            )
                            .await
                        } else {
                            api.step(id, org, "accept", json!({}), None).await
                        }
                    }
                    _ => false,
                };
                if took {
                    budget -= 1;
                }
            }
        }
    }
}
