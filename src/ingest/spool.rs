//! The on-disk format of the durable log: segment files `seg-<first seq>.log` of frames
//! `[u32 length][u32 crc32][postcard-encoded EventRow]`, and the writer's checkpoint file.
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

pub fn encode_frame(row: &EventRow, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    // `to_extend`, not `to_io`: io::Write made a memcpy call of every single byte postcard
    // writes. The bytes are the same.
    *buf = postcard::to_extend(row, std::mem::take(buf)).expect("an EventRow always serialises");
    let payload = &buf[start + 8..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
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
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        payload.resize(len, 0);
        if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        match postcard::from_bytes::<EventRow>(&payload) {
            Ok(row) => rows.push(row),
            Err(_) => break,
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

    /// Up to `max` rows with `next_seq <= seq < to`. Every frame below `to` is complete on disk
    /// (the appender fsyncs before it publishes a seq), so no torn frame is ever met here.
    pub fn read(&mut self, to: u64, max: usize) -> std::io::Result<Vec<EventRow>> {
        let mut out = Vec::new();
        let mut header = [0u8; 8];
        let mut payload = Vec::new();
        while out.len() < max && self.next_seq < to {
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
            let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
            payload.resize(len, 0);
            reader.read_exact(&mut payload)?;
            let row: EventRow = postcard::from_bytes(&payload)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if row.seq >= self.next_seq {
                self.next_seq = row.seq + 1;
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Positions the reader at `seq`: ahead by skipping, back by reopening.
    pub fn seek(&mut self, seq: u64) {
        if seq < self.next_seq {
            self.current = None;
        }
        self.next_seq = seq;
    }
}
