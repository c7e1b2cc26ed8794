//! The one consent rule for commands that change things (`up`, `stage`, `down`): `--yes` (or
//! `ECOBOOT_YES=1`) goes ahead; on a terminal the command shows its plan and asks; anywhere else
//! it refuses with exit 2 and says how to go ahead.

use std::io::{BufRead, IsTerminal, Write};

use crate::error::{Error, Result};

/// What a command that changes things may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Consent {
    /// `--yes`: go ahead.
    Given,
    /// A terminal: show the plan, then ask.
    Ask,
}

/// [`Consent`] for `command`, or a usage error when there is neither `--yes` nor a terminal.
pub(super) fn consent(command: &str, yes: bool) -> Result<Consent> {
    decide(command, yes, std::io::stdin().is_terminal())
}

fn decide(command: &str, yes: bool, terminal: bool) -> Result<Consent> {
    match (yes, terminal) {
        (true, _) => Ok(Consent::Given),
        (false, true) => Ok(Consent::Ask),
        (false, false) => Err(Error::Usage(format!(
            "`ecoboot {command}` changes things and there is no terminal to ask on: pass --yes (or set ECOBOOT_YES=1) to go ahead, or run `ecoboot plan` to see what it would do"
        ))),
    }
}

/// Asks `question` on the terminal; only `y`/`yes` goes ahead.
pub(super) fn ask(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_goes_a_terminal_asks_anything_else_refuses() {
        assert_eq!(decide("up", true, false).unwrap(), Consent::Given);
        assert_eq!(decide("up", true, true).unwrap(), Consent::Given);
        assert_eq!(decide("down", false, true).unwrap(), Consent::Ask);
        let err = decide("stage", false, false).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
        assert!(err.to_string().contains("pass --yes"), "{err}");
    }
}
