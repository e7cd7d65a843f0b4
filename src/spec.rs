//! App specs read from files (`visor apply -f`, `visor diff -f`): a file, every
//! `*.yaml`, `*.yml` and `*.json` of a directory, or standard input (`-`).
//!
//! YAML and JSON both go through one YAML parser (JSON is YAML), so every
//! error names the file, the line and the field, whichever the user wrote:
//! what serde refuses (syntax, an unknown field, a bad name, a negative
//! scale, a missing command) at the place the parser stopped, and what
//! [`AppSpec::check`] refuses at the key its path names, found among the
//! document's keys as the parser placed them.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use visor_controllers::AppSpec;

/// One spec file's text and the name its errors give it.
#[derive(Debug, Clone)]
pub struct SpecText {
    /// The file as given, or `-` for standard input.
    pub source: String,
    /// Its contents.
    pub text: String,
}

/// Why specs cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A file or directory cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A directory without a spec in it.
    #[error("{0} holds no spec (*.yaml, *.yml or *.json)")]
    Empty(PathBuf),
    /// A spec that does not parse, or whose fields disagree.
    #[error("{file}{}: {}{message}", at(*line, *column), field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Invalid {
        /// The file.
        file: String,
        /// Its line (1-based), when known.
        line: Option<u64>,
        /// Its column (1-based), when known.
        column: Option<u64>,
        /// The field's path (`procs.web.port`), when known.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// Two specs of one app.
    #[error("{second} describes app {app} again (first in {first})")]
    Duplicate {
        /// The app.
        app: String,
        /// The file that described it first.
        first: String,
        /// The file that described it again.
        second: String,
    },
}

fn at(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        _ => String::new(),
    }
}

/// The spec texts `from` names: a file, a directory's spec files (in name
/// order), or standard input (`-`).
pub fn read(from: &str) -> Result<Vec<SpecText>, SpecError> {
    if from == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|source| {
            SpecError::Read {
                path: "-".into(),
                source,
            }
        })?;
        return Ok(vec![SpecText {
            source: "-".into(),
            text,
        }]);
    }
    let path = Path::new(from);
    let read_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SpecError::Read { path, source }
    };
    if !path.is_dir() {
        let text = std::fs::read_to_string(path).map_err(read_error(path))?;
        return Ok(vec![SpecText {
            source: from.to_owned(),
            text,
        }]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_error(path))? {
        let file = entry.map_err(read_error(path))?.path();
        let is_spec = file
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if is_spec && file.is_file() {
            files.push(file);
        }
    }
    if files.is_empty() {
        return Err(SpecError::Empty(path.to_path_buf()));
    }
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).map_err(read_error(&file))?;
            Ok(SpecText {
                source: file.display().to_string(),
                text,
            })
        })
        .collect()
}

/// Parses and checks every text; refuses two specs of one app.
pub fn parse_all(texts: &[SpecText]) -> Result<Vec<AppSpec>, SpecError> {
    let mut specs: Vec<(AppSpec, &str)> = Vec::new();
    for text in texts {
        let spec = parse(text)?;
        if let Some((_, first)) = specs.iter().find(|(other, _)| other.name == spec.name) {
            return Err(SpecError::Duplicate {
                app: spec.name.to_string(),
                first: (*first).to_owned(),
                second: text.source.clone(),
            });
        }
        specs.push((spec, &text.source));
    }
    Ok(specs.into_iter().map(|(spec, _)| spec).collect())
}

/// Parses one spec and checks it.
pub fn parse(text: &SpecText) -> Result<AppSpec, SpecError> {
    let invalid = |line, column, field, message| SpecError::Invalid {
        file: text.source.clone(),
        line,
        column,
        field,
        message,
    };
    let mut failed_at: Option<String> = None;
    let parsed = serde_saphyr::with_deserializer_from_str(&text.text, |deserializer| {
        serde_path_to_error::deserialize::<_, AppSpec>(deserializer).map_err(|error| {
            let path = error.path().to_string();
            if path != "." {
                failed_at = Some(path);
            }
            error.into_inner()
        })
    });
    let spec = parsed.map_err(|error| {
        let location = error.location();
        invalid(
            location.map(|l| l.line()),
            location.map(|l| l.column()),
            failed_at.take(),
            message(&error),
        )
    })?;
    spec.check().map_err(|error| {
        let line = key_line(&text.text, &error.path);
        invalid(line, None, Some(error.path), error.reason)
    })?;
    Ok(spec)
}

/// The parser's message alone: without its location (the error gives it
/// first) or a snippet of the source, and with any control character from
/// the document escaped, so that it stays one line on a terminal.
fn message(error: &serde_saphyr::Error) -> String {
    use serde_saphyr::MessageFormatter;
    let message = serde_saphyr::DefaultMessageFormatter.format_message(error.without_snippet());
    message
        .chars()
        .flat_map(|c| match c.is_control() {
            true => c.escape_debug().collect::<Vec<_>>(),
            false => vec![c],
        })
        .collect()
}

/// The line of the key a dotted `path` (`procs.web.readiness`, `relations.db[1]`)
/// ends at, as the parser placed the document's keys; the deepest key found.
fn key_line(text: &str, path: &str) -> Option<u64> {
    let tree: Spanned<Node> = serde_saphyr::from_str(text).ok()?;
    let mut line = None;
    let mut node = &tree;
    for segment in path.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((key, index)) => (key, index.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Node::Map(entries) = &node.value else {
            break;
        };
        let Some((found, value)) = entries.iter().find(|(name, _)| name.value == key) else {
            break;
        };
        line = Some(found.referenced.line());
        node = value;
        if let (Some(index), Node::Seq(items)) = (index, &node.value)
            && let Some(item) = items.get(index)
        {
            line = Some(item.referenced.line());
            node = item;
        }
    }
    line
}

/// A document's shape with where each part is: maps by key, sequences,
/// and scalars (whose values do not matter here).
enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;

        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any YAML node")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Node::Map(entries))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
        }

        deserializer.deserialize_any(NodeVisitor)
    }
}

#[cfg(test)]
mod tests;
