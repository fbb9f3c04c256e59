use anyhow::{bail, Result};
use clap::Args;

use crate::catalog;

#[derive(Args)]
pub struct PullArgs {
    /// Model name (see --list).
    #[arg(required_unless_present = "list")]
    name: Option<String>,
    /// List the known models and whether they are cached.
    #[arg(long)]
    list: bool,
    /// Fetch again even if cached.
    #[arg(long)]
    force: bool,
}

pub fn run(a: PullArgs) -> Result<()> {
    if a.list {
        let dir = catalog::models_dir()?;
        for m in catalog::MODELS {
            let cached = dir.join(m.file).exists();
            let default = if m.name == catalog::DEFAULT_MODEL { " (default)" } else { "" };
            println!("{:<14} {}{}{}", m.name, m.description, default, if cached { " [cached]" } else { "" });
        }
        return Ok(());
    }
    let name = a.name.unwrap_or_default();
    let Some(m) = catalog::find(&name) else {
        let names: Vec<&str> = catalog::MODELS.iter().map(|m| m.name).collect();
        bail!("unknown model '{name}' (known: {})", names.join(", "));
    };
    let path = catalog::pull(m, a.force)?;
    println!("{}", path.display());
    Ok(())
}
