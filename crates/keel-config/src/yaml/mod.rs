//! YAML and JSON reading: a span-carrying node tree, and serde decoding from it.

pub mod de;
pub mod load;
pub mod node;

pub use de::{DecodeError, from_node};
pub use load::{Document, Limits, LoadError, load_documents, load_documents_at};
pub use node::{FieldPath, Node, NodeKind, Pos, Resolved, ScalarStyle, Seg};
