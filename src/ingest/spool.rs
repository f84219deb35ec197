//! The on-disk format of the durable log: segment files `seg-<first seq>.log` of frames
//! `[u32 length | format bit][u32 checksum][payload]`, and the writer's checkpoint file.
//!
//! The payload is the record's RowBinary row for `events` (see [`rowbinary`]), which the writer
//! sends to ClickHouse as it is, and its checksum the low half of its XXH3-64. The format bit
//! (the length word's top bit) marks both: frames written before it hold postcard-encoded rows
//! under a CRC-32, and are still read. (CRC-32 took a twentieth of the server's ingest CPU on
//! rows of a few hundred bytes; XXH3 is several times faster there and finds a torn or
//! damaged frame as surely.) A second bit says the row carries the columns of corrections
//! (version, sign, cancels, actor, reason); a RowBinary frame without it was written before
//! they existed, and its row is a first version, encoded again before it is sent.
//!
//! A frame is durable once the appender's fdatasync returns. A crash can leave a torn frame at
//! the end of the last segment; it was never acknowledged, so recovery cuts it off.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::domain::record::EventRow;
use crate::store::rowbinary;

/// Set in a frame's length word when its payload is a RowBinary row.
const ROWBINARY_FRAME: u32 = 1 << 31;
/// Set besides [`ROWBINARY_FRAME`] when the row carries the columns of corrections.
const REVISED_FRAME: u32 = 1 << 30;

/// What a frame's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    /// A postcard-encoded row (the first versions), under a CRC-32.
    Postcard,
    /// A RowBinary row ending at `data`.
    RowBinaryBeforeCorrections,
    /// A RowBinary row with every column of `events` today.
    RowBinary,
}

impl Payload {
    fn is_rowbinary(self) -> bool {
        self != Payload::Postcard
    }
}

/// A row as the first versions wrote it with postcard (not self-describing: its fields are
/// exactly these, in this order).
#[derive(serde::Serialize, serde::Deserialize)]
struct PostcardRow {
    seq: u64,
    id: String,
    kind: String,
    org: String,
    district: String,
    at: u32,
    received_at: u32,
    source: String,
    lon: Option<f64>,
    lat: Option<f64>,
    subject: String,
    num_keys: Vec<String>,
    num_values: Vec<i64>,
    data: String,
}

impl From<PostcardRow> for EventRow {
    fn from(r: PostcardRow) -> Self {
        let mut row = EventRow::blank(
            r.id,
            crate::domain::record::Kind::STAFF_HIRED,
            r.org,
            r.district,
            r.at,
            r.received_at,
            "",
        );
        row.seq = r.seq;
        row.kind = r.kind.into();
        row.source = r.source.into();
        row.lon = r.lon;
        row.lat = r.lat;
        row.subject = r.subject;
        row.num_keys = r.num_keys.into_iter().map(Into::into).collect();
        row.num_values = r.num_values;
        row.data = r.data;
        row
    }
}

/// A run of frames and where each record's RowBinary encoding lies in it.
#[derive(Debug, Default)]
pub struct Frames {
    bytes: Vec<u8>,
    spans: Vec<Range<usize>>,
}

impl Frames {
    pub fn new(bytes: Vec<u8>, spans: Vec<Range<usize>>) -> Self {
        Frames { bytes, spans }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Record `i`'s RowBinary encoding.
    pub fn payload(&self, i: usize) -> &[u8] {
        &self.bytes[self.spans[i].clone()]
    }
}

/// Records as the log hands them on: the rows, and, where the log's frames were kept with
/// them, the frames, from which the writer copies each record's RowBinary into its insert
/// instead of encoding the row again. Held apart, so that the writer can keep the frames
/// while the rows are freed as soon as the live figures have them.
#[derive(Debug, Default)]
pub struct LogBatch {
    rows: Vec<EventRow>,
    frames: Option<Arc<Frames>>,
}

impl LogBatch {
    /// Rows without their encoding (read back from ClickHouse, or seq-numbered after decoding).
    pub fn from_rows(rows: Vec<EventRow>) -> Self {
        LogBatch { rows, frames: None }
    }

