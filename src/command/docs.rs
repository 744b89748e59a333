//! Everything the command table says about itself: the `COMMAND INFO` and
//! `COMMAND DOCS` replies, and `docs/commands.md`. A test keeps the markdown
//! file equal to what the table renders, so the reference cannot go stale.

use bytes::Bytes;

use super::{all, families, CommandSpec};
use crate::resp::Reply;

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn status(s: &str) -> Reply {
    Reply::Simple(s.to_owned().into())
}

/// ACL categories of the spec, as Redis reports them (`@write`).
pub fn acl_categories(spec: &CommandSpec) -> Vec<String> {
    super::acl::categories(spec)
        .into_iter()
        .map(|c| format!("@{c}"))
        .collect()
}

/// One element of `COMMAND INFO`: name, arity, flags, first key, last key,
/// step, ACL categories, tips, key specs, subcommands.
pub fn command_info(spec: &CommandSpec) -> Reply {
    Reply::Array(vec![
        bulk(spec.name),
        Reply::Int(spec.arity as i64),
        Reply::Set(
            spec.flags
                .iter()
                .map(|f| status(f.as_str()))
                .chain((spec.keys.numkeys_at > 0).then(|| status("movablekeys")))
                .collect(),
        ),
        Reply::Int(spec.keys.first as i64),
        Reply::Int(spec.keys.last as i64),
        Reply::Int(spec.keys.step as i64),
        Reply::Set(acl_categories(spec).iter().map(|c| status(c)).collect()),
        Reply::Set(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(spec.subcommands.iter().map(command_info).collect()),
    ])
}

/// One entry of `COMMAND DOCS`: the name, then a map of summary, since,
/// group, syntax and subcommands.
pub fn command_docs(spec: &CommandSpec) -> (Reply, Reply) {
    let mut fields = vec![
        (bulk("summary"), bulk(spec.summary)),
        (bulk("since"), bulk(spec.since)),
        (bulk("group"), bulk(spec.group.as_str())),
        (bulk("complexity"), bulk("")),
        (bulk("syntax"), bulk(&usage(spec))),
    ];
    if !spec.subcommands.is_empty() {
        fields.push((
            bulk("subcommands"),
            Reply::Map(spec.subcommands.iter().map(command_docs).collect()),
        ));
    }
    (bulk(spec.name), Reply::Map(fields))
}

/// `NAME args` as a user types it; `CONFIG GET parameter` for subcommands.
pub fn usage(spec: &CommandSpec) -> String {
    let name = spec.name.replace('|', " ").to_ascii_uppercase();
    if spec.syntax.is_empty() {
        name
    } else {
        format!("{name} {}", spec.syntax)
    }
}

fn flags_text(spec: &CommandSpec) -> String {
    spec.flags
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The command reference, `docs/commands.md`.
pub fn render_markdown() -> String {
    let mut out = String::new();
    out.push_str("# concord command reference\n\n");
    out.push_str(
        "Generated from the command table (`src/command/`); do not edit by hand. \
         Regenerate with `CONCORD_UPDATE_DOCS=1 cargo test --lib command::docs`.\n\n",
    );
    out.push_str(
        "Arity follows Redis: `n` means exactly n arguments counting the command name, \
         `-n` at least n. Replies and errors follow Redis 7 unless a command says otherwise.\n\n",
    );
    let count: usize = all().map(|s| 1 + s.subcommands.len()).sum();
    out.push_str(&format!("{count} commands and subcommands.\n\n"));
    for family in families() {
        let Some(first) = family.first() else {
            continue;
        };
        out.push_str(&format!("## {}\n\n", first.group.title()));
        out.push_str("| Command | Arity | Flags | Since | Summary |\n|---|---|---|---|---|\n");
        for spec in family {
            row(&mut out, spec);
            for sub in spec.subcommands {
                row(&mut out, sub);
            }
        }
        out.push('\n');
    }
    out
}

fn row(out: &mut String, spec: &CommandSpec) {
    out.push_str(&format!(
        "| `{}` | {} | {} | {} | {} |\n",
        usage(spec).replace('|', "\\|"),
        spec.arity,
        flags_text(spec),
        spec.since,
        spec.summary.replace('|', "\\|"),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_commands_md_matches_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/commands.md");
        let rendered = render_markdown();
        if std::env::var_os("CONCORD_UPDATE_DOCS").is_some() {
            std::fs::write(path, &rendered).expect("write docs/commands.md");
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "docs/commands.md is stale: run `CONCORD_UPDATE_DOCS=1 cargo test --lib command::docs`"
        );
    }

    #[test]
    fn command_info_has_redis_shape() {
        let spec = super::super::lookup(b"get").unwrap();
        let Reply::Array(items) = command_info(spec) else {
            panic!("not an array")
        };
        assert_eq!(items.len(), 10);
        assert_eq!(items[0], bulk("get"));
        assert_eq!(items[1], Reply::Int(2));
        assert_eq!(items[3], Reply::Int(1));
    }
}
