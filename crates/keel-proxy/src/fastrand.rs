//! A per-thread fast random generator for the request path (request ids, retry back-off,
//! mirror and fault draws): `rand::rng()` is a cryptographic generator, several hundred
//! instructions a draw, and none of these draws needs that.

use std::cell::RefCell;

use rand::SeedableRng;
use rand::rngs::SmallRng;

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// Runs `f` with this thread's generator (never across an `.await`).
pub fn with<R>(f: impl FnOnce(&mut SmallRng) -> R) -> R {
    RNG.with(|r| f(&mut r.borrow_mut()))
}