    /// Rows with their frames, one each, in the same order.
    pub fn with_frames(rows: Vec<EventRow>, frames: Frames) -> Self {
        debug_assert_eq!(rows.len(), frames.len());
        LogBatch {
            rows,
            frames: Some(Arc::new(frames)),
        }
    }

    pub fn frames(&self) -> Option<&Arc<Frames>> {
        self.frames.as_ref()
    }
}

impl Deref for LogBatch {
    type Target = [EventRow];

    fn deref(&self) -> &[EventRow] {
        &self.rows
    }
}

pub const CHECKPOINT_FILE: &str = "checkpoint";

pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("seg-{first_seq:020}.log"))
}

/// Segment files with their first seq, oldest first.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(num) = name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".log"))
        {
            if let Ok(first) = num.parse() {
                out.push((first, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Appends the row's frame to `buf`; answers where its payload (the row's RowBinary
/// encoding) lies.
pub fn encode_frame(row: &EventRow, buf: &mut Vec<u8>) -> Range<usize> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    rowbinary::encode_event(row, buf);
    let payload = start + 8..buf.len();
    let len = payload.len() as u32;
    let sum = checksum(&buf[payload.clone()], true);
    buf[start..start + 4].copy_from_slice(&(len | ROWBINARY_FRAME | REVISED_FRAME).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
    payload
}

/// A payload's checksum: the low half of XXH3-64 in RowBinary frames, CRC-32 before them.
fn checksum(payload: &[u8], is_rowbinary: bool) -> u32 {
    if is_rowbinary {
        xxhash_rust::xxh3::xxh3_64(payload) as u32
    } else {
        crc32fast::hash(payload)
    }
}

/// A frame's header: the payload's length, what it is, and its checksum.
fn parse_header(header: &[u8; 8]) -> (usize, Payload, u32) {
    let word = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let payload = match (word & ROWBINARY_FRAME != 0, word & REVISED_FRAME != 0) {
        (false, _) => Payload::Postcard,
        (true, false) => Payload::RowBinaryBeforeCorrections,
        (true, true) => Payload::RowBinary,
    };
    let len = if payload == Payload::Postcard {
        word & !ROWBINARY_FRAME
    } else {
        word & !(ROWBINARY_FRAME | REVISED_FRAME)
    };
    (len as usize, payload, sum)
}

fn decode_payload(payload: &[u8], format: Payload) -> Option<EventRow> {
    match format {
        Payload::Postcard => postcard::from_bytes::<PostcardRow>(payload)
            .ok()
            .map(Into::into),
        _ => rowbinary::decode_event(payload),
    }
}

/// Reads every whole, intact frame of a segment; returns the rows and the byte length of the
/// intact prefix (anything after it is a torn or corrupt tail).
pub fn read_segment(path: &Path) -> std::io::Result<(Vec<EventRow>, u64)> {
    Ok(read_frames(BufReader::with_capacity(
        1 << 20,
        File::open(path)?,
    )))
}

/// The rows of a buffer of frames (a broker message) when every frame is whole and intact.
pub fn decode_frames(bytes: &[u8]) -> Option<Vec<EventRow>> {
    let (rows, good) = read_frames(bytes);
    (good == bytes.len() as u64).then_some(rows)
}

fn read_frames(mut reader: impl Read) -> (Vec<EventRow>, u64) {
    let mut rows = Vec::new();
    let mut good: u64 = 0;
    let mut header = [0u8; 8];
    let mut payload = Vec::new();
    loop {
        if reader.read_exact(&mut header).is_err() {
            break;
        }
        let (len, format, sum) = parse_header(&header);
        payload.resize(len, 0);
        if reader.read_exact(&mut payload).is_err()
            || checksum(&payload, format.is_rowbinary()) != sum
        {
            break;
        }
        match decode_payload(&payload, format) {
            Some(row) => rows.push(row),
            None => break,
        }
        good += 8 + len as u64;
    }
    (rows, good)
}

pub fn read_checkpoint(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(CHECKPOINT_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Replaces the checkpoint atomically (write, fsync, rename).
pub fn write_checkpoint(dir: &Path, seq: u64) -> std::io::Result<()> {
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(seq.to_string().as_bytes())?;
    f.sync_data()?;
    std::fs::rename(&tmp, dir.join(CHECKPOINT_FILE))?;
    File::open(dir)?.sync_all()
}

/// Opens a segment for appending, cutting it to `len` bytes first.
pub fn open_for_append(path: &Path, len: u64) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)?;
    f.set_len(len)?;
    let mut f = OpenOptions::new().append(true).open(path)?;
    f.flush()?;
    Ok(f)
}

/// Deletes every segment whose records all lie at or below `checkpoint`, except the newest
/// (the one being appended to). Returns the bytes freed.
pub fn delete_consumed(dir: &Path, checkpoint: u64) -> std::io::Result<u64> {
    let segments = list_segments(dir)?;
    let mut freed = 0;
    for pair in segments.windows(2) {
        let (_, ref path) = pair[0];
        let (next_first, _) = pair[1];
        if next_first <= checkpoint + 1 {
            freed += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(path)?;
        }
    }
    Ok(freed)
}

/// Reads the log forward from a seq, remembering where it is: each frame is read once.
pub struct LogReader {
    dir: PathBuf,
    next_seq: u64,
    /// (first seq of the segment, reader positioned at a frame boundary)
    current: Option<(u64, BufReader<File>)>,
}

impl LogReader {
    pub fn new(dir: &Path, next_seq: u64) -> Self {
        LogReader {
            dir: dir.to_path_buf(),
            next_seq,
            current: None,
        }
    }

    /// Up to `max` rows with `next_seq <= seq < to`, with their encodings. Every frame below
    /// `to` is complete on disk (the appender fsyncs before it publishes a seq), so no torn
    /// frame is ever met here.
    pub fn read(&mut self, to: u64, max: usize) -> std::io::Result<LogBatch> {
        let mut rows = Vec::new();
        let mut frames = Vec::new();
        let mut encoded = Vec::new();
        let mut header = [0u8; 8];
        let mut payload = Vec::new();
        while rows.len() < max && self.next_seq < to {
            if self.current.is_none() {
                let segments = list_segments(&self.dir)?;
                let Some((first, path)) = segments
                    .iter()
                    .rev()
                    .find(|(first, _)| *first <= self.next_seq)
                else {
                    break;
                };
                self.current = Some((*first, BufReader::with_capacity(1 << 20, File::open(path)?)));
            }
            let (first, reader) = self.current.as_mut().expect("opened above");
            if reader.read_exact(&mut header).is_err() {
                // End of a sealed segment: move on to the next one.
                let first = *first;
                let next = list_segments(&self.dir)?
                    .into_iter()
                    .find(|(f, _)| *f > first);
                match next {
                    Some((f, path)) => {
                        self.current =
                            Some((f, BufReader::with_capacity(1 << 20, File::open(path)?)))
                    }
                    None => {
                        self.current = None;
                        break;
                    }
                }
                continue;
            }
            let (len, format, _) = parse_header(&header);
            payload.resize(len, 0);
            reader.read_exact(&mut payload)?;
            let row = decode_payload(&payload, format).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a log frame does not decode",
                )
            })?;
            if row.seq >= self.next_seq {
                self.next_seq = row.seq + 1;
                let start = frames.len();
                if format == Payload::RowBinary {
                    frames.extend_from_slice(&payload);
                } else {
                    rowbinary::encode_event(&row, &mut frames);
                }
                encoded.push(start..frames.len());
                rows.push(row);
            }
        }
        Ok(LogBatch::with_frames(rows, Frames::new(frames, encoded)))
    }

    /// Positions the reader at `seq`: ahead by skipping, back by reopening.
    pub fn seek(&mut self, seq: u64) {
        if seq < self.next_seq {
            self.current = None;
        }
        self.next_seq = seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::Kind;

    fn row(seq: u64) -> EventRow {
        let mut row = EventRow::blank(
            format!("r-{seq}"),
            Kind::TRAINING_CLASS_HELD,
            "440303001002".into(),
            "440303".into(),
            1_700_000_000 + seq as u32,
            1_700_000_000,
            "test",
        );
        row.seq = seq;
        row.num_keys = vec!["people".into()];
        row.num_values = vec![seq as i64];
        row.data = format!("{{\"people\":{seq}}}");
        row
    }

    /// A frame as versions before the RowBinary payload wrote it.
    fn postcard_frame(row: &EventRow, buf: &mut Vec<u8>) {
        let old = PostcardRow {
            seq: row.seq,
            id: row.id.clone(),
            kind: row.kind.to_string(),
            org: row.org.clone(),
            district: row.district.clone(),
            at: row.at,
            received_at: row.received_at,
            source: row.source.to_string(),
            lon: row.lon,
            lat: row.lat,
            subject: row.subject.clone(),
            num_keys: row.num_keys.iter().map(|k| k.to_string()).collect(),
            num_values: row.num_values.clone(),
            data: row.data.clone(),
        };
        let payload = postcard::to_stdvec(&old).expect("serialises");
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        buf.extend_from_slice(&payload);
    }

    /// A frame as versions before corrections wrote it: RowBinary ending at `data`.
    fn pre_corrections_frame(row: &EventRow, buf: &mut Vec<u8>) {
        let mut payload = Vec::new();
        rowbinary::encode_event(row, &mut payload);
        payload.truncate(payload.len() - 15);
        buf.extend_from_slice(&(payload.len() as u32 | ROWBINARY_FRAME).to_le_bytes());
        buf.extend_from_slice(&(xxhash_rust::xxh3::xxh3_64(&payload) as u32).to_le_bytes());
        buf.extend_from_slice(&payload);
    }

    #[test]
    fn a_spool_written_by_an_earlier_version_is_still_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut bytes = Vec::new();
        postcard_frame(&row(1), &mut bytes);
        postcard_frame(&row(2), &mut bytes);
        pre_corrections_frame(&row(3), &mut bytes);
        encode_frame(&row(4), &mut bytes);
        let path = segment_path(dir.path(), 1);
        std::fs::write(&path, &bytes).expect("write");

        let (rows, good) = read_segment(&path).expect("read");
        assert_eq!(rows, vec![row(1), row(2), row(3), row(4)]);
        assert_eq!(good, bytes.len() as u64);

        // The writer reading it back gets every row's RowBinary, old frames re-encoded.
        let batch = LogReader::new(dir.path(), 2).read(10, 100).expect("read");
        assert_eq!(&batch[..], &[row(2), row(3), row(4)]);
        let frames = batch.frames().expect("frames kept");
        for (i, r) in batch.iter().enumerate() {
            let mut expected = Vec::new();
            rowbinary::encode_event(r, &mut expected);
            assert_eq!(frames.payload(i), &expected[..]);
        }
    }

    #[test]
    fn a_torn_or_corrupt_frame_ends_the_intact_prefix() {
        let mut bytes = Vec::new();
        encode_frame(&row(1), &mut bytes);
        let whole = bytes.len();
        encode_frame(&row(2), &mut bytes);
        assert_eq!(decode_frames(&bytes), Some(vec![row(1), row(2)]));

        let (rows, good) = read_frames(&bytes[..bytes.len() - 3]);
        assert_eq!((rows, good), (vec![row(1)], whole as u64));

        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert_eq!(read_frames(&corrupt[..]).1, whole as u64);
        assert_eq!(decode_frames(&corrupt), None);
    }

    #[test]
    fn a_frame_payload_is_the_rows_rowbinary() {
        let mut bytes = vec![7u8; 5];
        let payload = encode_frame(&row(9), &mut bytes);
        let mut expected = Vec::new();
        rowbinary::encode_event(&row(9), &mut expected);
        assert_eq!(&bytes[payload], &expected[..]);
    }
}
