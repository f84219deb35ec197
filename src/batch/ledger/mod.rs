//! Ledgers (台账, clause 十二): the CSV and Excel files districts keep, one per record family,
//! with Chinese column headers as a clerk writes them.
//!
//! - [`Family`]: the nine ledger families, their columns and the record kinds they hold;
//! - [`normalize`]: polars turns a chunk of raw text cells into typed, cleaned columns
//!   (full-width digits, `2021年3月4日`, names instead of codes, stray spaces);
//! - [`import`]: `vscc etl import` / `POST /api/v1/imports`: chunked reading, validation
//!   against the org tree, reject file, idempotent loading into `events`;
//! - [`write`]: ledger files from the simulator (`vscc simulate --format csv|xlsx`).

pub mod check;
pub mod corrections;
pub mod error;
pub mod follow;
pub mod import;
pub mod normalize;
pub mod read;
pub mod runs;
pub mod write;

use crate::domain::kinds::{intern_name, FieldType, KindDef, Kinds};
use crate::domain::record::Kind;

/// What a column of a ledger means, whatever its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    RecordNo,
    District,
    Street,
    Community,
    OrgCode,
    Date,
    Stage,
    StaffId,
    ClassId,
    AppealId,
    PersonId,
    Veteran,
    Demonstration,
    Stars,
    ApprovedPosts,
    FilledPosts,
    Headcount,
    Lon,
    Lat,
    /// A `data` field of a kind known from its definition file only (its name and type).
    Data(&'static str, FieldType),
}

impl Field {
    const ALL: [Field; 19] = [
        Field::RecordNo,
        Field::District,
        Field::Street,
        Field::Community,
        Field::OrgCode,
        Field::Date,
        Field::Stage,
        Field::StaffId,
        Field::ClassId,
        Field::AppealId,
        Field::PersonId,
        Field::Veteran,
        Field::Demonstration,
        Field::Stars,
        Field::ApprovedPosts,
        Field::FilledPosts,
        Field::Headcount,
        Field::Lon,
        Field::Lat,
    ];

    /// The field whose [`key`](Self::key) is `key`.
    pub fn of_key(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.key() == key)
    }

    /// The column name inside vscc (polars frames, reject reasons).
    pub fn key(self) -> &'static str {
        match self {
            Field::RecordNo => "record_no",
            Field::District => "district",
            Field::Street => "street",
            Field::Community => "community",
            Field::OrgCode => "org_code",
            Field::Date => "date",
            Field::Stage => "stage",
            Field::StaffId => "staff_id",
            Field::ClassId => "class_id",
            Field::AppealId => "appeal_id",
            Field::PersonId => "person_id",
            Field::Veteran => "veteran",
            Field::Demonstration => "demonstration",
            Field::Stars => "stars",
            Field::ApprovedPosts => "approved_posts",
            Field::FilledPosts => "filled_posts",
            Field::Headcount => "headcount",
            Field::Lon => "lon",
            Field::Lat => "lat",
            Field::Data(name, _) => name,
        }
    }
}

/// Headers clerks use, and what they mean. Matching ignores spaces and full-width forms.
pub const HEADERS: &[(&str, Field)] = &[
    ("记录编号", Field::RecordNo),
    ("台账编号", Field::RecordNo),
    ("区", Field::District),
    ("所属区", Field::District),
    ("区名称", Field::District),
    ("街道", Field::Street),
    ("所属街道", Field::Street),
    ("社区", Field::Community),
    ("所属社区", Field::Community),
    ("单位代码", Field::OrgCode),
    ("区划代码", Field::OrgCode),
    ("日期", Field::Date),
    ("填报日期", Field::Date),
    ("入职日期", Field::Date),
    ("统计日期", Field::Date),
    ("开班日期", Field::Date),
    ("培训日期", Field::Date),
    ("评定日期", Field::Date),
    ("办理日期", Field::Date),
    ("登记日期", Field::Date),
    ("建档日期", Field::Date),
    ("办理环节", Field::Stage),
    ("环节", Field::Stage),
    ("人员编号", Field::StaffId),
    ("工号", Field::StaffId),
    ("班次编号", Field::ClassId),
    ("培训班编号", Field::ClassId),
    ("诉求编号", Field::AppealId),
    ("身份证号", Field::PersonId),
    ("身份证号码", Field::PersonId),
    ("是否退役军人", Field::Veteran),
    ("是否示范点", Field::Demonstration),
    ("星级", Field::Stars),
    ("核定编制数", Field::ApprovedPosts),
    ("编制数", Field::ApprovedPosts),
    ("实有人数", Field::FilledPosts),
    ("在编人数", Field::FilledPosts),
    ("在岗人数", Field::Headcount),
    ("经度", Field::Lon),
    ("纬度", Field::Lat),
];

