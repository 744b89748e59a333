//! ACL files (`--aclfile`, ACL LOAD): the users to seed or load, read as
//! Redis reads them. Only a seed and an export: the users themselves are
//! replicated state.
//!
//! One user per line, `user <name> <rules...>`, words separated by single
//! spaces; blank lines are skipped. Redis has no comments in ACL files (a
//! `#...` line is an error, `#<hash>` being a rule), and neither has this.
//! Every error is collected, each naming its line, and the whole file is
//! refused, in Redis's words.

use std::collections::BTreeSet;

use super::rules::{has_spaces, merge_selectors, normalize_rules, Checks};
use super::{Catalog, RuleError, User};

/// The users of an ACL file with their rules, passwords already hashed
/// (see [`super::normalize_rules`]), ready for [`super::AclOp::Load`] or
/// [`super::AclOp::Seed`]. Checks the syntax of every rule; command and
/// category names need the catalog: see [`parse_acl_file_with`]. Errors
/// name lines as `line N`.
pub fn parse_acl_file(text: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    parse(text, &|line| format!("line {line}"), None)
}

/// [`parse_acl_file`], with command and category names checked against
/// `catalog` when given, and errors naming `filename:N` as Redis does.
pub fn parse_acl_file_with(
    text: &str,
    filename: &str,
    catalog: Option<&dyn Catalog>,
) -> Result<Vec<(String, Vec<String>)>, String> {
    parse(text, &|line| format!("{filename}:{line}"), catalog)
}

fn parse(
    text: &str,
    location: &dyn Fn(usize) -> String,
    catalog: Option<&dyn Catalog>,
) -> Result<Vec<(String, Vec<String>)>, String> {
    let checks = Checks {
        catalog,
        removals: true,
    };
    let mut users = Vec::new();
    let mut seen = BTreeSet::new();
    let mut errors = String::new();
    for (i, line) in text.split('\n').enumerate() {
        let number = i + 1;
        let line = line.trim_matches([' ', '\t', '\r', '\n']);
        if line.is_empty() {
            continue;
        }
        // Single spaces separate words; the empty words of a run of
        // spaces are rules that do nothing.
        let words: Vec<&str> = line.split(' ').filter(|w| !w.is_empty()).collect();
        if words.len() < 2 || words[0] != "user" {
            errors.push_str(&format!(
                "{} should start with user keyword followed by the username. ",
                location(number)
            ));
            continue;
        }
        let name = words[1];
        if has_spaces(name) {
            errors.push_str(&format!(
                "{}: username '{name}' contains invalid characters. ",
                location(number)
            ));
            continue;
        }
        if !seen.insert(name.to_owned()) {
            errors.push_str(&format!(
                "WARNING: Duplicate user '{name}' found on line {number}. "
            ));
            continue;
        }
        let rules: Vec<String> = words[2..]
            .iter()
            .map(|w| w.trim_matches(['\t', '\r', '\n']).to_owned())
            .collect();
        let rules = normalize_rules(&rules);
        let merged = match merge_selectors(&rules) {
            Ok(merged) => merged,
            Err(_) => {
                errors.push_str(&format!(
                    "{}: Unmatched parenthesis in selector definition. ",
                    location(number)
                ));
                continue;
            }
        };
        // Like Redis: every unknown name is reported, and the first other
        // error (later ones may only follow from it).
        let mut user = User::new();
        let mut other_error = false;
        for rule in &merged {
            match user.set(rule, checks) {
                Ok(()) => {}
                Err(RuleError::UnknownName) => errors.push_str(&format!(
                    "{}: Error in applying operation '{rule}': {}. ",
                    location(number),
                    RuleError::UnknownName
                )),
                Err(reason) if !other_error => {
                    other_error = true;
                    errors.push_str(&format!("{}: {reason}. ", location(number)));
                }
                Err(_) => {}
            }
        }
        users.push((name.to_owned(), rules));
    }
    if errors.is_empty() {
        Ok(users)
    } else {
        errors.push_str(
            "WARNING: ACL errors detected, no change to the previously active ACL rules was \
             performed",
        );
        Err(errors)
    }
}
