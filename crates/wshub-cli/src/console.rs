//! Where `connect` and `listen` read the lines to send and print what
//! arrives: a pipe (stdin lines in, messages out as they are), or, when
//! stdin and stdout are terminals, a prompt with line editing and history
//! (rustyline), with what arrives printed above the line being typed so it
//! is not torn.
//!
//! rustyline rather than reedline: its `ExternalPrinter` is what printing
//! above the prompt needs, it is a smaller tree (no crossterm), and
//! `readline` in a thread of its own fits the tokio side with one channel.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// The lines typed (or piped), and where output goes.
pub(crate) struct Console {
    /// Each line of input; closed at its end (Ctrl-D, Ctrl-C at the prompt,
    /// the end of a pipe).
    pub(crate) lines: mpsc::Receiver<String>,
    prompt: Option<Prompt>,
    /// [`Console::idle`]'s sender, kept so `lines` never ends.
    _idle: Option<mpsc::Sender<String>>,
}

struct Prompt {
    printer: Box<dyn rustyline::ExternalPrinter + Send>,
    /// The terminal's settings before the prompt took it, put back on drop:
    /// the process may exit while `readline` holds it in raw mode.
    saved: Option<nix::sys::termios::Termios>,
    /// Whether the prompt is on screen (`readline` running), so the
    /// process's last lines start on a line of their own.
    reading: Arc<AtomicBool>,
}

impl Console {
    /// Reads stdin: a prompt when stdin and stdout are terminals, lines
    /// otherwise.
    pub(crate) fn stdin() -> Self {
        let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        if interactive {
            match Self::prompt() {
                Ok(console) => return console,
                Err(e) => eprintln!("no line editing ({e}); reading lines as they come"),
            }
        }
        let (tx, lines) = mpsc::channel::<String>(64);
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = stdin.next_line().await {
                if tx.send(line).await.is_err() {
                    break;
                }
            }
            // Dropping the sender tells the session that input ended.
        });
        Self {
            lines,
            prompt: None,
            _idle: None,
        }
    }

    /// No input: `lines` gives each of `messages`, then ends once `wait`
    /// has passed (--execute, --wait).
    pub(crate) fn scripted(messages: Vec<String>, wait: std::time::Duration) -> Self {
        let (tx, lines) = mpsc::channel::<String>(messages.len().max(1));
        tokio::spawn(async move {
            for message in messages {
                if tx.send(message).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(wait).await;
            drop(tx);
        });
        Self {
            lines,
            prompt: None,
            _idle: None,
        }
    }

    /// No input at all, and no end of it (`listen --execute` before its
    /// client connects).
    pub(crate) fn idle() -> Self {
        let (tx, lines) = mpsc::channel::<String>(1);
        Self {
            lines,
            prompt: None,
            _idle: Some(tx),
        }
    }

    fn prompt() -> rustyline::Result<Self> {
        let saved = nix::sys::termios::tcgetattr(std::io::stdin()).ok();
        let mut editor = rustyline::DefaultEditor::new()?;
        let printer = editor.create_external_printer()?;
        let (tx, lines) = mpsc::channel::<String>(64);
        let reading = Arc::new(AtomicBool::new(true));
        let on_screen = reading.clone();
        std::thread::spawn(move || loop {
            on_screen.store(true, Ordering::SeqCst);
            let line = editor.readline("> ");
            on_screen.store(false, Ordering::SeqCst);
            match line {
                Ok(line) => {
                    if !line.is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    if tx.blocking_send(line).is_err() {
                        break;
                    }
                }
                // Ctrl-D, Ctrl-C: the end of input, which closes.
                Err(_) => break,
            }
        });
        Ok(Self {
            lines,
            prompt: Some(Prompt {
                printer: Box::new(printer),
                saved,
                reading,
            }),
            _idle: None,
        })
    }

    /// Prints a received message (its text, or binary as hex or base64):
    /// stdout, or above the prompt.
    pub(crate) fn message(&mut self, text: &str) -> std::io::Result<()> {
        match &mut self.prompt {
            Some(prompt) => prompt
                .printer
                .print(format!("< {text}\n"))
                .map_err(std::io::Error::other),
            None => {
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{text}")?;
                stdout.flush()
            }
        }
    }

    /// Prints a status line: stderr, or above the prompt.
    pub(crate) fn status(&mut self, text: &str) {
        match &mut self.prompt {
            Some(prompt) => {
                if prompt.printer.print(format!("{text}\n")).is_ok() {
                    return;
                }
                eprintln!("{text}");
            }
            None => eprintln!("{text}"),
        }
    }
}

impl Drop for Prompt {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
        if self.reading.load(Ordering::SeqCst) {
            println!();
        }
    }
}
