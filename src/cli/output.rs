//! How the CLI prints: aligned tables for people, JSON (or YAML) for scripts.
//!
//! JSON field names are part of the CLI's contract: scripts parse them, so rows
//! are explicit structs, never ad-hoc maps.
//!
//! Every byte of a command's output goes through [`Output`], which returns
//! write failures instead of panicking as `println!` does. A closed stdout
//! (`visor watch | head -1`) is [`OutputError::Closed`]: the reader has what it
//! wanted, so the command ends there, quietly and successfully.

use std::io::{self, Write};

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use crate::registry::{Kind, ObjectRef};

/// Output format selected with `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns with a header line.
    Table,
    /// JSON: an array for listings, an object for single results, one object per line for streams (`watch`, `notifications --follow`).
    Json,
    /// YAML: as JSON, in YAML (a document per record for streams).
    Yaml,
}

/// A printable record: serializable for JSON, with columns for tables.
pub trait Row: Serialize {
    /// Column headers, in order.
    const HEADERS: &'static [&'static str];
    /// This record's cells, in header order.
    fn cells(&self) -> Vec<String>;
}

/// Why output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reading end of stdout is closed: not a failure of the command.
    #[error("stdout is closed")]
    Closed,
    /// Writing to stdout failed otherwise (a full disk, say).
    #[error("cannot write to stdout")]
    Write(#[source] io::Error),
}

impl From<io::Error> for OutputError {
    fn from(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::BrokenPipe => Self::Closed,
            _ => Self::Write(error),
        }
    }
}

/// The result of printing.
pub type Printed = Result<(), OutputError>;

/// Prints rows in the selected format.
pub struct Output {
    format: Format,
}

impl Output {
    pub fn new(format: Format) -> Self {
        Self { format }
    }

    /// Whether JSON or YAML was asked for rather than a table (for commands
    /// whose two forms differ in shape).
    pub fn is_structured(&self) -> bool {
        self.format != Format::Table
    }

    /// A value as JSON on one line, or as a YAML document.
    pub fn json<T: Serialize>(&self, value: &T) -> Printed {
        match self.format {
            Format::Yaml => self.bytes(format!("---\n{}", to_yaml(value)).as_bytes()),
            Format::Json | Format::Table => self.text(&to_json(value)),
        }
    }

    /// A line of text (empty for a blank line), as it is.
    pub fn text(&self, line: &str) -> Printed {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{line}")?;
        // Each line goes out as it is printed, so a closed pipe shows on the
        // line that meets it, not at exit where the error would be lost.
        stdout.flush()?;
        Ok(())
    }

    /// Bytes as they are (an instance's output), flushed at once.
    pub fn bytes(&self, bytes: &[u8]) -> Printed {
        let mut stdout = io::stdout().lock();
        stdout.write_all(bytes)?;
        stdout.flush()?;
        Ok(())
    }

    /// A whole document (an app's spec): YAML, or JSON when asked for
    /// (indented: a document is for editing).
    pub fn document<T: Serialize>(&self, value: &T) -> Printed {
        match self.format {
            // Documents are plain structs and string-keyed maps: they serialize.
            Format::Json => self.text(
                &serde_json::to_string_pretty(value)
                    .expect("invariant: CLI documents always serialize"),
            ),
            Format::Table | Format::Yaml => self.bytes(to_yaml(value).as_bytes()),
        }
    }

    /// A listing: a table, or a JSON array.
    pub fn list<R: Row>(&self, rows: &[R]) -> Printed {
        match self.format {
            Format::Json => self.text(&to_json(&rows)),
            Format::Yaml => self.bytes(to_yaml(&rows).as_bytes()),
            Format::Table => {
                let mut table = Table::new();
                table
                    .load_preset(presets::NOTHING)
                    .set_content_arrangement(ContentArrangement::Disabled)
                    .set_header(R::HEADERS.iter().map(|h| h.to_uppercase()));
                for row in rows {
                    table.add_row(row.cells());
                }
                self.text(&table.trim_fmt())
            }
        }
    }