/// A header cell as a clerk typed it → its field.
pub fn field_of_header(header: &str) -> Option<Field> {
    let cleaned = clean_header(header);
    HEADERS.iter().find(|(h, _)| *h == cleaned).map(|(_, f)| *f)
}

fn clean_header(header: &str) -> String {
    header
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(normalize::half_width)
        .collect()
}

/// A header cell → its field, also among the fields of the kinds that no built-in ledger keeps
/// (by their Chinese names), and any other "…日期" as the date.
pub fn field_of_header_with(header: &str, kinds: &Kinds) -> Option<Field> {
    if let Some(f) = field_of_header(header) {
        return Some(f);
    }
    let cleaned = clean_header(header);
    kinds
        .all()
        .filter(|d| Family::builtin_of(d.kind).is_none())
        .flat_map(|d| d.fields.iter())
        .find(|f| f.label_zh == cleaned || f.aliases.iter().any(|a| clean_header(a) == cleaned))
        .map(|f| Field::Data(intern_name(&f.name), f.ty))
        .or_else(|| cleaned.ends_with("日期").then_some(Field::Date))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// The ledger of a kind known from its definition file only: its title is the kind's
    /// Chinese name with 台账, its columns the kind's fields by their Chinese names.
    Defined {
        kind: Kind,
        title: &'static str,
    },
    Staffing,
    Hires,
    Headcount,
    Classes,
    Attendance,
    Ratings,
    Appeals,
    Veterans,
    Archives,
}

