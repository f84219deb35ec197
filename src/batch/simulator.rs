//! A simulated Shenzhen veterans service system, reproducible from a seed.
//!
//! Each record family follows a plan-shaped story over the real org tree, from 2020-01-01:
//! - staffing: city and district centers report monthly; filled posts climb toward 95 % during
//!   2020 and some districts stay short of it;
//! - hires: a few a month per center and street, about a third veterans;
//! - headcount: every station reports monthly, by the 5th mostly, some late, a few not at all;
//!   training: city and districts hold 2–4 classes a year (one in the year-end push) and most
//!   staff attend one;
//! - star ratings: district centers and street stations are rated each half-year; stars rise,
//!   sometimes fall (能进能出), good stations become demonstration sites;
//! - appeals: arrive on weekdays, located inside their district's outline, are accepted after a
//!   few days (some after more than 15) and closed after a long-tailed time (some after 60);
//! - veterans: registered in communities (≈ 300,000 × scale), files completed over 2020–2022.
//!
//! Days are generated in order and independently seeded, so a longer run extends a shorter one.
//! Events dated after `until` are kept as the future: the live mode brings them forward.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, Weekday};

use crate::domain::kinds::FieldType;
use crate::domain::time::SHANGHAI;
use crate::domain::{Level, OrgTree};
use crate::reference::DistrictMap;

pub const START: Date = match Date::from_calendar_date(2020, Month::January, 1) {
    Ok(d) => d,
    Err(_) => panic!("valid date"),
};

/// Veterans in Shenzhen at scale 1 (order of magnitude: hundreds of thousands).
const VETERANS_AT_SCALE_1: f64 = 300_000.0;
/// Appeals a weekday across Shenzhen at scale 1.
const APPEALS_PER_WEEKDAY: f64 = 20.0;

pub struct Simulator<'a> {
    tree: &'a OrgTree,
    map: &'a DistrictMap,
    seed: u64,
    scale: f64,
    centers: Vec<String>,
    stations: Vec<String>,
    streets: Vec<String>,
    /// Events scheduled for a later day (acceptances, closures, file completions …).
    scheduled: BTreeMap<Date, Vec<Value>>,
    day: Date,
    /// Per street: its communities.
    communities_of: BTreeMap<String, Vec<String>>,
    /// Kinds whose definitions say how to simulate them, with the orgs that report each.
    defined: Vec<(crate::domain::kinds::KindDef, Vec<String>)>,
    /// Kinds whose records follow another kind's: (the followed kind, its subject field, the
    /// follower).
    followers: Vec<(String, String, crate::domain::kinds::KindDef)>,
}

/// A plausible resident ID number (GB 11643: region, birth date, sequence, ISO 7064 check
/// digit) fixed by the seed and a key, registered in the community's district: the personal
/// data analysts' SQL must see masked.
fn resident_id(seed: u64, community: &str, key: &str) -> String {
    let pick = |what: &str, n: u32| (trait_of(seed, &format!("{key}/{what}")) * n as f64) as u32;
    let region = community.get(..6).unwrap_or("440300");
    let body = format!(
        "{region}{:04}{:02}{:02}{:03}",
        1950 + pick("year", 50),
        1 + pick("month", 12),
        1 + pick("day", 28),
        pick("seq", 1000)
    );
    let check = id_check_digit(&body);
    format!("{body}{check}")
}

/// ISO 7064 MOD 11-2 over the first 17 digits.
fn id_check_digit(body: &str) -> char {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body
        .bytes()
        .zip(WEIGHTS)
        .map(|(b, w)| (b - b'0') as u32 * w)
        .sum();
    b"10X98765432"[(sum % 11) as usize] as char
}

