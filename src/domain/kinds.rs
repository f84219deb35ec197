//! Record kinds as definitions: one file per kind (`dashboards/kinds/*.toml`) saying which org
//! levels may report it, its `data` fields with their types and ranges, and which field names
//! the record's subject (a staff member, a class, an appeal, a person …). One validation path
//! reads them for every source — the API, ledger imports, the simulator — and the store keeps
//! every kind in one generic row shape (the subject, named numbers, the raw `data`), so a new
//! kind is a file, not a column. Pure: the caller reads the files.

use serde::Deserialize;

use super::definition::DefinitionError;
use super::org::Level;

/// A record kind, by its name. Names are interned (leaked once each: a handful whatever the
/// number of reloads), so a kind is `Copy`; two kinds are equal when their names are, so the
/// constants below equal the kinds the files define.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(&'static str);

impl Kind {
    // The kinds the first floor's code knows by name (the simulator and the ledger families
    // write them); every other kind is known from its file only.
    pub const STAFFING_REPORTED: Kind = Kind("staffing.reported");
    pub const STAFF_HIRED: Kind = Kind("staff.hired");
    pub const STAFF_HEADCOUNT: Kind = Kind("staff.headcount");
    pub const TRAINING_CLASS_HELD: Kind = Kind("training.class_held");
    pub const TRAINING_ATTENDED: Kind = Kind("training.attended");
    pub const STATION_RATED: Kind = Kind("station.rated");
    pub const APPEAL_RECEIVED: Kind = Kind("appeal.received");
    pub const APPEAL_ACCEPTED: Kind = Kind("appeal.accepted");
    pub const APPEAL_CLOSED: Kind = Kind("appeal.closed");
    pub const VETERAN_REGISTERED: Kind = Kind("veteran.registered");
    pub const ARCHIVE_COMPLETED: Kind = Kind("archive.completed");

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The kind of that name, defined or not (for comparing with the kinds a catalogue
    /// defines).
    pub fn named(name: &str) -> Kind {
        Kind::intern(name)
    }

    fn intern(name: &str) -> Kind {
        Kind(intern_name(name))
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A name from the definitions, interned (leaked once each: a handful whatever the number of
/// reloads) so that it can live in `Copy` values such as a ledger column's field.
pub fn intern_name(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// The type of a `data` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldType {
    /// A non-empty string of at most [`MAX_ID_LEN`](super::record::MAX_ID_LEN) characters.
    Text,
    /// A whole number within the field's range.
    Count,
    /// `true` or `false`.
    Flag,
}

/// The largest magnitude a count field's range may reach: 868 nodes × 10^9 stays far below
/// `i64`'s limits, so no sum over the org tree can overflow.
pub const MAX_COUNT: i64 = 1_000_000_000;

/// One `data` field of a kind.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDef {
    pub name: String,
    /// The name, interned: what a row's `num_keys` hold, so that no row allocates it.
    pub key: &'static str,
    /// The column a ledger clerk writes (人员编号, 星级 …).
    pub label_zh: String,
    /// Other headers clerks use for it in a ledger.
    pub aliases: Vec<String>,
    pub ty: FieldType,
    /// A count's plausible range, inclusive (flags: 0–1; texts: unused).
    pub min: i64,
    pub max: i64,
    /// A count that may not exceed another count of the same record (filled ≤ approved posts).
    pub at_most: Option<String>,
}

impl FieldDef {
    /// Checks a count against its range: the value, or the reason.
    pub fn check_count(&self, n: i64) -> Result<i64, String> {
        if n < 0 && self.min == 0 {
            Err("must not be negative".into())
        } else if n < self.min || n > self.max {
            Err(format!("must be {} to {}", self.min, self.max))
        } else {
            Ok(n)
        }
    }
}

/// A scheduled report (`[report]` of a kind's file): every unit of `levels` sends at least one
/// record of the kind in each period, by its due day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub every: super::time::Period,
    /// Due by this day of the period's first month (5: by the 5th); none: by the period's
    /// last day.
    pub due_day: Option<u8>,
    /// Levels whose every unit must report.
    pub levels: Vec<Level>,
}

impl Schedule {
    /// The due day of the period holding `day`.
    pub fn due(&self, day: time::Date) -> time::Date {
        let (first, last) = self.every.bounds(day);
        match self.due_day {
            Some(d) => first
                .replace_day(d.max(1))
                .ok()
                .filter(|due| *due <= last)
                .unwrap_or(last),
            None => last,
        }
    }
}

/// A record kind.
#[derive(Debug, Clone, PartialEq)]
pub struct KindDef {
    pub kind: Kind,
    pub label_zh: String,
    /// Org levels a record of this kind may belong to.
    pub levels: Vec<Level>,
    /// The text field that says whom or what a record is about: what distinct counts, matches
    /// and cases are keyed by.
    pub subject: Option<String>,
    /// The fields a record must carry, in the file's order (others are kept in `data`).
    pub fields: Vec<FieldDef>,
    /// How the simulator makes plausible records of this kind (none: the simulator's own
    /// code makes them, or none are made).
    pub simulate: Option<Simulation>,
    /// A scheduled report: who must send it, how often, by when.
    pub report: Option<Schedule>,
    /// `made_by = "tasks"`: only vscc's own task handling makes records of this kind (a task's
    /// steps are checked against its state first); the records API, ledgers and corrections
    /// refuse it.
    pub made_by_tasks: bool,
}

/// Plan-shaped simulated records of a kind: each reporting org sends about `per_org` records
/// every period; a flag is true with a share that moves from `flags[f].0` at the plan's start
/// (2020) to `.1` at its end (2022), a count is drawn within `counts[c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    pub every: super::time::Period,
    pub per_org: f64,
    /// Which orgs report (the kind's levels by default).
    pub levels: Vec<Level>,
    pub flags: std::collections::BTreeMap<String, (f64, f64)>,
    pub counts: std::collections::BTreeMap<String, (i64, i64)>,
    /// Records that follow another kind's: each record of `kind` is followed, at the same
    /// org and about the same subject, by one of this kind `lag_days` later, with a share
    /// that moves from `share.0` at the plan's start to `share.1` at its end.
    pub follows: Option<Follows>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Follows {
    pub kind: String,
    pub share: (f64, f64),
    pub lag_days: (u32, u32),
    /// The follower comes from the level above the leader's org (a reply of the district to
    /// a street), not from the same org.
    pub level_above: bool,
}

impl KindDef {
    /// Whether an org of `level` may send records of this kind (see
    /// [`super::org::levels_hold_at`]).
    pub fn allows(&self, level: Level) -> bool {
        super::org::levels_hold_at(&self.levels, level)
    }

    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The fields kept as numbers in the store: counts and flags.
    pub fn numbers(&self) -> impl Iterator<Item = &FieldDef> {
        self.fields.iter().filter(|f| f.ty != FieldType::Text)
    }
}

/// Every record kind, in name order, with an index by name (see [`Kinds::get`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Kinds {
    defs: Vec<KindDef>,
    by_name: rustc_hash::FxHashMap<&'static str, usize>,
}

impl Kinds {
    /// Parses kind definition files: `(file name, text)`. Any error refuses the whole set.
    pub fn parse(files: &[(String, String)]) -> Result<Kinds, DefinitionError> {
        let mut defs: Vec<KindDef> = Vec::new();
        let mut file_of = std::collections::BTreeMap::new();
        for (file, text) in files {
            super::definition::check_text(file, text)?;
            let def = parse_kind(file, text)?;
            file_of.insert(def.kind, file.clone());
            if defs.iter().any(|d| d.kind == def.kind) {
                return Err(DefinitionError {
                    file: file.clone(),
                    line: None,
                    reason: format!("kind {} is defined twice", def.kind),
                });
            }
            defs.push(def);
        }
        if defs.is_empty() {
            return Err(DefinitionError {
                file: "(kinds)".into(),
                line: None,
                reason: "no record kind definitions".into(),
            });
        }
        for d in &defs {
            if let Some(f) = d.simulate.as_ref().and_then(|s| s.follows.as_ref()) {
                if !defs
                    .iter()
                    .any(|l| l.kind.as_str() == f.kind && l.subject.is_some())
                {
                    return Err(DefinitionError {
                        file: file_of.get(&d.kind).cloned().unwrap_or_default(),
                        line: None,
                        reason: format!(
                            "simulate.follows: '{}' is not a kind with a subject",
                            f.kind
                        ),
                    });
                }
            }
        }
        defs.sort_by_key(|d| d.kind.as_str());
        let by_name = defs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.kind.as_str(), i))
            .collect();
        Ok(Kinds { defs, by_name })
    }

    /// Looked up several times for every record validated and applied: a hash lookup (a
    /// binary search's string comparisons were 4 % of a ledger import's CPU).
    pub fn get(&self, name: &str) -> Option<&KindDef> {
        self.by_name.get(name).map(|&i| &self.defs[i])
    }

    /// The kind of that name, if a file defines it.
    pub fn parse_name(&self, name: &str) -> Option<Kind> {
        self.get(name).map(|d| d.kind)
    }

    pub fn all(&self) -> impl Iterator<Item = &KindDef> {
        self.defs.iter()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.defs.iter().map(|d| d.kind.as_str()).collect()
    }

    /// The definitions shipped in `dashboards/kinds` (tests).
    #[cfg(test)]
    pub fn shipped() -> Kinds {
        match Kinds::parse(&shipped_files("kinds")) {
            Ok(k) => k,
            Err(e) => panic!("shipped kind definitions: {e}"),
        }
    }
}

