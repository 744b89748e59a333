//! Stand-in until the resp module lands (replaced by the real parser/encoder).
use bytes::{Bytes, BytesMut};

#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Bytes),
    Nil,
    NilArray,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Double(f64),
    Bool(bool),
    BigNumber(String),
    Verbatim { format: [u8; 3], text: Bytes },
    Push(Vec<Reply>),
}
impl Reply {
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }
    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}
pub fn encode(_reply: &Reply, _protocol: Protocol, _out: &mut BytesMut) {}
