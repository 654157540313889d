//! The embedded registry's file: one JSON line per change of an entry, replayed on open
//! (the last line of an id wins) and rewritten compactly when it has grown well past the
//! entries it describes.
//!
//! Lines are written through a buffer that the registry's flusher empties every
//! [`FLUSH_EVERY`] (and that is emptied on drop), without fsync: the registry is
//! advisory, so a crash may forget the last moments of lifecycle changes, never spans. A
//! torn last line is skipped on reading.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clew_model::TraceId;
use serde::{Deserialize, Serialize};

use crate::model::TraceRecord;

/// How often buffered lines are written out.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Lines beyond the live entries before the file is rewritten.
const SLACK_LINES: usize = 10_000;

#[derive(Serialize, Deserialize)]
pub(crate) struct Line {
    #[serde(rename = "r")]
    pub record: TraceRecord,
    /// When the entry expires (registry clock, ms).
    #[serde(rename = "x")]
    pub expires_at_ms: u64,
}

#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    out: BufWriter<File>,
    lines: usize,
    dirty: bool,
}

/// What a journal held when it was opened.
pub(crate) struct Replayed {
    pub journal: Journal,
    pub lines: Vec<Line>,
    pub skipped: usize,
}

impl Journal {
    /// Reads every line of `path` (which may not exist yet), then rewrites it with only
    /// the entries `keep` selects from the last line of each id.
    pub(crate) fn open(
        path: &Path,
        keep: impl Fn(&Line) -> bool,
    ) -> Result<Replayed, std::io::Error> {
        let mut latest: std::collections::HashMap<TraceId, Line> = Default::default();
        let mut skipped = 0;
        match File::open(path) {
            Ok(file) => {
                for line in BufReader::new(file).split(b'\n') {
                    let line = line?;
                    if line.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<Line>(&line) {
                        Ok(parsed) => {
                            latest.insert(parsed.record.id, parsed);
                        }
                        Err(_) => skipped += 1,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut lines: Vec<Line> = latest.into_values().filter(|l| keep(l)).collect();
        lines.sort_by_key(|l| (l.record.created_at_ms, l.record.id));
        let journal = Journal::rewrite(path, lines.iter())?;
        Ok(Replayed {
            journal,
            lines,
            skipped,
        })
    }

    /// Replaces the file with `lines`, atomically (a temporary file renamed over it).
    pub(crate) fn rewrite<'a>(
        path: &Path,
        lines: impl Iterator<Item = &'a Line>,
    ) -> Result<Journal, std::io::Error> {
        let temporary = path.with_extension("journal.tmp");
        let mut out = BufWriter::new(File::create(&temporary)?);
        let mut count = 0;
        for line in lines {
            serde_json::to_writer(&mut out, line)?;
            out.write_all(b"\n")?;
            count += 1;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&temporary, path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Journal {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            lines: count,
            dirty: false,
        })
    }

    pub(crate) fn append(&mut self, line: &Line) -> Result<(), std::io::Error> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")?;
        self.lines += 1;
        self.dirty = true;
        Ok(())
    }

    /// Writes out what the buffer holds, if anything.
    pub(crate) fn flush(&mut self) -> Result<(), std::io::Error> {
        if std::mem::take(&mut self.dirty) {
            self.out.flush()?;
        }
        Ok(())
    }

    /// Whether the file holds so many superseded lines that it should be rewritten.
    pub(crate) fn wants_compaction(&self, live: usize) -> bool {
        self.lines > live.saturating_mul(2) + SLACK_LINES
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}
