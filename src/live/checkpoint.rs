//! Checkpoints of the live state: the aggregates and the ids seen at a known record position,
//! in one file, so that a start loads the newest and replays only the records after it.
//!
//! A file holds: a header (the build of vscc, the definitions and the org tree it was written
//! under, the position — every API record up to `upto_seq` and the imports listed — and the
//! names of its parts), the parts (the recent past, then each leaf of the aggregates), and the
//! ids seen (the exactly-once set's slots as they are). Every section carries its length and
//! a CRC-32, and the file ends with a closing mark: a file cut short or damaged anywhere is
//! refused, and so is one written by another build or for other definitions or another tree.
//! A refused checkpoint costs a full rebuild, never a wrong figure.
//!
//! Writing goes to a hidden temporary file, synced, then renamed into place (and the folder
//! synced): a crash mid-write leaves the previous checkpoints as they were, and the temporary
//! file is removed at the next write.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::domain::org::OrgTree;

/// `[checkpoint]` in the configuration.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CheckpointSettings {
    pub enabled: bool,
    /// Where checkpoints are written; empty: `checkpoints` in the ingest spool folder.
    pub dir: PathBuf,
    /// A checkpoint this often, when records arrived since the last.
    pub every_secs: u64,
}

impl CheckpointSettings {
    pub fn dir(&self, spool_dir: &Path) -> PathBuf {
        if self.dir.as_os_str().is_empty() {
            spool_dir.join("checkpoints")
        } else {
            self.dir.clone()
        }
    }
}

const MAGIC: &[u8; 16] = b"VSCC checkpoint\n";
const END: &[u8; 16] = b"VSCC checkpoint.";
/// The layout of this file; a change of it is also a change of the build, but says why.
const FORMAT: u32 = 1;
/// Checkpoints kept: the newest, and one before it should the newest be refused.
const KEEP: usize = 2;
/// No section of a sound checkpoint is larger (a damaged length must not allocate wildly).
const MAX_SECTION: u64 = 1 << 40;

/// What a checkpoint must have been written under to be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// This build of vscc (a hash of its executable).
    pub build: u64,
    /// The record kind and metric definitions (`Catalogue::fingerprint`).
    pub definitions: u64,
    /// The org tree (every node's code, level and parent).
    pub tree: u64,
}

impl Identity {
    pub fn of(definitions: u64, tree: &OrgTree) -> Self {
        Identity {
            build: build_id(),
            definitions,
            tree: tree_hash(tree),
        }
    }

    /// Why a checkpoint written under `self` does not fit `want`, if it does not.
    fn mismatch(&self, want: &Identity) -> Option<&'static str> {
        if self.build != want.build {
            Some("it was written by another build of vscc")
        } else if self.definitions != want.definitions {
            Some("it was built under other record kind or metric definitions")
        } else if self.tree != want.tree {
            Some("it was built for another org tree")
        } else {
            None
        }
    }
}

/// Where the live state stands in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// Every API record (log seq) up to this one is in the state, none after it.
    pub upto_seq: u64,
    /// The imports whose records are in the state (all of each).
    pub imports: Vec<u32>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    format: u32,
    identity: Identity,
    position: Position,
    /// The parts' names, in order (the aggregates' `save_parts`).
    parts: Vec<String>,
    /// The ids seen: slots of the set, and how many hold an id.
    id_slots: u64,
    ids: u64,
    written_at: i64,
}

/// A checkpoint read back whole and checked.
pub struct Loaded {
    pub path: PathBuf,
    pub position: Position,
    pub parts: Vec<(String, Vec<u8>)>,
    pub id_slots: Vec<u128>,
    pub ids: u64,
}

impl Loaded {
    /// The parts as the aggregates load them.
    pub fn part_slices(&self) -> Vec<(String, &[u8])> {
        self.parts
            .iter()
            .map(|(name, bytes)| (name.clone(), bytes.as_slice()))
            .collect()
    }
}

/// A hash of this executable: a checkpoint is only as good as the code that wrote it.
pub fn build_id() -> u64 {
    static BUILD: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BUILD.get_or_init(|| {
        // Streamed: the executable is a hundred megabytes, and an allocation that size would
        // stay in the allocator's pool.
        let hash = || -> std::io::Result<u64> {
            let mut file = std::fs::File::open(std::env::current_exe()?)?;
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match file.read(&mut buf)? {
                    0 => return Ok(hasher.digest()),
                    n => hasher.update(&buf[..n]),
                }
            }
        };
        // Unknown: nothing written now is loaded by another start (a random identity).
        hash().unwrap_or_else(|_| rand::random())
    })
}

