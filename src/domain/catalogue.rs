//! The metric catalogue as definitions: one file per metric (`dashboards/metrics/*.toml`),
//! parsed into [`MetricDef`]s whose [`Measure`] is one of a small closed set of measure types.
//! Code holds the measure *types*; a metric is data. Pure: the caller reads the files.
//!
//! The measure types — what each counts, when it has no data, its state, its SQL — are the
//! modules of [`super::measure`].

use serde::Deserialize;
use time::Date;

use super::kinds::{Kind, Kinds};
use super::org::Level;

pub use super::definition::DefinitionError;
pub use super::time::Period;

/// A metric, by its name. Names are interned (leaked once each: a handful, whatever the
/// number of reloads), so an id is `Copy` and outlives the catalogue that defined it — after a
/// definition change, an id the new catalogue lacks is simply not found there.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId(&'static str);

impl MetricId {
    pub fn as_str(self) -> &'static str {
        self.0
    }

    fn intern(name: &str) -> MetricId {
        MetricId(super::kinds::intern_name(name))
    }
}

impl std::fmt::Debug for MetricId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::fmt::Display for MetricId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A condition on a record's field: a flag's value, or a count's value.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub equals: i64,
}

/// A deadline of a case: `days` after it was opened, unless one of `met_by` arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseDeadline {
    pub name: String,
    /// What screens call it (受理, 办结 …).
    pub label_zh: String,
    /// The span in days as the file gives it (0 when given in hours or per case).
    pub days: u32,
    /// The span every case gets, in seconds (0 when each case carries its own) …
    pub seconds: u32,
    /// … or the count field of a case's opening record that gives its span, in seconds.
    pub seconds_field: Option<&'static str>,
    pub met_by: Vec<Kind>,
}

pub use super::measure::Measure;

/// When a target applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Deadline {
    /// Must be reached by this date and stay reached.
    Fixed(Date),
    /// Must be reached within every calendar period (year, quarter, month).
    Every(Period),
    /// Must hold at all times.
    Standing,
}

/// What a target is judged on: the value, or (cases) the overdue count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    Value,
    Overdue,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub value: f64,
    pub deadline: Deadline,
    /// The target is a most (e.g. no appeal overdue), not a least.
    pub at_most: bool,
    pub on: Judged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Percent,
    Count,
    /// A duration (elapsed measures), in hours.
    Hours,
}

/// A metric of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDef {
    pub id: MetricId,
    /// The definition file it came from.
    pub file: String,
    pub name: String,
    pub label_zh: String,
    /// The plan's clause, e.g. 三.
    pub clause: String,
    pub levels: Vec<Level>,
    pub unit: Unit,
    /// What a count is counted in, as screens write it after the number (件, 人, 个 …).
    pub unit_zh: String,
    /// Decimals a screen shows.
    pub precision: u8,
    pub measure: Measure,
    /// None: tracked, judged against nothing.
    pub target: Option<Target>,
    /// How the required pace words what a clerk does (`[pace]`); None: from the kind.
    pub pace: Option<super::pace::PaceWords>,
}

impl MetricDef {
    /// Whether the metric has figures at `level` (see [`super::org::levels_hold_at`]).
    pub fn applies_to(&self, level: Level) -> bool {
        super::org::levels_hold_at(&self.levels, level)
    }

    pub fn is_ratio(&self) -> bool {
        self.measure.is_ratio()
    }
}

/// Every metric, in the plan's clause order.
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// The record kinds the metrics are computed from.
    pub kinds: Kinds,
    pub metrics: Vec<MetricDef>,
    /// A hash of the definition files (names and texts, in name order): a checkpoint of the
    /// live state holds only for the definitions it was built under.
    pub fingerprint: u64,
}

/// Two catalogues are the same when they define the same kinds and metrics, whatever their
/// files' comments and layout (the fingerprint tells files apart).
impl PartialEq for Catalogue {
    fn eq(&self, other: &Self) -> bool {
        self.kinds == other.kinds && self.metrics == other.metrics
    }
}

impl Catalogue {
    /// Parses record kind and metric definition files: `(file name, text)`. Any error refuses
    /// the whole set (the caller keeps the catalogue it had).
    pub fn parse(
        kind_files: &[(String, String)],
        files: &[(String, String)],
    ) -> Result<Catalogue, DefinitionError> {
        let kinds = Kinds::parse(kind_files)?;
        let mut metrics = Vec::new();
        for (file, text) in files {
            super::definition::check_text(file, text)?;
            let def = parse_metric(&kinds, file, text)?;
            if metrics.iter().any(|m: &MetricDef| m.name == def.name) {
                return Err(DefinitionError {
                    file: file.clone(),
                    line: None,
                    reason: format!("metric {} is defined twice", def.name),
                });
            }
            metrics.push(def);
        }
        if metrics.is_empty() {
            return Err(DefinitionError {
                file: "(metrics)".into(),
                line: None,
                reason: "no metric definitions".into(),
            });
        }
        metrics.sort_by(|a, b| {
            clause_number(&a.clause)
                .cmp(&clause_number(&b.clause))
                .then(a.name.cmp(&b.name))
        });
        Ok(Catalogue {
            kinds,
            metrics,
            fingerprint: fingerprint(kind_files, files),
        })
    }

