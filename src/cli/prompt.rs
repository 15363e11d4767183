//! What the command line asks a person before it changes anything: deploy's y/N, failover's
//! region name, destroy's env name with what goes.

use crate::app::{AppError, Options};
use std::io::{BufRead, IsTerminal, Write};

/// Deploy asks only a person: stdin and stderr terminals, and no `--yes`.
pub fn should_prompt(stdin_tty: bool, stderr_tty: bool, yes: bool) -> bool {
    stdin_tty && stderr_tty && !yes
}

/// `y` or `yes` (any case) approves; anything else, an empty line or end of input does not.
pub fn approves(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Prints `question` on stderr and reads one line of stdin; `None` when it cannot be read.
fn answer(question: &str) -> Option<String> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok().map(|_| line)
}

pub(super) fn ask(question: &str) -> bool {
    answer(question).is_some_and(|a| approves(&a))
}

/// Asks until end of input; true only for exactly `want`.
pub(super) fn ask_exact(question: &str, want: &str) -> bool {
    answer(question).is_some_and(|a| a.trim() == want)
}

/// What destroy would delete, as the state records it: per region, how many objects of each
/// kind (with `verbose`, each node).
pub(super) fn destroy_summary(state: &crate::engine::state::State, verbose: bool) -> String {
    use std::collections::BTreeMap;
    let mut by_region: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for (id, n) in &state.nodes {
        by_region
            .entry(n.region.as_str())
            .or_default()
            .entry(n.kind.as_str())
            .or_default()
            .push(id.as_str());
    }
    if by_region.is_empty() {
        return "The state file records no object of this env.\n".into();
    }
    let mut s = String::new();
    for (region, kinds) in by_region {
        let total: usize = kinds.values().map(Vec::len).sum();
        let list: Vec<String> = kinds.iter().map(|(k, ids)| format!("{k} {}", ids.len())).collect();
        s.push_str(&format!("  {region}: {total} objects ({})\n", list.join(", ")));
        if verbose {
            for id in kinds.values().flatten() {
                s.push_str(&format!("    - {id}\n"));
            }
        }
    }
    s
}

pub(super) fn confirm(opts: &Options, summary: &str) -> Result<(), AppError> {
    if !std::io::stdin().is_terminal() {
        return Err(AppError::Usage("destroy without a terminal needs --yes".into()));
    }
    eprint!("{summary}");
    eprint!(
        "This deletes every object of env {:?} in {}. Type the env name to confirm: ",
        opts.inputs.env,
        opts.inputs.topology.regions().collect::<Vec<_>>().join(" and ")
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| AppError::context("reading the confirmation", e))?;
    if line.trim() == opts.inputs.env {
        Ok(())
    } else {
        Err(AppError::Failed("destroy cancelled".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 17, item 15): destroy's confirmation named the env, not what goes.
    #[test]
    fn destroy_names_what_goes_per_region_and_kind() {
        let text = include_str!("../../tests/fixtures/v2-state.json");
        let mut state = crate::engine::state::State::parse(text, std::path::Path::new("v2-state.json")).unwrap();
        crate::migrate::migrate(&mut state).unwrap();
        let s = destroy_summary(&state, false);
        assert!(s.contains("  us-east-1: 37 objects ("), "{s}");
        assert!(s.contains("cloudfront 1"), "{s}");
        // A migrated v2 stack: no replication configuration in the secondary yet.
        assert!(s.contains("  eu-west-1: 32 objects ("), "{s}");
        assert!(!s.contains("us-east-1/vpc"), "{s}");
        assert!(destroy_summary(&state, true).contains("    - us-east-1/vpc"));
    }

    #[test]
    fn deploy_asks_only_a_person_and_only_yes_proceeds() {
        assert!(should_prompt(true, true, false));
        assert!(!should_prompt(true, true, true), "--yes");
        assert!(!should_prompt(false, true, false), "stdin not a terminal");
        assert!(!should_prompt(true, false, false), "stderr not a terminal");
        for yes in ["y", "Y", "yes", " YES\n"] {
            assert!(approves(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yess", "ja"] {
            assert!(!approves(no), "{no:?}");
        }
    }
}
