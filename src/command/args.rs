//! A cursor over a command's arguments with Redis's parsing rules.

use bytes::Bytes;

use super::CommandError;
use crate::state::strings::{parse_f64, parse_i64};

/// The longest duration a primitive accepts: about 100 years, so every
/// deadline fits the state's millisecond clock with room to spare.
pub const MAX_MILLIS: u64 = 100 * 365 * 24 * 3600 * 1000;

pub struct Args<'a> {
    argv: &'a [Bytes],
    pos: usize,
}

impl<'a> Args<'a> {
    /// Arguments after the command name (`argv[0]`).
    pub fn new(argv: &'a [Bytes]) -> Self {
        Args { argv, pos: 1 }
    }

    pub fn remaining(&self) -> usize {
        self.argv.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next argument; a syntax error when there is none.
    pub fn bytes(&mut self) -> Result<Bytes, CommandError> {
        let arg = self.argv.get(self.pos).ok_or(CommandError::Syntax)?;
        self.pos += 1;
        Ok(arg.clone())
    }

    pub fn i64(&mut self) -> Result<i64, CommandError> {
        let arg = self.bytes()?;
        parse_i64(&arg).ok_or(CommandError::NotInteger)
    }

    pub fn f64(&mut self) -> Result<f64, CommandError> {
        let arg = self.bytes()?;
        parse_f64(&arg).ok_or(CommandError::NotFloat)
    }

    /// A duration in milliseconds, at most [`MAX_MILLIS`]; `what` names it
    /// in the error (`ERR invalid TTL`). Zero only when `allow_zero`.
    pub fn millis(&mut self, what: &str, allow_zero: bool) -> Result<u64, CommandError> {
        let arg = self.bytes()?;
        match parse_i64(&arg) {
            Some(v) if (v > 0 || (allow_zero && v == 0)) && v <= MAX_MILLIS as i64 => Ok(v as u64),
            _ => Err(CommandError::InvalidArgument(format!("invalid {what}"))),
        }
    }

    /// A positive integer (a count, a limit, a fencing token, an id);
    /// `what` names it in the error.
    pub fn positive(&mut self, what: &str) -> Result<u64, CommandError> {
        let arg = self.bytes()?;
        match parse_i64(&arg) {
            Some(v) if v > 0 => Ok(v as u64),
            _ => Err(CommandError::InvalidArgument(format!("invalid {what}"))),
        }
    }

    /// The rest of the arguments.
    pub fn rest(&mut self) -> Vec<Bytes> {
        let rest = self.argv[self.pos..].to_vec();
        self.pos = self.argv.len();
        rest
    }

    /// The next argument upper-cased, for matching option names.
    pub fn keyword(&mut self) -> Result<String, CommandError> {
        let arg = self.bytes()?;
        Ok(String::from_utf8_lossy(&arg).to_ascii_uppercase())
    }

    /// Errors unless every argument was consumed.
    pub fn finish(&self) -> Result<(), CommandError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(CommandError::Syntax)
        }
    }
}

/// Case-insensitive comparison of an argument with an option name.
pub fn is(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}
