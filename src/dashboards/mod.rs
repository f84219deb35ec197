//! Definitions as files. Screens: `dashboards/*.json`, validated at start-up and reloaded when a
//! file changes (a broken file is reported and its previous version stays in service). Metrics:
//! `dashboards/metrics/*.toml`, read into the catalogue ([`load_catalogue`]).

pub mod switch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::domain::catalogue::{Catalogue, DefinitionError};
use crate::domain::OrgTree;

/// `[catalogue]`: where the record kind and metric definitions are read from.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogueSettings {
    /// One `<kind>.toml` per record kind.
    pub kinds_dir: PathBuf,
    /// One `<metric>.toml` per metric.
    pub metrics_dir: PathBuf,
}

/// One screen: what it shows and where it rotates to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    pub title: String,
    /// `map` (the default: tiles, the map, a league table, trends) or `board` (the plan board:
    /// every metric of the catalogue × the scope and its children, paged every
    /// `map_rotate_seconds`).
    #[serde(default)]
    pub layout: Layout,
    /// An org code, `{root}` for the region's root (Shenzhen's city by default), or
    /// `{district}` for a template filled in by the URL (`?scope=440305`).
    pub scope: String,
    #[serde(default)]
    pub tiles: Vec<String>,
    #[serde(default)]
    pub map_metrics: Vec<String>,
    pub map_rotate_seconds: u64,
    #[serde(default)]
    pub league_metric: String,
    #[serde(default)]
    pub trend_metrics: Vec<String>,
    /// The dashboard to rotate to after `dwell_seconds` (none: stay).
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub dwell_seconds: u64,
}

/// How a screen is laid out.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    #[default]
    Map,
    Board,
}

#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    pub name: String,
    pub dashboard: Dashboard,
    /// Changes whenever the file's content changes; screens reload on a new version.
    pub version: String,
    /// The last error reading the file, if its newest content was refused.
    pub error: Option<String>,
}

impl Dashboard {
    pub fn validate(&self, tree: &OrgTree, catalogue: &Catalogue) -> Result<(), String> {
        if self.scope != "{district}" && tree.get(&self.scope).is_none() {
            return Err(format!("scope: unknown org code '{}'", self.scope));
        }
        if self.layout == Layout::Board {
            // The board shows every metric of the catalogue; it names none.
            return Ok(());
        }
        let all = self
            .tiles
            .iter()
            .chain(&self.map_metrics)
            .chain(&self.trend_metrics)
            .chain(std::iter::once(&self.league_metric));
        for m in all {
            if catalogue.parse_name(m).is_none() {
                return Err(format!("unknown metric '{m}'"));
            }
        }
        if self.map_metrics.is_empty() {
            return Err("map_metrics: at least one metric".into());
        }
        Ok(())
    }
}

fn version_of(text: &str) -> String {
    crate::store::migrate::checksum(text)
}

/// Where the catalogue in service is read from.
pub type CatalogueSource = Arc<dyn Fn() -> Arc<Catalogue> + Send + Sync>;

#[derive(Clone)]
pub struct Dashboards {
    dir: PathBuf,
    tree: Arc<OrgTree>,
    /// The catalogue in service (it can change while running).
    catalogue: CatalogueSource,
    loaded: Arc<RwLock<BTreeMap<String, Loaded>>>,
    seen: Arc<RwLock<BTreeMap<PathBuf, SystemTime>>>,
}

impl Dashboards {
    pub fn load(dir: &Path, tree: Arc<OrgTree>, catalogue: CatalogueSource) -> Self {
        let d = Dashboards {
            dir: dir.to_path_buf(),
            tree,
            catalogue,
            loaded: Arc::default(),
            seen: Arc::default(),
        };
        d.rescan();
        d
    }