    /// Refuses a metric whose levels the org tree does not have (a province's metric in a
    /// city's tree), naming its file.
    pub fn check_levels(&self, tree: &super::org::OrgTree) -> Result<(), DefinitionError> {
        let present: Vec<Level> = Level::ALL
            .into_iter()
            .filter(|&l| tree.count(l) > 0)
            .collect();
        for m in &self.metrics {
            if let Some(missing) = m.levels.iter().find(|l| !present.contains(l)) {
                return Err(DefinitionError {
                    file: m.file.clone(),
                    line: None,
                    reason: format!(
                        "levels: the org tree of this region (org.region) has no {missing} nodes"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Every metric, in clause order.
    pub fn all(&self) -> Vec<MetricId> {
        self.metrics.iter().map(|m| m.id).collect()
    }

    pub fn get(&self, id: MetricId) -> Option<&MetricDef> {
        self.metrics.iter().find(|m| m.id == id)
    }

    /// The metric of that name, if the catalogue defines it.
    pub fn parse_name(&self, name: &str) -> Option<MetricId> {
        self.metrics.iter().find(|m| m.name == name).map(|m| m.id)
    }

    /// The metrics a client names (none: every metric), or the first name it does not define.
    pub fn resolve<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<MetricId>, String> {
        if names.is_empty() {
            return Ok(self.all());
        }
        names
            .iter()
            .map(|n| {
                let n = n.as_ref().trim();
                self.parse_name(n)
                    .ok_or_else(|| format!("unknown metric '{n}'"))
            })
            .collect()
    }

    /// The definitions shipped in `dashboards/` (tests).
    #[cfg(test)]
    pub fn shipped() -> Catalogue {
        use super::kinds::shipped_files;
        match Catalogue::parse(&shipped_files("kinds"), &shipped_files("metrics")) {
            Ok(c) => c,
            Err(e) => panic!("shipped definitions: {e}"),
        }
    }
}

/// The definition files' hash, whatever order they were read in.
fn fingerprint(kind_files: &[(String, String)], files: &[(String, String)]) -> u64 {
    let mut all: Vec<(&str, &(String, String))> = kind_files
        .iter()
        .map(|f| ("kind", f))
        .chain(files.iter().map(|f| ("metric", f)))
        .collect();
    all.sort();
    let mut bytes = Vec::new();
    for (set, (name, text)) in all {
        for part in [set, name.as_str(), text.as_str()] {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
            bytes.extend_from_slice(part.as_bytes());
        }
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// 三 → 3, 二十二 → 22; 总体要求 and other text sort first.
fn clause_number(clause: &str) -> u32 {
    let digit = |c: char| "零一二三四五六七八九".chars().position(|d| d == c);
    let chars: Vec<char> = clause.chars().collect();
    match chars.as_slice() {
        ['十'] => 10,
        ['十', u] => digit(*u).map_or(0, |u| 10 + u as u32),
        [t, '十'] => digit(*t).map_or(0, |t| 10 * t as u32),
        [t, '十', u] => match (digit(*t), digit(*u)) {
            (Some(t), Some(u)) => 10 * t as u32 + u as u32,
            _ => 0,
        },
        [d] => digit(*d).map_or(0, |d| d as u32),
        _ => 0,
    }
}

// --- the files as written --------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricSpec {
    name: String,
    label_zh: String,
    clause: String,
    levels: Vec<Level>,
    unit: String,
    /// What a count is counted in (件, 人, 小时 …); a percent or an hours metric needs none.
    #[serde(default)]
    unit_zh: String,
    #[serde(default)]
    precision: u8,
    measure: toml::Spanned<super::measure::Spec>,
    target: Option<toml::Spanned<TargetSpec>>,
    pace: Option<super::pace::PaceWords>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    value: f64,
    by: Option<String>,
    period: Option<String>,
    #[serde(default)]
    at_most: bool,
    on: Option<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn parse_metric(kinds: &Kinds, file: &str, text: &str) -> Result<MetricDef, DefinitionError> {
    let error = |line: Option<usize>, reason: String| DefinitionError {
        file: file.to_string(),
        line,
        reason,
    };
    let spec: MetricSpec = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        error(line, e.message().to_string())
    })?;
    let measure_line = Some(line_of(text, spec.measure.span().start));
    let measure =
        Measure::parse(spec.measure.get_ref(), kinds).map_err(|r| error(measure_line, r))?;
    let target = match &spec.target {
        None => None,
        Some(t) => {
            let line = Some(line_of(text, t.span().start));
            Some(target(t.get_ref(), &measure).map_err(|r| error(line, r))?)
        }
    };
    let unit = match spec.unit.as_str() {
        "percent" => Unit::Percent,
        "count" => Unit::Count,
        "hours" => Unit::Hours,
        other => {
            return Err(error(
                None,
                format!("unit '{other}': percent, count or hours"),
            ))
        }
    };
    if spec.levels.is_empty() {
        return Err(error(None, "levels must name at least one level".into()));
    }
    if !spec
        .name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        || spec.name.is_empty()
    {
        return Err(error(
            None,
            format!("name '{}': lowercase letters, digits and _", spec.name),
        ));
    }
    Ok(MetricDef {
        id: MetricId::intern(&spec.name),
        file: file.to_string(),
        name: spec.name,
        label_zh: spec.label_zh,
        clause: spec.clause,
        levels: spec.levels,
        unit,
        unit_zh: spec.unit_zh,
        precision: spec.precision,
        measure,
        target,
        pace: spec.pace,
    })
}

fn target(spec: &TargetSpec, measure: &Measure) -> Result<Target, String> {
    let deadline = match (&spec.by, &spec.period) {
        (Some(by), None) => {
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            Deadline::Fixed(
                Date::parse(by, &fmt).map_err(|_| format!("by = '{by}': a date YYYY-MM-DD"))?,
            )
        }
        (None, Some(p)) if p == "standing" => Deadline::Standing,
        (None, Some(p)) => match Period::parse(p) {
            Some(Period::All) | None => {
                return Err(format!("period '{p}': year, quarter, month or standing"))
            }
            Some(period) => Deadline::Every(period),
        },
        _ => return Err("a target has either by (a date) or period".into()),
    };
    let on = match spec.on.as_deref() {
        None | Some("value") => Judged::Value,
        Some("overdue") if measure.as_cases().is_some() => Judged::Overdue,
        Some(other) => return Err(format!("on = '{other}': value, or overdue for cases")),
    };
    Ok(Target {
        value: spec.value,
        deadline,
        at_most: spec.at_most,
        on,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Month;

    #[test]
    fn the_shipped_definitions_load_in_clause_order() {
        let c = Catalogue::shipped();
        let names: Vec<&str> = c.metrics.iter().map(|m| m.name.as_str()).collect();
        // 总体要求 (the general requirements) before the numbered clauses, 二十六 last.
        assert_eq!(
            names[..3],
            ["five_haves", "staffing_rate", "veteran_hire_share"]
        );
        assert_eq!(*names.last().unwrap(), "spot_checks");
        // The plan's 27 rows; two of them as two metrics each: volunteers and their hours
        // (二十一), open work orders and the time to take one (二十); and reporting completeness
        // (十二: every scheduled report received and on time, and each scheduled kind on time);
        // and the tasks sent down the tree (十四: open and overdue, done on time).
        assert_eq!(names.len(), 39);
        let clauses: std::collections::BTreeSet<&str> =
            c.metrics.iter().map(|m| m.clause.as_str()).collect();
        for clause in [
            "总体要求",
            "三",
            "四",
            "五",
            "六",
            "七",
            "八",
            "十一",
            "十二",
            "十七",
            "十八",
            "二十",
            "二十一",
            "二十二",
            "二十三",
            "二十六",
        ] {
            assert!(clauses.contains(clause), "no metric of clause {clause}");
        }
        let appeals = c.get(c.parse_name("open_appeals").unwrap()).unwrap();
        assert!(appeals.measure.as_cases().is_some());
        assert_eq!(appeals.target.unwrap().on, Judged::Overdue);
    }

    #[test]
    fn a_broken_file_is_refused_with_its_line_and_reason() {
        let broken = "name = \"x\"\nlabel_zh = \"x\"\nclause = \"三\"\nlevels = [\"city\"]\nunit = \"count\"\n\n[measure]\ntype = \"count\"\nkind = \"no.such.kind\"\n";
        let e = Catalogue::parse(
            &crate::domain::kinds::shipped_files("kinds"),
            &[("x.toml".into(), broken.into())],
        )
        .unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("x.toml", Some(7)));
        assert!(e.reason.contains("no.such.kind"), "{e}");
        let syntax = "name = \"x\"\nlabel_zh = \n";
        let e = Catalogue::parse(
            &crate::domain::kinds::shipped_files("kinds"),
            &[("y.toml".into(), syntax.into())],
        )
        .unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn periods_bound_the_shanghai_calendar() {
        let d = Date::from_calendar_date(2021, Month::August, 15).unwrap();
        let ymd = |y, m, dd| Date::from_calendar_date(y, Month::try_from(m).unwrap(), dd).unwrap();
        assert_eq!(
            Period::Quarter.bounds(d),
            (ymd(2021, 7, 1), ymd(2021, 9, 30))
        );
        assert_eq!(Period::Month.bounds(d), (ymd(2021, 8, 1), ymd(2021, 8, 31)));
        assert_eq!(Period::Year.bounds(d), (ymd(2021, 1, 1), ymd(2021, 12, 31)));
        assert_ne!(
            Period::Quarter.key(ymd(2021, 9, 30)),
            Period::Quarter.key(ymd(2021, 10, 1))
        );
        assert_eq!(clause_number("二十二"), 22);
        assert_eq!(clause_number("十七"), 17);
        assert_eq!(clause_number("三"), 3);
    }
}
