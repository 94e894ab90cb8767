//! A small SMTP server for tests: enough of RFC 5321 for a client that sends mail
//! (greeting, EHLO/HELO, MAIL, RCPT, DATA with dot-stuffing, RSET, NOOP, QUIT) over
//! real TCP, keeping every message it accepts so a test can read it.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The `MAIL FROM` path.
    pub from: String,
    /// The `RCPT TO` paths.
    pub to: Vec<String>,
    /// Headers and body as sent (dot-stuffing removed).
    pub data: String,
}

impl Mail {
    /// The first line of the body that is nothing but 8 digits: the relay's code.
    pub fn code(&self) -> Option<String> {
        self.data
            .lines()
            .map(str::trim)
            .find(|line| line.len() == 8 && line.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_owned)
    }
}

/// A listening SMTP server on 127.0.0.1; it lives as long as the test process.
pub struct SmtpServer {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpServer {
    /// Listens on a free port and serves every connection in a thread of its own.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the SMTP listener");
        let port = listener.local_addr().expect("SMTP address").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&mails);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mails = Arc::clone(&shared);
                std::thread::spawn(move || {
                    // A client that hangs up mid-way is the client's business.
                    let _ = serve(stream, &mails);
                });
            }
        });
        Self { port, mails }
    }

    /// `smtp://127.0.0.1:PORT`, for `--smtp-url`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The messages to `to`, once there are at least `count` (waits up to 20 s).
    #[track_caller]
    pub fn wait_for(&self, to: &str, count: usize) -> Vec<Mail> {
        let started = Instant::now();
        loop {
            let mails: Vec<Mail> = self
                .mails()
                .into_iter()
                .filter(|mail| mail.to.iter().any(|rcpt| rcpt == to))
                .collect();
            if mails.len() >= count {
                return mails;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{count} mail(s) to {to} expected, got {}: {mails:?}",
                mails.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The code of the newest message to `to`, once there are `count` of them.
    #[track_caller]
    pub fn code_for(&self, to: &str, count: usize) -> String {
        let mails = self.wait_for(to, count);
        let newest = mails.last().expect("a mail");
        newest
            .code()
            .unwrap_or_else(|| panic!("no 8-digit code in {newest:?}"))
    }
}

/// The address of a `MAIL FROM:<a>` or `RCPT TO:<a>` argument.
fn path_of(argument: &str) -> String {
    let inner = argument.split_once('<').map_or(argument, |(_, rest)| rest);
    inner.split('>').next().unwrap_or(inner).trim().to_owned()
}

fn serve(stream: TcpStream, mails: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 localhost test SMTP ready\r\n")?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => out.write_all(b"250-localhost\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")?,
            "HELO" => out.write_all(b"250 localhost\r\n")?,
            "MAIL" => {
                from = path_of(&command[4..]);
                to.clear();
                out.write_all(b"250 OK\r\n")?;
            }
            "RCPT" => {
                to.push(path_of(&command[4..]));
                out.write_all(b"250 OK\r\n")?;
            }
            "DATA" => {
                out.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                mails
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Mail {
                        from: std::mem::take(&mut from),
                        to: std::mem::take(&mut to),
                        data,
                    });
                out.write_all(b"250 OK queued\r\n")?;
            }
            "RSET" => {
                from.clear();
                to.clear();
                out.write_all(b"250 OK\r\n")?;
            }
            "NOOP" => out.write_all(b"250 OK\r\n")?,
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => out.write_all(b"502 command not implemented\r\n")?,
        }
    }
}
