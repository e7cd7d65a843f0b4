//! A provider's configuration, as mistify's: a JSON file, flags and the
//! environment (`VISOR_PROVIDER_*`), with that precedence: flags over the
//! environment over the file over the defaults.
//!
//! Invariant: a [`ProviderConfig`] that [`ProviderConfig::validate`] accepted
//! names an absolute socket directory, a usable provider name, task names
//! that are safe path segments and non-zero timeouts; each refusal names the
//! field as the file spells it (`tasks.instance.start.timeout`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::layout::{Priority, check_provider_name, check_task_name};

/// A task's priority when neither the task's entry nor a flag sets one
/// (mistify's default).
pub const DEFAULT_PRIORITY: Priority = 50;
/// How long a handler may run when its task sets no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a caller waits for a response after the ack; longer than
/// [`DEFAULT_TIMEOUT`], so that a provider's own timeout response arrives first.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How much a provider logs (when `RUST_LOG` does not say otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors (mistify's default).
    #[default]
    #[value(alias = "warning")]
    Warn,
    /// What the provider does.
    Info,
    /// Every request.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The `tracing` filter directive.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        <Self as clap::ValueEnum>::from_str(text, true).ok()
    }
}

/// A task's own settings (`tasks.<name>` in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskConfig {
    /// Overrides `default_priority`.
    pub priority: Option<Priority>,
    /// Overrides `default_timeout`.
    pub timeout: Option<Duration>,
}

/// A provider's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// Where task sockets are created (see [`Layout`](super::Layout)).
    pub socket_dir: PathBuf,
    /// The provider's name, in its socket names.
    pub service_name: String,
    /// Priority of tasks without their own.
    pub default_priority: Priority,
    /// Handler timeout of tasks without their own.
    pub default_timeout: Duration,
    /// How long requests this program makes wait for their response.
    pub request_timeout: Duration,
    /// Per-task settings.
    pub tasks: BTreeMap<String, TaskConfig>,
    /// The default log level.
    pub log_level: LogLevel,
}

impl ProviderConfig {
    /// Defaults for a provider named `service_name`, serving in the default
    /// socket directory.
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            socket_dir: default_socket_dir(),
            service_name: service_name.into(),
            default_priority: DEFAULT_PRIORITY,
            default_timeout: DEFAULT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            tasks: BTreeMap::new(),
            log_level: LogLevel::default(),
        }
    }

    /// The same, serving in `socket_dir`.
    #[must_use]
    pub fn socket_dir(mut self, socket_dir: impl Into<PathBuf>) -> Self {
        self.socket_dir = socket_dir.into();
        self
    }

    /// The same, with `task`'s settings.
    #[must_use]
    pub fn task(mut self, task: impl Into<String>, config: TaskConfig) -> Self {
        self.tasks.insert(task.into(), config);
        self
    }

    /// The priority `task` is served at.
    pub fn task_priority(&self, task: &str) -> Priority {
        self.tasks
            .get(task)
            .and_then(|t| t.priority)
            .unwrap_or(self.default_priority)
    }

    /// How long `task`'s handler may run.
    pub fn task_timeout(&self, task: &str) -> Duration {
        self.tasks
            .get(task)
            .and_then(|t| t.timeout)
            .unwrap_or(self.default_timeout)
    }

    /// Refuses what cannot be served, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, problem: String| ConfigError::Invalid {
            field: field.to_owned(),
            problem,
        };
        if !self.socket_dir.is_absolute() {
            return Err(invalid("socket_dir", "must be an absolute path".into()));
        }
        check_provider_name(&self.service_name)
            .map_err(|error| invalid("service_name", error.to_string()))?;
        nonzero("default_timeout", self.default_timeout)?;
        nonzero("request_timeout", self.request_timeout)?;
        for (task, config) in &self.tasks {
            check_task_name(task)
                .map_err(|error| invalid(&format!("tasks.{task}"), error.to_string()))?;
            if let Some(timeout) = config.timeout {
                nonzero(&format!("tasks.{task}.timeout"), timeout)?;
            }
        }
        Ok(())
    }
}

