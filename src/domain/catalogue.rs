//! The metric catalogue as definitions: one file per metric (`dashboards/metrics/*.toml`),
//! parsed into [`MetricDef`]s whose [`Measure`] is one of a small closed set of measure types.
//! Code holds the measure *types*; a metric is data. Pure: the caller reads the files.
//!
//! | measure | value | no data until |
//! |---|---|---|
//! | `count` | records of a kind in the current period (optionally only those whose flags hold) | the node (`own`) or its subtree reported the kind once |
//! | `sum` | a count field summed over the records of a kind in the current period (as `count`, with `field`) | as `count` |
//! | `distinct` | distinct subjects of a kind in the current period | as `count` |
//! | `latest` | the latest value of a field per reporting node, summed over the subtree (semi-additive) | a node of the subtree reported the kind |
//! | `nodes` | nodes of some levels whose latest record of a kind satisfies a condition: their count, or their share of all such nodes | a node of those levels in the subtree reported the kind |
//! | `matched` | subjects of a kind that also appear in another kind at the same org ÷ subjects of the first | a subject of the first kind in the subtree |
//! | `ratio` | two of the above, num ÷ den | the denominator has data |
//! | `cases` | cases opened and not yet closed, with deadlines: the open count, the overdue (distinct), per-deadline overdue, the oldest | a case was opened in the subtree |
//! | `elapsed` | a quantile of the hours from each subject's first `from` record to its first `to` record, over the subjects that got there | a subject opened in the subtree got there |

use std::collections::BTreeMap;

use serde::Deserialize;
use time::Date;

use super::kinds::{FieldType, Kind, Kinds};
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
    pub days: u32,
    pub met_by: Vec<Kind>,
}

/// One of the measure types (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// Records in the period — or, with `sum`, the sum of that count field over them (the
    /// `sum` type: volunteer hours, placements).
    Count {
        kind: Kind,
        when: Vec<Condition>,
        period: Period,
        own: bool,
        sum: Option<String>,
    },
    Distinct {
        kind: Kind,
        period: Period,
        own: bool,
    },
    Latest {
        kind: Kind,
        field: String,
    },
    Nodes {
        kind: Kind,
        levels: Vec<Level>,
        when: Vec<Condition>,
        share: bool,
    },
    Matched {
        kind: Kind,
        with: Kind,
    },
    Ratio {
        num: Box<Measure>,
        den: Box<Measure>,
    },
    Cases {
        opened: Kind,
        closed: Kind,
        deadlines: Vec<CaseDeadline>,
        /// `closed_by = "level_above"`: only a closing record of the level above the opening
        /// org closes the case (and meets the deadlines it meets) — the district for a street
        /// or community, the city for a district, the city itself for the city.
        level_above: bool,
    },
    /// The `quantile` of the time from each subject's first `from` record to its first record
    /// of any `to` kind, over the subjects that got there, opened in the subtree (hours).
    Elapsed {
        from: Kind,
        to: Vec<Kind>,
        quantile: f64,
    },
}

impl Measure {
    /// The measure type's name, as definition files write it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Measure::Count { sum: None, .. } => "count",
            Measure::Count { sum: Some(_), .. } => "sum",
            Measure::Distinct { .. } => "distinct",
            Measure::Latest { .. } => "latest",
            Measure::Nodes { .. } => "nodes",
            Measure::Matched { .. } => "matched",
            Measure::Ratio { .. } => "ratio",
            Measure::Cases { .. } => "cases",
            Measure::Elapsed { .. } => "elapsed",
        }
    }

    /// Whether the figure is a ratio (num ÷ den) or a count.
    pub fn is_ratio(&self) -> bool {
        matches!(
            self,
            Measure::Ratio { .. } | Measure::Matched { .. } | Measure::Nodes { share: true, .. }
        )
    }

    /// The measure's leaves (a ratio's two sides; any other measure itself).
    pub fn leaves(&self) -> Vec<&Measure> {
        match self {
            Measure::Ratio { num, den } => vec![num, den],
            other => vec![other],
        }
    }

    /// Every kind the measure reads.
    pub fn kinds(&self) -> Vec<Kind> {
        match self {
            Measure::Count { kind, .. }
            | Measure::Distinct { kind, .. }
            | Measure::Latest { kind, .. }
            | Measure::Nodes { kind, .. } => vec![*kind],
            Measure::Matched { kind, with } => vec![*kind, *with],
            Measure::Ratio { num, den } => [num.kinds(), den.kinds()].concat(),
            Measure::Elapsed { from, to, .. } => {
                let mut k = vec![*from];
                k.extend(to.iter().copied());
                k.sort_by_key(|k| k.as_str());
                k.dedup();
                k
            }
            Measure::Cases {
                opened,
                closed,
                deadlines,
                ..
            } => {
                let mut k = vec![*opened, *closed];
                for d in deadlines {
                    k.extend(d.met_by.iter().copied());
                }
                k.sort_by_key(|k| k.as_str());
                k.dedup();
                k
            }
        }
    }

    /// The period a count-like measure reads (the ratio's numerator's), if any.
    pub fn period(&self) -> Period {
        match self {
            Measure::Count { period, .. } | Measure::Distinct { period, .. } => *period,
            Measure::Ratio { num, .. } => num.period(),
            _ => Period::All,
        }
    }
}

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
}

