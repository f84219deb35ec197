//! A reproducible mix of every record kind over the real org tree, for benchmarks and tests.

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use time::{format_description::well_known::Rfc3339, Duration, OffsetDateTime};

use crate::domain::kinds::{FieldType, Kind, Kinds};
use crate::domain::time::SHANGHAI;
use crate::domain::{Level, OrgTree};

pub struct Workload {
    rng: rand::rngs::StdRng,
    centers: Vec<String>,
    stations: Vec<String>,
    communities: Vec<String>,
    anywhere: Vec<String>,
    days: i64,
    prefix: String,
    appeals: usize,
    counter: u64,
    now: OffsetDateTime,
    /// Live mode: every record is dated "now" instead of spread over the past.
    live: bool,
    /// Kinds known from definition files only: (kind, the orgs that may report it, fields).
    defined: Vec<DefinedKind>,
}

struct DefinedKind {
    kind: String,
    orgs: Vec<String>,
    subject: Option<String>,
    /// (name, type, lowest, highest value drawn)
    fields: Vec<(String, FieldType, i64, i64)>,
}

impl Workload {
    /// Events dated within the last `days` days; ids are `<prefix>-<n>`.
    pub fn new(tree: &OrgTree, seed: u64, days: i64, prefix: &str, appeals: usize) -> Self {
        let codes = |level: Level| -> Vec<String> {
            tree.nodes()
                .filter(|(_, n)| n.level == level)
                .map(|(_, n)| n.code.clone())
                .collect()
        };
        let (city, districts, streets, communities) = (
            codes(Level::City),
            codes(Level::District),
            codes(Level::Street),
            codes(Level::Community),
        );
        let centers: Vec<String> = city.iter().chain(&districts).cloned().collect();
        let stations: Vec<String> = districts.iter().chain(&streets).cloned().collect();
        let anywhere: Vec<String> = centers
            .iter()
            .chain(&streets)
            .chain(&communities)
            .cloned()
            .collect();
        Workload {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            centers,
            stations,
            communities,
            anywhere,
            days: days.max(1),
            prefix: prefix.to_string(),
            appeals: appeals.max(1),
            counter: 0,
            now: OffsetDateTime::now_utc(),
            live: false,
            defined: Vec::new(),
        }
    }

    /// Also makes records of every kind beyond the contract's eleven that the definitions
    /// give, each as often as one of the eleven, so that every metric of the catalogue is fed.
    pub fn with_kinds(mut self, tree: &OrgTree, kinds: &Kinds) -> Self {
        const CONTRACT: [Kind; 11] = [
            Kind::STAFFING_REPORTED,
            Kind::STAFF_HIRED,
            Kind::STAFF_HEADCOUNT,
            Kind::TRAINING_CLASS_HELD,
            Kind::TRAINING_ATTENDED,
            Kind::STATION_RATED,
            Kind::APPEAL_RECEIVED,
            Kind::APPEAL_ACCEPTED,
            Kind::APPEAL_CLOSED,
            Kind::VETERAN_REGISTERED,
            Kind::ARCHIVE_COMPLETED,
        ];
        self.defined = kinds
            .all()
            // Task records are made by the task handling only (the records API refuses them).
            .filter(|d| !CONTRACT.contains(&d.kind) && !d.made_by_tasks)
            .map(|d| {
                let counts = d.simulate.as_ref().map(|s| &s.counts);
                DefinedKind {
                    kind: d.kind.as_str().to_string(),
                    orgs: tree
                        .nodes()
                        .filter(|(_, n)| d.levels.contains(&n.level))
                        .map(|(_, n)| n.code.clone())
                        .collect(),
                    subject: d.subject.clone(),
                    fields: d
                        .fields
                        .iter()
                        .map(|f| {
                            let (lo, hi) = counts
                                .and_then(|c| c.get(&f.name).copied())
                                .unwrap_or((f.min, f.min.max(f.max.min(100))));
                            (f.name.clone(), f.ty, lo, hi)
                        })
                        .collect(),
                }
            })
            .filter(|d| !d.orgs.is_empty())
            .collect();
        self
    }

    /// Records dated at the moment they are made (a live feed).
    pub fn live(mut self) -> Self {
        self.live = true;
        self
    }

    fn pick(&mut self, which: u8) -> String {
        let v = match which {
            0 => &self.centers,
            1 => &self.stations,
            2 => &self.communities,
            _ => &self.anywhere,
        };
        v[self.rng.random_range(0..v.len())].clone()
    }

