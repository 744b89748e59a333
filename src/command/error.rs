//! Errors found before a command reaches the state machine: unknown names,
//! arity, syntax, and argument values. Texts are Redis 7's.

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand { name: String, args: String },
    #[error("ERR unknown subcommand '{sub}'. Try {command} HELP.")]
    UnknownSubcommand { command: String, sub: String },
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    /// A write too big for one raft log entry (`--max-entry-bytes`).
    #[error("ERR the write is {bytes} bytes, over the largest log entry this cluster takes (--max-entry-bytes {limit})")]
    EntryTooLarge { bytes: u64, limit: u64 },
    /// A write that may grow the dataset while it is over `maxmemory`
    /// and nothing can be evicted.
    #[error("OOM command not allowed when used memory > 'maxmemory'.")]
    OutOfMemory,
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpireTime(&'static str),
    #[error("ERR offset is out of range")]
    OffsetOutOfRange,
    #[error("ERR {0} is out of range, must be positive")]
    NotPositive(&'static str),
    #[error("ERR {0}")]
    InvalidArgument(String),
    /// A DUMP payload RESTORE cannot take.
    #[error(transparent)]
    Payload(#[from] crate::state::rdb::RdbError),
    /// A FUNCTION DUMP payload FUNCTION RESTORE cannot take.
    #[error(transparent)]
    FunctionPayload(#[from] crate::state::rdb::FunctionPayloadError),
}

impl CommandError {
    /// Redis's unknown-command text quotes the first arguments, each followed
    /// by a space, and cuts long ones.
    pub fn unknown_command(argv: &[bytes::Bytes]) -> CommandError {
        let name = String::from_utf8_lossy(argv.first().map_or(&b""[..], |b| &b[..]));
        let args: String = argv
            .iter()
            .skip(1)
            .take(32)
            .map(|a| {
                let text = String::from_utf8_lossy(&a[..a.len().min(128)]).into_owned();
                format!("'{text}' ")
            })
            .collect();
        CommandError::UnknownCommand {
            name: truncate(&name, 128),
            args,
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
