pub mod analyze;
pub mod apply;
pub mod control_plane;
pub mod get;
pub mod proxy_status;
mod remote;
mod table;
pub mod validate;
pub mod version;
