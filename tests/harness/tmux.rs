//! Real terminals for the front ends' end-to-end tests: each [`Tmux`] is a tmux server
//! of its own (a private socket), with one session running one command, typed into
//! with `send-keys` and read with `capture-pane`, as a person at a terminal would.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// How often [`Tmux::wait_for`] looks at the screen.
const POLL: Duration = Duration::from_millis(100);

/// Whether tmux can be run here.
pub fn available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One terminal running one command.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a detached terminal of
    /// `width` x `height` cells. When it exits, `EXITED <code>` is printed and the
    /// terminal stays open, so a test can see what was left on the screen.
    pub fn start(command: &str, width: u16, height: u16) -> Self {
        let socket = format!(
            "e2ee-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Self { socket };
        let wrapped = format!("{command}; echo EXITED $?; sleep 600");
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            &wrapped,
        ]);
        tmux
    }

    /// The shell command line that runs `bin` with `args`, each quoted.
    pub fn command_line(bin: &Path, args: &[&str]) -> String {
        let mut line = String::from(
            "env -u E2EE_RELAY -u E2EE_HOME -u E2EE_PROFILE -u E2EE_PASSPHRASE_COMMAND",
        );
        for part in std::iter::once(bin.to_str().expect("utf-8 path")).chain(args.iter().copied()) {
            line.push(' ');
            line.push('\'');
            line.push_str(&part.replace('\'', "'\\''"));
            line.push('\'');
        }
        line
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running tmux");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Types `text` literally (no key names).
    pub fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "main", "-l", text]);
    }

    /// Presses keys by tmux's names (`Enter`, `C-u`, `M-Up`, `F1`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Types `text` and presses Enter.
    pub fn line(&self, text: &str) {
        self.type_text(text);
        self.keys(&["Enter"]);
    }

    /// What the terminal shows now.
    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "main"])
    }

    /// Waits until the screen satisfies `ok`, and returns it; panics with the last
    /// screen after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("waited {timeout:?} for {what}; the screen is:\n{screen}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until `needle` is on the screen.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        self.wait_until(&format!("{needle:?}"), timeout, |s| s.contains(needle))
    }

    /// Resizes the terminal.
    pub fn resize(&self, width: u16, height: u16) {
        self.run(&[
            "resize-window",
            "-t",
            "main",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
        ]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}