/// A number in [0, 1) fixed by the seed and a key: per-entity traits that never change.
fn trait_of(seed: u64, key: &str) -> f64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ seed.wrapping_mul(0x9e3779b97f4a7c15);
    for b in key.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn at(day: Date, rng: &mut StdRng) -> String {
    let t = Time::from_hms(
        rng.random_range(8..18),
        rng.random_range(0..60),
        rng.random_range(0..60),
    )
    .unwrap_or(Time::MIDNIGHT);
    let local = PrimitiveDateTime::new(day, t).assume_offset(SHANGHAI);
    local
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A simulated record's `data` from its kind's definition: texts from `key`, flags true with
/// the share of the plan's progress (`plan`, 0–1) nudged by the org's trait `t`, counts within
/// their simulated range.
fn simulated_data(
    def: &crate::domain::kinds::KindDef,
    plan: f64,
    t: f64,
    key: &str,
    rng: &mut StdRng,
) -> serde_json::Map<String, Value> {
    let sim = def.simulate.as_ref();
    let mut data = serde_json::Map::new();
    for f in &def.fields {
        let v = match f.ty {
            FieldType::Text => json!(key),
            FieldType::Flag => {
                let (from, to) = sim
                    .and_then(|s| s.flags.get(&f.name).copied())
                    .unwrap_or((0.5, 0.5));
                let share = from + (to - from) * plan + 0.2 * (t - 0.5);
                json!(rng.random_bool(share.clamp(0.0, 1.0)))
            }
            FieldType::Count => {
                let (lo, hi) = sim
                    .and_then(|s| s.counts.get(&f.name).copied())
                    .unwrap_or((f.min, f.min));
                json!(rng.random_range(lo..=hi))
            }
        };
        data.insert(f.name.clone(), v);
    }
    data
}

fn poisson(rng: &mut StdRng, lambda: f64) -> u32 {
    // Knuth; λ here is small.
    let l = (-lambda).exp();
    let (mut k, mut p) = (0u32, 1.0f64);
    loop {
        p *= rng.random::<f64>();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

impl<'a> Simulator<'a> {
    pub fn new(tree: &'a OrgTree, map: &'a DistrictMap, seed: u64, scale: f64) -> Self {
        let codes = |level: Level| -> Vec<String> {
            tree.nodes()
                .filter(|(_, n)| n.level == level)
                .map(|(_, n)| n.code.clone())
                .collect()
        };
        let centers: Vec<String> = codes(Level::City)
            .into_iter()
            .chain(codes(Level::District))
            .collect();
        let stations: Vec<String> = codes(Level::District)
            .into_iter()
            .chain(codes(Level::Street))
            .collect();
        let streets = codes(Level::Street);
        let communities_of = streets
            .iter()
            .map(|s| {
                let idx = tree.get(s).expect("street in tree");
                (
                    s.clone(),
                    tree.node(idx)
                        .children
                        .iter()
                        .map(|&c| tree.node(c).code.clone())
                        .collect(),
                )
            })
            .collect();
        Simulator {
            tree,
            map,
            seed,
            scale,
            centers,
            stations,
            streets,
            scheduled: BTreeMap::new(),
            day: START,
            communities_of,
            defined: Vec::new(),
            followers: Vec::new(),
        }
    }

    /// Starts the history on `day` instead of 2020-01-01 (a region larger than a city, whose
    /// every day holds many times Shenzhen's records).
    pub fn from_day(mut self, day: Date) -> Self {
        self.day = day.max(START);
        self
    }

    /// Also makes records of every kind whose definition has a `[simulate]` table.
    pub fn with_kinds(mut self, kinds: &crate::domain::kinds::Kinds) -> Self {
        self.followers = kinds
            .all()
            .filter_map(|def| {
                let follows = def.simulate.as_ref()?.follows.as_ref()?;
                let subject = kinds.get(&follows.kind)?.subject.clone()?;
                Some((follows.kind.clone(), subject, def.clone()))
            })
            .collect();
        self.defined = kinds
            .all()
            .filter_map(|def| {
                let sim = def.simulate.as_ref().filter(|s| s.per_org > 0.0)?;
                let orgs = self
                    .tree
                    .nodes()
                    .filter(|(_, n)| sim.levels.contains(&n.level))
                    .map(|(_, n)| n.code.clone())
                    .collect();
                Some((def.clone(), orgs))
            })
            .collect();
        self
    }

    /// Schedules the records that follow today's: same org, same subject, a lag later.
    fn follow(&mut self, day: Date, rng: &mut StdRng, today: &[Value]) {
        if self.followers.is_empty() {
            return;
        }
        let plan = ((day - START).whole_days() as f64 / (3.0 * 365.0)).clamp(0.0, 1.0);
        let mut later = Vec::new();
        for leader in today {
            let Some(kind) = leader["kind"].as_str() else {
                continue;
            };
            for (followed, subject_field, def) in &self.followers {
                if followed != kind {
                    continue;
                }
                let Some(f) = def.simulate.as_ref().and_then(|s| s.follows.as_ref()) else {
                    continue;
                };
                let (from, to) = f.share;
                if !rng.random_bool((from + (to - from) * plan).clamp(0.0, 1.0)) {
                    continue;
                }
                let (Some(org), Some(subject), Some(id)) = (
                    leader["org"].as_str(),
                    leader["data"][subject_field.as_str()].as_str(),
                    leader["id"].as_str(),
                ) else {
                    continue;
                };
                let org = if f.level_above {
                    match self.level_above(org) {
                        Some(code) => code,
                        None => continue,
                    }
                } else {
                    org
                };
                let when =
                    day + Duration::days(i64::from(rng.random_range(f.lag_days.0..=f.lag_days.1)));
                let t = trait_of(self.seed, &format!("{}{org}", def.kind));
                let mut data = simulated_data(def, plan, t, subject, rng);
                if let Some(own) = &def.subject {
                    data.insert(own.clone(), json!(subject));
                }
                later.push((
                    when,
                    json!({"id": format!("{id}-{}", def.kind), "kind": def.kind.as_str(),
                    "org": org, "at": at(when, rng), "data": data}),
                ));
            }
        }
        for (when, record) in later {
            self.schedule(when, record);
        }
    }

    /// Records of the kinds simulated from their definitions, for `day`: each org reports on
    /// a day of the period fixed by the seed, the org and the kind.
    fn defined_kinds(&self, day: Date, rng: &mut StdRng, out: &mut Vec<Value>) {
        use crate::domain::catalogue::Period;
        let s = self.seed;
        let plan = ((day - START).whole_days() as f64 / (3.0 * 365.0)).clamp(0.0, 1.0);
        for (def, orgs) in &self.defined {
            let Some(sim) = &def.simulate else { continue };
            let kind = def.kind.as_str();
            for org in orgs {
                let t = trait_of(s, &format!("{kind}{org}"));
                let (month, dom) = ((t * 12.0) as u8 % 12 + 1, (t * 1000.0) as u8 % 28 + 1);
                let due = day.day() == dom
                    && match sim.every {
                        Period::Month | Period::All => true,
                        Period::Quarter => (day.month() as u8 - 1) % 3 == (month - 1) % 3,
                        Period::Year => day.month() as u8 == month,
                    };
                if !due {
                    continue;
                }
                for n in 0..poisson(rng, sim.per_org) {
                    let id = format!("sim{s}-{kind}-{org}-{day}-{n}");
                    let data = simulated_data(def, plan, t, &format!("{org}-{day}-{n}"), rng);
                    out.push(json!({"id": id, "kind": kind, "org": org, "at": at(day, rng), "data": data}));
                }
            }
        }
    }

    /// The org that answers `code` from the level above: the district for a street or
    /// community, the city for a district, the city for itself.
    fn level_above(&self, code: &str) -> Option<&'a str> {
        let idx = self.tree.get(code)?;
        Some(self.tree.node(self.tree.level_above(idx)).code.as_str())
    }

    fn district_of(&self, code: &str) -> Option<String> {
        let idx = self.tree.get(code)?;
        self.tree
            .ancestor_at(idx, Level::District)
            .map(|d| self.tree.node(d).code.clone())
    }

    /// A GCJ-02 point inside the district's outline.
    fn point_in(&self, district: &str, rng: &mut StdRng) -> Option<(f64, f64)> {
        let shape = self.map.districts().iter().find(|d| d.code == district)?;
        let rect = geo::BoundingRect::bounding_rect(&shape.outline)?;
        for _ in 0..200 {
            let lon = rng.random_range(rect.min().x..rect.max().x);
            let lat = rng.random_range(rect.min().y..rect.max().y);
            if self
                .map
                .locate(lon, lat)
                .is_some_and(|d| d.code == district)
            {
                return Some(((lon * 1e5).round() / 1e5, (lat * 1e5).round() / 1e5));
            }
        }
        None
    }

    fn schedule(&mut self, day: Date, event: Value) {
        self.scheduled.entry(day).or_default().push(event);
    }

    /// The events of the next day, in time order; `None` after `until`.
    pub fn next_day(&mut self, until: Date) -> Option<(Date, Vec<Value>)> {
        let day = self.day;
        if day > until {
            return None;
        }
        self.day = day.next_day()?;
        let mut rng = StdRng::seed_from_u64(
            self.seed ^ (day.to_julian_day() as u64).wrapping_mul(0x9e3779b97f4a7c15),
        );
        let mut out = self.scheduled.remove(&day).unwrap_or_default();
        let s = self.seed;
        let sim = format!("sim{s}");
        let year = day.year();

        // Staffing, monthly on the 1st: filled share climbs during 2020, then holds.
        if day.day() == 1 {
            for c in self.centers.clone() {
                let approved = if c == "440300" {
                    120
                } else {
                    40 + (trait_of(s, &format!("posts{c}")) * 40.0) as i64
                };
                let start = 0.70 + 0.15 * trait_of(s, &format!("st0{c}"));
                let goal = 0.91 + 0.09 * trait_of(s, &format!("st1{c}"));
                let months = ((day.year() - 2020) * 12 + day.month() as i32 - 1) as f64;
                let share = start
                    + (goal - start) * (months / 11.0).min(1.0)
                    + rng.random_range(-0.01..0.01);
                let filled = ((approved as f64) * share.clamp(0.0, 1.0)).round() as i64;
                out.push(json!({"id": format!("{sim}-staffing-{c}-{day}"), "kind": "staffing.reported", "org": c,
                    "at": at(day, &mut rng), "data": {"approved_posts": approved, "filled_posts": filled.min(approved)}}));
            }
        }

        // Hires: a few a month per center and street.
        for org in self
            .centers
            .iter()
            .chain(&self.streets)
            .cloned()
            .collect::<Vec<_>>()
        {
            let veteran_share = 0.26 + 0.14 * trait_of(s, &format!("vet{org}"));
            for n in 0..poisson(&mut rng, 0.03) {
                out.push(json!({"id": format!("{sim}-hire-{org}-{day}-{n}"), "kind": "staff.hired", "org": org,
                    "at": at(day, &mut rng), "data": {"staff_id": format!("{org}-h{day}-{n}"), "veteran": rng.random_bool(veteran_share)}}));
            }
        }

        // Headcount: every station reports monthly, due by the 5th ([report] of its file) —
        // most on the first days, some late, a few not at all. The year's training plan is laid
        // out on January 10th from the size of each station.
        if day.day() <= 9 || (day.month() == Month::January && day.day() == 10) {
            let orgs: Vec<(String, Level)> = self
                .tree
                .nodes()
                .map(|(_, n)| (n.code.clone(), n.level))
                .collect();
            let month = day.month() as u8;
            for (org, level) in orgs {
                let base = match level {
                    Level::Nation => 300.0,
                    Level::Province => 200.0,
                    Level::City => 110.0,
                    Level::District => 40.0,
                    Level::Street => 8.0,
                    Level::Community => 2.0,
                };
                let headcount = (base * (1.0 + 0.5 * trait_of(s, &format!("hc{org}")))
                    + 2.0 * trait_of(s, &format!("hc{org}{year}{month}")))
                .round() as i64;
                if day.month() == Month::January && day.day() == 10 {
                    self.plan_training(&org, level, headcount, year, &mut rng);
                    continue;
                }
                // The day this station reports this month: 1–5 mostly, 6–9 for about one in
                // twelve, never for about one in fifty.
                let t = trait_of(s, &format!("hcday{org}{year}{month}"));
                let report_day = if t < 0.02 {
                    continue;
                } else if t < 0.10 {
                    6 + ((t - 0.02) / 0.08 * 4.0) as u8 % 4
                } else {
                    1 + ((t - 0.10) / 0.90 * 5.0) as u8 % 5
                };
                if day.day() != report_day {
                    continue;
                }
                out.push(json!({"id": format!("{sim}-headcount-{org}-{year}-{month:02}"), "kind": "staff.headcount", "org": org,
                    "at": at(day, &mut rng), "data": {"headcount": headcount}}));
            }
        }

        // Star ratings on 30 June and 31 December.
        if (day.month() == Month::June && day.day() == 30)
            || (day.month() == Month::December && day.day() == 31)
        {
            let half = (year - 2020) * 2 + i32::from(day.month() == Month::December);
            for st in self.stations.clone() {
                let pace = 0.4 + 0.7 * trait_of(s, &format!("pace{st}"));
                let base = 1.5 + 1.5 * trait_of(s, &format!("star0{st}"));
                let mut stars = (base + pace * half as f64).round().min(5.0);
                if rng.random_bool(0.08) {
                    stars -= 1.0; // 能进能出: a station can lose a star
                }
                let stars = stars.clamp(0.0, 5.0) as i64;
                let demo = stars >= 4 && rng.random_bool(0.85);
                out.push(json!({"id": format!("{sim}-rating-{st}-{day}"), "kind": "station.rated", "org": st,
                    "at": at(day, &mut rng), "data": {"stars": stars, "demonstration": demo}}));
            }
        }

        // Appeals on weekdays, located in their district.
        if !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) {
            let per_street = APPEALS_PER_WEEKDAY * self.scale / self.streets.len() as f64;
            for street in self.streets.clone() {
                for n in 0..poisson(&mut rng, per_street) {
                    let org = if rng.random_bool(0.6) {
                        let cs = &self.communities_of[&street];
                        if cs.is_empty() {
                            street.clone()
                        } else {
                            cs[rng.random_range(0..cs.len())].clone()
                        }
                    } else {
                        street.clone()
                    };
                    let id = format!("{sim}-A-{street}-{day}-{n}");
                    let mut received = json!({"id": format!("{id}-received"), "kind": "appeal.received", "org": org,
                        "at": at(day, &mut rng), "data": {"appeal_id": id}});
                    if let Some((lon, lat)) = self
                        .district_of(&org)
                        .and_then(|d| self.point_in(&d, &mut rng))
                    {
                        received["location"] = json!({"lon": lon, "lat": lat});
                    }
                    out.push(received);
                    let accept_after = if rng.random_bool(0.07) {
                        rng.random_range(16..30)
                    } else {
                        rng.random_range(1..12)
                    };
                    let close_after = (accept_after as f64
                        + (2.9 + 0.8 * rng.random::<f64>() * 1.6).exp())
                    .round() as i64;
                    let acc_day = day + Duration::days(accept_after);
                    let acc = json!({"id": format!("{id}-accepted"), "kind": "appeal.accepted", "org": org,
                        "at": at(acc_day, &mut rng), "data": {"appeal_id": id}});
                    self.schedule(acc_day, acc);
                    if !rng.random_bool(0.02) {
                        let close_day = day + Duration::days(close_after);
                        let closed = json!({"id": format!("{id}-closed"), "kind": "appeal.closed", "org": org,
                            "at": at(close_day, &mut rng), "data": {"appeal_id": id}});
                        self.schedule(close_day, closed);
                    }
                }
            }
        }

        // Veterans: most registered during 2020, then a trickle; files completed by 2022.
        if day.day() == 15 {
            let per_community = VETERANS_AT_SCALE_1 * self.scale / 783.0;
            let months = (day.year() - 2020) * 12 + day.month() as i32 - 1;
            let share = if months < 12 { 0.9 / 12.0 } else { 0.002 };
            for street in self.streets.clone() {
                let lag = trait_of(
                    s,
                    &format!("arch{}", self.district_of(&street).unwrap_or_default()),
                );
                for c in self.communities_of[&street].clone() {
                    let n = (per_community * share * (0.7 + 0.6 * trait_of(s, &format!("vets{c}"))))
                        .round() as i64;
                    for i in 0..n {
                        let key = format!("{c}-m{months}-{i}");
                        let person = resident_id(s, &c, &key);
                        out.push(json!({"id": format!("{sim}-vet-{key}"), "kind": "veteran.registered", "org": c,
                            "at": at(day, &mut rng), "data": {"person_id": person}}));
                        // Files done within 1–36 months; laggard districts take longer.
                        let months_to_file =
                            (rng.random::<f64>().powf(0.8) * (20.0 + 30.0 * lag)) as i64 + 1;
                        let file_day = day + Duration::days(months_to_file * 30);
                        let done = json!({"id": format!("{sim}-file-{key}"), "kind": "archive.completed", "org": c,
                            "at": at(file_day, &mut rng), "data": {"person_id": person}});
                        self.schedule(file_day, done);
                    }
                }
            }
        }
        self.defined_kinds(day, &mut rng, &mut out);
        self.follow(day, &mut rng, &out);
        out.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
        Some((day, out))
    }

    /// Plans the year's classes of the org's trainer (its district, or the city for centers)
    /// and schedules each trained staff member's attendance.
    fn plan_training(
        &mut self,
        org: &str,
        level: Level,
        headcount: i64,
        year: i32,
        rng: &mut StdRng,
    ) {
        // The city's center trains the centers of the city and its districts; a district's,
        // its streets and communities (above a city, each center trains its own).
        let city = self
            .tree
            .get(org)
            .and_then(|i| self.tree.ancestor_at(i, Level::City))
            .map(|i| self.tree.node(i).code.clone())
            .unwrap_or_else(|| org.to_string());
        let trainer = match level {
            Level::Nation | Level::Province | Level::City | Level::District => city,
            _ => self.district_of(org).unwrap_or(city),
        };
        let class_days = self.class_days(&trainer, year);
        let coverage = 0.7 + 0.3 * trait_of(self.seed, &format!("cov{org}{year}"));
        let trained = ((headcount as f64) * coverage).round() as i64;
        let sim = format!("sim{}", self.seed);
        for i in 0..trained {
            // The year-end class takes the larger share (the push before 31 December).
            let k = if rng.random_bool(0.4) {
                class_days.len() - 1
            } else {
                rng.random_range(0..class_days.len())
            };
            let (class_id, day) = (format!("{trainer}-{year}-{k}"), class_days[k]);
            let event = json!({"id": format!("{sim}-attend-{org}-{year}-{i}"), "kind": "training.attended", "org": org,
                "at": at(day, rng), "data": {"staff_id": format!("{org}-s{i}"), "class_id": class_id}});
            self.schedule(day, event);
        }
        if level <= Level::District {
            for (k, day) in self.class_days(org, year).into_iter().enumerate() {
                let event = json!({"id": format!("{sim}-class-{org}-{year}-{k}"), "kind": "training.class_held", "org": org,
                    "at": at(day, rng), "data": {"class_id": format!("{org}-{year}-{k}")}});
                self.schedule(day, event);
            }
        }
    }

    /// 2–4 class days of a trainer in a year, the last one in the year-end push (Nov–Dec).
    fn class_days(&self, trainer: &str, year: i32) -> Vec<Date> {
        let n = 2 + (trait_of(self.seed, &format!("classes{trainer}{year}")) * 3.0) as usize;
        let mut days: Vec<Date> = (0..n - 1)
            .map(|k| {
                let doy =
                    60 + (trait_of(self.seed, &format!("cd{trainer}{year}{k}")) * 230.0) as u16;
                Date::from_ordinal_date(year, doy).unwrap_or(START)
            })
            .collect();
        let push = 306 + (trait_of(self.seed, &format!("push{trainer}{year}")) * 50.0) as u16;
        days.push(Date::from_ordinal_date(year, push.min(358)).unwrap_or(START));
        days.sort();
        days
    }
}

/// Plays the simulated future live: the days after the history, `rate` records a second,
/// each re-dated to the moment it is sent.
pub struct LivePlayer<'a> {
    sim: Simulator<'a>,
    buffer: std::collections::VecDeque<Value>,
    /// When this run of the player started (Unix seconds): part of every id it sends.
    run: i64,
}