fn tree_hash(tree: &OrgTree) -> u64 {
    let mut bytes = Vec::with_capacity(tree.len() * 24);
    for (_, n) in tree.nodes() {
        bytes.extend_from_slice(n.code.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(n.level.as_str().as_bytes());
        bytes.extend_from_slice(&n.parent.map_or(u32::MAX, |p| p).to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

fn file_name(upto_seq: u64) -> String {
    format!("checkpoint-{upto_seq:020}.vscc")
}

/// The checkpoints in `dir`, newest (highest position) first.
fn list(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with("checkpoint-") && name.ends_with(".vscc")).then(|| (name, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().rev().map(|(_, p)| p).collect()
}

fn as_bytes(slots: &[u128]) -> &[u8] {
    // SAFETY: u128 has no padding and any bytes are a valid u8; the length is the same memory.
    unsafe { std::slice::from_raw_parts(slots.as_ptr().cast::<u8>(), std::mem::size_of_val(slots)) }
}

fn write_section(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&(bytes.len() as u64).to_le_bytes())?;
    out.write_all(&crc32fast::hash(bytes).to_le_bytes())?;
    out.write_all(bytes)
}

/// Writes a checkpoint of `parts` and the ids seen (`id_slots`, `ids` of them taken) at
/// `position` into `dir`, then removes all but the newest ones. Returns the file and its size.
pub fn write(
    dir: &Path,
    identity: Identity,
    position: &Position,
    parts: &[(&'static str, Vec<u8>)],
    id_slots: &[u128],
    ids: u64,
) -> std::io::Result<(PathBuf, u64)> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)?.filter_map(|e| e.ok()) {
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            // A write that did not finish (the process died): never a checkpoint.
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let header = Header {
        format: FORMAT,
        identity,
        position: position.clone(),
        parts: parts.iter().map(|(name, _)| name.to_string()).collect(),
        id_slots: id_slots.len() as u64,
        ids,
        written_at: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let header = postcard::to_stdvec(&header).map_err(std::io::Error::other)?;
    let path = dir.join(file_name(position.upto_seq));
    let tmp = dir.join(format!(".{}.tmp", file_name(position.upto_seq)));
    let file = std::fs::File::create(&tmp)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(MAGIC)?;
    write_section(&mut out, &header)?;
    for (_, bytes) in parts {
        write_section(&mut out, bytes)?;
    }
    write_section(&mut out, as_bytes(id_slots))?;
    out.write_all(END)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let size = file.metadata()?.len();
    drop(file);
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    for old in list(dir).into_iter().skip(KEEP) {
        let _ = std::fs::remove_file(old);
    }
    Ok((path, size))
}

/// Why a checkpoint file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Stale(&'static str),
    #[error("it is damaged or cut short: {0}")]
    Damaged(String),
    #[error("it cannot be read: {0}")]
    Io(#[from] std::io::Error),
}

fn read_section(input: &mut impl Read, what: &str) -> Result<Vec<u8>, Refused> {
    let mut head = [0u8; 12];
    input
        .read_exact(&mut head)
        .map_err(|_| Refused::Damaged(format!("{what} is missing")))?;
    let len = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
    let crc = u32::from_le_bytes(head[8..].try_into().unwrap_or_default());
    if len > MAX_SECTION {
        return Err(Refused::Damaged(format!("{what} claims {len} bytes")));
    }
    let mut bytes = Vec::new();
    input
        .take(len)
        .read_to_end(&mut bytes)
        .map_err(|e| Refused::Damaged(format!("{what}: {e}")))?;
    if bytes.len() as u64 != len {
        return Err(Refused::Damaged(format!(
            "{what} ends after {} of {len} bytes",
            bytes.len()
        )));
    }
    if crc32fast::hash(&bytes) != crc {
        return Err(Refused::Damaged(format!("{what} fails its checksum")));
    }
    Ok(bytes)
}

/// Reads and checks one checkpoint file.
pub fn read(path: &Path, want: &Identity) -> Result<Loaded, Refused> {
    let mut input = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut magic = [0u8; 16];
    input
        .read_exact(&mut magic)
        .map_err(|_| Refused::Damaged("no header".into()))?;
    if &magic != MAGIC {
        return Err(Refused::Damaged("not a vscc checkpoint".into()));
    }
    let header: Header = postcard::from_bytes(&read_section(&mut input, "the header")?)
        .map_err(|e| Refused::Damaged(format!("the header: {e}")))?;
    if header.format != FORMAT {
        return Err(Refused::Stale("it has another file layout"));
    }
    if let Some(why) = header.identity.mismatch(want) {
        return Err(Refused::Stale(why));
    }
    let mut parts = Vec::with_capacity(header.parts.len());
    for name in header.parts {
        let bytes = read_section(&mut input, &format!("the part {name}"))?;
        parts.push((name, bytes));
    }
    // The ids seen, straight into the slots they are kept in.
    let mut head = [0u8; 12];
    input
        .read_exact(&mut head)
        .map_err(|_| Refused::Damaged("the ids seen are missing".into()))?;
    let len = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
    let crc = u32::from_le_bytes(head[8..].try_into().unwrap_or_default());
    if len != header.id_slots * 16 || !header.id_slots.is_power_of_two() {
        return Err(Refused::Damaged(
            "the ids seen do not match the header".into(),
        ));
    }
    let mut id_slots = vec![0u128; header.id_slots as usize];
    {
        // SAFETY: any bytes are a valid u128; the slice covers exactly the vector's memory.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(id_slots.as_mut_ptr().cast::<u8>(), len as usize)
        };
        input
            .read_exact(bytes)
            .map_err(|_| Refused::Damaged("the ids seen are cut short".into()))?;
        if crc32fast::hash(bytes) != crc {
            return Err(Refused::Damaged("the ids seen fail their checksum".into()));
        }
    }
    let mut end = [0u8; 16];
    input
        .read_exact(&mut end)
        .map_err(|_| Refused::Damaged("the closing mark is missing".into()))?;
    if &end != END {
        return Err(Refused::Damaged("the closing mark is wrong".into()));
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        position: header.position,
        parts,
        id_slots,
        ids: header.ids,
    })
}

/// The newest checkpoint in `dir` that fits `want`; every one refused on the way is logged
/// with the reason (a full rebuild follows when none fits).
pub fn read_newest(dir: &Path, want: &Identity) -> Option<Loaded> {
    for path in list(dir) {
        match read(&path, want) {
            Ok(loaded) => return Some(loaded),
            Err(why) => tracing::warn!(
                path = %path.display(),
                "checkpoint refused: {why}"
            ),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::org::{tree_of, Level};

    fn identity() -> Identity {
        let tree = tree_of(&[("c", Level::City, None), ("d", Level::District, Some("c"))]);
        Identity::of(7, &tree)
    }

    fn written(dir: &Path, upto_seq: u64) -> PathBuf {
        let parts = vec![("recent", vec![1, 2, 3]), ("count", vec![9; 1000])];
        let mut slots = vec![0u128; 64];
        slots[3] = 42;
        let position = Position {
            upto_seq,
            imports: vec![1],
        };
        write(dir, identity(), &position, &parts, &slots, 1)
            .unwrap()
            .0
    }

    #[test]
    fn a_checkpoint_reads_back_as_written_and_only_under_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path(), 10);
        let back = read(&path, &identity()).unwrap();
        assert_eq!(back.position.upto_seq, 10);
        assert_eq!(back.parts[1].1, vec![9; 1000]);
        assert_eq!(back.id_slots[3], 42);
        let other_definitions = Identity {
            definitions: 8,
            ..identity()
        };
        assert!(matches!(
            read(&path, &other_definitions),
            Err(Refused::Stale(_))
        ));
        let other_build = Identity {
            build: identity().build ^ 1,
            ..identity()
        };
        assert!(matches!(read(&path, &other_build), Err(Refused::Stale(_))));
    }

    #[test]
    fn a_damaged_or_cut_checkpoint_is_refused_and_an_older_one_is_used() {
        let dir = tempfile::tempdir().unwrap();
        written(dir.path(), 10);
        let newest = written(dir.path(), 20);
        let bytes = std::fs::read(&newest).unwrap();
        for cut in [10, 40, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&newest, &bytes[..cut]).unwrap();
            assert!(read(&newest, &identity()).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 0x40;
        std::fs::write(&newest, &flipped).unwrap();
        assert!(matches!(
            read(&newest, &identity()),
            Err(Refused::Damaged(_))
        ));
        let used = read_newest(dir.path(), &identity()).unwrap();
        assert_eq!(used.position.upto_seq, 10, "the older one stands in");
        // A temporary file a crash left is never read, and goes at the next write.
        std::fs::write(
            dir.path().join(".checkpoint-00000000000000000030.vscc.tmp"),
            b"x",
        )
        .unwrap();
        assert_eq!(
            read_newest(dir.path(), &identity())
                .unwrap()
                .position
                .upto_seq,
            10
        );
        written(dir.path(), 40);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        assert_eq!(names.len(), KEEP, "{names:?}");
    }
}