    pub fn next_event(&mut self) -> Value {
        let at = if self.live {
            OffsetDateTime::now_utc()
        } else {
            self.now - Duration::seconds(self.rng.random_range(60..self.days * 86_400))
        };
        let at = at
            .to_offset(SHANGHAI)
            .replace_nanosecond(0)
            .unwrap_or(at)
            .format(&Rfc3339)
            .unwrap_or_default();
        let appeal = format!("{}A{}", self.prefix, self.rng.random_range(0..self.appeals));
        let pick = self.rng.random_range(0..11 + self.defined.len());
        if pick >= 11 {
            return self.defined_event(pick - 11, at);
        }
        let (kind, org, data) = match pick {
            0 => {
                let approved = self.rng.random_range(20..200);
                let filled = self.rng.random_range(0..=approved);
                (
                    "staffing.reported",
                    self.pick(0),
                    json!({"approved_posts": approved, "filled_posts": filled}),
                )
            }
            1 => {
                let staff = format!("s{}", self.rng.random_range(0..2000));
                let veteran = self.rng.random_bool(0.35);
                (
                    "staff.hired",
                    self.pick(3),
                    json!({"staff_id": staff, "veteran": veteran}),
                )
            }
            2 => {
                let headcount = self.rng.random_range(1..60);
                (
                    "staff.headcount",
                    self.pick(3),
                    json!({"headcount": headcount}),
                )
            }
            3 => {
                let class = format!("c{}", self.rng.random_range(0..40));
                (
                    "training.class_held",
                    self.pick(0),
                    json!({"class_id": class}),
                )
            }
            4 => {
                let staff = format!("s{}", self.rng.random_range(0..500));
                (
                    "training.attended",
                    self.pick(3),
                    json!({"staff_id": staff, "class_id": "c1"}),
                )
            }
            5 => {
                let stars = self.rng.random_range(0..=5);
                let demo = self.rng.random_bool(0.5);
                (
                    "station.rated",
                    self.pick(1),
                    json!({"stars": stars, "demonstration": demo}),
                )
            }
            6 | 7 => (
                "appeal.received",
                self.pick(3),
                json!({"appeal_id": appeal}),
            ),
            8 => {
                let kind = if self.rng.random_bool(0.5) {
                    "appeal.accepted"
                } else {
                    "appeal.closed"
                };
                (kind, self.pick(3), json!({"appeal_id": appeal}))
            }
            9 => {
                let person = format!("p{}", self.rng.random_range(0..self.appeals * 4));
                (
                    "veteran.registered",
                    self.pick(2),
                    json!({"person_id": person}),
                )
            }
            _ => {
                let person = format!("p{}", self.rng.random_range(0..self.appeals * 4));
                (
                    "archive.completed",
                    self.pick(2),
                    json!({"person_id": person}),
                )
            }
        };
        self.counter += 1;
        json!({"id": format!("{}-{}", self.prefix, self.counter), "kind": kind, "org": org, "at": at, "data": data})
    }

    fn defined_event(&mut self, i: usize, at: String) -> Value {
        let d = &self.defined[i];
        let org = d.orgs[self.rng.random_range(0..d.orgs.len())].clone();
        // Subjects from a pool shared by the kinds of one family (orders, feedback …), so that
        // cases close and matches happen.
        let family = d.kind.split('.').next().unwrap_or_default();
        let subject = format!(
            "{}{family}{}",
            self.prefix,
            self.rng.random_range(0..self.appeals * 4)
        );
        let mut data = serde_json::Map::new();
        for (name, ty, lo, hi) in &d.fields {
            let v = match ty {
                FieldType::Text if d.subject.as_deref() == Some(name.as_str()) => json!(subject),
                FieldType::Text => json!(format!("{name}{}", self.rng.random_range(0..100))),
                FieldType::Flag => json!(self.rng.random_bool(0.7)),
                FieldType::Count => json!(self.rng.random_range(*lo..=*hi)),
            };
            data.insert(name.clone(), v);
        }
        let kind = d.kind.clone();
        self.counter += 1;
        json!({"id": format!("{}-{}", self.prefix, self.counter), "kind": kind, "org": org, "at": at, "data": data})
    }

    pub fn events(&mut self, n: usize) -> Vec<Value> {
        (0..n).map(|_| self.next_event()).collect()
    }
}