fn nonzero(field: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::Invalid {
            field: field.to_owned(),
            problem: "must be more than zero".into(),
        });
    }
    Ok(())
}

/// The socket directory when none is configured: `$XDG_RUNTIME_DIR/visor/providers`,
/// else `/run/visor/providers` for root, else `/tmp/visor-<uid>/providers`.
pub fn default_socket_dir() -> PathBuf {
    if let Some(runtime) =
        std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| Path::new(dir).is_absolute())
    {
        return PathBuf::from(runtime).join("visor/providers");
    }
    let uid = rustix::process::getuid();
    if uid.is_root() {
        PathBuf::from("/run/visor/providers")
    } else {
        PathBuf::from(format!("/tmp/visor-{}/providers", uid.as_raw()))
    }
}

/// The flags (and their environment variables) of a provider program; flatten
/// into its command line and [`load`](Self::load).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProviderArgs {
    /// A JSON config file (fields as the flags, plus `tasks.<name>.priority` and `tasks.<name>.timeout`).
    #[arg(long = "config", env = "VISOR_PROVIDER_CONFIG", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Where task sockets are created [default: $XDG_RUNTIME_DIR/visor/providers, /run/visor/providers for root, else /tmp/visor-<uid>/providers].
    #[arg(long, env = "VISOR_PROVIDER_SOCKET_DIR", value_name = "DIR")]
    pub socket_dir: Option<PathBuf>,
    /// The provider's name, in its socket names.
    #[arg(long, env = "VISOR_PROVIDER_SERVICE_NAME", value_name = "NAME")]
    pub service_name: Option<String>,
    /// Priority of tasks without their own (higher is preferred) [default: 50].
    #[arg(long, env = "VISOR_PROVIDER_DEFAULT_PRIORITY", value_name = "N")]
    pub default_priority: Option<Priority>,
    /// Handler timeout of tasks without their own [default: 30s].
    #[arg(long, env = "VISOR_PROVIDER_DEFAULT_TIMEOUT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub default_timeout: Option<Duration>,
    /// How long requests this provider makes wait for their response [default: 60s].
    #[arg(
        id = "provider_request_timeout",
        long = "provider-request-timeout",
        env = "VISOR_PROVIDER_REQUEST_TIMEOUT",
        value_parser = humantime::parse_duration,
        value_name = "DURATION"
    )]
    pub request_timeout: Option<Duration>,
    /// Log level when RUST_LOG is unset [default: warn].
    #[arg(
        long,
        env = "VISOR_PROVIDER_LOG_LEVEL",
        value_enum,
        value_name = "LEVEL"
    )]
    pub log_level: Option<LogLevel>,
}

impl ProviderArgs {
    /// The configuration these flags say, over the config file they name,
    /// over the defaults (`service_name` defaulting to `default_name`),
    /// validated. A relative socket directory is taken from the working
    /// directory.
    pub fn load(&self, default_name: &str) -> Result<ProviderConfig, ConfigError> {
        let file = match &self.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut config = ProviderConfig::new(default_name);
        if let Some(dir) = self.socket_dir.clone().or(file.socket_dir) {
            config.socket_dir =
                std::path::absolute(&dir).map_err(|source| ConfigError::SocketDir {
                    path: dir.clone(),
                    source,
                })?;
        }
        if let Some(name) = self.service_name.clone().or(file.service_name) {
            config.service_name = name;
        }
        if let Some(priority) = self.default_priority.or(file.default_priority) {
            config.default_priority = priority;
        }
        if let Some(timeout) = self.default_timeout.or(file.default_timeout) {
            config.default_timeout = timeout;
        }
        if let Some(timeout) = self.request_timeout.or(file.request_timeout) {
            config.request_timeout = timeout;
        }
        if let Some(level) = self.log_level.or(file.log_level) {
            config.log_level = level;
        }
        config.tasks = file.tasks;
        config.validate()?;
        Ok(config)
    }
}

