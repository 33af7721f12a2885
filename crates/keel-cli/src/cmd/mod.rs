pub mod analyze;
pub mod apply;
pub mod control_plane;
pub mod get;
mod remote;
mod table;
pub mod validate;
pub mod version;