    /// One record: a one-row table, or a JSON object.
    pub fn one<R: Row>(&self, row: &R) -> Printed {
        match self.format {
            Format::Json => self.text(&to_json(row)),
            Format::Yaml => self.bytes(to_yaml(row).as_bytes()),
            Format::Table => self.list(std::slice::from_ref(row)),
        }
    }

    /// The header line of a stream of [`line`](Self::line)s: table form only
    /// (a JSON stream is objects alone).
    pub fn header<R: Row>(&self) -> Printed {
        if self.format == Format::Table {
            let headers: Vec<String> = R::HEADERS.iter().map(|h| h.to_uppercase()).collect();
            self.text(&headers.join("  "))?;
        }
        Ok(())
    }

    /// One line of a stream: a table line without header, or a JSON object per line.
    pub fn line<R: Row>(&self, row: &R) -> Printed {
        match self.format {
            Format::Json => self.text(&to_json(row)),
            Format::Yaml => self.bytes(format!("---\n{}", to_yaml(row)).as_bytes()),
            Format::Table => self.text(&row.cells().join("  ")),
        }
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Rows are plain structs of strings and numbers: serialization cannot fail.
    serde_json::to_string(value).expect("invariant: CLI rows always serialize")
}

fn to_yaml<T: Serialize>(value: &T) -> String {
    // As for JSON: rows and documents always serialize.
    serde_saphyr::to_string(value).expect("invariant: CLI rows always serialize")
}

/// A time as a table cell: RFC 3339, to the second, in UTC.
pub fn timestamp(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// How long ago `at` was, as a table cell: the largest two units that matter,
/// as `kubectl` prints an AGE (`45s`, `3m12s`, `5h4m`, `12d`).
pub fn age(at: &chrono::DateTime<chrono::Utc>) -> String {
    age_at(at, chrono::Utc::now())
}

/// [`age`] as seen at `now`; a time in the future (a clock ahead of this
/// one) is `0s`.
fn age_at(at: &chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> String {
    let seconds = (now - *at).num_seconds().max(0);
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{minutes}m{}s", s % 60),
        s if s < 3 * 3600 => format!("{minutes}m"),
        s if s < 8 * 3600 => format!("{hours}h{}m", minutes % 60),
        s if s < 2 * 86_400 => format!("{hours}h"),
        s if s < 8 * 86_400 => format!("{days}d{}h", hours % 24),
        _ => format!("{days}d"),
    }
}

/// An optional value as a table cell (`-` when absent).
pub fn cell<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The confirmation of a removal.
#[derive(Debug, Serialize)]
pub struct Removed {
    /// What was removed, e.g. `app web`.
    pub removed: String,
    /// The registry revision of the removal.
    pub revision: i64,
}

impl Row for Removed {
    const HEADERS: &'static [&'static str] = &["removed", "revision"];
    fn cells(&self) -> Vec<String> {
        vec![self.removed.clone(), self.revision.to_string()]
    }
}

/// The confirmation that the object of `kind` named by `parts` was removed at `revision`.
pub fn removed(kind: Kind, parts: &[&str], revision: i64) -> Removed {
    Removed {
        removed: ObjectRef::new(kind, parts).to_string(),
        revision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_age_shows_the_two_units_that_matter() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .expect("a valid time")
            .to_utc();
        let cases = [
            (-5, "0s"),
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (120, "2m0s"),
            (192, "3m12s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h0m"),
            (5 * 3600 + 4 * 60, "5h4m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (2 * 86_400 + 3 * 3600, "2d3h"),
            (12 * 86_400, "12d"),
        ];
        for (ago, shown) in cases {
            let at = now - chrono::Duration::seconds(ago);
            assert_eq!(age_at(&at, now), shown, "{ago} s ago");
        }
    }

    #[test]
    fn a_timestamp_is_to_the_second_in_utc() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-04T13:14:15.987654+01:00")
            .expect("a valid time")
            .to_utc();
        assert_eq!(timestamp(&at), "2026-12-04T12:14:15Z");
    }
}
