//! Expected strings come from Redis's own tests (`tests/unit/acl.tcl` and
//! `tests/unit/acl-v2.tcl`, 7.0 for LIST's flags, 7.2 for the ordered
//! command rules) unless a comment says otherwise.

use proptest::prelude::*;

use super::*;
use crate::state::{Op, Query, State, StateError};

/// A small command table: containers with subcommands, plain commands,
/// and categories as Redis gives them.
struct TestCatalog;

/// A command's name and its categories.
type Spec = (&'static str, &'static [&'static str]);

const COMMANDS: &[Spec] = &[
    ("get", &["read", "string", "fast"]),
    ("set", &["write", "string", "slow"]),
    ("incr", &["write", "string", "fast"]),
    ("hget", &["read", "hash", "fast"]),
    ("hset", &["write", "hash", "fast"]),
    ("sadd", &["write", "set", "fast"]),
    ("ping", &["fast", "connection"]),
    ("select", &["fast", "connection"]),
    ("publish", &["pubsub", "fast"]),
    ("subscribe", &["pubsub", "slow"]),
    ("psubscribe", &["pubsub", "slow"]),
    ("flushall", &["keyspace", "write", "slow", "dangerous"]),
];

const CONTAINERS: &[(&str, &[Spec])] = &[
    (
        "config",
        &[
            ("get", &["admin", "slow", "dangerous"]),
            ("set", &["admin", "slow", "dangerous"]),
            ("resetstat", &["admin", "slow", "dangerous"]),
        ],
    ),
    (
        "client",
        &[
            ("id", &["slow", "connection"]),
            ("setname", &["slow", "connection"]),
            ("kill", &["admin", "slow", "dangerous", "connection"]),
            ("list", &["admin", "slow", "dangerous", "connection"]),
        ],
    ),
    (
        "acl",
        &[
            ("list", &["admin", "slow", "dangerous"]),
            ("setuser", &["admin", "slow", "dangerous"]),
        ],
    ),
    ("memory", &[("doctor", &["slow"]), ("stats", &["slow"])]),
    (
        "debug",
        &[
            ("digest", &["admin", "slow", "dangerous"]),
            ("segfault", &["admin", "slow", "dangerous"]),
            ("object", &["admin", "slow", "dangerous"]),
        ],
    ),
];

const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

impl Catalog for TestCatalog {
    fn is_command(&self, name: &str) -> bool {
        COMMANDS.iter().any(|(n, _)| *n == name) || CONTAINERS.iter().any(|(n, _)| *n == name)
    }
    fn has_subcommands(&self, name: &str) -> bool {
        CONTAINERS.iter().any(|(n, _)| *n == name)
    }
    fn is_subcommand(&self, parent: &str, sub: &str) -> bool {
        CONTAINERS
            .iter()
            .any(|(n, subs)| *n == parent && subs.iter().any(|(s, _)| *s == sub))
    }
    fn is_category(&self, name: &str) -> bool {
        CATEGORIES.contains(&name)
    }
}

/// Every callable command with its categories, by full name.
fn all_commands() -> Vec<(String, Vec<&'static str>)> {
    let mut out: Vec<(String, Vec<&'static str>)> = COMMANDS
        .iter()
        .map(|(n, c)| (n.to_string(), c.to_vec()))
        .collect();
    for (parent, subs) in CONTAINERS {
        for (sub, cats) in *subs {
            out.push((format!("{parent}|{sub}"), cats.to_vec()));
        }
    }
    out
}

fn categories_of(full_name: &str) -> Vec<&'static str> {
    all_commands()
        .into_iter()
        .find(|(n, _)| n == full_name)
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("no command {full_name}"))
}

fn strings(rules: &str) -> Vec<String> {
    rules.split(' ').map(str::to_owned).collect()
}

/// Applies ACL SETUSER as the server would: validated, then applied.
fn setuser(acl: &mut Acl, name: &str, rules: &str) -> Result<Outcome, AclError> {
    let rules = normalize_rules(&strings(rules));
    acl.validate_setuser(name, &rules, &TestCatalog)?;
    acl.apply(&AclOp::SetUser {
        name: name.to_owned(),
        rules,
    })
}

fn commands_of(acl: &Acl, name: &str) -> String {
    acl.user(name).expect("user").root.describe_commands()
}

fn line_of(acl: &Acl, name: &str) -> String {
    let prefix = format!("user {name} ");
    acl.list()
        .into_iter()
        .find(|l| l.starts_with(&prefix))
        .expect("a line")
}

fn allows(acl: &Acl, name: &str, command: &str) -> bool {
    acl.user(name)
        .expect("user")
        .allows_command(command, &categories_of(command))
}

fn modifier(rule: &str, reason: RuleError) -> AclError {
    AclError::Modifier {
        rule: rule.to_owned(),
        reason,
    }
}

// ---------------------------------------------------------------- users

#[test]
fn the_default_user_and_new_users_start_as_in_redis() {
    let mut acl = Acl::default();
    assert_eq!(acl.list(), vec!["user default on nopass ~* &* +@all"]);
    assert_eq!(setuser(&mut acl, "newuser", ""), Ok(Outcome::Ok));
    assert_eq!(
        line_of(&acl, "newuser"),
        "user newuser off resetchannels -@all"
    );
    let user = acl.user("newuser").unwrap();
    assert!(!user.authenticates(b""));
    assert!(!user.allows_command("get", &["read", "string", "fast"]));
    assert!(!user.allows_key(b"k", true, false));
    assert!(!user.allows_channel(b"c", false));
    assert_eq!(
        acl.read(&AclQuery::Users),
        Outcome::Array(vec![bulk("default"), bulk("newuser")])
    );
}

#[test]
fn getuser_replies_as_redis() {
    let mut acl = Acl::default();
    assert_eq!(acl.read(&AclQuery::GetUser("nobody".into())), Outcome::Nil);
    let default = Outcome::Map(vec![
        (
            bulk("flags"),
            Outcome::Set(vec![bulk("on"), bulk("nopass")]),
        ),
        (bulk("passwords"), Outcome::Array(vec![])),
        (bulk("commands"), bulk("+@all")),
        (bulk("keys"), bulk("~*")),
        (bulk("channels"), bulk("&*")),
        (bulk("selectors"), Outcome::Array(vec![])),
    ]);
    assert_eq!(acl.read(&AclQuery::GetUser("default".into())), default);

    // "Test ACL GETUSER response information" (acl-v2.tcl).
    setuser(
        &mut acl,
        "selector-info",
        "-@all +get resetchannels &channel1 %R~foo1 %W~bar1 ~baz1",
    )
    .unwrap();
    setuser(
        &mut acl,
        "selector-info",
        "(-@all +set resetchannels &channel2 %R~foo2 %W~bar2 ~baz2)",
    )
    .unwrap();
    let user = Outcome::Map(vec![
        (bulk("flags"), Outcome::Set(vec![bulk("off")])),
        (bulk("passwords"), Outcome::Array(vec![])),
        (bulk("commands"), bulk("-@all +get")),
        (bulk("keys"), bulk("%R~foo1 %W~bar1 ~baz1")),
        (bulk("channels"), bulk("&channel1")),
        (
            bulk("selectors"),
            Outcome::Array(vec![Outcome::Map(vec![
                (bulk("commands"), bulk("-@all +set")),
                (bulk("keys"), bulk("%R~foo2 %W~bar2 ~baz2")),
                (bulk("channels"), bulk("&channel2")),
            ])]),
        ),
    ]);
    assert_eq!(acl.read(&AclQuery::GetUser("selector-info".into())), user);
}

#[test]
fn acl_list_prints_every_part_in_redis_order() {
    let mut acl = Acl::default();
    // "Validate subset of channels is prefixed with resetchannels flag"
    // (Redis 7.0 prints no sanitize-payload flag; 7.2 adds one).
    setuser(&mut acl, "hpuser", "on nopass resetchannels &foo +@all").unwrap();
    assert_eq!(
        line_of(&acl, "hpuser"),
        "user hpuser on nopass resetchannels &foo +@all"
    );
    // "Test ACL list idempotency", whole.
    setuser(
        &mut acl,
        "user-idempotency",
        "off -@all +get resetchannels &channel1 %R~foo1 %W~bar1 ~baz1 \
         (-@all +set resetchannels &channel2 %R~foo2 %W~bar2 ~baz2)",
    )
    .unwrap();
    let line = line_of(&acl, "user-idempotency");
    assert_eq!(
        line,
        "user user-idempotency off %R~foo1 %W~bar1 ~baz1 resetchannels &channel1 -@all +get \
         (%R~foo2 %W~bar2 ~baz2 resetchannels &channel2 -@all +set)"
    );
    // Applying the line's rules to a new user gives the same user.
    let rules: Vec<String> = line.split(' ').skip(2).map(str::to_owned).collect();
    setuser(&mut acl, "copy", &rules.join(" ")).unwrap();
    assert_eq!(acl.user("copy"), acl.user("user-idempotency"));
    assert_eq!(acl.to_acl_file().lines().count(), acl.users.len());
}

#[test]
fn reset_reverts_to_a_newly_created_user() {
    let mut acl = Acl::default();
    setuser(&mut acl, "example", "").unwrap();
    let fresh = line_of(&acl, "example");
    setuser(
        &mut acl,
        "example",
        "on >pw ~* &* +@all (~a +get) skip-sanitize-payload",
    )
    .unwrap();
    assert_ne!(line_of(&acl, "example"), fresh);
    setuser(&mut acl, "example", "reset").unwrap();
    assert_eq!(line_of(&acl, "example"), fresh);
    assert_eq!(acl.user("example"), Some(&User::new()));
}

#[test]
fn user_names_cannot_hold_spaces_or_nul() {
    let mut acl = Acl::default();
    for name in ["a a", "a\tb", "a\0b", "a\nb"] {
        let err = acl
            .apply(&AclOp::SetUser {
                name: name.into(),
                rules: vec![],
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ERR Usernames can't contain spaces or null characters"
        );
    }
}

// ------------------------------------------------------------ passwords

#[test]
fn passwords_are_added_and_removed_by_clear_text_and_by_hash() {
    let mut acl = Acl::default();
    // "New users start disabled".
    setuser(&mut acl, "newuser", ">passwd1").unwrap();
    assert!(acl.authenticate("newuser", b"passwd1").is_none());
    // "Enabling the user allows the login".
    setuser(&mut acl, "newuser", "on +acl").unwrap();
    assert!(acl.authenticate("newuser", b"passwd1").is_some());
    // "Only the set of correct passwords work".
    setuser(&mut acl, "newuser", ">passwd2").unwrap();
    let user = acl.user("newuser").unwrap();
    assert!(user.authenticates(b"passwd1"));
    assert!(user.authenticates(b"passwd2"));
    assert!(!user.authenticates(b"passwd3"));
    // "It is possible to remove passwords from the set of valid ones".
    setuser(&mut acl, "newuser", "<passwd1").unwrap();
    assert!(!acl.user("newuser").unwrap().authenticates(b"passwd1"));
    // "Test password hashes can be added": this is passwd4's hash.
    let hash = "34344e4d60c2b6d639b7bd22e18f2b0b91bc34bf0ac5f9952744435093cfb4e6";
    assert_eq!(hash_password(b"passwd4"), hash);
    setuser(&mut acl, "newuser", &format!("#{hash}")).unwrap();
    assert!(acl.user("newuser").unwrap().authenticates(b"passwd4"));
    // "ACL GETUSER returns the password hash instead of the actual password".
    let Outcome::Map(fields) = acl.read(&AclQuery::GetUser("newuser".into())) else {
        panic!("a map")
    };
    let mut hashes = vec![hash.to_owned(), hash_password(b"passwd2")];
    hashes.sort();
    assert_eq!(
        fields[1],
        (
            bulk("passwords"),
            Outcome::Array(hashes.into_iter().map(bulk).collect())
        )
    );
    // "Test hashed passwords removal".
    setuser(&mut acl, "newuser", &format!("!{hash}")).unwrap();
    let user = acl.user("newuser").unwrap();
    assert!(!user.authenticates(b"passwd4"));
    assert_eq!(user.passwords.len(), 1);
    // A disabled user never authenticates, nopass or not.
    setuser(&mut acl, "newuser", "nopass").unwrap();
    let user = acl.user("newuser").unwrap();
    assert!(user.passwords.is_empty() && user.authenticates(b"anything"));
    setuser(&mut acl, "newuser", "off").unwrap();
    assert!(!acl.user("newuser").unwrap().authenticates(b"anything"));
    // resetpass drops nopass and every password; >pass drops nopass.
    setuser(&mut acl, "newuser", "on resetpass").unwrap();
    assert!(!acl.user("newuser").unwrap().authenticates(b""));
    setuser(&mut acl, "newuser", "nopass >x").unwrap();
    let user = acl.user("newuser").unwrap();
    assert!(!user.nopass && user.authenticates(b"x") && !user.authenticates(b"y"));
    assert_eq!(
        line_of(&acl, "newuser"),
        format!(
            "user newuser on #{} resetchannels -@all +acl",
            hash_password(b"x")
        )
    );
}

#[test]
fn password_errors_are_worded_as_redis() {
    let mut acl = Acl::default();
    setuser(&mut acl, "u", ">a").unwrap();
    let bad_hashes = [
        // "Test password hashes validate input": too short, bad character.
        "34344e4d60c2b6d639b7bd22e18f2b0b91bc34bf0ac5f9952744435093cfb4e",
        "34344e4d60c2b6d639b7bd22e18f2b0b91bc34bf0ac5f9952744435093cfb4eq",
        // Upper case is not accepted either.
        "34344E4D60C2B6D639B7BD22E18F2B0B91BC34BF0AC5F9952744435093CFB4E6",
    ];
    for hash in bad_hashes {
        for rule in [format!("#{hash}"), format!("!{hash}")] {
            let err = setuser(&mut acl, "u", &rule).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "ERR Error in ACL SETUSER modifier '{rule}': The password hash must be \
                     exactly 64 characters and contain only lowercase hexadecimal characters"
                )
            );
        }
    }
    let missing = format!("!{}", hash_password(b"nope"));
    let err = setuser(&mut acl, "u", "<nope").unwrap_err();
    // The server hashed the clear text before anything else saw it.
    assert_eq!(
        err.to_string(),
        format!(
            "ERR Error in ACL SETUSER modifier '{missing}': The password you are trying to \
             remove from the user does not exist"
        )
    );
    // Apply alone (clear text) words it the same, with the rule as given.
    assert_eq!(
        acl.apply(&AclOp::SetUser {
            name: "u".into(),
            rules: vec!["<nope".into()]
        }),
        Err(modifier("<nope", RuleError::NoSuchPassword))
    );
}

