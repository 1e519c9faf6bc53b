//! Models described by a JSON spec: parsing ([`spec`]), compiling and running ([`model`]),
//! and binding parameters to caller-owned buffers ([`binding`]).

pub mod binding;
mod files;
pub mod model;
pub mod outputs;
pub mod spec;

pub use binding::Bindings;
pub use model::{Forward, ForwardMode, Model, ParamInfo};
pub use spec::{LossKind, ModelSpec, NodeOp};