/// The `*.toml` files of a folder under `dashboards/`, in name order (tests).
#[cfg(test)]
pub fn shipped_files(folder: &str) -> Vec<(String, String)> {
    let dir = format!("{}/dashboards/{folder}", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter_map(|p| {
            Some((
                p.file_name()?.to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).ok()?,
            ))
        })
        .collect();
    files.sort();
    files
}

// --- the files as written --------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KindSpec {
    name: String,
    label_zh: String,
    levels: Vec<Level>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default, rename = "field")]
    fields: Vec<FieldSpec>,
    #[serde(default)]
    simulate: Option<SimulationSpec>,
    #[serde(default)]
    report: Option<ScheduleSpec>,
    #[serde(default)]
    made_by: Option<String>,
}

/// `[report]`: the kind is a scheduled report — who must send it, how often, by when.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleSpec {
    every: String,
    #[serde(default)]
    due_day: Option<u8>,
    #[serde(default)]
    levels: Option<Vec<Level>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulationSpec {
    #[serde(default = "yearly")]
    every: String,
    #[serde(default)]
    per_org: f64,
    #[serde(default)]
    levels: Option<Vec<Level>>,
    #[serde(default)]
    flags: std::collections::BTreeMap<String, (f64, f64)>,
    #[serde(default)]
    counts: std::collections::BTreeMap<String, (i64, i64)>,
    #[serde(default)]
    follows: Option<FollowsSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowsSpec {
    kind: String,
    share: (f64, f64),
    lag_days: (u32, u32),
    #[serde(default)]
    from: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldSpec {
    name: String,
    label_zh: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    min: Option<i64>,
    #[serde(default)]
    max: Option<i64>,
    #[serde(default)]
    at_most: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
}

fn yearly() -> String {
    "year".into()
}

fn is_name(s: &str, extra: char) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == extra)
}

