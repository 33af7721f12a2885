//! Keel's configuration model: every Istio kind and the Kubernetes objects the mesh reads,
//! parsed from YAML or JSON with positions, and checked with Istio's validation rules.
//!
//! ```
//! use keel_config::{LoadOptions, load_str, validate_resources};
//!
//! let yaml = r#"
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: reviews}
//! spec:
//!   hosts: [reviews]
//!   http:
//!   - route:
//!     - destination: {host: reviews, subset: v1}
//! "#;
//! let loaded = load_str(yaml, "reviews.yaml", &LoadOptions::default());
//! assert!(loaded.diagnostics.is_empty());
//! assert_eq!(loaded.resources[0].namespace(), "default");
//! assert!(validate_resources(&loaded.resources, "istio-system").is_empty());
//! ```

pub mod diagnostic;
pub mod kinds;
pub mod load;
pub mod meta;
pub mod model;
pub mod resource;
pub mod source;
pub mod suggest;
pub mod types;
pub mod validate;
pub mod yaml;

pub use diagnostic::{Diagnostic, Level, ResourceRef};
pub use kinds::Kind;
pub use load::{LoadOptions, Loaded, load_paths, load_str, validate_resources};
pub use resource::{Resource, Spec};
