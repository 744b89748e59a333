//! A small RESP2 client for `concord ctl`: one connection to one node, over
//! TCP or TLS, authenticated with AUTH when a password is given. Requests
//! are arrays of bulk strings; replies are parsed into [`Value`].

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Array(Vec<Value>),
    Nil,
}

impl Value {
    /// The text of a simple or bulk string (lossy UTF-8).
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Simple(s) => Some(s.clone()),
            Value::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// A map sent as RESP2's flat array of keys and values: the value
    /// under `key`.
    pub fn field(&self, key: &str) -> Option<&Value> {
        let Value::Array(items) = self else {
            return None;
        };
        items
            .chunks(2)
            .find(|pair| pair.len() == 2 && pair[0].text().as_deref() == Some(key))
            .map(|pair| &pair[1])
    }

    pub fn items(&self) -> &[Value] {
        match self {
            Value::Array(items) => items,
            _ => &[],
        }
    }
}

/// How to reach the nodes: TLS and credentials, shared by every connection.
#[derive(Clone)]
pub struct Connector {
    pub tls: Option<tokio_rustls::TlsConnector>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub timeout: Duration,
}

/// What TLS needs from the command line.
pub struct TlsOptions {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub skip_verify: bool,
}

impl TlsOptions {
    pub fn connector(&self) -> Result<tokio_rustls::TlsConnector, String> {
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => return Err("--cert and --key go together".into()),
        };
        crate::tls::client_connector(self.cacert.as_deref(), identity, self.skip_verify)
            .map_err(|e| e.to_string())
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to one node.
pub struct Conn {
    io: BufReader<Box<dyn Io>>,
    timeout: Duration,
}

/// The host part of `host:port` (without the brackets of `[::1]:6379`).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Connector {
    /// Connects to `addr`, shakes hands (TLS) and logs in (AUTH), within
    /// the timeout.
    pub async fn connect(&self, addr: &str) -> Result<Conn, String> {
        let opened = tokio::time::timeout(self.timeout, self.open(addr)).await;
        let mut conn = match opened {
            Ok(result) => result?,
            Err(_) => return Err(format!("no connection within {:?}", self.timeout)),
        };
        if let Some(password) = &self.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &self.user {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            if let Value::Error(e) = conn.call(&args).await? {
                return Err(format!("AUTH: {e}"));
            }
        } else if self.user.is_some() {
            return Err("--user needs --password (or CONCORD_PASSWORD)".into());
        }
        Ok(conn)
    }

    async fn open(&self, addr: &str) -> Result<Conn, String> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(host_of(addr).to_owned())
                    .map_err(|e| format!("'{}' is not a TLS server name: {e}", host_of(addr)))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                Box::new(stream)
            }
            None => Box::new(tcp),
        };
        Ok(Conn {
            io: BufReader::new(io),
            timeout: self.timeout,
        })
    }
}

/// Encodes a request as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Conn {
    /// Sends one command and reads its reply. A server error is a
    /// [`Value::Error`]; Err means the connection failed or timed out.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Value, String> {
        let timeout = self.timeout;
        self.call_within(args, timeout).await
    }

    /// As [`Conn::call`], waiting up to `timeout` for the reply.
    pub async fn call_within(
        &mut self,
        args: &[&[u8]],
        timeout: Duration,
    ) -> Result<Value, String> {
        let exchange = async {
            let io = self.io.get_mut();
            io.write_all(&encode(args))
                .await
                .map_err(|e| format!("cannot send: {e}"))?;
            io.flush().await.map_err(|e| format!("cannot send: {e}"))?;
            read_value(&mut self.io).await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no reply within {timeout:?}")),
        }
    }

    /// As [`Conn::call`] with string arguments.
    pub async fn cmd(&mut self, args: &[&str]) -> Result<Value, String> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call(&args).await
    }
}

type Reading<'a> = Pin<Box<dyn std::future::Future<Output = Result<Value, String>> + Send + 'a>>;

