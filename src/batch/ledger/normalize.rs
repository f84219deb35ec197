//! What clerks really write, made uniform with polars expressions over a chunk of raw cells:
//! full-width digits and letters (`２０２１`), stray and ideographic spaces, dates as
//! `2021年3月4日`, `2021/3/4`, `2021.03.04`, `20210304` or with a time, org names instead of
//! codes (`南山区 / 粤海街道 / 科技园社区`, with or without 区/街道/社区), 是/否 flags and star
//! ratings as `五星`, `5星` or `★★★★★`.

use polars::prelude::*;

use super::Field;
use crate::domain::kinds::FieldType as ValueType;
use crate::domain::{Level, OrgTree};

/// The full-width form of an ASCII character, and the ideographic space, as ASCII.
pub fn half_width(c: char) -> char {
    match c {
        '\u{3000}' => ' ',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFF01 + 0x21).unwrap_or(c),
        _ => c,
    }
}

fn full_width_table() -> (Series, Series) {
    let mut from = vec!["\u{3000}".to_string()];
    let mut to = vec![" ".to_string()];
    for code in 0xFF01u32..=0xFF5E {
        if let Some(c) = char::from_u32(code) {
            from.push(c.to_string());
            to.push(half_width(c).to_string());
        }
    }
    (
        Series::new("from".into(), from),
        Series::new("to".into(), to),
    )
}

/// Half-width, trimmed, and empty as null.
fn clean(e: Expr) -> Expr {
    let (from, to) = full_width_table();
    let x = e
        .cast(DataType::String)
        .str()
        .replace_many(
            lit(from).implode(false),
            lit(to).implode(false),
            false,
            true,
        )
        .str()
        .strip_chars(lit(NULL));
    when(x.clone().eq(lit("")))
        .then(lit(NULL).cast(DataType::String))
        .otherwise(x)
}

/// A district, street or community name without its suffix, so 南山区 = 南山, 粤海街道 = 粤海.
fn bare_name(e: Expr) -> Expr {
    e.str().replace(
        lit("(社区居委会|居委会|社区|街道办事处|街道办|街道|新区|区|市)$"),
        lit(""),
        false,
    )
}

/// `2021年3月4日`, `2021/3/4`, `2021.3.4`, `2021-03-04 09:30`, `20210304` → a date.
fn date_of(e: Expr) -> Expr {
    let unified = e
        .str()
        .replace_many(
            lit(Series::new("p".into(), ["年", "月", "/", "."])).implode(false),
            lit(Series::new("r".into(), ["-", "-", "-", "-"])).implode(false),
            false,
            true,
        )
        .str()
        .replace(lit("日"), lit(""), true);
    let ymd = unified
        .clone()
        .str()
        .extract(lit(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T].*)?$"), 1);
    let m = unified
        .clone()
        .str()
        .extract(lit(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T].*)?$"), 2);
    let d = unified
        .clone()
        .str()
        .extract(lit(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T].*)?$"), 3);
    let padded = concat_str(
        [ymd, m.str().zfill(lit(2)), d.str().zfill(lit(2))],
        "-",
        false,
    );
    let compact = unified.str().extract(lit(r"^(\d{8})$"), 1);
    let options = |format: &str| StrptimeOptions {
        format: Some(format.into()),
        strict: false,
        exact: true,
        cache: true,
    };
    coalesce(&[
        padded.str().to_date(options("%Y-%m-%d")),
        compact.str().to_date(options("%Y%m%d")),
    ])
}

fn flag_of(e: Expr) -> Expr {
    let yes = Series::new(
        "yes".into(),
        [
            "是", "Y", "y", "YES", "Yes", "yes", "1", "√", "✓", "TRUE", "True", "true", "有",
        ],
    );
    let no = Series::new(
        "no".into(),
        [
            "否", "N", "n", "NO", "No", "no", "0", "×", "✗", "FALSE", "False", "false", "无",
        ],
    );
    when(e.clone().is_in(lit(yes).implode(false), false))
        .then(lit(true))
        .when(e.is_in(lit(no).implode(false), false))
        .then(lit(false))
        .otherwise(lit(NULL).cast(DataType::Boolean))
}

fn stars_of(e: Expr) -> Expr {
    let digits = e
        .clone()
        .str()
        .replace_many(
            lit(Series::new(
                "p".into(),
                ["零", "一", "二", "三", "四", "五", "星级", "星", "级"],
            ))
            .implode(false),
            lit(Series::new(
                "r".into(),
                ["0", "1", "2", "3", "4", "5", "", "", ""],
            ))
            .implode(false),
            false,
            true,
        )
        .str()
        .strip_chars(lit(NULL));
    let drawn = e
        .clone()
        .str()
        .count_matches(lit("★"), true)
        .cast(DataType::Int64);
    when(e.str().contains_literal(lit("★")))
        .then(drawn)
        .otherwise(digits.cast(DataType::Int64))
}

