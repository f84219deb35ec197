//! `events` rows in ClickHouse's RowBinary format, encoded and decoded by hand.
//!
//! The durable log keeps each record in this form, and the writer sends the logged bytes to
//! ClickHouse as they are: one encoding per record instead of two (the log's own, then the
//! insert's). Copying a record's bytes from the log's buffer also reads one contiguous run of
//! memory, where serialising the row read a dozen strings from all over the heap. The format
//! is ClickHouse's: fixed-width little-endian numbers, LEB128 lengths before strings and
//! arrays, and a leading null byte (1 = NULL) for `Nullable`.

use crate::domain::record::EventRow;

/// The columns in the order [`encode_event`] writes them.
pub const EVENTS_COLUMNS: &str =
    "seq, id, kind, org, district, at, received_at, source, lon, lat, subject, num_keys, num_values, data, \
     version, sign, cancels, actor, reason";

/// The statement the encoded rows follow.
pub fn events_insert(table: &str) -> String {
    format!("INSERT INTO {table} ({EVENTS_COLUMNS}) FORMAT RowBinary")
}

/// Appends the row's RowBinary encoding.
pub fn encode_event(row: &EventRow, out: &mut Vec<u8>) {
    // One reservation for the whole row, so that each piece below is a plain copy.
    let strings = row.id.len()
        + row.kind.len()
        + row.org.len()
        + row.district.len()
        + row.source.len()
        + row.subject.len()
        + row.data.len()
        + row.actor.len()
        + row.reason.len()
        + row.num_keys.iter().map(|k| k.len() + 2).sum::<usize>();
    out.reserve(strings + 8 * row.num_values.len() + 96);
    out.extend_from_slice(&row.seq.to_le_bytes());
    put_str(out, &row.id);
    put_str(out, &row.kind);
    put_str(out, &row.org);
    put_str(out, &row.district);
    out.extend_from_slice(&row.at.to_le_bytes());
    out.extend_from_slice(&row.received_at.to_le_bytes());
    put_str(out, &row.source);
    put_nullable_f64(out, row.lon);
    put_nullable_f64(out, row.lat);
    put_str(out, &row.subject);
    put_len(out, row.num_keys.len());
    for key in &row.num_keys {
        put_str(out, key);
    }
    put_len(out, row.num_values.len());
    for value in &row.num_values {
        out.extend_from_slice(&value.to_le_bytes());
    }
    put_str(out, &row.data);
    out.extend_from_slice(&row.version.to_le_bytes());
    out.extend_from_slice(&row.sign.to_le_bytes());
    out.extend_from_slice(&row.cancels.to_le_bytes());
    put_str(out, &row.actor);
    put_str(out, &row.reason);
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_nullable_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(v) => {
            out.push(0);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.push(1),
    }
}

/// The row whose encoding is exactly `bytes`; `None` when they are not one whole row. A row
/// encoded before corrections existed ends at `data`: it is a first version.
pub fn decode_event(bytes: &[u8]) -> Option<EventRow> {
    let mut r = Reader { bytes };
    let row = EventRow {
        seq: u64::from_le_bytes(r.array()?),
        id: r.string()?,
        kind: r.string()?.into(),
        org: r.string()?,
        district: r.string()?,
        at: u32::from_le_bytes(r.array()?),
        received_at: u32::from_le_bytes(r.array()?),
        source: r.string()?.into(),
        lon: r.nullable_f64()?,
        lat: r.nullable_f64()?,
        subject: r.string()?,
        num_keys: {
            let n = r.len()?;
            let mut keys = Vec::with_capacity(n.min(r.bytes.len()));
            for _ in 0..n {
                keys.push(r.string()?.into());
            }
            keys
        },
        num_values: {
            let n = r.len()?;
            let mut values = Vec::with_capacity(n.min(r.bytes.len() / 8));
            for _ in 0..n {
                values.push(i64::from_le_bytes(r.array()?));
            }
            values
        },
        data: r.string()?,
        version: 1,
        sign: 1,
        cancels: 0,
        actor: String::new(),
        reason: String::new(),
    };
    if r.bytes.is_empty() {
        return Some(row);
    }
    let row = EventRow {
        version: u32::from_le_bytes(r.array()?),
        sign: i8::from_le_bytes(r.array()?),
        cancels: u64::from_le_bytes(r.array()?),
        actor: r.string()?,
        reason: r.string()?,
        ..row
    };
    r.bytes.is_empty().then_some(row)
}

/// What ordering rows by the `events` key needs of an encoded row, read without decoding it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyOf<'a> {
    pub seq: u64,
    pub kind: &'a [u8],
    pub org: &'a [u8],
    pub at: u32,
}

