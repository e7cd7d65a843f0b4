//! `visor completions <shell>` and `visor man`: shell completions and man
//! pages generated from the command line's own clap definitions, so they
//! never fall behind it.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory, ValueEnum};

use super::{Cli, CliError};

/// The shells completions are generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// bash (`source <(visor completions bash)`).
    Bash,
    /// zsh (put the output in a directory of `$fpath` as `_visor`).
    Zsh,
    /// fish (`visor completions fish > ~/.config/fish/completions/visor.fish`).
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write a page per command (`visor.1`, `visor-apply.1`, ...) into this
    /// directory instead of printing `visor.1`.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell`.
pub fn completions(args: &CompletionsArgs) -> Result<(), CliError> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut command, "visor", &mut script);
    write_stdout(&script)
}

/// Prints `visor.1`, or writes every command's page into `args.dir`.
pub fn man(args: &ManArgs) -> Result<(), CliError> {
    let command = Cli::command();
    let Some(dir) = &args.dir else {
        let mut page = Vec::new();
        render(command, &mut page)?;
        return write_stdout(&page);
    };
    let written = |source| CliError::Generate {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(written)?;
    let mut pages = vec![("visor".to_owned(), command.clone())];
    let mut queue = vec![("visor".to_owned(), command)];
    while let Some((name, command)) = queue.pop() {
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            let sub_name = format!("{name}-{}", sub.get_name());
            let page = sub.clone().name(sub_name.clone());
            pages.push((sub_name.clone(), page.clone()));
            queue.push((sub_name, page));
        }
    }
    for (name, command) in pages {
        let mut page = Vec::new();
        render(command, &mut page)?;
        std::fs::write(dir.join(format!("{name}.1")), page).map_err(written)?;
    }
    Ok(())
}

fn render(command: clap::Command, out: &mut Vec<u8>) -> Result<(), CliError> {
    clap_mangen::Man::new(command)
        .render(out)
        .map_err(|source| CliError::Generate {
            path: "-".into(),
            source,
        })
}

fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|error| CliError::Output(error.into()))
}
