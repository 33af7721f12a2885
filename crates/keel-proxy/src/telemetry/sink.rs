//! Where access-log lines go, without ever making a request wait for a slow stdout.
//!
//! [`BackgroundWriter`] hands lines to a dedicated thread through a bounded queue: offering a
//! line is a non-blocking `try_send`, and when the queue is full (stdout blocked, pipe reader
//! gone quiet) the line is dropped and counted instead of stalling the request path. The thread
//! writes through a buffer and flushes whenever the queue runs empty, so lines appear promptly
//! under light load and in large writes under heavy load.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

/// A destination for access-log lines. Implementations must not block.
pub trait AccessLogSink: Send + Sync {
    /// Queues one newline-terminated line; `false` if it was dropped.
    fn offer(&self, line: String) -> bool;
}

/// Lines queued for stdout; enough for a burst while the writer thread catches up, small
/// enough (at a few hundred bytes a line) to stay well under a megabyte.
pub const DEFAULT_QUEUE_LINES: usize = 2048;

/// A bounded queue in front of a writer thread.
#[derive(Debug)]
pub struct BackgroundWriter {
    tx: SyncSender<String>,
}

impl BackgroundWriter {
    /// Access logs on the process's stdout, as Istio's `accessLogFile: /dev/stdout`.
    pub fn stdout() -> io::Result<BackgroundWriter> {
        BackgroundWriter::spawn(io::stdout(), DEFAULT_QUEUE_LINES)
    }

    /// Starts the writer thread; it ends when the `BackgroundWriter` is dropped and the queue
    /// is drained.
    pub fn spawn<W: Write + Send + 'static>(
        writer: W,
        queue_lines: usize,
    ) -> io::Result<BackgroundWriter> {
        let (tx, rx) = mpsc::sync_channel(queue_lines.max(1));
        std::thread::Builder::new()
            .name("keel-access-log".into())
            .spawn(move || write_lines(rx, writer))?;
        Ok(BackgroundWriter { tx })
    }
}

impl AccessLogSink for BackgroundWriter {
    fn offer(&self, line: String) -> bool {
        match self.tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

fn write_lines<W: Write>(rx: Receiver<String>, writer: W) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, writer);
    let mut healthy = true;
    while let Ok(line) = rx.recv() {
        healthy &= out.write_all(line.as_bytes()).is_ok();
        while let Ok(line) = rx.try_recv() {
            healthy &= out.write_all(line.as_bytes()).is_ok();
        }
        healthy &= out.flush().is_ok();
        if !healthy {
            // A failed stdout does not come back. Dropping the receiver makes every later
            // `offer` fail, so the lost lines are counted rather than silently swallowed.
            tracing::warn!("access log writer failed; further access log lines are dropped");
            return;
        }
    }
}

/// A sink that keeps nothing, used if the writer thread cannot be started.
#[derive(Debug, Default)]
pub struct DiscardSink;

impl AccessLogSink for DiscardSink {
    fn offer(&self, _line: String) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// A writer that blocks in its first write until told to go on, like a stdout nobody
    /// reads; it says when it is blocked.
    struct GatedWriter {
        blocked: mpsc::Sender<()>,
        gate: Option<mpsc::Receiver<()>>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for GatedWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(gate) = self.gate.take() {
                let _ = self.blocked.send(());
                let _ = gate.recv();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn wait_for(written: &Mutex<Vec<u8>>, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = String::from_utf8(written.lock().unwrap().clone()).unwrap();
            if got == expected {
                return;
            }
            assert!(Instant::now() < deadline, "got {got:?}, want {expected:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_blocked_writer_makes_lines_drop_instead_of_blocking() {
        let (open, gate) = mpsc::channel();
        let (blocked_tx, blocked) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let writer = GatedWriter {
            blocked: blocked_tx,
            gate: Some(gate),
            written: written.clone(),
        };
        let sink = BackgroundWriter::spawn(writer, 2).unwrap();
        assert!(sink.offer("first\n".into()));
        blocked.recv_timeout(Duration::from_secs(5)).unwrap();

        // The writer thread is stuck in `write`: two lines fit in the queue, the rest drop,
        // and no offer waits.
        let started = Instant::now();
        let accepted: Vec<bool> = (0..50).map(|i| sink.offer(format!("{i}\n"))).collect();
        assert!(started.elapsed() < Duration::from_secs(1), "offer blocked");
        assert_eq!(accepted.iter().filter(|a| **a).count(), 2);
        assert!(accepted[0] && accepted[1]);

        open.send(()).unwrap();
        wait_for(&written, "first\n0\n1\n");
        // Once drained, the queue takes lines again.
        assert!(sink.offer("again\n".into()));
        wait_for(&written, "first\n0\n1\nagain\n");
    }
}