/// Reads one reply (arrays recursively).
fn read_value<R: AsyncRead + Unpin + Send>(r: &mut BufReader<R>) -> Reading<'_> {
    Box::pin(async move {
        let mut line = Vec::new();
        let n = r
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| format!("cannot read the reply: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        let line = line
            .strip_suffix(b"\r\n")
            .ok_or("malformed reply: a line without CRLF")?;
        let (&kind, rest) = line.split_first().ok_or("malformed reply: empty line")?;
        let text = || String::from_utf8_lossy(rest).into_owned();
        let number = || -> Result<i64, String> {
            std::str::from_utf8(rest)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("malformed reply: '{}' is not a number", text()))
        };
        match kind {
            b'+' => Ok(Value::Simple(text())),
            b'-' => Ok(Value::Error(text())),
            b':' => Ok(Value::Int(number()?)),
            b'$' => {
                let len = number()?;
                if len < 0 {
                    return Ok(Value::Nil);
                }
                // Grown as the bytes arrive: a length is not trusted with
                // an allocation before the data is there.
                let mut data = Vec::new();
                (&mut *r)
                    .take(len as u64)
                    .read_to_end(&mut data)
                    .await
                    .map_err(|e| format!("cannot read the reply: {e}"))?;
                if data.len() as i64 != len {
                    return Err("the server closed the connection in a reply".into());
                }
                let mut crlf = [0u8; 2];
                r.read_exact(&mut crlf)
                    .await
                    .map_err(|e| format!("cannot read the reply: {e}"))?;
                if &crlf != b"\r\n" {
                    return Err("malformed reply: bulk string without CRLF".into());
                }
                Ok(Value::Bulk(data))
            }
            b'*' => {
                let len = number()?;
                if len < 0 {
                    return Ok(Value::Nil);
                }
                let mut items = Vec::new();
                for _ in 0..len {
                    items.push(read_value(r).await?);
                }
                Ok(Value::Array(items))
            }
            other => Err(format!(
                "malformed reply: unknown type byte '{}'",
                char::from(other)
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Value, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut r = BufReader::new(bytes);
            read_value(&mut r).await
        })
    }

    #[test]
    fn requests_are_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&[b"RAFT.MEMBER", b"ADD", b"4", b""]),
            b"*4\r\n$11\r\nRAFT.MEMBER\r\n$3\r\nADD\r\n$1\r\n4\r\n$0\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn every_reply_type_parses() {
        assert_eq!(parse(b"+PONG\r\n"), Ok(Value::Simple("PONG".into())));
        assert_eq!(parse(b"-ERR no\r\n"), Ok(Value::Error("ERR no".into())));
        assert_eq!(parse(b":-42\r\n"), Ok(Value::Int(-42)));
        assert_eq!(parse(b"$-1\r\n"), Ok(Value::Nil));
        assert_eq!(parse(b"*-1\r\n"), Ok(Value::Nil));
        assert_eq!(
            parse(b"$5\r\na\r\nbc\r\n"),
            Ok(Value::Bulk(b"a\r\nbc".to_vec()))
        );
        let map = parse(b"*4\r\n$2\r\nid\r\n:3\r\n$5\r\nvoter\r\n*2\r\n:1\r\n$-1\r\n").unwrap();
        assert_eq!(map.field("id"), Some(&Value::Int(3)));
        assert_eq!(
            map.field("voter"),
            Some(&Value::Array(vec![Value::Int(1), Value::Nil]))
        );
        assert_eq!(map.field("missing"), None);
    }

    #[test]
    fn malformed_replies_are_errors() {
        for bad in [
            &b"$5\r\nabc"[..],
            b"$3\r\nabcXY",
            b"?x\r\n",
            b":x\r\n",
            b"+no crlf",
            b"",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn tls_names_come_from_the_host() {
        assert_eq!(host_of("127.0.0.1:6379"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6379"), "::1");
        assert_eq!(host_of("node-1.concord:6390"), "node-1.concord");
    }
}