/// The key fields of an encoded row; `None` when the bytes are not a row's start.
pub fn key_of(bytes: &[u8]) -> Option<KeyOf<'_>> {
    let mut r = Reader { bytes };
    let seq = u64::from_le_bytes(r.array()?);
    r.field()?; // id
    let kind = r.field()?;
    let org = r.field()?;
    r.field()?; // district
    let at = u32::from_le_bytes(r.array()?);
    Some(KeyOf { seq, kind, org, at })
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A string's bytes, unchecked.
    fn field(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn len(&mut self) -> Option<usize> {
        let mut n: usize = 0;
        for shift in (0..64).step_by(7) {
            let [b] = self.array::<1>()?;
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn string(&mut self) -> Option<String> {
        let n = self.len()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    fn nullable_f64(&mut self) -> Option<Option<f64>> {
        match self.array::<1>()? {
            [0] => Some(Some(f64::from_le_bytes(self.array()?))),
            [1] => Some(None),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::Kind;

    fn sample() -> EventRow {
        let mut row = EventRow::blank(
            "r-1".into(),
            Kind::APPEAL_RECEIVED,
            "440303001002".into(),
            "440303".into(),
            1_700_000_000,
            1_700_000_100,
            "test",
        );
        row.seq = 42;
        row.lon = Some(114.05);
        row.subject = "A-7".into();
        row.num_keys = vec!["people".into(), "urgent".into()];
        row.num_values = vec![3, -1];
        // Longer than 127 bytes, so that its length takes two LEB128 bytes.
        row.data = format!("{{\"note\":\"{}\"}}", "退役军人".repeat(20));
        row
    }

    #[test]
    fn a_row_decodes_to_itself() {
        for row in [
            sample(),
            EventRow::blank(
                String::new(),
                Kind::STAFF_HIRED,
                String::new(),
                String::new(),
                0,
                u32::MAX,
                "",
            ),
        ] {
            let mut bytes = Vec::new();
            encode_event(&row, &mut bytes);
            assert_eq!(decode_event(&bytes), Some(row));
        }
    }

    #[test]
    fn the_encoding_is_clickhouse_rowbinary() {
        let mut bytes = Vec::new();
        encode_event(&sample(), &mut bytes);
        let mut expected = 42u64.to_le_bytes().to_vec();
        expected.extend([3, b'r', b'-', b'1']);
        assert_eq!(&bytes[..12], &expected[..]);
        // From the end: the revision (version 4, sign 1, cancels 8, two empty strings 1 + 1),
        // data (2 + n), num_values (1 + 2 × 8), num_keys (1 + 7 + 7), subject (1 + 3), then
        // lat NULL (1) after lon present (0, then the value).
        let n = sample().data.len();
        let revision = 15;
        assert_eq!(&bytes[bytes.len() - revision..][..5], &[1, 0, 0, 0, 1]);
        let bytes = &bytes[..bytes.len() - revision];
        let lat = bytes.len() - (n + 2) - 17 - 15 - 4 - 1;
        assert_eq!(bytes[lat], 1);
        assert_eq!(bytes[lat - 9], 0);
        assert_eq!(&bytes[lat - 8..lat], &114.05f64.to_le_bytes());
        // The data's length as two LEB128 bytes.
        let tail = &bytes[bytes.len() - n - 2..];
        assert_eq!(tail[0], (n as u8 & 0x7f) | 0x80);
        assert_eq!(tail[1], (n >> 7) as u8);
    }

    #[test]
    fn a_cancelling_row_decodes_to_itself_and_an_older_row_as_a_first_version() {
        let mut stored = sample();
        stored.version = 3;
        let cancelling = stored.cancelling("福田区 文员", "实有人数录错", 1_700_000_900);
        let mut bytes = Vec::new();
        encode_event(&cancelling, &mut bytes);
        let back = decode_event(&bytes).expect("a row");
        assert_eq!(back, cancelling);
        assert_eq!((back.sign, back.cancels, back.version), (-1, 42, 3));
        // A row logged before corrections existed ends at `data`.
        let mut old = Vec::new();
        encode_event(&sample(), &mut old);
        old.truncate(old.len() - 15);
        assert_eq!(decode_event(&old), Some(sample()));
    }

    #[test]
    fn the_key_is_read_without_decoding() {
        let row = sample();
        let mut bytes = Vec::new();
        encode_event(&row, &mut bytes);
        let key = key_of(&bytes).expect("a row");
        assert_eq!(
            key,
            KeyOf {
                seq: row.seq,
                kind: row.kind.as_bytes(),
                org: row.org.as_bytes(),
                at: row.at
            }
        );
        assert_eq!(key_of(&bytes[..20]), None);
    }

    #[test]
    fn cut_or_padded_bytes_are_not_a_row() {
        let mut bytes = Vec::new();
        encode_event(&sample(), &mut bytes);
        for cut in [0, 1, 8, 20, bytes.len() - 1] {
            assert_eq!(decode_event(&bytes[..cut]), None, "cut at {cut}");
        }
        bytes.push(0);
        assert_eq!(decode_event(&bytes), None);
    }
}