fn count_of(e: Expr) -> Expr {
    e.str()
        .replace_many(
            lit(Series::new("p".into(), [",", "人", "个"])).implode(false),
            lit(Series::new("r".into(), ["", "", ""])).implode(false),
            false,
            true,
        )
        .cast(DataType::Int64)
}

/// The org codes by name path (`南山/粤海/科技园`), and by bare name where a street's or
/// community's name is unique in the city.
pub struct OrgLookup {
    frame: DataFrame,
}

impl OrgLookup {
    pub fn new(tree: &OrgTree) -> PolarsResult<Self> {
        let (mut keys, mut codes) = (Vec::new(), Vec::new());
        let parts_of = |idx| {
            let mut names: Vec<String> = tree
                .path_to_root(idx)
                .filter(|&i| tree.node(i).level != Level::City)
                .map(|i| tree.node(i).name.clone())
                .collect();
            names.reverse();
            names
        };
        let mut by_name: std::collections::HashMap<String, Vec<String>> = Default::default();
        let (mut d, mut s, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for (idx, node) in tree.nodes() {
            let names = parts_of(idx);
            d.push(names.first().cloned());
            s.push(names.get(1).cloned());
            c.push(names.get(2).cloned());
            codes.push(node.code.clone());
            if node.level == Level::City {
                keys.push(Some(node.name.clone()));
            } else {
                keys.push(None);
            }
            if matches!(node.level, Level::Street | Level::Community) {
                by_name
                    .entry(node.name.clone())
                    .or_default()
                    .push(node.code.clone());
            }
        }
        let full = df!("district" => d, "street" => s, "community" => c, "code" => codes.clone(), "city" => keys)?
            .lazy()
            .select([
                coalesce(&[bare_name(col("city")), org_key(&[col("district"), col("street"), col("community")])]).alias("org_key"),
                col("code").alias("org_resolved"),
            ]);
        let unique: Vec<(String, String)> = by_name
            .into_iter()
            .filter(|(_, codes)| codes.len() == 1)
            .map(|(name, codes)| (name, codes[0].clone()))
            .collect();
        let single = df!(
            "name" => unique.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            "code" => unique.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>()
        )?
        .lazy()
        .select([
            bare_name(col("name")).alias("org_key"),
            col("code").alias("org_resolved"),
        ]);
        let frame = concat([full, single], UnionArgs::default())?
            .unique(Some(cols(["org_key"])), UniqueKeepStrategy::First)
            .collect()?;
        Ok(OrgLookup { frame })
    }
}

/// The names present, bare, joined with `/`.
fn org_key(parts: &[Expr]) -> Expr {
    concat_str(
        parts
            .iter()
            .map(|p| bare_name(p.clone()))
            .collect::<Vec<_>>(),
        "/",
        true,
    )
}

/// Fields whose values repeat a lot in a ledger (dates, names, 是/否 …): cleaned once per
/// distinct value in the chunk and joined back, instead of once per row.
fn few_distinct(f: Field) -> bool {
    matches!(
        f,
        Field::Date
            | Field::Stage
            | Field::Veteran
            | Field::Demonstration
            | Field::Stars
            | Field::ApprovedPosts
            | Field::FilledPosts
            | Field::Headcount
            | Field::Data(_, ValueType::Count | ValueType::Flag)
    )
}

fn typed(f: Field, raw: Expr) -> Expr {
    match f {
        Field::Date => date_of(raw),
        Field::Veteran | Field::Demonstration => flag_of(raw),
        Field::Stars => stars_of(raw),
        Field::ApprovedPosts | Field::FilledPosts | Field::Headcount => count_of(raw),
        Field::Lon | Field::Lat => raw.cast(DataType::Float64),
        Field::Data(_, ValueType::Count) => count_of(raw),
        Field::Data(_, ValueType::Flag) => flag_of(raw),
        Field::PersonId => raw.str().to_uppercase(),
        _ => raw,
    }
}

fn join_back() -> JoinArgs {
    let mut args = JoinArgs::new(JoinType::Left).with_coalesce(JoinCoalesce::CoalesceColumns);
    // Rows keep their file order (reject row numbers depend on it); empty cells match too.
    args.maintain_order = MaintainOrderJoin::Left;
    args.nulls_equal = true;
    args
}

/// Cleans a chunk of raw cells (columns named by [`Field::key`], all text) into typed columns:
/// for each field its cleaned text `<key>_raw` and its value `<key>`; `org` is the resolved
/// org code, `org_names` what the row said and `org_key` the name path looked up.
pub fn normalize(raw: DataFrame, fields: &[Field], lookup: &OrgLookup) -> PolarsResult<DataFrame> {
    let has = |f: Field| fields.contains(&f);
    let raw_name = |f: Field| format!("{}_raw", f.key());
    let value_name = |f: Field| format!("{}__value", f.key());
    let org_fields: Vec<Field> = [
        Field::District,
        Field::Street,
        Field::Community,
        Field::OrgCode,
    ]
    .into_iter()
    .filter(|f| has(*f))
    .collect();

    // Values unique per row (ids): cleaned in place.
    let mut frame = raw.clone().lazy();
    let many: Vec<Field> = fields
        .iter()
        .copied()
        .filter(|f| !few_distinct(*f) && !org_fields.contains(f))
        .collect();
    if !many.is_empty() {
        frame = frame
            .with_columns(
                many.iter()
                    .map(|f| clean(col(f.key())).alias(raw_name(*f)))
                    .collect::<Vec<_>>(),
            )
            .with_columns(
                many.iter()
                    .map(|f| typed(*f, col(raw_name(*f))).alias(value_name(*f)))
                    .collect::<Vec<_>>(),
            );
    }
    // Values that repeat: a small table per field, joined back.
    for f in fields.iter().copied().filter(|f| few_distinct(*f)) {
        let table = raw
            .clone()
            .lazy()
            .select([col(f.key())])
            .unique(None, UniqueKeepStrategy::Any)
            .with_columns([clean(col(f.key())).alias(raw_name(f))])
            .with_columns([typed(f, col(raw_name(f))).alias(value_name(f))]);
        frame = frame.join(table, [col(f.key())], [col(f.key())], join_back());
    }
    // Orgs: each distinct combination of names (and code) resolved once.
    let (org_key_expr, shown) = {
        let names: Vec<Expr> = [Field::District, Field::Street, Field::Community]
            .into_iter()
            .filter(|f| has(*f))
            .map(|f| col(raw_name(f)))
            .collect();
        if names.is_empty() {
            (
                lit(NULL).cast(DataType::String),
                lit(NULL).cast(DataType::String),
            )
        } else {
            (org_key(&names), concat_str(names, "/", true))
        }
    };
    let code = if has(Field::OrgCode) {
        col(raw_name(Field::OrgCode))
    } else {
        lit(NULL).cast(DataType::String)
    };
    let org_cols: Vec<Expr> = org_fields.iter().map(|f| col(f.key())).collect();
    if org_cols.is_empty() {
        let none = || lit(NULL).cast(DataType::String);
        frame = frame.with_columns([
            none().alias("org_key"),
            none().alias("org_names"),
            none().alias("org"),
        ]);
    } else {
        let orgs = raw
            .lazy()
            .select(org_cols.clone())
            .unique(None, UniqueKeepStrategy::Any)
            .with_columns(
                org_fields
                    .iter()
                    .map(|f| clean(col(f.key())).alias(raw_name(*f)))
                    .collect::<Vec<_>>(),
            )
            .with_columns([org_key_expr.alias("org_key"), shown.alias("org_names")])
            .join(
                lookup.frame.clone().lazy(),
                [col("org_key")],
                [col("org_key")],
                join_back(),
            )
            .with_columns([coalesce(&[code, col("org_resolved")]).alias("org")]);
        frame = frame.join(orgs, org_cols.clone(), org_cols, join_back());
    }

    let mut out: Vec<Expr> = fields.iter().map(|f| col(raw_name(*f))).collect();
    for f in fields {
        if !org_fields.contains(f) {
            out.push(col(value_name(*f)).alias(f.key()));
        }
    }
    if has(Field::OrgCode) {
        out.push(col(raw_name(Field::OrgCode)).alias("org_code"));
    }
    out.extend([col("org_key"), col("org_names"), col("org")]);
    frame.select(out).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::org::tree_of;

    fn tree() -> OrgTree {
        let mut t = tree_of(&[
            ("440300", Level::City, None),
            ("440305", Level::District, Some("440300")),
            ("440305007", Level::Street, Some("440305")),
            ("440305007003", Level::Community, Some("440305007")),
            ("440399", Level::District, Some("440300")),
        ]);
        t.rename_for_tests(&[
            ("440300", "深圳市"),
            ("440305", "南山区"),
            ("440305007", "粤海街道"),
            ("440305007003", "科技园社区"),
            ("440399", "大鹏新区"),
        ]);
        t
    }

    fn run(fields: &[Field], columns: Vec<Column>) -> DataFrame {
        let raw = DataFrame::new_infer_height(columns).unwrap();
        normalize(raw, fields, &OrgLookup::new(&tree()).unwrap()).unwrap()
    }

    fn strings(df: &DataFrame, name: &str) -> Vec<Option<String>> {
        df.column(name)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect()
    }

    #[test]
    fn dates_in_every_way_clerks_write_them() {
        let written = [
            "2021年3月4日",
            "2021/3/4",
            "2021-03-04",
            "2021.3.4",
            "20210304",
            "２０２１年３月４日",
            " 2021-3-4 09:30 ",
            "2021-02-30",
            "去年",
            "",
        ];
        let df = run(&[Field::Date], vec![Column::new("date".into(), written)]);
        let dates: Vec<Option<String>> = df
            .column("date")
            .unwrap()
            .cast(&DataType::String)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect();
        let d = Some("2021-03-04".to_string());
        assert_eq!(
            dates,
            vec![
                d.clone(),
                d.clone(),
                d.clone(),
                d.clone(),
                d.clone(),
                d.clone(),
                d,
                None,
                None,
                None
            ]
        );
        assert_eq!(
            strings(&df, "date_raw")[8],
            Some("去年".into()),
            "the cleaned text stays for the reject reason"
        );
        assert_eq!(strings(&df, "date_raw")[9], None, "empty is missing");
    }

    #[test]
    fn orgs_by_name_with_or_without_suffixes_or_by_code() {
        let df = run(
            &[Field::District, Field::Street, Field::Community],
            vec![
                Column::new(
                    "district".into(),
                    [
                        "南山区",
                        "南山",
                        " 南山区 ",
                        "南山区",
                        "大鹏新区",
                        "深圳市",
                        "",
                    ],
                ),
                Column::new(
                    "street".into(),
                    ["粤海街道", "粤海", "粤海街道", "", "", "", ""],
                ),
                Column::new(
                    "community".into(),
                    [
                        "科技园社区",
                        "科技园",
                        "科技园社区居委会",
                        "",
                        "",
                        "",
                        "科技园社区",
                    ],
                ),
            ],
        );
        assert_eq!(
            strings(&df, "org"),
            [
                "440305007003",
                "440305007003",
                "440305007003",
                "440305",
                "440399",
                "440300",
                "440305007003"
            ]
            .map(|s| Some(s.to_string()))
        );
        let df = run(
            &[Field::OrgCode, Field::District],
            vec![
                Column::new("org_code".into(), ["４４０３０５"]),
                Column::new("district".into(), ["福田区"]),
            ],
        );
        assert_eq!(
            strings(&df, "org"),
            vec![Some("440305".to_string())],
            "a code wins over names"
        );
        let df = run(
            &[Field::District],
            vec![Column::new("district".into(), ["福田区"])],
        );
        assert_eq!(strings(&df, "org"), vec![None]);
        assert_eq!(strings(&df, "org_names"), vec![Some("福田区".to_string())]);
    }

    #[test]
    fn flags_stars_counts_ids_and_spaces() {
        let df = run(
            &[
                Field::Veteran,
                Field::Stars,
                Field::Headcount,
                Field::PersonId,
                Field::StaffId,
            ],
            vec![
                Column::new("veteran".into(), ["是", "否", "Y", "√", "maybe"]),
                Column::new("stars".into(), ["五星", "5星", "★★★", "４", "很多"]),
                Column::new("headcount".into(), ["1,200", "１２人", "7", " 8 ", "x"]),
                Column::new(
                    "person_id".into(),
                    ["44030319900101123x", "", "a", "b", "c"],
                ),
                Column::new(
                    "staff_id".into(),
                    ["S-01 ", "\u{3000}S-02", "Ｓ－０３", "s4", "s5"],
                ),
            ],
        );
        let flags: Vec<Option<bool>> = df
            .column("veteran")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(
            flags,
            vec![Some(true), Some(false), Some(true), Some(true), None]
        );
        let stars: Vec<Option<i64>> = df.column("stars").unwrap().i64().unwrap().iter().collect();
        assert_eq!(stars, vec![Some(5), Some(5), Some(3), Some(4), None]);
        let counts: Vec<Option<i64>> = df
            .column("headcount")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(counts, vec![Some(1200), Some(12), Some(7), Some(8), None]);
        assert_eq!(
            strings(&df, "person_id")[0],
            Some("44030319900101123X".into())
        );
        assert_eq!(
            strings(&df, "staff_id")[..3],
            [
                Some("S-01".into()),
                Some("S-02".into()),
                Some("S-03".into())
            ]
        );
    }
}