/// A period a kind's file names (`every`): year, quarter or month.
fn every_of(text: &str) -> Result<super::time::Period, String> {
    use super::time::Period;
    match text {
        "year" => Ok(Period::Year),
        "quarter" => Ok(Period::Quarter),
        "month" => Ok(Period::Month),
        other => Err(format!("'{other}': year, quarter or month")),
    }
}

fn parse_kind(file: &str, text: &str) -> Result<KindDef, DefinitionError> {
    let at = |line: Option<usize>, reason: String| DefinitionError {
        file: file.to_string(),
        line,
        reason,
    };
    let spec: KindSpec = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        at(line, e.message().to_string())
    })?;
    // Names reach generated SQL (as quoted literals) and column aliases of the analysts'
    // views: kept to a safe alphabet here, once.
    if !is_name(&spec.name, '.') {
        return Err(at(
            None,
            format!(
                "name '{}': lowercase letters, digits, '_' and '.'",
                spec.name
            ),
        ));
    }
    if spec.levels.is_empty() {
        return Err(at(None, "levels: at least one org level".into()));
    }
    let mut fields: Vec<FieldDef> = Vec::new();
    for f in spec.fields {
        let reason = |r: String| at(None, format!("field {}: {r}", f.name));
        if !is_name(&f.name, '_') {
            return Err(reason("lowercase letters, digits and '_'".into()));
        }
        if fields.iter().any(|g| g.name == f.name) {
            return Err(reason("defined twice".into()));
        }
        let ty = match f.ty.as_str() {
            "text" => FieldType::Text,
            "count" => FieldType::Count,
            "flag" => FieldType::Flag,
            other => return Err(reason(format!("type '{other}': text, count or flag"))),
        };
        let (min, max) = match ty {
            FieldType::Count => match (f.min, f.max) {
                (Some(lo), Some(hi)) if -MAX_COUNT <= lo && lo <= hi && hi <= MAX_COUNT => (lo, hi),
                (Some(_), Some(_)) => {
                    return Err(reason(format!("min ≤ max, both within ±{MAX_COUNT}")))
                }
                _ => return Err(reason("a count needs min and max".into())),
            },
            FieldType::Flag => (0, 1),
            FieldType::Text => (0, 0),
        };
        if ty != FieldType::Count && (f.min.is_some() || f.max.is_some() || f.at_most.is_some()) {
            return Err(reason("min, max and at_most are for counts".into()));
        }
        fields.push(FieldDef {
            key: intern_name(&f.name),
            name: f.name,
            label_zh: f.label_zh,
            aliases: f.aliases,
            ty,
            min,
            max,
            at_most: f.at_most,
        });
    }
    for f in &fields {
        if let Some(other) = &f.at_most {
            if !fields
                .iter()
                .any(|g| &g.name == other && g.ty == FieldType::Count)
            {
                return Err(at(
                    None,
                    format!(
                        "field {}: at_most '{other}' is not a count of this kind",
                        f.name
                    ),
                ));
            }
        }
    }
    if let Some(subject) = &spec.subject {
        if !fields
            .iter()
            .any(|f| &f.name == subject && f.ty == FieldType::Text)
        {
            return Err(at(
                None,
                format!("subject '{subject}' is not a text field of this kind"),
            ));
        }
    }
    let simulate = match spec.simulate {
        None => None,
        Some(s) => {
            let every = every_of(&s.every).map_err(|e| at(None, format!("simulate.every {e}")))?;
            if !(0.0..=1000.0).contains(&s.per_org) {
                return Err(at(None, "simulate.per_org: 0 to 1000".into()));
            }
            let levels = s.levels.unwrap_or_else(|| spec.levels.clone());
            if levels.iter().any(|l| !spec.levels.contains(l)) {
                return Err(at(None, "simulate.levels: levels of the kind".into()));
            }
            for (name, (from, to)) in &s.flags {
                if !fields
                    .iter()
                    .any(|f| &f.name == name && f.ty == FieldType::Flag)
                    || !(0.0..=1.0).contains(from)
                    || !(0.0..=1.0).contains(to)
                {
                    return Err(at(
                        None,
                        format!("simulate.flags.{name}: a flag of the kind, shares 0 to 1"),
                    ));
                }
            }
            for (name, (lo, hi)) in &s.counts {
                let Some(f) = fields
                    .iter()
                    .find(|f| &f.name == name && f.ty == FieldType::Count)
                else {
                    return Err(at(
                        None,
                        format!("simulate.counts.{name}: not a count of the kind"),
                    ));
                };
                if lo > hi || *lo < f.min || *hi > f.max {
                    return Err(at(
                        None,
                        format!("simulate.counts.{name}: lo ≤ hi within the field's range"),
                    ));
                }
            }
            let follows = match s.follows {
                None => None,
                Some(f) => {
                    let shares = [f.share.0, f.share.1];
                    if shares.iter().any(|s| !(0.0..=1.0).contains(s))
                        || f.lag_days.0 < 1
                        || f.lag_days.0 > f.lag_days.1
                        || f.lag_days.1 > 3650
                    {
                        return Err(at(
                            None,
                            "simulate.follows: shares 0 to 1, lag_days 1 ≤ from ≤ to ≤ 3650".into(),
                        ));
                    }
                    if spec.subject.is_none() {
                        return Err(at(
                            None,
                            "simulate.follows: the kind needs a subject to follow by".into(),
                        ));
                    }
                    let level_above = match f.from.as_deref() {
                        None | Some("same_org") => false,
                        Some("level_above") => true,
                        Some(other) => {
                            return Err(at(
                                None,
                                format!("simulate.follows.from '{other}': same_org or level_above"),
                            ))
                        }
                    };
                    Some(Follows {
                        kind: f.kind,
                        share: f.share,
                        lag_days: f.lag_days,
                        level_above,
                    })
                }
            };
            Some(Simulation {
                every,
                per_org: s.per_org,
                levels,
                flags: s.flags,
                counts: s.counts,
                follows,
            })
        }
    };
    let report = match spec.report {
        None => None,
        Some(r) => {
            let every = every_of(&r.every).map_err(|e| at(None, format!("report.every {e}")))?;
            if r.due_day.is_some_and(|d| !(1..=28).contains(&d)) {
                return Err(at(
                    None,
                    "report.due_day: 1 to 28 (a day every month has)".into(),
                ));
            }
            let levels = r.levels.unwrap_or_else(|| spec.levels.clone());
            if levels.is_empty() || levels.iter().any(|l| !spec.levels.contains(l)) {
                return Err(at(
                    None,
                    "report.levels: one or more levels of the kind".into(),
                ));
            }
            Some(Schedule {
                every,
                due_day: r.due_day,
                levels,
            })
        }
    };
    let made_by_tasks = match spec.made_by.as_deref() {
        None | Some("anyone") => false,
        Some("tasks") => true,
        Some(other) => return Err(at(None, format!("made_by '{other}': anyone or tasks"))),
    };
    Ok(KindDef {
        made_by_tasks,
        kind: Kind::intern(&spec.name),
        label_zh: spec.label_zh,
        levels: spec.levels,
        subject: spec.subject,
        fields,
        simulate,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KindDef, String> {
        parse_kind("k.toml", text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_eleven_kinds_of_the_contract_are_shipped_with_their_subjects() {
        let kinds = Kinds::shipped();
        for (kind, subject) in [
            (Kind::STAFFING_REPORTED, None),
            (Kind::STAFF_HIRED, Some("staff_id")),
            (Kind::STAFF_HEADCOUNT, None),
            (Kind::TRAINING_CLASS_HELD, Some("class_id")),
            (Kind::TRAINING_ATTENDED, Some("staff_id")),
            (Kind::STATION_RATED, None),
            (Kind::APPEAL_RECEIVED, Some("appeal_id")),
            (Kind::APPEAL_ACCEPTED, Some("appeal_id")),
            (Kind::APPEAL_CLOSED, Some("appeal_id")),
            (Kind::VETERAN_REGISTERED, Some("person_id")),
            (Kind::ARCHIVE_COMPLETED, Some("person_id")),
        ] {
            let def = kinds.get(kind.as_str()).unwrap_or_else(|| panic!("{kind}"));
            assert_eq!(def.kind, kind);
            assert_eq!(def.subject.as_deref(), subject, "{kind}");
        }
        let stars = kinds.get("station.rated").and_then(|d| d.field("stars"));
        assert_eq!(stars.map(|f| (f.min, f.max)), Some((0, 5)));
    }

    #[test]
    fn a_kind_file_is_refused_naming_what_is_wrong() {
        let head = "name = \"x.y\"\nlabel_zh = \"测试\"\nlevels = [\"street\"]\n";
        assert!(parse(head).is_ok());
        for (text, expected) in [
            (
                format!("{head}[[field]]\nname = \"n\"\nlabel_zh = \"数\"\ntype = \"count\"\n"),
                "a count needs min and max",
            ),
            (
                format!("{head}[[field]]\nname = \"n\"\nlabel_zh = \"数\"\ntype = \"count\"\nmin = 0\nmax = 10000000000\n"),
                "within",
            ),
            (
                format!("{head}[[field]]\nname = \"n\"\nlabel_zh = \"数\"\ntype = \"real\"\n"),
                "type 'real'",
            ),
            (format!("{head}subject = \"who\"\n"), "subject 'who'"),
            (
                "name = \"Bad Name\"\nlabel_zh = \"x\"\nlevels = [\"city\"]\n".into(),
                "name 'Bad Name'",
            ),
            (
                "name = \"a\"\nlabel_zh = \"x\"\nlevels = [\"town\"]\n".into(),
                "k.toml:3",
            ),
            (
                format!("{head}[[field]]\nname = \"a\"\nlabel_zh = \"a\"\ntype = \"count\"\nmin = 0\nmax = 9\nat_most = \"b\"\n"),
                "at_most 'b'",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(expected), "{e} should say {expected}");
        }
    }

    #[test]
    fn a_count_outside_its_range_is_refused_with_the_range() {
        let def = Kinds::shipped();
        let f = def
            .get("staff.headcount")
            .and_then(|d| d.field("headcount"))
            .cloned();
        let f = f.unwrap_or_else(|| panic!("headcount"));
        assert_eq!(f.check_count(12), Ok(12));
        assert_eq!(f.check_count(-1), Err("must not be negative".into()));
        assert_eq!(f.check_count(100_001), Err("must be 0 to 100000".into()));
    }
}
