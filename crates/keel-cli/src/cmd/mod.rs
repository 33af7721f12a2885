pub mod analyze;
pub mod validate;
pub mod version;
