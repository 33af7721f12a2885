//! The head-read deadline of a downstream connection, armed lazily.
//!
//! A request head must arrive within [`HEADER_TIMEOUT`] of a new connection or of its first
//! byte, and a keep-alive connection may idle [`IDLE_TIMEOUT`] between requests. Resetting a
//! timer for every request would cost a timer-wheel update per request; instead the timer is
//! re-armed only when it fires and a head has completed since it was armed, so a limit is
//! enforced within up to twice its length.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::{HEADER_TIMEOUT, IDLE_TIMEOUT};

/// The head-read deadline, armed lazily: re-armed when it fires if a request head arrived
/// since, so a busy connection costs no timer operation per request.
#[derive(Default)]
pub(crate) struct Deadline {
    sleep: Option<Pin<Box<Sleep>>>,
    /// `heads` and the duration when it was armed.
    armed: (u64, Duration),
    /// Polled since it was armed.
    polled: bool,
}

impl Deadline {
    /// Whether the connection has waited too long for a head (`partial`: one has begun).
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>, heads: u64, partial: bool) -> bool {
        let want = if heads == 0 || partial {
            HEADER_TIMEOUT
        } else {
            IDLE_TIMEOUT
        };
        let rearm = match &self.sleep {
            None => true,
            // A head has begun on an idle connection: the shorter limit applies from now.
            Some(_) => want < self.armed.1,
        };
        if rearm {
            self.arm(heads, want);
        }
        let Some(sleep) = self.sleep.as_mut() else {
            return false;
        };
        // Once polled after arming, the timer holds the task's waker: until it fires, asking
        // whether it has is an atomic load, not a poll.
        if self.polled && !sleep.is_elapsed() {
            return false;
        }
        self.polled = true;
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        if heads == self.armed.0 {
            return true;
        }
        self.arm(heads, want);
        self.polled = true;
        self.sleep
            .as_mut()
            .is_some_and(|s| s.as_mut().poll(cx).is_ready())
    }

    fn arm(&mut self, heads: u64, d: Duration) {
        let at = Instant::now() + d;
        match self.sleep.as_mut() {
            Some(s) => s.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed = (heads, d);
        self.polled = false;
    }
}
