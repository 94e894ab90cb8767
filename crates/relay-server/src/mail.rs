//! Mailing verification codes over SMTP (`--smtp-url`), for proof of address (M4).

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

/// How long one SMTP exchange may take before the registration fails with 503.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a mail could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// The SMTP URL or the sender address is unusable (a configuration error).
    #[error("SMTP configuration: {0}")]
    Config(String),
    /// The recipient address is not one SMTP can carry.
    #[error("the address cannot receive mail: {0}")]
    Address(String),
    /// The SMTP server could not be reached or refused the mail.
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// An SMTP client with the relay's sender address.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    // The transport holds the URL's credentials: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for `url`: `smtp://host:port` (plain, or STARTTLS with
    /// `?tls=required`), `smtps://host:port` (TLS from the start); credentials as
    /// `smtps://user:password@host`. `from` is the sender address.
    pub fn new(url: &str, from: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailError::Config(format!("--smtp-url: {e}")))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let from = from
            .parse()
            .map_err(|e| MailError::Config(format!("--smtp-from {from:?}: {e}")))?;
        Ok(Self { transport, from })
    }

    /// Mails `code` to `to`, saying it expires after `ttl`.
    pub async fn send_code(&self, to: &str, code: &str, ttl: Duration) -> Result<(), MailError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e: lettre::address::AddressError| MailError::Address(e.to_string()))?;
        let minutes = ttl.as_secs().div_ceil(60).max(1);
        let body = format!(
            "Your e2ee verification code is:\n\n    {code}\n\nIt expires in {minutes} minute(s). \
             Whoever has this code can register this address with their key: if you did \
             not ask for it, ignore this mail.\n"
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject("Your e2ee verification code")
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Address(e.to_string()))?;
        self.transport.send(message).await?;
        Ok(())
    }
}
