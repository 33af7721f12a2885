//! Exit codes, matching `istioctl` so scripts written for it keep working.

pub const OK: u8 = 0;
/// Something went wrong that is not the user's configuration (e.g. a file could not be read).
pub const FAILURE: u8 = 1;
/// Wrong usage: unknown flag, bad flag value.
pub const USAGE: u8 = 64;
/// Input could not be parsed.
pub const PARSE: u8 = 65;
/// `analyze` found messages at or above the failure threshold.
pub const ISSUES_FOUND: u8 = 79;
