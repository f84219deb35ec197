//! The on-disk format of the durable log: segment files `seg-<first seq>.log` of frames
//! `[u32 length][u32 crc32][JSON EventRow]`, and the writer's checkpoint file.
//!
//! A frame is durable once the appender's fdatasync returns. A crash can leave a torn frame at
//! the end of the last segment; it was never acknowledged, so recovery cuts it off.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::domain::record::EventRow;

pub const CHECKPOINT_FILE: &str = "checkpoint";

pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("seg-{first_seq:020}.log"))
}

/// Segment files with their first seq, oldest first.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(num) = name.strip_prefix("seg-").and_then(|n| n.strip_suffix(".log")) {
            if let Ok(first) = num.parse() {
                out.push((first, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn encode_frame(row: &EventRow, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    serde_json::to_writer(&mut *buf, row).expect("an EventRow always serialises");
    let payload = &buf[start + 8..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads every whole, intact frame of a segment; returns the rows and the byte length of the
/// intact prefix (anything after it is a torn or corrupt tail).
pub fn read_segment(path: &Path) -> std::io::Result<(Vec<EventRow>, u64)> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut rows = Vec::new();
    let mut good: u64 = 0;
    let mut header = [0u8; 8];
    let mut payload = Vec::new();
    loop {
        if reader.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        payload.resize(len, 0);
        if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        match serde_json::from_slice::<EventRow>(&payload) {
            Ok(row) => rows.push(row),
            Err(_) => break,
        }
        good += 8 + len as u64;
    }
    Ok((rows, good))
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
    let f = OpenOptions::new().create(true).write(true).truncate(false).open(path)?;
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

/// Rows with `from <= seq < to`, read back from the segments (the writer's catch-up path).
pub fn read_range(dir: &Path, from: u64, to: u64) -> std::io::Result<Vec<EventRow>> {
    let segments = list_segments(dir)?;
    let mut out = Vec::new();
    for (i, (first, path)) in segments.iter().enumerate() {
        let next_first = segments.get(i + 1).map(|s| s.0).unwrap_or(u64::MAX);
        if next_first <= from || *first >= to {
            continue;
        }
        let (rows, _) = read_segment(path)?;
        out.extend(rows.into_iter().filter(|r| r.seq >= from && r.seq < to));
    }
    Ok(out)
}