#[test]
fn normalize_rules_never_leaves_a_clear_password() {
    let rules = [
        ">secret", "<old", "on", "~k", "(>inside", "<too)", "(>a >b)", ">(paren", "#0000", ">",
    ];
    let normalized = normalize_rules(&rules);
    assert_eq!(normalized.len(), rules.len());
    for rule in &normalized {
        for word in rule.split(' ') {
            let core = word.trim_start_matches('(').trim_end_matches(')');
            assert!(
                !core.starts_with('>') && !core.starts_with('<'),
                "{rule} keeps a clear password"
            );
            for secret in ["secret", "old", "inside", "too", "paren"] {
                assert!(!word.contains(secret), "{rule} shows {secret}");
            }
        }
    }
    assert_eq!(normalized[0], format!("#{}", hash_password(b"secret")));
    assert_eq!(normalized[1], format!("!{}", hash_password(b"old")));
    assert_eq!(normalized[2], "on");
    assert_eq!(normalized[4], format!("(#{}", hash_password(b"inside")));
    assert_eq!(normalized[5], format!("!{})", hash_password(b"too")));
    assert_eq!(
        normalized[6],
        format!("(#{} #{})", hash_password(b"a"), hash_password(b"b"))
    );
    // A password may start with a parenthesis: it is a password rule.
    assert_eq!(normalized[7], format!("#{}", hash_password(b"(paren")));
    assert_eq!(normalized[9], format!("#{}", hash_password(b"")));
    // Binary passwords hash their bytes.
    let binary: &[u8] = b">\xff\x00pw";
    assert_eq!(
        normalize_rules(&[binary]),
        vec![format!("#{}", hash_password(b"\xff\x00pw"))]
    );
    // Normalized rules do what the clear ones do.
    let mut clear = User::new();
    let mut hashed = User::new();
    let list = strings("on >a >b <a ~k (~x +get)");
    rules::apply_rules(&mut clear, &list, rules::Checks::APPLY).unwrap();
    rules::apply_rules(&mut hashed, &normalize_rules(&list), rules::Checks::APPLY).unwrap();
    assert_eq!(clear, hashed);
    assert!(hashed.authenticates(b"b") && !hashed.authenticates(b"a"));
}