/// The id a live record gets: the simulated record's own, marked live and with its run. A
/// demo started again plays the same simulated future from its start, re-dated to now: those
/// are new records, and the ids of the run before (the same future, sent then) would refuse
/// them as duplicates — the wall stood still after a restart for as long as the run before
/// had played.
fn live_id(id: &str, run: i64) -> String {
    format!("{id}-live-{run}")
}

impl<'a> LivePlayer<'a> {
    pub fn new(sim: Simulator<'a>, started: OffsetDateTime) -> Self {
        LivePlayer {
            sim,
            buffer: Default::default(),
            run: started.unix_timestamp(),
        }
    }

    pub fn next(&mut self, n: usize, now: OffsetDateTime) -> Vec<Value> {
        let far = Date::from_calendar_date(2100, Month::January, 1).unwrap_or(START);
        while self.buffer.len() < n {
            match self.sim.next_day(far) {
                Some((_, events)) => self.buffer.extend(events),
                None => break,
            }
        }
        let stamp = now
            .to_offset(SHANGHAI)
            .replace_nanosecond(0)
            .unwrap_or(now)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let n = n.min(self.buffer.len());
        self.buffer
            .drain(..n)
            .map(|mut e| {
                e["at"] = json!(stamp);
                if let Some(id) = e["id"].as_str() {
                    e["id"] = json!(live_id(id, self.run));
                }
                e
            })
            .collect()
    }
}

/// Today in Shenzhen.
pub fn today() -> Date {
    OffsetDateTime::now_utc().to_offset(SHANGHAI).date()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_record_is_new_in_every_run_and_the_same_within_one() {
        let (one, two) = (1_790_000_000, 1_790_000_600);
        assert_ne!(live_id("visit-1", one), live_id("visit-1", two));
        assert_eq!(live_id("visit-1", one), live_id("visit-1", one));
        assert_ne!(live_id("visit-1", one), live_id("visit-2", one));
        assert!(live_id("visit-1", one).len() <= crate::domain::record::MAX_ID_LEN);
    }

    #[test]
    fn resident_ids_are_well_formed_and_fixed_by_the_seed() {
        // The standard's own example.
        assert_eq!(id_check_digit("11010519491231002"), 'X');
        let id = resident_id(7, "440303001001", "k");
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("440303"));
        assert_eq!(id.chars().last(), Some(id_check_digit(&id[..17])));
        assert_eq!(id, resident_id(7, "440303001001", "k"));
        assert_ne!(id, resident_id(8, "440303001001", "k"));
    }
}