impl Family {
    pub const ALL: [Family; 9] = [
        Family::Staffing,
        Family::Hires,
        Family::Headcount,
        Family::Classes,
        Family::Attendance,
        Family::Ratings,
        Family::Appeals,
        Family::Veterans,
        Family::Archives,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Staffing => "staffing",
            Family::Hires => "hires",
            Family::Headcount => "headcount",
            Family::Classes => "classes",
            Family::Attendance => "attendance",
            Family::Ratings => "ratings",
            Family::Appeals => "appeals",
            Family::Veterans => "veterans",
            Family::Archives => "archives",
            Family::Defined { kind, .. } => kind.as_str(),
        }
    }

    /// The family of a name or title: a built-in one, or a kind's own (by its name).
    pub fn parse(name: &str, kinds: &Kinds) -> Option<Family> {
        Family::ALL
            .into_iter()
            .find(|f| f.name() == name || f.title() == name)
            .or_else(|| {
                kinds
                    .all()
                    .filter(|d| Family::builtin_of(d.kind).is_none())
                    .find(|d| d.kind.as_str() == name || format!("{}台账", d.label_zh) == name)
                    .map(Family::defined)
            })
    }

    /// The ledger of a kind that no built-in ledger keeps.
    pub fn defined(def: &KindDef) -> Family {
        Family::Defined {
            kind: def.kind,
            title: intern_name(&format!("{}台账", def.label_zh)),
        }
    }

    /// The built-in family that keeps a kind, if any.
    pub fn builtin_of(kind: Kind) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.kinds().contains(&kind))
    }

    /// The ledger's Chinese title (and the simulator's file name).
    pub fn title(self) -> &'static str {
        match self {
            Family::Staffing => "编制台账",
            Family::Hires => "招聘台账",
            Family::Headcount => "在岗人数台账",
            Family::Classes => "培训班台账",
            Family::Attendance => "培训签到台账",
            Family::Ratings => "星级评定台账",
            Family::Appeals => "诉求办理台账",
            Family::Veterans => "退役军人登记台账",
            Family::Archives => "建档台账",
            Family::Defined { title, .. } => title,
        }
    }

    /// The columns the simulator writes, in order (first header of each field's aliases).
    pub fn columns(self) -> &'static [(&'static str, Field)] {
        match self {
            Family::Staffing => &[
                ("区", Field::District),
                ("填报日期", Field::Date),
                ("核定编制数", Field::ApprovedPosts),
                ("实有人数", Field::FilledPosts),
            ],
            Family::Hires => &[
                ("区", Field::District),
                ("街道", Field::Street),
                ("社区", Field::Community),
                ("入职日期", Field::Date),
                ("人员编号", Field::StaffId),
                ("是否退役军人", Field::Veteran),
            ],
            Family::Headcount => &[
                ("区", Field::District),
                ("街道", Field::Street),
                ("社区", Field::Community),
                ("统计日期", Field::Date),
                ("在岗人数", Field::Headcount),
            ],
            Family::Classes => &[
                ("区", Field::District),
                ("开班日期", Field::Date),
                ("班次编号", Field::ClassId),
            ],
            Family::Attendance => &[
                ("区", Field::District),
                ("街道", Field::Street),
                ("社区", Field::Community),
                ("培训日期", Field::Date),
                ("班次编号", Field::ClassId),
                ("人员编号", Field::StaffId),
            ],
            Family::Ratings => &[
                ("区", Field::District),
                ("街道", Field::Street),
                ("评定日期", Field::Date),
                ("星级", Field::Stars),
                ("是否示范点", Field::Demonstration),
            ],
            Family::Appeals => &[
                ("区", Field::District),
                ("街道", Field::Street),
                ("社区", Field::Community),
                ("办理日期", Field::Date),
                ("诉求编号", Field::AppealId),
                ("办理环节", Field::Stage),
                ("经度", Field::Lon),
                ("纬度", Field::Lat),
            ],
            Family::Veterans => &[
                ("区", Field::District),
                ("街道", Field::Street),
                ("社区", Field::Community),
                ("登记日期", Field::Date),
                ("身份证号", Field::PersonId),
            ],
            Family::Archives => &[
                ("区", Field::District),
                ("街道", Field::Street),
                ("社区", Field::Community),
                ("建档日期", Field::Date),
                ("身份证号", Field::PersonId),
            ],
            // The simulator writes the built-in ledgers only.
            Family::Defined { .. } => &[],
        }
    }

    /// The record kind of a row (appeals: by stage).
    /// Every kind the family's rows may be.
    pub fn kinds(self) -> Vec<Kind> {
        match self {
            Family::Appeals => vec![
                Kind::APPEAL_RECEIVED,
                Kind::APPEAL_ACCEPTED,
                Kind::APPEAL_CLOSED,
            ],
            other => other.kind(None).into_iter().collect(),
        }
    }

    pub fn kind(self, stage: Option<&str>) -> Option<Kind> {
        Some(match self {
            Family::Staffing => Kind::STAFFING_REPORTED,
            Family::Hires => Kind::STAFF_HIRED,
            Family::Headcount => Kind::STAFF_HEADCOUNT,
            Family::Classes => Kind::TRAINING_CLASS_HELD,
            Family::Attendance => Kind::TRAINING_ATTENDED,
            Family::Ratings => Kind::STATION_RATED,
            Family::Veterans => Kind::VETERAN_REGISTERED,
            Family::Archives => Kind::ARCHIVE_COMPLETED,
            Family::Defined { kind, .. } => kind,
            Family::Appeals => match stage? {
                "登记" | "收到" | "受理前" | "received" => Kind::APPEAL_RECEIVED,
                "受理" | "accepted" => Kind::APPEAL_ACCEPTED,
                "办结" | "结案" | "closed" => Kind::APPEAL_CLOSED,
                _ => return None,
            },
        })
    }

    /// Which ledger a file is, from the fields its headers name (and, for the two families
    /// that share their fields, from the date header).
    pub fn detect(fields: &[Field], headers: &[String], kinds: &Kinds) -> Option<Family> {
        Family::detect_builtin(fields, headers).or_else(|| {
            // A kind known from its file: every one of its fields has a column (the kind with
            // the most fields wins; kinds without fields are named explicitly).
            let keys: Vec<&str> = fields.iter().map(|f| f.key()).collect();
            let mut fitting: Vec<&KindDef> = kinds
                .all()
                .filter(|d| Family::builtin_of(d.kind).is_none() && !d.fields.is_empty())
                .filter(|d| d.fields.iter().all(|f| keys.contains(&f.name.as_str())))
                .collect();
            fitting.sort_by_key(|d| std::cmp::Reverse(d.fields.len()));
            match fitting.as_slice() {
                [one] => Some(Family::defined(one)),
                [a, b, ..] if a.fields.len() > b.fields.len() => Some(Family::defined(a)),
                _ => None,
            }
        })
    }

    fn detect_builtin(fields: &[Field], headers: &[String]) -> Option<Family> {
        let has = |f: Field| fields.contains(&f);
        let header = |h: &str| headers.iter().any(|x| x.contains(h));
        if has(Field::ApprovedPosts) {
            Some(Family::Staffing)
        } else if has(Field::Veteran) {
            Some(Family::Hires)
        } else if has(Field::Headcount) {
            Some(Family::Headcount)
        } else if has(Field::Stars) {
            Some(Family::Ratings)
        } else if has(Field::AppealId) {
            Some(Family::Appeals)
        } else if has(Field::ClassId) {
            Some(if has(Field::StaffId) {
                Family::Attendance
            } else {
                Family::Classes
            })
        } else if has(Field::PersonId) {
            if header("建档") {
                Some(Family::Archives)
            } else if header("登记") {
                Some(Family::Veterans)
            } else {
                None
            }
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_recognised_through_spaces_and_full_width_forms() {
        assert_eq!(field_of_header(" 入职日期 "), Some(Field::Date));
        assert_eq!(field_of_header("身份证号码"), Some(Field::PersonId));
        assert_eq!(field_of_header("备注"), None);
    }

    #[test]
    fn every_simulated_ledger_is_recognised_by_its_headers() {
        for family in Family::ALL {
            let fields: Vec<Field> = family.columns().iter().map(|(_, f)| *f).collect();
            let headers: Vec<String> = family
                .columns()
                .iter()
                .map(|(h, _)| h.to_string())
                .collect();
            assert_eq!(
                Family::detect(&fields, &headers, &Kinds::shipped()),
                Some(family),
                "{family:?}"
            );
            for (h, f) in family.columns() {
                assert_eq!(field_of_header(h), Some(*f), "{h}");
            }
        }
    }

    #[test]
    fn a_kind_known_from_its_file_has_a_ledger_found_by_its_chinese_columns() {
        let kinds = Kinds::shipped();
        let headers: Vec<String> = [
            "区",
            "街道",
            "社区",
            "评估日期",
            "有人员",
            "有条件",
            "有能力",
            "有任务",
            "有台账",
        ]
        .iter()
        .map(|h| h.to_string())
        .collect();
        let fields: Vec<Field> = headers
            .iter()
            .filter_map(|h| field_of_header_with(h, &kinds))
            .collect();
        assert!(
            fields.contains(&Field::Date),
            "评估日期 is the date: {fields:?}"
        );
        assert!(fields.contains(&Field::Data("has_ledgers", FieldType::Flag)));
        // An alias from the definition file names the same field.
        assert_eq!(
            field_of_header_with(" 台账是否规范 ", &kinds),
            Some(Field::Data("has_ledgers", FieldType::Flag))
        );
        let family = Family::detect(&fields, &headers, &kinds);
        assert_eq!(
            family.map(|f| f.name()),
            Some("station.five_haves_assessed")
        );
        assert_eq!(family.map(|f| f.title()), Some("“五有”评估台账"));
        // A kind without fields is named: by its name or its ledger's title.
        assert_eq!(
            Family::parse("业务会台账", &kinds).map(|f| f.name()),
            Some("meeting.business_held")
        );
        // A kind a built-in ledger keeps is that ledger, not one of its own.
        assert_eq!(Family::parse("staff.hired", &kinds), None);
        assert_eq!(Family::parse("hires", &kinds), Some(Family::Hires));
    }
}
