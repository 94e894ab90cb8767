//! Owning the terminal: raw mode and the alternate screen while the chat runs, and the
//! terminal given back as it was whatever ends the chat: a quit, a panic (a hook),
//! or a signal (SIGTERM, SIGHUP, SIGINT, SIGQUIT: the loops stop and leave; should
//! one be stuck, a task restores the terminal itself and exits after [`SIGNAL_GRACE`]).

use std::io::{self, Write as _};
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self as term, Event as TermEvent};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::{DefaultTerminal, Terminal};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

/// How often the key reader looks at its stop flag.
const KEY_POLL: Duration = Duration::from_millis(100);
/// How long leaving waits for the key reader to stop. Not longer: on a terminal that
/// hung up, crossterm's read may never return, and leaving must not hang with it (the
/// thread ends with the process).
const READER_STOP_WAIT: Duration = Duration::from_millis(300);
/// How long after a signal the chat may take to leave on its own (its goodbye
/// presence, the sync's last acks) before the signal task restores the terminal and
/// exits.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(8);

// Their numbers on every Unix, for the exit status.
const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGQUIT: i32 = 3;
const SIGTERM: i32 = 15;

/// Gives the terminal back: bracketed paste and focus reports off, raw mode off, the
/// main screen back, the cursor shown. Each step is tried even when one fails: the
/// terminal may already be gone (SIGHUP).
pub(crate) fn leave() {
    let mut out = io::stdout();
    let _ = execute!(out, term::DisableBracketedPaste, term::DisableFocusChange);
    let _ = terminal::disable_raw_mode();
    let _ = execute!(out, terminal::LeaveAlternateScreen, cursor::Show);
    let _ = out.flush();
}

/// Installs, once per process, a panic hook that gives the terminal back before the
/// panic message is printed (on the main screen, where it stays readable).
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            leave();
            previous(info);
        }));
    });
}

/// The signals that end the chat, and which one came first.
#[derive(Clone)]
pub(crate) struct Signals {
    received: watch::Receiver<Option<i32>>,
}

impl Signals {
    /// Starts listening. From here on these signals no longer kill the process at
    /// once: the chat's loops watch [`Self::stopped`], and the task exits after
    /// [`SIGNAL_GRACE`] should they not have ended it by then.
    pub(crate) fn install() -> io::Result<Self> {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut quit = signal(SignalKind::quit())?;
        let (tx, received) = watch::channel(None);
        tokio::spawn(async move {
            let first = tokio::select! {
                _ = terminate.recv() => SIGTERM,
                _ = hangup.recv() => SIGHUP,
                _ = interrupt.recv() => SIGINT,
                _ = quit.recv() => SIGQUIT,
            };
            let _ = tx.send(Some(first));
            // A thread, not a timer: it must fire even when the runtime's one thread
            // is stuck in something synchronous.
            std::thread::spawn(move || {
                std::thread::sleep(SIGNAL_GRACE);
                tracing::warn!(signal = first, "the chat did not stop in time; leaving now");
                leave();
                // The shell's convention for "ended by signal N".
                std::process::exit(128 + first);
            });
        });
        Ok(Self { received })
    }

    /// Completes once a signal came (at once if one already did).
    pub(crate) async fn stopped(&mut self) {
        // A closed channel means the task is gone, which only a runtime shutting down
        // does; then nothing is left to wait for.
        let _ = self.received.wait_for(Option::is_some).await;
    }

    /// The signal that came, if one did.
    pub(crate) fn received(&self) -> Option<i32> {
        *self.received.borrow()
    }
}

/// The terminal while the chat owns it, with the thread reading its keys.
pub(crate) struct Screen {
    pub(crate) terminal: DefaultTerminal,
    /// Key presses, pastes, focus changes and resizes, in order.
    pub(crate) keys: mpsc::UnboundedReceiver<TermEvent>,
    stop_keys: Arc<AtomicBool>,
    /// Disconnects when the key reader has stopped.
    reader_done: std::sync::mpsc::Receiver<()>,
}

impl Screen {
    /// Takes the terminal: raw mode, the alternate screen, bracketed paste and focus
    /// reports; keys are read from here on.
    pub(crate) fn enter() -> io::Result<Self> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        let entered = (|| {
            execute!(io::stdout(), terminal::EnterAlternateScreen)?;
            // Not every terminal knows these; the chat works without them.
            let _ = execute!(
                io::stdout(),
                term::EnableBracketedPaste,
                term::EnableFocusChange
            );
            Terminal::new(CrosstermBackend::new(io::stdout()))
        })();
        let terminal = match entered {
            Ok(terminal) => terminal,
            Err(error) => {
                leave();
                return Err(error);
            }
        };
        let stop_keys = Arc::new(AtomicBool::new(false));
        let (key_tx, keys) = mpsc::unbounded_channel();
        let (done, reader_done) = std::sync::mpsc::channel::<()>();
        {
            let stop = Arc::clone(&stop_keys);
            // A thread, not a task: crossterm's reads block.
            std::thread::spawn(move || {
                let _done = done;
                while !stop.load(Ordering::Relaxed) {
                    match term::poll(KEY_POLL) {
                        Ok(true) => match term::read() {
                            Ok(event) => {
                                if key_tx.send(event).is_err() {
                                    break;
                                }
                            }
                            Err(_) => break,
                        },
                        Ok(false) => {}
                        Err(_) => break,
                    }
                }
            });
        }
        Ok(Self {
            terminal,
            keys,
            stop_keys,
            reader_done,
        })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        leave();
        self.stop_keys.store(true, Ordering::Relaxed);
        // Stopped (disconnected) or given up on: either way leaving goes on.
        let _ = self.reader_done.recv_timeout(READER_STOP_WAIT);
    }
}
