//! `visor shim` (hidden): the supervisor of one instance, spawned by the
//! exec provider; see `provider::exec::shim`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use super::CliError;

/// Supervise one instance (spawned by the exec provider, not by people).
#[derive(Debug, PartialEq, Eq, clap::Args)]
pub struct ShimArgs {
    /// The instance directory, holding the provider's `spec.json`.
    #[arg(long)]
    dir: PathBuf,
}

/// `visor shim` on its own, for [`parse_alone`].
#[derive(Debug, clap::Parser)]
#[command(name = "visor shim")]
struct ShimCommand {
    #[command(flatten)]
    args: ShimArgs,
}

/// `args` (the program name first) parsed as `visor shim ...` without the
/// rest of the command tree, when that is what they are: `shim` first, as
/// the exec provider spawns it. `None` for any other command line (global
/// flags before `shim` included), which the whole tree parses.
pub fn parse_alone<I, T>(args: I) -> Option<Result<ShimArgs, clap::Error>>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut args = args.into_iter().map(Into::into).skip(1).peekable();
    if args.peek().is_none_or(|first| first != "shim") {
        return None;
    }
    Some(ShimCommand::try_parse_from(args).map(|parsed| parsed.args))
}

/// Supervises the instance until its workload ended and its exit is recorded.
pub async fn run(args: ShimArgs) -> Result<(), CliError> {
    Ok(crate::provider::exec::shim::run(args.dir).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, usage};

    #[test]
    fn the_shim_alone_reads_what_the_whole_tree_reads() {
        let line = ["visor", "shim", "--dir", "/data/exec/instances/i-1"];
        let alone = parse_alone(line)
            .expect("a shim command line")
            .expect("parses");
        let Command::Shim(whole) = usage::parse_from(line).expect("parses").command else {
            panic!("the whole tree reads a shim command");
        };
        assert_eq!(alone, whole);
        assert_eq!(alone.dir, PathBuf::from("/data/exec/instances/i-1"));
    }

    #[test]
    fn other_command_lines_are_left_to_the_whole_tree() {
        assert!(parse_alone(["visor", "--log-format", "json", "shim", "--dir", "/d"]).is_none());
        assert!(parse_alone(["visor", "status"]).is_none());
        assert!(parse_alone(["visor"]).is_none());
    }

    #[test]
    fn a_bad_shim_command_line_is_a_usage_error() {
        let error = parse_alone(["visor", "shim"]).expect("a shim command line");
        let error = error.expect_err("--dir is required");
        assert!(
            usage::one_line(&error).contains("--dir"),
            "{}",
            usage::one_line(&error)
        );
    }
}
