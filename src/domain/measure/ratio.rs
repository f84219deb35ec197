//! `ratio`: two measures, `num ÷ den` (hires who are veterans ÷ all hires, trained staff ÷
//! headcount). Each side is a count, sum, distinct, latest, nodes or matched measure, with a
//! leaf of its own; a ratio keeps no state.
//!
//! Reading: the numerator's amount over the denominator's; no data until the denominator has.

use serde::Deserialize;

use super::{Measure, Spec as MeasureSpec};
use crate::domain::kinds::Kinds;
use crate::domain::metric::Reading;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    num: Box<MeasureSpec>,
    den: Box<MeasureSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    pub num: Box<Measure>,
    pub den: Box<Measure>,
}

impl Ratio {
    pub fn parse(spec: &Spec, kinds: &Kinds) -> Result<Self, String> {
        let side = |s: &MeasureSpec, name: &str| -> Result<Measure, String> {
            let m = Measure::parse(s, kinds).map_err(|e| format!("{name}: {e}"))?;
            if m.side_of_a_ratio() {
                Ok(m)
            } else {
                Err(format!(
                    "{name}: a ratio's side is count, sum, distinct, latest, nodes or matched, not {}",
                    m.type_name()
                ))
            }
        };
        Ok(Ratio {
            num: Box::new(side(&spec.num, "num")?),
            den: Box::new(side(&spec.den, "den")?),
        })
    }

    /// From the values of the two sides.
    pub fn reading(&self, num: &[i64], den: &[i64]) -> Reading {
        let has_data = self.den.side_has_data(den);
        Reading {
            num: self.num.side_amount(num),
            den: Some(if has_data {
                self.den.side_amount(den)
            } else {
                0
            }),
            has_data,
            ..Reading::default()
        }
    }
}
