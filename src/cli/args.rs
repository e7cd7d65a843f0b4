//! What the command line may say, checked before anything connects.
//!
//! Every name argument is parsed by clap into a validated [`Name`] or
//! [`EnvKey`] (the model's own rules), and every assignment into typed parts,
//! so a bad value is a usage error (exit 2) naming the argument. Rules that
//! span several values (a proc given twice, a relation id that cannot be
//! derived) are each command's `check`, which `run` calls right after parsing:
//! a refused command has not connected, so it has written nothing.

use visor_controllers::{
    CommandLine, EnvKey, InvalidName, Name, RestartPolicy, first_repeat, is_scheme,
};

use super::CliError;

/// A value parser for the name of `field` (`app`, `rev`, `proc`, ...).
pub fn name(
    field: &'static str,
) -> impl Fn(&str) -> Result<Name, InvalidName> + Clone + Send + Sync + 'static {
    move |text| Name::parse(field, text)
}

/// Parses an environment variable key.
pub fn env_key(text: &str) -> Result<EnvKey, InvalidName> {
    EnvKey::parse(text)
}

/// Parses `KEY=VALUE` (the value may contain `=`).
pub fn assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// Parses `KEY=VALUE` with an environment variable key.
pub fn env_assignment(text: &str) -> Result<(EnvKey, String), String> {
    let (key, value) = assignment(text)?;
    let key = EnvKey::parse(&key).map_err(|invalid| invalid.to_string())?;
    Ok((key, value))
}

/// Parses `PROC=N` with a proc type name and a non-negative integer N.
pub fn scale(text: &str) -> Result<(Name, u32), String> {
    let (proc, count) = assignment(text).map_err(|_| format!("expected PROC=N, got {text:?}"))?;
    let proc = Name::parse("proc", &proc).map_err(|invalid| invalid.to_string())?;
    let count = count
        .parse()
        .map_err(|_| format!("scale for {proc} must be a non-negative integer, got {count:?}"))?;
    Ok((proc, count))
}

/// Parses a proc type's command line: it must split into a program and
/// its arguments.
pub fn command(text: &str) -> Result<String, String> {
    CommandLine::parse(text).map_err(|invalid| invalid.to_string())?;
    Ok(text.to_owned())
}

/// Parses a duration in whole seconds (`10s`, `1m`, `90`), at least 1.
pub fn whole_seconds(text: &str) -> Result<u32, String> {
    let duration = match text.parse::<u64>() {
        Ok(secs) => std::time::Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is not a duration: {e}"))?,
    };
    if duration.subsec_nanos() != 0 || duration.is_zero() {
        return Err(format!(
            "{text:?} must be a whole number of seconds, at least 1"
        ));
    }
    u32::try_from(duration.as_secs()).map_err(|_| format!("{text:?} is too long"))
}

/// Parses a restart policy: `always` or `on-failure`.
pub fn restart_policy(text: &str) -> Result<RestartPolicy, String> {
    match text {
        "always" => Ok(RestartPolicy::Always),
        "on-failure" => Ok(RestartPolicy::OnFailure),
        _ => Err(format!("expected always or on-failure, got {text:?}")),
    }
}

/// Parses an HTTP path for a readiness check: it starts with `/`.
pub fn http_path(text: &str) -> Result<String, String> {
    match text.starts_with('/') && !text.contains(char::is_whitespace) {
        true => Ok(text.to_owned()),
        false => Err(format!("{text:?} must start with / and hold no spaces")),
    }
}

/// Parses a URL scheme as endpoints use them.
pub fn scheme(text: &str) -> Result<String, String> {
    match is_scheme(text) {
        true => Ok(text.to_owned()),
        false => Err(format!(
            "{text:?} is not a scheme: a letter, then letters, digits, '+', '-' or '.'"
        )),
    }
}

/// Refuses `items` when one is given twice: `what` names the kind (`proc`, `env var`).
pub fn distinct<'a, T: Ord + std::fmt::Display + 'a>(
    what: &str,
    items: impl IntoIterator<Item = &'a T>,
) -> Result<(), CliError> {
    match first_repeat(items) {
        Some(item) => Err(CliError::Usage(format!(
            "{what} {item} is given more than once"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_split_at_the_first_equals_sign() {
        assert_eq!(assignment("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(assignment("A="), Ok(("A".into(), String::new())));
        assert!(assignment("=b").is_err());
        assert!(assignment("A").is_err());
        let message = env_assignment("1A=x").expect_err("a bad env key");
        assert!(message.contains("invalid env name \"1A\""), "{message}");
    }

    #[test]
    fn scale_assignments_name_a_proc_and_a_count() {
        let (proc, count) = scale("http=3").expect("valid");
        assert_eq!((proc.as_str(), count), ("http", 3));
        for (bad, mention) in [
            ("http", "expected PROC=N"),
            ("Http=3", "invalid proc name \"Http\""),
            ("http=-1", "non-negative integer, got \"-1\""),
            ("http=99999999999", "99999999999"),
        ] {
            let message = scale(bad).expect_err(bad);
            assert!(message.contains(mention), "{bad}: {message}");
        }
    }

    #[test]
    fn a_repeated_item_is_a_usage_error_naming_it() {
        let http = name("proc")("http").expect("a valid name");
        let procs = [http.clone(), http];
        match distinct("proc", &procs) {
            Err(CliError::Usage(message)) => {
                assert_eq!(message, "proc http is given more than once")
            }
            other => panic!("expected a usage error, got {other:?}"),
        }
        assert!(distinct("proc", &procs[..1]).is_ok());
    }
}