    /// Reads new and changed files; keeps the previous version of a file that fails.
    pub fn rescan(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            tracing::warn!(dir = %self.dir.display(), "no dashboards folder");
            return;
        };
        let mut present = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Some(name) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            present.push(name.clone());
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            if self
                .seen
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&path)
                == Some(&modified)
            {
                continue;
            }
            self.seen
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(path.clone(), modified);
            let parsed = read_definition(&path)
                .and_then(|text| text.ok_or_else(|| "not a regular file".to_string()))
                .and_then(|text| {
                    let mut d: Dashboard =
                        serde_json::from_str(&text).map_err(|e| e.to_string())?;
                    if d.scope == "{root}" {
                        d.scope = self.tree.node(self.tree.root()).code.clone();
                    }
                    d.validate(&self.tree, &(self.catalogue)())?;
                    Ok((d, version_of(&text)))
                });
            let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
            match parsed {
                Ok((dashboard, version)) => {
                    tracing::info!(name, "dashboard loaded");
                    loaded.insert(
                        name.clone(),
                        Loaded {
                            name,
                            dashboard,
                            version,
                            error: None,
                        },
                    );
                }
                Err(error) => {
                    tracing::error!(name, %error, "dashboard file refused; the previous version stays");
                    match loaded.get_mut(&name) {
                        Some(prev) => prev.error = Some(error),
                        None => {
                            tracing::warn!(name, "no previous version to keep");
                        }
                    }
                }
            }
        }
        self.loaded
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n, _| present.contains(n));
    }

    /// Validates every file again (the metric catalogue changed).
    pub fn revalidate(&self) {
        self.seen.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.rescan();
    }

    pub fn list(&self) -> Vec<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Polls the folder every `every` (cheap: one `stat` per file), off the async runtime.
    pub async fn watch(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let me = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || me.rescan()).await {
                tracing::warn!(error = %e, "reading the dashboards failed");
            }
        }
    }
}

/// Reads one definition file, or `Ok(None)` for something that is not a regular file (a FIFO,
/// a device, a link to one), which is skipped and said once in the log. The file is opened
/// without blocking (a FIFO would park the reading thread for good) and checked on the open
/// handle (no swap between a check and the open), and never read past
/// [`MAX_FILE_BYTES`](crate::domain::definition::MAX_FILE_BYTES) (a link to `/dev/zero` would
/// read until memory ran out).
pub fn read_definition(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let max = crate::domain::definition::MAX_FILE_BYTES;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        static SAID: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<PathBuf>>> =
            std::sync::OnceLock::new();
        let said = SAID.get_or_init(Default::default);
        if said
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_path_buf())
        {
            tracing::warn!(file = %path.display(), "not a regular file (a FIFO, a device or a link to one): skipped");
        }
        return Ok(None);
    }
    if meta.len() > max as u64 {
        return Err(format!(
            "the file has {} bytes; a definition may have at most {max}",
            meta.len()
        ));
    }
    let mut text = String::new();
    file.take(max as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() > max {
        return Err(format!("the file grew past {max} bytes while read"));
    }
    Ok(Some(text))
}

/// The definition files of a folder (`*.toml`), `(path, text)` in name order.
fn definition_files(dir: &Path) -> Result<Vec<(String, String)>, DefinitionError> {
    let unreadable = |reason: String| DefinitionError {
        file: dir.display().to_string(),
        line: None,
        reason,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| unreadable(e.to_string()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| unreadable(e.to_string()))?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = read_definition(&path).map_err(|reason| DefinitionError {
            file: path.display().to_string(),
            line: None,
            reason,
        })?;
        if let Some(text) = text {
            files.push((path.display().to_string(), text));
        }
    }
    files.sort();
    Ok(files)
}

/// The record kind and metric definition files as read at one moment: what a catalogue is
/// parsed from, and what tells whether anything changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinitionFiles {
    kinds: Vec<(String, String)>,
    metrics: Vec<(String, String)>,
}

impl DefinitionFiles {
    pub fn read(settings: &CatalogueSettings) -> Result<Self, DefinitionError> {
        Ok(DefinitionFiles {
            kinds: definition_files(&settings.kinds_dir)?,
            metrics: definition_files(&settings.metrics_dir)?,
        })
    }

