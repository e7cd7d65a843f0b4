//! Parsing the command line, and reporting a mistake in it on one line.
//!
//! The CLI's contract is one `error: ...` line on stderr and exit 2 for any
//! usage error. clap's own errors carry a usage block, tips and a "For more
//! information" trailer on further lines; here they are folded into that one
//! line. `--help` and `--version` are not errors and print as clap prints them.

use std::process::ExitCode;

use clap::{Command, CommandFactory, FromArgMatches};

use super::Cli;

/// The exit code of a usage error.
pub const USAGE_EXIT: u8 = 2;

/// Parses the process's arguments.
pub fn parse() -> Result<Cli, clap::Error> {
    parse_from(std::env::args_os())
}

/// Parses `args` (the program name first).
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = missing_subcommand_is_an_error(Cli::command()).try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// A command that reports a missing subcommand as an error: clap's derive
/// prints the whole help instead (`visor app`), on stderr with exit 2.
fn missing_subcommand_is_an_error(command: Command) -> Command {
    command
        .arg_required_else_help(false)
        .mut_subcommands(missing_subcommand_is_an_error)
}

/// Prints what clap returned: help and version as they are (exit 0), an
/// error as one line (exit 2).
pub fn report(error: &clap::Error) -> ExitCode {
    if !error.use_stderr() {
        // Help or version: not an error. A closed stdout is ignored here too.
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {}", one_line(error));
    ExitCode::from(USAGE_EXIT)
}

/// clap's message without the `error: ` prefix, the usage block or the
/// trailer; continuation lines (lists, possible values) joined with spaces
/// and tips after a `;`.
pub fn one_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let message = rendered.strip_prefix("error: ").unwrap_or(&rendered);
    let mut line = String::new();
    for part in message.lines().map(str::trim) {
        if part.starts_with("Usage:") || part.starts_with("For more information") {
            break;
        }
        if part.is_empty() {
            continue;
        }
        if !line.is_empty() {
            line.push_str(if part.starts_with("tip:") { "; " } else { " " });
        }
        line.push_str(part);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(line: &str) -> clap::Error {
        let args = std::iter::once("visor").chain(line.split_whitespace());
        match parse_from(args) {
            Ok(cli) => panic!("{line:?} parsed: {cli:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn clap_errors_fold_into_one_line() {
        let table = [
            (
                "",
                "'visor' requires a subcommand but one was not provided [subcommands: ",
            ),
            (
                "app",
                "'visor app' requires a subcommand but one was not provided [subcommands: register, unregister, list, show, help]",
            ),
            ("frobnicate", "unrecognized subcommand 'frobnicate'"),
            (
                "app register",
                "the following required arguments were not provided: --repo-url <REPO_URL> --stack <STACK> <NAME>",
            ),
            (
                "-o xml app list",
                "invalid value 'xml' for '--output <OUTPUT>' [possible values: table, json, yaml]",
            ),
            ("hosts extra", "unexpected argument 'extra' found"),
            (
                "app list --outptu json",
                "unexpected argument '--outptu' found; tip: a similar argument exists: '--output'",
            ),
            (
                "--cert c.pem app list",
                "the following required arguments were not provided: --key <KEY>",
            ),
            (
                "app show Web",
                "invalid value 'Web' for '<NAME>': invalid app name \"Web\": may contain only lower-case letters, digits, '-' and '.'",
            ),
            (
                "--endpoints ftp://h:1 hosts",
                "invalid value 'ftp://h:1' for '--endpoints <ENDPOINTS>': scheme \"ftp\" is not supported",
            ),
        ];
        for (line, expected) in table {
            let error = error_of(line);
            assert!(error.use_stderr(), "{line:?}");
            let folded = one_line(&error);
            assert!(!folded.contains('\n'), "{line:?}: {folded}");
            assert!(
                folded.starts_with(expected),
                "{line:?}:\n  got  {folded}\n  want {expected}..."
            );
        }
    }

    #[test]
    fn help_and_version_are_not_errors() {
        for line in ["--help", "app --help", "help app", "--version", "-V"] {
            let error = error_of(line);
            assert!(!error.use_stderr(), "{line:?} should print on stdout");
            assert_eq!(error.exit_code(), 0, "{line:?}");
        }
    }
}
