//! A proc type's command line, split into a program and its arguments.
//!
//! Proc types store their command as one string (`./bin/web --port 80`);
//! the agent runs it without a shell, so it is split by POSIX shell word
//! rules (quotes and backslashes, no expansion). Invariant: a command that
//! splits yields a non-empty program; one that does not split is refused
//! with the reason, where it is registered and again where it is run.

use thiserror::Error;

/// A command line that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidCommand {
    /// Nothing to run.
    #[error("invalid command {0:?}: it is empty")]
    Empty(String),
    /// Unbalanced quotes or a trailing backslash.
    #[error("invalid command {0:?}: unbalanced quotes or a trailing backslash")]
    Unbalanced(String),
}

/// A command line split into its program and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The program: a path (relative ones are the revision's) or a name
    /// looked up in `PATH`.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl CommandLine {
    /// Splits `line` by shell word rules.
    pub fn parse(line: &str) -> Result<Self, InvalidCommand> {
        let words =
            shlex::split(line).ok_or_else(|| InvalidCommand::Unbalanced(line.to_owned()))?;
        let mut words = words.into_iter();
        match words.next() {
            Some(program) if !program.is_empty() => Ok(Self {
                program,
                args: words.collect(),
            }),
            _ => Err(InvalidCommand::Empty(line.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell_without_expansion() {
        let table = [
            ("./bin/web", "./bin/web", vec![]),
            ("./bin/web --port 80", "./bin/web", vec!["--port", "80"]),
            (
                "sh -c 'echo \"$PORT\"; exit 1'",
                "sh",
                vec!["-c", "echo \"$PORT\"; exit 1"],
            ),
            ("  web   a\\ b  ", "web", vec!["a b"]),
        ];
        for (line, program, args) in table {
            let parsed = CommandLine::parse(line).expect(line);
            assert_eq!(parsed.program, program, "{line}");
            assert_eq!(parsed.args, args, "{line}");
        }
    }

    #[test]
    fn empty_and_unbalanced_commands_are_refused() {
        for line in ["", "   ", "''"] {
            assert_eq!(
                CommandLine::parse(line),
                Err(InvalidCommand::Empty(line.into()))
            );
        }
        for line in ["sh -c 'unclosed", "web \\"] {
            assert_eq!(
                CommandLine::parse(line),
                Err(InvalidCommand::Unbalanced(line.into()))
            );
        }
    }
}