impl MetricDef {
    pub fn applies_to(&self, level: Level) -> bool {
        self.levels.contains(&level)
    }

    pub fn is_ratio(&self) -> bool {
        self.measure.is_ratio()
    }
}

/// Every metric, in the plan's clause order.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    /// The record kinds the metrics are computed from.
    pub kinds: Kinds,
    pub metrics: Vec<MetricDef>,
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
        Ok(Catalogue { kinds, metrics })
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
    measure: toml::Spanned<MeasureSpec>,
    target: Option<toml::Spanned<TargetSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeasureSpec {
    #[serde(rename = "type")]
    kind_of: String,
    kind: Option<String>,
    field: Option<String>,
    #[serde(default)]
    when: BTreeMap<String, toml::Value>,
    period: Option<String>,
    #[serde(default)]
    own: bool,
    levels: Option<Vec<Level>>,
    #[serde(rename = "as")]
    as_: Option<String>,
    with: Option<String>,
    num: Option<Box<MeasureSpec>>,
    den: Option<Box<MeasureSpec>>,
    opened: Option<String>,
    closed: Option<String>,
    #[serde(default)]
    deadlines: Vec<DeadlineSpec>,
    from: Option<String>,
    to: Option<Vec<String>>,
    quantile: Option<f64>,
    closed_by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadlineSpec {
    name: String,
    label_zh: Option<String>,
    days: u32,
    met_by: Vec<String>,
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
    let measure = measure(kinds, spec.measure.get_ref()).map_err(|r| error(measure_line, r))?;
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
        name: spec.name,
        label_zh: spec.label_zh,
        clause: spec.clause,
        levels: spec.levels,
        unit,
        unit_zh: spec.unit_zh,
        precision: spec.precision,
        measure,
        target,
    })
}

fn kind_named(kinds: &Kinds, name: Option<&String>, what: &str) -> Result<Kind, String> {
    let name = name.ok_or_else(|| format!("{what} is required"))?;
    kinds.parse_name(name).ok_or_else(|| {
        format!(
            "{what} '{name}' is not a record kind (known: {})",
            kinds.names().join(", ")
        )
    })
}

fn has_subject(kinds: &Kinds, kind: Kind) -> bool {
    kinds
        .get(kind.as_str())
        .is_some_and(|d| d.subject.is_some())
}

fn field_of(
    kinds: &Kinds,
    kind: Kind,
    name: &str,
    allowed: &[FieldType],
) -> Result<FieldType, String> {
    kinds
        .get(kind.as_str())
        .and_then(|d| d.field(name))
        .map(|f| f.ty)
        .filter(|t| allowed.contains(t))
        .ok_or_else(|| format!("{kind} has no field '{name}' of type {allowed:?}"))
}

fn conditions(
    kinds: &Kinds,
    kind: Kind,
    when: &BTreeMap<String, toml::Value>,
) -> Result<Vec<Condition>, String> {
    when.iter()
        .map(|(field, value)| {
            let equals = match value {
                toml::Value::Boolean(b) => {
                    field_of(kinds, kind, field, &[FieldType::Flag])?;
                    i64::from(*b)
                }
                toml::Value::Integer(n) => {
                    field_of(kinds, kind, field, &[FieldType::Count])?;
                    *n
                }
                other => return Err(format!("when.{field} = {other}: true, false or a number")),
            };
            Ok(Condition {
                field: field.clone(),
                equals,
            })
        })
        .collect()
}

