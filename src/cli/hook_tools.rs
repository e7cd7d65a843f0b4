//! The hook tools a relation hook runs: `visor relation-get`, `visor
//! relation-set`, `visor relation-list`. They reach the agent that runs the
//! hook over its tools socket, with the hook's context from the environment
//! (`agent::relation_hooks::tools`); outside a hook they fail at once.
//! Hidden from the main help (they mean nothing outside a hook);
//! docs/agent.md documents them.

use std::collections::BTreeMap;

use clap::{Args, ValueEnum};
use visor_controllers::Name;

use super::CliError;
use super::args;
use super::output::Output;
use crate::agent::relation_hooks::HookTools;

/// How `relation-get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ToolFormat {
    /// `key=value` lines, or one key's bare value.
    Text,
    /// A JSON object of the settings, or one key's value as a JSON string
    /// (`null` if unset).
    Json,
}

#[derive(Debug, Args)]
pub struct RelationGetArgs {
    /// The setting to print; `-` (or none) prints every setting. (Not
    /// `key`: the global `--key` flag, the registry's client key, has that id.)
    #[arg(value_name = "KEY")]
    setting: Option<String>,
    /// The unit whose settings to read; by default the hook's remote unit.
    #[arg(value_parser = args::name("unit"))]
    unit: Option<Name>,
    /// `text` or `json` (`-o json` works too).
    #[arg(long, value_enum, default_value_t = ToolFormat::Text)]
    format: ToolFormat,
}

#[derive(Debug, Args)]
pub struct RelationSetArgs {
    /// Settings of the hook's unit to set, written only if the hook succeeds.
    #[arg(required = true, value_name = "KEY=VALUE", value_parser = args::assignment)]
    settings: Vec<(String, String)>,
}

/// `visor relation-get [key] [unit]`.
pub async fn relation_get(args: RelationGetArgs, out: &Output) -> Result<(), CliError> {
    let tools = HookTools::from_env()?;
    let settings = tools
        .relation_get(args.unit.as_ref().map(Name::as_str))
        .await?;
    let json = args.format == ToolFormat::Json || out.is_structured();
    match args.setting.as_deref().filter(|key| *key != "-") {
        Some(key) => match (settings.get(key), json) {
            (value, true) => out.json(&value)?,
            (Some(value), false) => out.text(value)?,
            (None, false) => {}
        },
        None if json => out.json(&settings)?,
        None => {
            for (key, value) in &settings {
                out.text(&format!("{key}={value}"))?;
            }
        }
    }
    Ok(())
}

/// `visor relation-set key=value ...`.
pub async fn relation_set(args: RelationSetArgs) -> Result<(), CliError> {
    let tools = HookTools::from_env()?;
    let settings: BTreeMap<String, String> = args.settings.into_iter().collect();
    Ok(tools.relation_set(settings).await?)
}

/// `visor relation-list`.
pub async fn relation_list(out: &Output) -> Result<(), CliError> {
    let tools = HookTools::from_env()?;
    for unit in tools.relation_list().await? {
        out.text(&unit)?;
    }
    Ok(())
}