/// What a config file may say; everything optional.
#[derive(Debug, Default, PartialEq)]
struct FileConfig {
    socket_dir: Option<PathBuf>,
    service_name: Option<String>,
    default_priority: Option<Priority>,
    default_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    log_level: Option<LogLevel>,
    tasks: BTreeMap<String, TaskConfig>,
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
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

/// Why a provider's configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not JSON.
    #[error("config file {} is not JSON", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde_json refused.
        #[source]
        source: serde_json::Error,
    },
    /// A field of the config file is wrong.
    #[error("config file {}: {field} {problem}", path.display())]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// The field, as the file spells it (`tasks.instance.start.timeout`).
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A setting, wherever it came from, is wrong.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field (`service_name`, `tasks.instance.start.timeout`).
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The socket directory could not be made absolute.
    #[error("socket_dir {}: cannot resolve against the working directory", path.display())]
    SocketDir {
        /// The directory given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        provider: ProviderArgs,
    }

    fn write(dir: &Path, value: &Value) -> PathBuf {
        let path = dir.join("provider.json");
        std::fs::write(&path, serde_json::to_vec(value).expect("json")).expect("write");
        path
    }

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

    #[test]
    fn validation_names_the_field() {
        let base = ProviderConfig::new("exec").socket_dir("/run/p");
        assert!(base.validate().is_ok());
        let zero = TaskConfig {
            timeout: Some(Duration::ZERO),
            ..TaskConfig::default()
        };
        let cases = [
            (base.clone().socket_dir("relative"), "socket_dir"),
            (
                ProviderConfig {
                    service_name: "a/b".into(),
                    ..base.clone()
                },
                "service_name",
            ),
            (
                ProviderConfig {
                    service_name: String::new(),
                    ..base.clone()
                },
                "service_name",
            ),
            (
                ProviderConfig {
                    default_timeout: Duration::ZERO,
                    ..base.clone()
                },
                "default_timeout",
            ),
            (
                ProviderConfig {
                    request_timeout: Duration::ZERO,
                    ..base.clone()
                },
                "request_timeout",
            ),
            (
                base.clone().task("instance.start", zero),
                "tasks.instance.start.timeout",
            ),
            (
                base.clone().task("../x", TaskConfig::default()),
                "tasks.../x",
            ),
        ];
        for (config, field) in cases {
            match config.validate() {
                Err(ConfigError::Invalid { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            &json!({"socket_dir": "/from/file", "service_name": "file", "default_priority": 1,
                    "tasks": {"t": {"priority": 7}}}),
        );
        let path = path.to_str().expect("utf-8");
        let args = Cli::try_parse_from(["p", "--config", path, "--service-name", "flag"])
            .expect("flags")
            .provider;
        let config = args.load("default").expect("valid");
        assert_eq!(config.service_name, "flag");
        assert_eq!(config.socket_dir, Path::new("/from/file"));
        assert_eq!(config.default_priority, 1);
        assert_eq!(config.task_priority("t"), 7);
        assert_eq!(config.task_priority("other"), 1);
        assert_eq!(config.task_timeout("t"), DEFAULT_TIMEOUT);

        let defaults = ProviderArgs::default().load("exec").expect("defaults");
        assert_eq!(defaults.service_name, "exec");
        assert_eq!(defaults.default_priority, DEFAULT_PRIORITY);
        assert!(defaults.socket_dir.is_absolute());
    }

    #[test]
    fn a_file_error_says_which_file_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), &json!({"tasks": {"t": {"timeout": "never"}}}));
        let args = ProviderArgs {
            config_file: Some(path.clone()),
            ..ProviderArgs::default()
        };
        let error = args.load("p").expect_err("invalid").to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("tasks.t.timeout"), "{error}");
        let zero = write(dir.path(), &json!({"tasks": {"t": {"timeout": 0}}}));
        let error = ProviderArgs {
            config_file: Some(zero),
            ..ProviderArgs::default()
        }
        .load("p")
        .expect_err("zero")
        .to_string();
        assert_eq!(error, "tasks.t.timeout: must be more than zero");
    }
}
