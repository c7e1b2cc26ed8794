//! Commands about ecoboot itself: `version`, `schema`, `completions`, `man`.

use crate::build_info::BUILD;
use crate::cli::{Cli, Global, Output};
use crate::error::{Error, Result};

/// `ecoboot version`.
pub(super) fn version(g: &Global) -> Result<()> {
    match g.output {
        Output::Json => println!("{}", serde_json::to_string(&BUILD).expect("serializes")),
        Output::Human => println!("{BUILD}"),
    }
    Ok(())
}

/// The config's JSON Schema, from the same serde types the loader uses.
pub fn config_schema() -> serde_json::Value {
    schemars::schema_for!(crate::config::Cluster).to_value()
}

/// `ecoboot schema`.
pub(super) fn schema() -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&config_schema()).expect("serializes")
    );
    Ok(())
}

/// `ecoboot completions SHELL`.
pub(super) fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "ecoboot", &mut std::io::stdout());
    Ok(())
}

/// `ecoboot man`.
pub(super) fn man() -> Result<()> {
    let cmd = <Cli as clap::CommandFactory>::command();
    clap_mangen::Man::new(cmd)
        .render(&mut std::io::stdout())
        .map_err(|e| Error::io("write", "stdout", e))
}
