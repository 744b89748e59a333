//! Helpers shared by the fuzz targets and the corpus generator
//! (`examples/gen_corpus.rs`).

pub mod commands {
    //! How `command_apply` reads command lines out of fuzz input, and the
    //! inverse, to write seeds.

    use std::collections::BTreeSet;
    use std::sync::OnceLock;

    use bytes::Bytes;
    use concord::command::{self, Exec};

    /// Keys, values and numbers that commands take; one token byte each.
    const BASE_WORDS: &[&str] = &[
        "mk1",
        "mk2",
        "a",
        "b",
        "c",
        "l",
        "h",
        "s",
        "z",
        "q",
        "x",
        "f",
        "g",
        "v",
        "owner",
        "sess",
        "svc",
        "i1",
        "0",
        "1",
        "2",
        "3",
        "5",
        "10",
        "100",
        "1000",
        "-1",
        "-2",
        "-100",
        "0.5",
        "-1.5",
        "1e3",
        "+inf",
        "-inf",
        "inf",
        "nan",
        "(1",
        "[a",
        "(a",
        "+",
        "-",
        "*",
        "$",
        ">",
        "0-0",
        "0-1",
        "1-1",
        "*-1",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775806",
        "18446744073709551615",
        "4294967296",
        "",
        " ",
        "\0",
        "\u{7f}",
        "01",
        "-0",
        "1.0",
        "1e400",
        "0x10",
        "ab*",
        "a?",
        "[a-z]",
    ];

    pub struct Tables {
        /// Every command that is not answered by the server alone: its
        /// name, and a subcommand's name after it.
        pub commands: Vec<Vec<Bytes>>,
        pub base: Vec<Bytes>,
        /// The upper-case words of every command's syntax (EX, NX,
        /// WITHSCORES, SESSION, ...).
        pub keywords: Vec<Bytes>,
    }

    pub fn tables() -> &'static Tables {
        static T: OnceLock<Tables> = OnceLock::new();
        T.get_or_init(|| {
            let mut commands = Vec::new();
            let mut keywords = BTreeSet::new();
            let mut add_syntax = |syntax: &str| {
                let word_char = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
                for word in syntax.split(|c: char| !word_char(c)) {
                    if word.len() > 1 && word.chars().all(|c| !c.is_ascii_lowercase()) {
                        keywords.insert(word.to_owned());
                    }
                }
            };
            let runs = |exec: &Exec| !matches!(exec, Exec::Local);
            for spec in command::all() {
                add_syntax(spec.syntax);
                if spec.subcommands.is_empty() && runs(&spec.exec) {
                    commands.push(vec![Bytes::from(spec.name.to_uppercase())]);
                }
                for sub in spec.subcommands {
                    add_syntax(sub.syntax);
                    if runs(&sub.exec) {
                        let mut words = sub.name.split('|');
                        let parent = words.next().unwrap_or(spec.name);
                        let child = words.next().unwrap_or(sub.name);
                        commands.push(vec![
                            Bytes::from(parent.to_uppercase()),
                            Bytes::from(child.to_uppercase()),
                        ]);
                    }
                }
            }
            Tables {
                commands,
                base: BASE_WORDS
                    .iter()
                    .map(|w| Bytes::from_static(w.as_bytes()))
                    .collect(),
                keywords: keywords.into_iter().map(Bytes::from).collect(),
            }
        })
    }

    /// Reads the input a byte at a time (zeros once it runs out).
    pub struct Input<'a>(pub &'a [u8]);

    impl Input<'_> {
        pub fn byte(&mut self) -> Option<u8> {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            Some(b)
        }

        /// An argument: a token byte below 0x80 picks a base word; from
        /// 0x80 to 0xBF it picks, with the next byte, a keyword; from 0xC0
        /// its low 3 bits count the raw bytes that follow.
        pub fn token(&mut self) -> Bytes {
            let t = tables();
            let b = self.byte().unwrap_or(0);
            match b {
                0x00..=0x7F => t.base[usize::from(b) % t.base.len()].clone(),
                0x80..=0xBF => {
                    let i = usize::from(b - 0x80) * 256 + usize::from(self.byte().unwrap_or(0));
                    t.keywords[i % t.keywords.len()].clone()
                }
                _ => {
                    let n = usize::from(b & 7).min(self.0.len());
                    let (raw, rest) = self.0.split_at(n);
                    self.0 = rest;
                    Bytes::copy_from_slice(raw)
                }
            }
        }
    }

    /// The input bytes that make `command_apply` run `argv`, if its name is
    /// in the table (an argument the dictionary lacks goes raw, cut to 7
    /// bytes).
    pub fn encode(argv: &[&str]) -> Option<Vec<u8>> {
        let t = tables();
        let upper: Vec<String> = argv.iter().map(|a| a.to_uppercase()).collect();
        let (i, name_len) = t.commands.iter().enumerate().find_map(|(i, c)| {
            let matches =
                c.len() <= upper.len() && c.iter().zip(&upper).all(|(w, a)| w[..] == *a.as_bytes());
            matches.then_some((i, c.len()))
        })?;
        let mut out = vec![(i / 256) as u8, (i % 256) as u8];
        let args = &argv[name_len..];
        out.push(args.len().min(8) as u8);
        for arg in args.iter().take(8) {
            let arg = arg.as_bytes();
            if let Some(j) = t.base.iter().position(|w| w[..] == *arg) {
                out.push(j as u8);
            } else if let Some(j) = t.keywords.iter().position(|w| w[..] == *arg) {
                out.push(0x80 + (j / 256) as u8);
                out.push((j % 256) as u8);
            } else {
                let raw = &arg[..arg.len().min(7)];
                out.push(0xC0 | raw.len() as u8);
                out.extend_from_slice(raw);
            }
        }
        Some(out)
    }
}