fn measure(kinds: &Kinds, spec: &MeasureSpec) -> Result<Measure, String> {
    let period = || -> Result<Period, String> {
        match &spec.period {
            None => Ok(Period::All),
            Some(p) => {
                Period::parse(p).ok_or_else(|| format!("period '{p}': all, year, quarter or month"))
            }
        }
    };
    Ok(match spec.kind_of.as_str() {
        "count" | "sum" => {
            let kind = kind_named(kinds, spec.kind.as_ref(), "kind")?;
            let sum = match (spec.kind_of.as_str(), &spec.field) {
                ("count", None) => None,
                ("count", Some(_)) => return Err("a count has no field; a sum has".into()),
                (_, None) => return Err("field is required".into()),
                (_, Some(field)) => {
                    field_of(kinds, kind, field, &[FieldType::Count])?;
                    Some(field.clone())
                }
            };
            Measure::Count {
                kind,
                when: conditions(kinds, kind, &spec.when)?,
                period: period()?,
                own: spec.own,
                sum,
            }
        }
        "distinct" => {
            let kind = kind_named(kinds, spec.kind.as_ref(), "kind")?;
            if !has_subject(kinds, kind) {
                return Err(format!("{} has no subject to count", kind.as_str()));
            }
            Measure::Distinct {
                kind,
                period: period()?,
                own: spec.own,
            }
        }
        "latest" => {
            let kind = kind_named(kinds, spec.kind.as_ref(), "kind")?;
            let field = spec.field.clone().ok_or("field is required")?;
            field_of(kinds, kind, &field, &[FieldType::Count])?;
            Measure::Latest { kind, field }
        }
        "nodes" => {
            let kind = kind_named(kinds, spec.kind.as_ref(), "kind")?;
            let levels = spec.levels.clone().ok_or("levels is required")?;
            if levels.iter().any(|l| {
                !kinds
                    .get(kind.as_str())
                    .is_some_and(|d| d.levels.contains(l))
            }) {
                return Err(format!(
                    "{} records do not come from every level of {levels:?}",
                    kind.as_str()
                ));
            }
            let share = match spec.as_.as_deref() {
                Some("share") => true,
                Some("count") => false,
                other => return Err(format!("as = {other:?}: \"count\" or \"share\"")),
            };
            Measure::Nodes {
                kind,
                levels,
                when: conditions(kinds, kind, &spec.when)?,
                share,
            }
        }
        "matched" => {
            let kind = kind_named(kinds, spec.kind.as_ref(), "kind")?;
            let with = kind_named(kinds, spec.with.as_ref(), "with")?;
            for k in [kind, with] {
                if !has_subject(kinds, k) {
                    return Err(format!("{} has no subject to match", k.as_str()));
                }
            }
            Measure::Matched { kind, with }
        }
        "ratio" => {
            let side = |s: &Option<Box<MeasureSpec>>, name: &str| -> Result<Measure, String> {
                let s = s.as_ref().ok_or_else(|| format!("ratio needs {name}"))?;
                let m = measure(kinds, s).map_err(|e| format!("{name}: {e}"))?;
                match m {
                    Measure::Ratio { .. } | Measure::Cases { .. } | Measure::Elapsed { .. } => {
                        Err(format!(
                            "{name}: a ratio's side is count, distinct, latest, nodes or matched"
                        ))
                    }
                    m => Ok(m),
                }
            };
            Measure::Ratio {
                num: Box::new(side(&spec.num, "num")?),
                den: Box::new(side(&spec.den, "den")?),
            }
        }
        "elapsed" => {
            let from = kind_named(kinds, spec.from.as_ref(), "from")?;
            let to = match &spec.to {
                Some(list) if !list.is_empty() => list
                    .iter()
                    .map(|k| kind_named(kinds, Some(k), "to"))
                    .collect::<Result<Vec<_>, String>>()?,
                _ => return Err("to: at least one record kind".into()),
            };
            let quantile = spec.quantile.unwrap_or(0.5);
            if !(0.0..=1.0).contains(&quantile) {
                return Err(format!("quantile {quantile}: 0 to 1"));
            }
            if let Some(k) = std::iter::once(&from)
                .chain(&to)
                .find(|k| !has_subject(kinds, **k))
            {
                return Err(format!("{k} has no subject to follow a case by"));
            }
            Measure::Elapsed { from, to, quantile }
        }
        "cases" if spec.deadlines.len() > 16 => {
            return Err(format!("{} deadlines: at most 16", spec.deadlines.len()))
        }
        "cases" => {
            let level_above = match spec.closed_by.as_deref() {
                None | Some("anyone") => false,
                Some("level_above") => true,
                Some(other) => return Err(format!("closed_by '{other}': anyone or level_above")),
            };
            let cases = Measure::Cases {
                level_above,
                opened: kind_named(kinds, spec.opened.as_ref(), "opened")?,
                closed: kind_named(kinds, spec.closed.as_ref(), "closed")?,
                deadlines: spec
                    .deadlines
                    .iter()
                    .map(|d| {
                        Ok(CaseDeadline {
                            name: d.name.clone(),
                            label_zh: d.label_zh.clone().unwrap_or_else(|| d.name.clone()),
                            days: d.days,
                            met_by: d
                                .met_by
                                .iter()
                                .map(|k| kind_named(kinds, Some(k), "met_by"))
                                .collect::<Result<_, String>>()?,
                        })
                    })
                    .collect::<Result<_, String>>()?,
            };
            if let Some(k) = cases.kinds().into_iter().find(|k| !has_subject(kinds, *k)) {
                return Err(format!("{} has no subject to follow a case by", k.as_str()));
            }
            cases
        }
        other => {
            return Err(format!(
            "type '{other}': count, sum, distinct, latest, nodes, matched, ratio, cases or elapsed"
        ))
        }
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
        Some("overdue") if matches!(measure, Measure::Cases { .. }) => Judged::Overdue,
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
        // (二十一), open work orders and the time to take one (二十).
        assert_eq!(names.len(), 29);
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
        assert!(matches!(appeals.measure, Measure::Cases { .. }));
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