    pub fn parse(&self) -> Result<Catalogue, DefinitionError> {
        Catalogue::parse(&self.kinds, &self.metrics)
    }

    /// The files added, removed or changed since `before` (`kinds/…`, `metrics/…`).
    pub fn changed_since(&self, before: &DefinitionFiles) -> Vec<String> {
        let mut changed = Vec::new();
        for (folder, now, then) in [
            ("kinds", &self.kinds, &before.kinds),
            ("metrics", &self.metrics, &before.metrics),
        ] {
            let names = now.iter().chain(then.iter()).map(|(name, _)| name);
            let mut names: Vec<&String> = names.collect();
            names.sort();
            names.dedup();
            for name in names {
                let text = |files: &[(String, String)]| {
                    files
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, t)| t.clone())
                };
                if text(now) != text(then) {
                    changed.push(format!("{folder}/{name}"));
                }
            }
        }
        changed
    }

    /// Where the last set that was put in service is kept: what a restart falls back on when
    /// the files on disk are refused.
    fn last_good_path(dir: &Path) -> PathBuf {
        dir.join("definitions.last-good.json")
    }

    /// Keeps this set as the last good one (written whole, then renamed into place).
    pub fn keep_as_last_good(&self, dir: &Path) -> std::io::Result<()> {
        let path = Self::last_good_path(dir);
        let text = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        if std::fs::read(&path).is_ok_and(|old| old == text) {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        let draft = path.with_extension("json.draft");
        std::fs::write(&draft, text)?;
        std::fs::rename(draft, path)
    }

    /// The last set that was in service, if one was kept.
    pub fn last_good(dir: &Path) -> Option<Self> {
        let text = std::fs::read(Self::last_good_path(dir)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// The catalogue to start with: the files on disk, or — when they are refused — the last set
/// that was in service (kept in `keep_dir`), said loudly: the refusal is returned beside it. With
/// nothing kept, a refusal stops the start.
pub fn startup_catalogue(
    settings: &CatalogueSettings,
    keep_dir: &Path,
) -> Result<(Catalogue, Option<String>), DefinitionError> {
    let read = DefinitionFiles::read(settings);
    match read.and_then(|files| files.parse().map(|c| (files, c))) {
        Ok((files, catalogue)) => {
            if let Err(e) = files.keep_as_last_good(keep_dir) {
                tracing::warn!(error = %e, dir = %keep_dir.display(), "could not keep the definitions as the last good set");
            }
            Ok((catalogue, None))
        }
        Err(refused) => {
            let Some(catalogue) = DefinitionFiles::last_good(keep_dir).and_then(|f| f.parse().ok())
            else {
                return Err(refused);
            };
            tracing::error!(error = %refused, "the definition files are refused; starting with the last good set that was in service");
            Ok((
                catalogue,
                Some(format!("{refused} (serving the last good definitions)")),
            ))
        }
    }
}

/// Reads the record kind and metric definitions into a catalogue. Any file that cannot be used
/// refuses the whole set, naming the file, the line and the reason.
pub fn load_catalogue(settings: &CatalogueSettings) -> Result<Catalogue, DefinitionError> {
    DefinitionFiles::read(settings)?.parse()
}

/// How the metric definition files last read went: what a duty officer or a test checks after
/// editing them.
#[derive(Debug, Default)]
pub struct DefinitionsStatus {
    /// Why the newest files were refused (`None`: the newest files are in service).
    refused: RwLock<Option<String>>,
    /// Changed catalogues put in service since start-up.
    switches: std::sync::atomic::AtomicU64,
}

impl DefinitionsStatus {
    pub fn refused(&self) -> Option<String> {
        self.refused
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_refused(&self, reason: Option<String>) {
        *self.refused.write().unwrap_or_else(|p| p.into_inner()) = reason;
    }

    pub fn switches(&self) -> u64 {
        self.switches.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn switched(&self) {
        self.switches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.set_refused(None);
    }
}
