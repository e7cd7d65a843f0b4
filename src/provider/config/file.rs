//! The config file: JSON, read field by field so that every refusal names
//! its field as the file spells it (serde's messages name the type expected,
//! not where).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::{ConfigError, LogLevel, TaskConfig};
use crate::provider::layout::Priority;

/// What a config file may say; everything optional.
#[derive(Debug, Default, PartialEq)]
pub(super) struct FileConfig {
    pub(super) socket_dir: Option<PathBuf>,
    pub(super) service_name: Option<String>,
    pub(super) default_priority: Option<Priority>,
    pub(super) default_timeout: Option<Duration>,
    pub(super) request_timeout: Option<Duration>,
    pub(super) log_level: Option<LogLevel>,
    pub(super) tasks: BTreeMap<String, TaskConfig>,
}

pub(super) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let value: Value = serde_json::from_slice(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })?;
    parse_file(value).map_err(|(field, problem)| ConfigError::InvalidFile {
        path: path.to_owned(),
        field,
        problem,
    })
}

/// A field and what is wrong with it.
type FieldProblem = (String, String);

/// Reads the file's JSON field by field, so that every refusal names its
/// field (serde's messages name the type expected, not where).
fn parse_file(value: Value) -> Result<FileConfig, FieldProblem> {
    let fields = object(value, "(the file)")?;
    let mut file = FileConfig::default();
    for (key, value) in fields {
        match key.as_str() {
            "socket_dir" => file.socket_dir = Some(string(value, &key)?.into()),
            "service_name" => file.service_name = Some(string(value, &key)?),
            "default_priority" => file.default_priority = Some(priority(value, &key)?),
            "default_timeout" => file.default_timeout = Some(duration(value, &key)?),
            "request_timeout" => file.request_timeout = Some(duration(value, &key)?),
            "log_level" => {
                let text = string(value, &key)?;
                file.log_level = Some(LogLevel::parse(&text).ok_or_else(|| {
                    (
                        key.clone(),
                        format!("{text:?} is not one of error, warn, info, debug, trace"),
                    )
                })?);
            }
            "tasks" => {
                for (task, value) in object(value, &key)? {
                    let field = format!("tasks.{task}");
                    let mut config = TaskConfig::default();
                    for (key, value) in object(value, &field)? {
                        let field = format!("{field}.{key}");
                        match key.as_str() {
                            "priority" => config.priority = Some(priority(value, &field)?),
                            "timeout" => config.timeout = Some(duration(value, &field)?),
                            _ => {
                                return Err((
                                    field,
                                    "is not a task setting (priority, timeout)".into(),
                                ));
                            }
                        }
                    }
                    file.tasks.insert(task, config);
                }
            }
            _ => return Err((key, "is not a setting".into())),
        }
    }
    Ok(file)
}

fn object(value: Value, field: &str) -> Result<Map<String, Value>, FieldProblem> {
    match value {
        Value::Object(fields) => Ok(fields),
        other => Err((field.to_owned(), format!("must be an object, not {other}"))),
    }
}

fn string(value: Value, field: &str) -> Result<String, FieldProblem> {
    match value {
        Value::String(text) => Ok(text),
        other => Err((field.to_owned(), format!("must be a string, not {other}"))),
    }
}

fn priority(value: Value, field: &str) -> Result<Priority, FieldProblem> {
    value
        .as_u64()
        .and_then(|n| Priority::try_from(n).ok())
        .ok_or_else(|| {
            (
                field.to_owned(),
                format!(
                    "must be an integer from 0 to {}, not {value}",
                    Priority::MAX
                ),
            )
        })
}

/// A duration: seconds as a number (mistify's form) or a string such as `"1m 30s"`.
fn duration(value: Value, field: &str) -> Result<Duration, FieldProblem> {
    let problem = |what: String| (field.to_owned(), what);
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| problem(format!("{n} is not a number of seconds"))),
        Value::String(text) => humantime::parse_duration(&text)
            .map_err(|error| problem(format!("{text:?} is not a duration: {error}"))),
        other => Err(problem(format!(
            "must be seconds or a duration such as \"30s\", not {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_file_reads_every_setting_in_either_duration_form() {
        let file = parse_file(json!({
            "socket_dir": "/run/p", "service_name": "exec", "default_priority": 60,
            "default_timeout": 10, "request_timeout": "1m 30s", "log_level": "warning",
            "tasks": {"instance.start": {"priority": 100, "timeout": 0.5}, "hook.run": {}}
        }))
        .expect("valid");
        assert_eq!(file.socket_dir.as_deref(), Some(Path::new("/run/p")));
        assert_eq!(file.default_priority, Some(60));
        assert_eq!(file.default_timeout, Some(Duration::from_secs(10)));
        assert_eq!(file.request_timeout, Some(Duration::from_secs(90)));
        assert_eq!(file.log_level, Some(LogLevel::Warn));
        assert_eq!(
            file.tasks["instance.start"],
            TaskConfig {
                priority: Some(100),
                timeout: Some(Duration::from_millis(500))
            }
        );
        assert_eq!(file.tasks["hook.run"], TaskConfig::default());
    }

    #[test]
    fn a_file_refusal_names_the_field() {
        let cases = [
            (json!([]), "(the file)"),
            (json!({"socket_dirr": "/x"}), "socket_dirr"),
            (json!({"default_priority": -1}), "default_priority"),
            (
                json!({"default_priority": 5_000_000_000_u64}),
                "default_priority",
            ),
            (json!({"default_timeout": "soon"}), "default_timeout"),
            (json!({"request_timeout": -3}), "request_timeout"),
            (json!({"log_level": "loud"}), "log_level"),
            (
                json!({"tasks": {"instance.start": {"timeout": true}}}),
                "tasks.instance.start.timeout",
            ),
            (
                json!({"tasks": {"instance.start": {"prio": 1}}}),
                "tasks.instance.start.prio",
            ),
            (
                json!({"tasks": {"instance.start": 3}}),
                "tasks.instance.start",
            ),
        ];
        for (value, field) in cases {
            let (named, problem) = parse_file(value.clone()).expect_err(&value.to_string());
            assert_eq!(named, field, "{value}: {problem}");
        }
    }
}