// ------------------------------------------------------ rule errors

#[test]
fn rule_errors_are_worded_as_redis() {
    let mut acl = Acl::default();
    let cases: &[(&str, &str)] = &[
        (
            "foo",
            "ERR Error in ACL SETUSER modifier 'foo': Syntax error",
        ),
        (
            "+nosuch",
            "ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL",
        ),
        (
            "-nosuch",
            "ERR Error in ACL SETUSER modifier '-nosuch': Unknown command or category name in ACL",
        ),
        (
            "+@nosuch",
            "ERR Error in ACL SETUSER modifier '+@nosuch': Unknown command or category name in ACL",
        ),
        (
            "-@nosuch",
            "ERR Error in ACL SETUSER modifier '-@nosuch': Unknown command or category name in ACL",
        ),
        (
            "+",
            "ERR Error in ACL SETUSER modifier '+': Unknown command or category name in ACL",
        ),
        (
            "+@",
            "ERR Error in ACL SETUSER modifier '+@': Unknown command or category name in ACL",
        ),
        // "ACLs cannot include a subcommand with a specific arg".
        (
            "+config|get|appendonly",
            "ERR Error in ACL SETUSER modifier '+config|get|appendonly': Allowing first-arg of a \
             subcommand is not supported",
        ),
        // "ACLs cannot exclude or include a container commands with a
        // specific arg".
        (
            "+config|asdf",
            "ERR Error in ACL SETUSER modifier '+config|asdf': Unknown command or category name \
             in ACL",
        ),
        (
            "-config|asdf",
            "ERR Error in ACL SETUSER modifier '-config|asdf': Unknown command or category name \
             in ACL",
        ),
        // "... a container command with two args".
        (
            "+get|key1|key2",
            "ERR Error in ACL SETUSER modifier '+get|key1|key2': Unknown command or category \
             name in ACL",
        ),
        (
            "-get|key1|key2",
            "ERR Error in ACL SETUSER modifier '-get|key1|key2': Unknown command or category \
             name in ACL",
        ),
        (
            "-select|0",
            "ERR Error in ACL SETUSER modifier '-select|0': Unknown command or category name in \
             ACL",
        ),
        (
            "+config|",
            "ERR Error in ACL SETUSER modifier '+config|': Syntax error",
        ),
        (
            "+nosuch|",
            "ERR Error in ACL SETUSER modifier '+nosuch|': Unknown command or category name in \
             ACL",
        ),
        // concord's deviation: no first arguments of plain commands.
        (
            "+select|0",
            "ERR Error in ACL SETUSER modifier '+select|0': Allowing first-arg of a command \
             without subcommands is not supported",
        ),
        (
            "allkeys ~foo",
            "ERR Error in ACL SETUSER modifier '~foo': Adding a pattern after the * pattern (or \
             the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to \
             start with an empty list of patterns",
        ),
        (
            "~* %R~foo",
            "ERR Error in ACL SETUSER modifier '%R~foo': Adding a pattern after the * pattern \
             (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' \
             to start with an empty list of patterns",
        ),
        (
            "allchannels &foo",
            "ERR Error in ACL SETUSER modifier '&foo': Adding a pattern after the * pattern (or \
             the 'allchannels' flag) is not valid and does not have any effect. Try \
             'resetchannels' to start with an empty list of channels",
        ),
        (
            "%X~foo",
            "ERR Error in ACL SETUSER modifier '%X~foo': Syntax error",
        ),
        (
            "%RR~foo",
            "ERR Error in ACL SETUSER modifier '%RR~foo': Syntax error",
        ),
        (
            "%~foo",
            "ERR Error in ACL SETUSER modifier '%~foo': Syntax error",
        ),
        ("%R", "ERR Error in ACL SETUSER modifier '%R': Syntax error"),
        // acl-v2.tcl: "Test selector syntax error reports the error in the
        // selector context" and "Test flexible selector definition".
        (
            "on (this-is-invalid)",
            "ERR Error in ACL SETUSER modifier '(this-is-invalid)': Syntax error",
        ),
        (
            "on (&* &fail)",
            "ERR Error in ACL SETUSER modifier '(&* &fail)': Adding a pattern after the * \
             pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try \
             'resetchannels' to start with an empty list of channels",
        ),
        (
            "on (+PING (+SELECT (+DEL",
            "ERR Unmatched parenthesis in acl selector starting at '(+PING'.",
        ),
        (
            "on (+PING (+SELECT (+DEL ) ) )",
            "ERR Error in ACL SETUSER modifier '(+PING (+SELECT (+DEL )': Syntax error",
        ),
        (
            "(",
            "ERR Unmatched parenthesis in acl selector starting at '('.",
        ),
        (")", "ERR Error in ACL SETUSER modifier ')': Syntax error"),
        // User rules are not selector rules.
        (
            "(on)",
            "ERR Error in ACL SETUSER modifier '(on)': Syntax error",
        ),
        (
            "(reset)",
            "ERR Error in ACL SETUSER modifier '(reset)': Syntax error",
        ),
    ];
    for (rules, text) in cases {
        let err = setuser(&mut acl, "selector-syntax", rules).unwrap_err();
        assert_eq!(err.to_string(), *text, "{rules}");
        assert_eq!(StateError::from(err).to_string(), *text, "as a state error");
    }
    // Nothing was created by the failed writes.
    assert_eq!(
        acl.read(&AclQuery::GetUser("selector-syntax".into())),
        Outcome::Nil
    );
    // " () " as one argument does not start with a parenthesis.
    let err = setuser_args(&mut acl, "x", &[" () "]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ERR Error in ACL SETUSER modifier ' () ': Syntax error"
    );
    // A space inside a pattern is a syntax error.
    let err = setuser_args(&mut acl, "x", &["~a b"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ERR Error in ACL SETUSER modifier '~a b': Syntax error"
    );
    assert_eq!(acl.users.len(), 1);
}

fn setuser_args(acl: &mut Acl, name: &str, rules: &[&str]) -> Result<Outcome, AclError> {
    let rules = normalize_rules(rules);
    acl.validate_setuser(name, &rules, &TestCatalog)?;
    acl.apply(&AclOp::SetUser {
        name: name.to_owned(),
        rules,
    })
}

#[test]
fn a_refused_setuser_changes_nothing() {
    let mut acl = Acl::default();
    setuser(&mut acl, "u", "on >pw ~k +get").unwrap();
    let before = acl.clone();
    // Apply alone (no catalog) still refuses what the state shows wrong.
    for rules in [
        "off resetpass ~other allkeys ~late",
        "-@all <not-a-password",
        "nocommands foo",
    ] {
        assert!(acl
            .apply(&AclOp::SetUser {
                name: "u".into(),
                rules: strings(rules),
            })
            .is_err());
        assert_eq!(acl, before, "{rules}");
    }
}

#[test]
fn validate_checks_names_without_a_user() {
    assert_eq!(
        validate(&strings("on >x ~k +get +@read"), &TestCatalog),
        Ok(())
    );
    // Removing a password is checked against the real user, at apply.
    assert_eq!(
        validate(&strings("<x !"), &TestCatalog).map_err(|e| e.to_string()),
        Err(
            "ERR Error in ACL SETUSER modifier '!': The password hash must be exactly 64 \
             characters and contain only lowercase hexadecimal characters"
                .to_owned()
        )
    );
    assert_eq!(validate(&strings("<x"), &TestCatalog), Ok(()));
    assert_eq!(
        validate(&strings("+get +nosuch"), &TestCatalog),
        Err(modifier("+nosuch", RuleError::UnknownName))
    );
    // Names are case-insensitive.
    assert_eq!(
        validate(&strings("+GET +Config|GET -@READ"), &TestCatalog),
        Ok(())
    );
    // Apply without a catalog takes names as given (they were checked).
    let mut acl = Acl::default();
    acl.apply(&AclOp::SetUser {
        name: "u".into(),
        rules: strings("+nosuch"),
    })
    .unwrap();
    assert_eq!(commands_of(&acl, "u"), "-@all +nosuch");
}

#[test]
fn validate_setuser_reports_the_first_error_in_redis_order() {
    let mut acl = Acl::default();
    setuser(&mut acl, "u", "allkeys").unwrap();
    // The key pattern after the user's allkeys comes first.
    assert_eq!(
        acl.validate_setuser("u", &strings("~k +nosuch"), &TestCatalog),
        Err(modifier("~k", RuleError::KeyAfterAll))
    );
    assert_eq!(
        acl.validate_setuser("a b", &strings("on"), &TestCatalog),
        Err(AclError::BadUsername)
    );
}

// ------------------------------------------------------- command rules

#[test]
fn a_later_rule_for_a_command_replaces_the_earlier_ones() {
    let mut acl = Acl::default();
    setuser(&mut acl, "u", "+@all -get +get").unwrap();
    assert_eq!(commands_of(&acl, "u"), "+@all +get");
    assert!(allows(&acl, "u", "get"));
    setuser(&mut acl, "u", "-get").unwrap();
    assert_eq!(commands_of(&acl, "u"), "+@all -get");
    assert!(!allows(&acl, "u", "get"));
    assert!(allows(&acl, "u", "set"));
}

/// "ACL GETUSER provides correct results" (acl.tcl, Redis 7.2): one user,
/// rules added step by step, the commands string after each.
#[test]
fn command_rules_print_as_redis_keeps_them() {
    let mut acl = Acl::default();
    setuser(&mut acl, "adv-test", "").unwrap();
    let steps: &[(&str, &str)] = &[
        ("+@all -@hash -@slow +hget", "+@all -@hash -@slow +hget"),
        // Categories are re-ordered if re-added.
        ("-@hash", "+@all -@slow +hget -@hash"),
        // Inverting categories removes existing categories.
        ("+@hash", "+@all -@slow +hget +@hash"),
        // Inverting the all category compacts everything.
        ("-@all", "-@all"),
        ("-@string -@slow +@all", "+@all"),
        // Categories and commands are case-insensitive.
        ("-@all +@HASH +@hash +@HaSh", "-@all +@hash"),
        ("-@all +HGET +hget +hGeT", "-@all +hget"),
        // Arbitrary category additions and removals are handled.
        (
            "-@all +@hash +@slow +@set +@set +@slow +@hash",
            "-@all +@set +@slow +@hash",
        ),
        ("-@all +hget -hset +hset -hget", "-@all +hset -hget"),
        // Arbitrary subcommands are compacted.
        (
            "-@all +client|list +client|list +config|get +config +acl|list -acl",
            "-@all +client|list +config -acl",
        ),
        // (7.2's first-arg case, with DEBUG's subcommands here.)
        ("-@all +debug|segfault +debug", "-@all +debug"),
        // Unnecessary categories are retained.
        ("-@all -@dangerous", "-@all -@dangerous"),
        // Duplicate categories are compressed (Redis #12470).
        (
            "-@all +config +config|get -config|set +config",
            "-@all +config",
        ),
        ("allcommands", "+@all"),
        ("nocommands", "-@all"),
    ];
    for (rules, want) in steps {
        setuser(&mut acl, "adv-test", rules).unwrap();
        assert_eq!(commands_of(&acl, "adv-test"), *want, "after {rules}");
    }
    // "ACL GETUSER provides reasonable results": each category alone.
    for category in CATEGORIES {
        setuser(&mut acl, "additive", &format!("reset +@all -@{category}")).unwrap();
        assert_eq!(commands_of(&acl, "additive"), format!("+@all -@{category}"));
        setuser(
            &mut acl,
            "restrictive",
            &format!("reset -@all +@{category}"),
        )
        .unwrap();
        assert_eq!(
            commands_of(&acl, "restrictive"),
            format!("-@all +@{category}")
        );
    }
    // "ACL GETUSER is able to translate back command permissions".
    setuser(
        &mut acl,
        "newuser",
        "reset +@all ~* -@string +incr -debug +debug|digest",
    )
    .unwrap();
    assert_eq!(
        commands_of(&acl, "newuser"),
        "+@all -@string +incr -debug +debug|digest"
    );
    setuser(
        &mut acl,
        "newuser",
        "reset +@string -incr +acl +debug|digest +debug|segfault",
    )
    .unwrap();
    assert_eq!(
        commands_of(&acl, "newuser"),
        "-@all +@string -incr +acl +debug|digest +debug|segfault"
    );
}

#[test]
fn rules_decide_in_order_with_categories_and_subcommands() {
    let mut acl = Acl::default();
    // The last rule that speaks about a command decides.
    setuser(&mut acl, "u", "+@all -@hash -@slow +hget").unwrap();
    assert!(allows(&acl, "u", "hget"));
    assert!(!allows(&acl, "u", "hset"));
    assert!(!allows(&acl, "u", "set"), "set is @slow");
    assert!(allows(&acl, "u", "get"));
    setuser(&mut acl, "u", "-@hash").unwrap();
    assert!(!allows(&acl, "u", "hget"), "-@hash now comes after +hget");
    // "ACLs can include single subcommands".
    setuser(&mut acl, "u", "+@all -client").unwrap();
    setuser(&mut acl, "u", "+client|id +client|setname").unwrap();
    assert_eq!(
        commands_of(&acl, "u"),
        "+@all -client +client|id +client|setname"
    );
    assert!(allows(&acl, "u", "client|id"));
    assert!(allows(&acl, "u", "client|setname"));
    assert!(!allows(&acl, "u", "client|kill"));
    // "ACLs can exclude single subcommands, case 1".
    setuser(&mut acl, "u", "+@all -client|kill").unwrap();
    assert_eq!(commands_of(&acl, "u"), "+@all -client|kill");
    assert!(allows(&acl, "u", "client|id"));
    assert!(!allows(&acl, "u", "client|kill"));
    // "..., case 2".
    setuser(&mut acl, "u", "-@all +acl +config -config|set").unwrap();
    assert!(allows(&acl, "u", "config|get"));
    assert!(!allows(&acl, "u", "config|set"));
    assert!(allows(&acl, "u", "acl|list"));
    // "ACLs set can include subcommands, if already full command exists".
    setuser(&mut acl, "bob", "+memory|doctor").unwrap();
    assert_eq!(commands_of(&acl, "bob"), "-@all +memory|doctor");
    assert!(allows(&acl, "bob", "memory|doctor") && !allows(&acl, "bob", "memory|stats"));
    setuser(&mut acl, "bob", "+memory").unwrap();
    assert_eq!(commands_of(&acl, "bob"), "-@all +memory");
    setuser(&mut acl, "bob", "+@all +client|id").unwrap();
    assert_eq!(commands_of(&acl, "bob"), "+@all +client|id");
    assert!(allows(&acl, "bob", "client|id") && allows(&acl, "bob", "memory|doctor"));
    // "ACLs set can exclude subcommands, if already full command exists".
    setuser(&mut acl, "alice", "+@all -memory|doctor").unwrap();
    assert_eq!(commands_of(&acl, "alice"), "+@all -memory|doctor");
    assert!(!allows(&acl, "alice", "memory|doctor") && allows(&acl, "alice", "memory|stats"));
    setuser(&mut acl, "alice", "+@all -memory").unwrap();
    assert_eq!(commands_of(&acl, "alice"), "+@all -memory");
    assert!(!allows(&acl, "alice", "memory|doctor") && !allows(&acl, "alice", "memory|stats"));
    setuser(&mut acl, "alice", "-@all").unwrap();
    assert_eq!(commands_of(&acl, "alice"), "-@all");
    assert!(!allows(&acl, "alice", "get"));
    // A subcommand rule does not speak for the container called bare, nor
    // does a command's rule for a longer name.
    let rule = CommandRule {
        allow: true,
        name: "config|get".into(),
    };
    assert!(!rule.matches("config", &[]));
    assert!(CommandRule {
        allow: true,
        name: "config".into()
    }
    .matches("CONFIG|GET", &[]));
    assert!(!CommandRule {
        allow: true,
        name: "get".into()
    }
    .matches("getex", &[]));
    assert!(CommandRule {
        allow: true,
        name: "@read".into()
    }
    .matches("x", &["READ"]));
}

// ------------------------------------------------------------- keys

#[test]
fn key_patterns_grant_read_write_or_both() {
    let mut acl = Acl::default();
    // "Test R+W is the same as all permissions".
    setuser(&mut acl, "selector-rw-info", "%R~foo %W~foo %RW~bar").unwrap();
    let Outcome::Map(fields) = acl.read(&AclQuery::GetUser("selector-rw-info".into())) else {
        panic!("a map")
    };
    assert_eq!(fields[3], (bulk("keys"), bulk("~foo ~bar")));
    // "Test basic dry run functionality" style checks.
    setuser(
        &mut acl,
        "command-test",
        "on +@all %R~read* %W~write* %RW~rw* %wr~both",
    )
    .unwrap();
    let user = acl.user("command-test").unwrap();
    assert!(user.allows_key(b"read1", true, false));
    assert!(!user.allows_key(b"read1", false, true));
    assert!(!user.allows_key(b"read1", true, true));
    assert!(user.allows_key(b"write1", false, true));
    assert!(!user.allows_key(b"write1", true, false));
    assert!(user.allows_key(b"rw1", true, true));
    assert!(user.allows_key(b"both", true, true));
    assert!(!user.allows_key(b"other", true, false));
    // A key neither read nor written needs only a matching pattern.
    assert!(user.allows_key(b"read1", false, false));
    assert!(!user.allows_key(b"other", false, false));
    assert_eq!(user.root.describe_keys(), "%R~read* %W~write* ~rw* ~both");
    // "It's possible to allow the access of a subset of keys".
    setuser(&mut acl, "newuser", "allcommands ~foo:* ~bar:*").unwrap();
    let user = acl.user("newuser").unwrap();
    assert!(user.allows_key(b"foo:1", true, true) && user.allows_key(b"bar:2", true, true));
    assert!(!user.allows_key(b"zap:3", false, true));
    // allkeys replaces the patterns; resetkeys drops everything.
    setuser(&mut acl, "newuser", "allkeys").unwrap();
    assert_eq!(acl.user("newuser").unwrap().root.describe_keys(), "~*");
    assert!(acl
        .user("newuser")
        .unwrap()
        .allows_key(b"zap:3", true, true));
    setuser(&mut acl, "newuser", "resetkeys %R~*").unwrap();
    let user = acl.user("newuser").unwrap();
    assert!(!user.root.allkeys);
    assert!(user.allows_key(b"x", true, false) && !user.allows_key(b"x", false, true));
    setuser(&mut acl, "newuser", "resetkeys").unwrap();
    assert_eq!(acl.user("newuser").unwrap().root.describe_keys(), "");
    assert!(!acl.user("newuser").unwrap().allows_key(b"x", false, false));
}

#[test]
fn unrestricted_key_access_needs_allkeys_or_a_star_pattern() {
    let mut acl = Acl::default();
    setuser(
        &mut acl,
        "u",
        "on nopass +@all %R~* ~k (+@all ~*) (+get %W~*)",
    )
    .unwrap();
    let user = acl.user("u").unwrap();
    assert!(user.root.allows_all_keys(true, false));
    assert!(!user.root.allows_all_keys(false, true));
    assert!(user.selectors[0].allows_all_keys(true, true));
    assert!(!Selector::default().allows_all_keys(false, false));
    let sort = ["write", "set", "sortedset", "list", "slow", "dangerous"];
    assert!(user.check_with_all_keys("sort", &sort, &[(b"k", true, true)], &[], true, false));
    // Only the selector with +get and %W~* allows GET: no read access.
    setuser(&mut acl, "v", "on nopass ~x (+get %W~*)").unwrap();
    let user = acl.user("v").unwrap();
    let get = categories_of("get");
    assert!(!user.check_with_all_keys("get", &get, &[], &[], true, false));
    assert!(user.check_with_all_keys("get", &get, &[], &[], false, true));
    // A pattern that matches every key is not enough: it must be `*`.
    setuser(&mut acl, "w", "on nopass +@all ~**").unwrap();
    assert!(!acl
        .user("w")
        .unwrap()
        .check_with_all_keys("get", &get, &[], &[], true, false));
}

// --------------------------------------------------------- channels

#[test]
fn channels_match_as_globs_and_patterns_literally() {
    let mut acl = Acl::default();
    // "It's possible to allow publishing to a subset of channels".
    setuser(&mut acl, "psuser", "on >pspass +acl +client +@pubsub").unwrap();
    assert!(!acl.user("psuser").unwrap().allows_channel(b"foo", false));
    setuser(&mut acl, "psuser", "resetchannels &foo:1 &bar:*").unwrap();
    let user = acl.user("psuser").unwrap();
    assert!(user.allows_channel(b"foo:1", false));
    assert!(user.allows_channel(b"bar:2", false));
    assert!(!user.allows_channel(b"zap:3", false));
    // PSUBSCRIBE's patterns must equal an allowed pattern.
    assert!(user.allows_channel(b"bar:*", true));
    assert!(user.allows_channel(b"foo:1", true));
    assert!(!user.allows_channel(b"bar:2", true));
    assert!(!user.allows_channel(b"bar:x*", true));
    assert!(!user.allows_channel(b"*", true));
    assert_eq!(user.root.describe_channels(), "&foo:1 &bar:*");
    // allchannels allows any, literal or not.
    setuser(&mut acl, "psuser", "allchannels").unwrap();
    let user = acl.user("psuser").unwrap();
    assert!(user.allows_channel(b"zap:3", false) && user.allows_channel(b"z*", true));
    assert_eq!(user.root.describe_channels(), "&*");
    // A repeated channel pattern is kept once.
    setuser(&mut acl, "psuser", "resetchannels &a &a &b").unwrap();
    assert_eq!(
        acl.user("psuser").unwrap().root.describe_channels(),
        "&a &b"
    );
}

// -------------------------------------------------------- selectors

#[test]
fn selectors_are_added_described_and_cleared() {
    let mut acl = Acl::default();
    // "Test ACL selectors by default have no permissions".
    setuser(&mut acl, "selector-default", "reset ()").unwrap();
    let user = acl.user("selector-default").unwrap();
    assert_eq!(user.selectors, vec![Selector::default()]);
    assert_eq!(user.selectors[0].describe_keys(), "");
    assert_eq!(user.selectors[0].describe_channels(), "");
    assert_eq!(user.selectors[0].describe_commands(), "-@all");
    // "Test deleting selectors".
    setuser_args(&mut acl, "selector-del", &["on", "(~added-selector)"]).unwrap();
    let user = acl.user("selector-del").unwrap();
    assert_eq!(user.selectors.len(), 1);
    assert_eq!(user.selectors[0].describe_keys(), "~added-selector");
    setuser(&mut acl, "selector-del", "clearselectors").unwrap();
    assert!(acl.user("selector-del").unwrap().selectors.is_empty());
    // "Test flexible selector definition": whole or in pieces.
    setuser_args(
        &mut acl,
        "selector-2",
        &[
            "(~key1 +get )",
            "( ~key2 +get )",
            "( ~key3 +get)",
            "(~key4 +get)",
        ],
    )
    .unwrap();
    setuser(
        &mut acl,
        "selector-2",
        "(~key5 +get ) ( ~key6 +get ) ( ~key7 +get) (~key8 +get)",
    )
    .unwrap();
    let user = acl.user("selector-2").unwrap();
    let keys: Vec<String> = user.selectors.iter().map(Selector::describe_keys).collect();
    assert_eq!(
        keys,
        ["~key1", "~key2", "~key3", "~key4", "~key5", "~key6", "~key7", "~key8"]
    );
    assert!(user
        .selectors
        .iter()
        .all(|s| s.describe_commands() == "-@all +get"));
    // clearselectors leaves the root permissions alone.
    setuser(&mut acl, "selector-2", "+set ~root clearselectors").unwrap();
    let user = acl.user("selector-2").unwrap();
    assert!(user.selectors.is_empty());
    assert_eq!(user.root.describe(), "~root resetchannels -@all +set");
}

#[test]
fn a_user_passes_if_its_root_or_any_one_selector_allows_everything() {
    let mut acl = Acl::default();
    setuser(
        &mut acl,
        "u",
        "on nopass +get ~read* (+set ~write*) (+publish &news)",
    )
    .unwrap();
    let user = acl.user("u").unwrap();
    let get = categories_of("get");
    let set = categories_of("set");
    let publish = categories_of("publish");
    assert_eq!(
        user.check("get", &get, &[(b"read1", true, false)], &[]),
        Ok(())
    );
    assert_eq!(
        user.check("set", &set, &[(b"write1", false, true)], &[]),
        Ok(())
    );
    // The root may run GET but not on write1; the selector that may touch
    // write1 may not run GET: refused, naming the key.
    assert_eq!(
        user.check("get", &get, &[(b"write1", true, false)], &[]),
        Err(Denied::Key(0))
    );
    // Each key must pass in the same selector.
    assert_eq!(
        user.check(
            "set",
            &set,
            &[(b"write1", false, true), (b"read1", false, true)],
            &[]
        ),
        Err(Denied::Key(1))
    );
    assert_eq!(
        user.check("incr", &categories_of("incr"), &[], &[]),
        Err(Denied::Command)
    );
    assert_eq!(
        user.check("publish", &publish, &[], &[(b"news", false)]),
        Ok(())
    );
    assert_eq!(
        user.check("publish", &publish, &[], &[(b"sport", false)]),
        Err(Denied::Channel(0))
    );
    // Redis's pick when every selector refuses: channel over key over
    // command, and the later argument of a kind.
    let mut acl = Acl::default();
    setuser(&mut acl, "v", "on nopass +@all ~a (+@all ~a ~b) (-@all)").unwrap();
    let user = acl.user("v").unwrap();
    assert_eq!(
        user.check(
            "set",
            &set,
            &[
                (b"a", false, true),
                (b"b", false, true),
                (b"c", false, true)
            ],
            &[]
        ),
        Err(Denied::Key(2))
    );
    setuser(&mut acl, "w", "on nopass +@all ~* (+@all ~a &x)").unwrap();
    let user = acl.user("w").unwrap();
    assert_eq!(
        user.check(
            "publish",
            &publish,
            &[(b"b", false, true)],
            &[(b"y", false)]
        ),
        Err(Denied::Channel(0))
    );
}

// --------------------------------------------------- ops and queries

#[test]
fn deluser_counts_and_protects_default() {
    let mut acl = Acl::default();
    setuser(&mut acl, "a", "").unwrap();
    setuser(&mut acl, "b", "").unwrap();
    let generation = acl.generation;
    // "Default user can not be removed": nothing is deleted.
    let err = acl
        .apply(&AclOp::DelUser {
            names: vec!["a".into(), "default".into()],
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "ERR The 'default' user cannot be removed");
    assert_eq!(acl.users.len(), 3);
    assert_eq!(
        acl.apply(&AclOp::DelUser {
            names: vec!["a".into(), "nobody".into(), "a".into()],
        }),
        Ok(Outcome::Int(1))
    );
    assert_eq!(acl.generation, generation + 1);
    assert_eq!(
        acl.apply(&AclOp::DelUser {
            names: vec!["nobody".into()],
        }),
        Ok(Outcome::Int(0))
    );
    assert_eq!(acl.generation, generation + 1, "nothing changed");
}

#[test]
fn load_replaces_every_user_at_once_or_none() {
    let mut acl = Acl::default();
    setuser(&mut acl, "old", "on >pw").unwrap();
    setuser(&mut acl, "default", "off").unwrap();
    let before = acl.clone();
    // One bad user refuses the whole load.
    let bad = AclOp::Load {
        users: vec![
            ("alice".into(), strings("on allcommands allkeys &* >alice")),
            ("bob".into(), strings("on -@all +@set foo")),
        ],
    };
    let err = acl.apply(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ERR Error in the ACL rules of user 'bob': Error in ACL SETUSER modifier 'foo': Syntax \
         error"
    );
    assert_eq!(acl, before);
    let duplicate = AclOp::Load {
        users: vec![
            ("alice".into(), strings("on")),
            ("alice".into(), strings("off")),
        ],
    };
    assert_eq!(
        acl.apply(&duplicate).unwrap_err().to_string(),
        "ERR Duplicate user 'alice' found"
    );
    assert_eq!(acl, before);
    // A good load: the users of tests/assets/user.acl, without default,
    // which comes back as first made.
    let good = AclOp::Load {
        users: vec![
            ("alice".into(), strings("on allcommands allkeys &* >alice")),
            ("bob".into(), strings("on -@all +@set +acl ~set* &* >bob")),
        ],
    };
    assert_eq!(acl.apply(&good), Ok(Outcome::Ok));
    assert_eq!(
        acl.list(),
        vec![
            format!("user alice on #{} ~* &* +@all", hash_password(b"alice")),
            format!(
                "user bob on #{} ~set* &* -@all +@set +acl",
                hash_password(b"bob")
            ),
            "user default on nopass ~* &* +@all".to_owned(),
        ]
    );
    assert_eq!(acl.generation, before.generation + 1);
    // A default defined by the list starts from a new user: no channels
    // unless given (acl.tcl: "default: load from config file, without
    // channel permission default user can't access any channels").
    acl.apply(&AclOp::Load {
        users: vec![("default".into(), strings("on nopass ~* +@all"))],
    })
    .unwrap();
    assert_eq!(
        acl.list(),
        vec!["user default on nopass ~* resetchannels +@all"]
    );
    assert!(!acl.user("default").unwrap().allows_channel(b"foo", false));
}

#[test]
fn seed_applies_only_to_a_table_never_changed() {
    let users = vec![("default".to_owned(), strings("on #"))];
    let mut acl = Acl::default();
    // A refused seed leaves the table unseeded.
    assert!(acl.apply(&AclOp::Seed { users }).is_err());
    assert!(!acl.seeded);
    let requirepass = vec![(
        "default".to_owned(),
        normalize_rules(&strings("on >secret ~* &* +@all")),
    )];
    assert_eq!(
        acl.apply(&AclOp::Seed {
            users: requirepass.clone()
        }),
        Ok(Outcome::Int(1))
    );
    assert!(acl.seeded);
    assert_eq!(acl.generation, 1);
    assert!(acl.authenticate("default", b"secret").is_some());
    assert!(acl.authenticate("default", b"").is_none());
    // A second seed (another node's, or a restart's) does nothing.
    let other = vec![("default".to_owned(), strings("on nopass"))];
    assert_eq!(
        acl.apply(&AclOp::Seed {
            users: other.clone()
        }),
        Ok(Outcome::Int(0))
    );
    assert_eq!(acl.generation, 1);
    assert!(acl.authenticate("default", b"").is_none());
    // Nor after any other change.
    let mut acl = Acl::default();
    setuser(&mut acl, "someone", "").unwrap();
    assert_eq!(
        acl.apply(&AclOp::Seed { users: other }),
        Ok(Outcome::Int(0))
    );
    assert_eq!(acl.list().len(), 2);
}

#[test]
fn requirepass_seeds_the_default_user() {
    let mut acl = Acl::default();
    acl.apply(&AclOp::Seed {
        users: requirepass_seed(b"foobared"),
    })
    .unwrap();
    assert_eq!(
        acl.list(),
        vec![format!(
            "user default on #{} ~* &* +@all",
            hash_password(b"foobared")
        )]
    );
    assert!(acl.authenticate("default", b"foobared").is_some());
    assert!(acl.authenticate("default", b"").is_none());
    assert!(!format!("{:?}", requirepass_seed(b"foobared")).contains("foobared"));
    let mut acl = Acl::default();
    acl.apply(&AclOp::Seed {
        users: requirepass_seed(b""),
    })
    .unwrap();
    assert_eq!(acl.list(), vec!["user default on nopass ~* &* +@all"]);
}

#[test]
fn every_change_bumps_the_generation() {
    let mut acl = Acl::default();
    assert_eq!((acl.generation, acl.seeded), (0, false));
    setuser(&mut acl, "u", "on").unwrap();
    assert_eq!((acl.generation, acl.seeded), (1, true));
    assert!(setuser(&mut acl, "u", "bogus").is_err());
    assert_eq!(acl.generation, 1);
    setuser(&mut acl, "u", "on").unwrap();
    assert_eq!(acl.generation, 2);
    acl.apply(&AclOp::DelUser {
        names: vec!["u".into()],
    })
    .unwrap();
    acl.apply(&AclOp::Load { users: vec![] }).unwrap();
    assert_eq!(acl.generation, 4);
    assert_eq!(acl.users, Acl::default().users);
}

#[test]
fn the_state_applies_and_reads_acl_ops() {
    let mut state = State::new();
    assert_eq!(state.acl(), &Acl::default());
    let op = Op::Acl(AclOp::SetUser {
        name: "u".into(),
        rules: normalize_rules(&strings("on >pw ~k:* +get")),
    });
    assert_eq!(state.apply(1, 10, &op), Ok(Outcome::Ok));
    assert_eq!(state.acl().generation, 1);
    assert!(state.acl().authenticate("u", b"pw").is_some());
    assert_eq!(
        state.apply(
            2,
            10,
            &Op::Acl(AclOp::DelUser {
                names: vec!["default".into()]
            })
        ),
        Err(StateError::Acl(AclError::DefaultUser))
    );
    assert_eq!(
        state.read(&Query::Acl(AclQuery::Users), 0),
        Ok(Outcome::Array(vec![bulk("default"), bulk("u")]))
    );
    assert_eq!(
        state.read(&Query::Acl(AclQuery::List), 0),
        Ok(Outcome::Array(vec![
            bulk("user default on nopass ~* &* +@all"),
            bulk(format!(
                "user u on #{} ~k:* resetchannels -@all +get",
                hash_password(b"pw")
            )),
        ]))
    );
    // Replicas that applied the same ops agree, digest included.
    let mut replica = State::new();
    replica.apply(1, 10, &op).unwrap();
    assert_eq!(replica.acl(), state.acl());
    assert_eq!(replica.digest(), state.digest());
    assert_ne!(State::new().digest(), state.digest());
}

#[test]
fn the_user_table_survives_a_snapshot_and_older_formats_restore_the_default() {
    let mut state = State::new();
    for (i, (name, rules)) in [
        (
            "alice",
            "on >s3cr3t-one %R~r* %W~w* &news +@all -flushall (~x +get)",
        ),
        (
            "bob",
            "off #34344e4d60c2b6d639b7bd22e18f2b0b91bc34bf0ac5f9952744435093cfb4e6",
        ),
        ("default", "resetpass >s3cr3t-two"),
    ]
    .into_iter()
    .enumerate()
    {
        let op = Op::Acl(AclOp::SetUser {
            name: name.into(),
            rules: normalize_rules(&strings(rules)),
        });
        state.apply(i as u64 + 1, 0, &op).unwrap();
    }
    let six = state.encode_snapshot();
    assert_eq!(six[0], crate::state::snapshot::SNAPSHOT_FORMAT);
    assert_eq!(
        State::decode_snapshot(&six).expect("the current format decodes"),
        state
    );
    let bytes = state.encode_snapshot_v5();
    assert_eq!(bytes[0], 5);
    let restored = State::decode_snapshot(&bytes).expect("decodes");
    assert_eq!(restored, state);
    assert_eq!(restored.acl().list(), state.acl().list());
    assert_eq!(restored.acl().generation, 3);
    assert!(restored.acl().seeded);
    // No clear password in the snapshot.
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("s3cr3t"));
    // Format 4 is format 5 without the trailing health checks, format 3
    // format 4 without the trailing user table.
    let checks_len = postcard::to_stdvec(&state.coord.ext.checks).unwrap().len();
    let mut four = bytes[..bytes.len() - checks_len].to_vec();
    four[0] = 4;
    assert_eq!(
        State::decode_snapshot(&four).expect("format 4 decodes"),
        state
    );
    let acl_len = postcard::to_stdvec(state.acl()).unwrap().len();
    let mut old = bytes[..bytes.len() - checks_len - acl_len].to_vec();
    old[0] = 3;
    let restored = State::decode_snapshot(&old).expect("format 3 decodes");
    assert_eq!(restored.acl(), &Acl::default());
    assert_eq!(restored.db(), state.db());
    assert_eq!(restored.applied_index(), state.applied_index());
}

// --------------------------------------------------------- ACL files

#[test]
fn acl_files_parse_as_redis_reads_them() {
    // tests/assets/user.acl.
    let text = "user alice on allcommands allkeys &* >alice\n\
                user bob on -@all +@set +acl ~set* &* >bob\n\
                \n   \n\
                user default on nopass ~* &* +@all\r\n";
    let users = parse_acl_file(text).unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(users[0].0, "alice");
    assert_eq!(
        users[0].1,
        vec![
            "on".to_owned(),
            "allcommands".into(),
            "allkeys".into(),
            "&*".into(),
            format!("#{}", hash_password(b"alice")),
        ]
    );
    assert_eq!(users[2].1, strings("on nopass ~* &* +@all"));
    let mut acl = Acl::default();
    acl.apply(&AclOp::Load { users }).unwrap();
    assert!(acl.authenticate("alice", b"alice").is_some());
    // Runs of spaces and split selectors are fine.
    let users = parse_acl_file("user x  on   (~a  +get)\n").unwrap();
    assert_eq!(users[0].1, strings("on (~a +get)"));
}

#[test]
fn acl_file_errors_name_their_lines() {
    let warning =
        "WARNING: ACL errors detected, no change to the previously active ACL rules was performed";
    let cases: &[(&str, String)] = &[
        (
            "# a comment\nuser a on\n",
            format!("line 1 should start with user keyword followed by the username. {warning}"),
        ),
        (
            "user a on\nuser\n",
            format!("line 2 should start with user keyword followed by the username. {warning}"),
        ),
        (
            "USER a on\n",
            format!("line 1 should start with user keyword followed by the username. {warning}"),
        ),
        (
            "user alice on\nuser bob on\nuser alice on nopass ~* -@all\n",
            format!("WARNING: Duplicate user 'alice' found on line 3. {warning}"),
        ),
        (
            "user a on (~x +get\n",
            format!("line 1: Unmatched parenthesis in selector definition. {warning}"),
        ),
        (
            "user a on bogus ~k allkeys ~late\n",
            format!("line 1: Syntax error. {warning}"),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(parse_acl_file(text).unwrap_err(), *want, "{text:?}");
    }
    // With the command table: every unknown name, and the first other
    // error, each on its line, named by file.
    let text = "user a on +nosuch\nuser b on +get -nope ~k allkeys ~late +@nocat\n";
    assert_eq!(
        parse_acl_file_with(text, "/etc/users.acl", Some(&TestCatalog)).unwrap_err(),
        format!(
            "/etc/users.acl:1: Error in applying operation '+nosuch': Unknown command or \
             category name in ACL. /etc/users.acl:2: Error in applying operation '-nope': \
             Unknown command or category name in ACL. /etc/users.acl:2: Adding a pattern after \
             the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. \
             Try 'resetkeys' to start with an empty list of patterns. /etc/users.acl:2: Error \
             in applying operation '+@nocat': Unknown command or category name in ACL. \
             {warning}"
        )
    );
    assert!(
        parse_acl_file("user a on +nosuch\n").is_ok(),
        "no table, no name check"
    );
}

#[test]
fn an_acl_file_round_trips() {
    let mut acl = Acl::default();
    setuser(
        &mut acl,
        "alice",
        "on >a %R~r* %W~w* ~rw &news +@all -flushall -config|set (~x +get) ()",
    )
    .unwrap();
    setuser(
        &mut acl,
        "bob",
        "off nopass allkeys allchannels -@all +@read -get",
    )
    .unwrap();
    setuser(&mut acl, "default", "resetpass >pw").unwrap();
    let file = acl.to_acl_file();
    let users = parse_acl_file_with(&file, "users.acl", Some(&TestCatalog)).unwrap();
    let mut loaded = Acl::default();
    loaded.apply(&AclOp::Load { users }).unwrap();
    assert_eq!(loaded.users, acl.users);
    assert_eq!(loaded.to_acl_file(), file);
}

// --------------------------------------------------------- properties

/// Rules from a small alphabet that exercises every kind.
fn rule() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "on",
        "off",
        "nopass",
        "resetpass",
        ">a",
        ">b",
        "#34344e4d60c2b6d639b7bd22e18f2b0b91bc34bf0ac5f9952744435093cfb4e6",
        "~k*",
        "%R~r*",
        "%W~w*",
        "%RW~rw",
        "allkeys",
        "resetkeys",
        "&c*",
        "&news",
        "allchannels",
        "resetchannels",
        "+get",
        "-get",
        "+set",
        "+config",
        "-config",
        "+config|get",
        "-config|set",
        "+client|id",
        "-client",
        "+@read",
        "-@read",
        "+@write",
        "-@hash",
        "+@admin",
        "allcommands",
        "nocommands",
        "+@all",
        "-@all",
        "(~s +get)",
        "(+set &x)",
        "()",
        "clearselectors",
        "reset",
    ])
    .prop_map(str::to_owned)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// ACL LIST's line, applied to a new user, gives back an equal user
    /// (Redis's "ACL list idempotency"), and so ACL SAVE then LOAD.
    #[test]
    fn a_described_user_rebuilds_equal(rules in prop::collection::vec(rule(), 0..24)) {
        let mut acl = Acl::default();
        // A list may fail only where the state says so (a pattern after
        // `allkeys`): skip those.
        if setuser(&mut acl, "u", &rules.join(" ")).is_err() {
            return Ok(());
        }
        let line = line_of(&acl, "u");
        let described: Vec<String> = line.split(' ').skip(2).map(str::to_owned).collect();
        let mut rebuilt = Acl::default();
        rebuilt.apply(&AclOp::SetUser { name: "u".into(), rules: described }).unwrap();
        prop_assert_eq!(line_of(&rebuilt, "u"), line);
        let (a, b) = (acl.user("u").unwrap(), rebuilt.user("u").unwrap());
        for (name, categories) in all_commands() {
            prop_assert_eq!(
                a.allows_command(&name, &categories),
                b.allows_command(&name, &categories),
                "{}", name
            );
        }
        for key in [&b"k1"[..], b"r1", b"w1", b"rw", b"s", b"x"] {
            for (read, write) in [(true, false), (false, true), (true, true)] {
                prop_assert_eq!(a.allows_key(key, read, write), b.allows_key(key, read, write));
            }
        }
        prop_assert_eq!(a.passwords.clone(), b.passwords.clone());
    }

    /// Redis's bitmaps as the model: each rule sets the bit of every
    /// command it speaks about, in order. The ordered list decides alike.
    #[test]
    fn rule_order_agrees_with_bitmaps(rules in prop::collection::vec(rule(), 0..24)) {
        let mut user = User::new();
        let mut bits: std::collections::BTreeMap<String, bool> =
            all_commands().into_iter().map(|(n, _)| (n, false)).collect();
        for rule in &rules {
            if rules::apply_rules(&mut user, std::slice::from_ref(rule), rules::Checks::APPLY).is_err() {
                continue;
            }
            let lower = rule.to_ascii_lowercase();
            let (allow, target) = match lower.as_str() {
                "reset" | "nocommands" | "-@all" => {
                    bits.values_mut().for_each(|b| *b = false);
                    continue;
                }
                "allcommands" | "+@all" => {
                    bits.values_mut().for_each(|b| *b = true);
                    continue;
                }
                r if r.starts_with('+') => (true, &r[1..]),
                r if r.starts_with('-') => (false, &r[1..]),
                _ => continue,
            };
            for (name, categories) in all_commands() {
                let hit = match target.strip_prefix('@') {
                    Some(category) => categories.contains(&category),
                    None => name == target || name.starts_with(&format!("{target}|")),
                };
                if hit {
                    bits.insert(name, allow);
                }
            }
        }
        for (name, categories) in all_commands() {
            prop_assert_eq!(user.root.allows_command(&name, &categories), bits[&name], "{}", name);
        }
    }
}
