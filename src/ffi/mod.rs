//! The stable C ABI: the only place in the crate with exported symbols.
//!
//! Every export is a thin shell over the Rust API: it checks its pointers and lengths, calls
//! the Rust API inside a panic boundary (`status::run`) and converts the result into a
//! [`gradtau_status`]. `include/gradtau.h` is generated from this module by cbindgen (see
//! `cbindgen.toml`); the conventions it documents (ownership, thread safety, out-parameters)
//! are implemented here:
//!
//! | file | job |
//! | --- | --- |
//! | [`status`] | the status enum, the last-error message, the panic boundary, pointer checks |
//! | [`model`] | `gradtau_model`: spec, parameter queries, binding of host buffers, publish hook, thread cap |
//! | [`infer`] | the read calls: outputs, probabilities, classes, losses |
//! | [`onnx`] | models made from ONNX files, and the files written back |
//! | [`dataset`] | `gradtau_dataset`: inputs and targets copied once from host memory |
//! | [`run`] | options structs, progress callbacks, `gradtau_unlearn`, `gradtau_train`, `gradtau_audit`, reports, audit reports |
//! | [`digits`] | the embedded digits data and MLP spec, for demos and tests |
//!
//! Every exported function is `unsafe`: its contract (valid pointers, buffers that live as
//! long as documented) is stated in the header, which is where C callers read it; the
//! per-function `# Safety` sections clippy asks for would repeat that text.
#![allow(non_camel_case_types, clippy::missing_safety_doc)]

pub mod dataset;
pub mod digits;
pub mod infer;
pub mod model;
pub mod onnx;
pub mod run;
pub mod status;

pub use dataset::gradtau_dataset;
pub use model::{gradtau_model, gradtau_param_info};
pub use run::{
    gradtau_audit_report, gradtau_audit_row, gradtau_progress, gradtau_report,
    gradtau_train_options, gradtau_unlearn_options,
};
pub use status::gradtau_status;

use std::ffi::c_char;

/// Major version of the library (semantic versioning; follows Cargo.toml).
pub const GRADTAU_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const GRADTAU_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const GRADTAU_VERSION_PATCH: u32 = 0;
/// Version of the binary interface this header describes. It changes whenever a struct
/// layout, a function signature or the meaning of a status changes incompatibly; compare it
/// with `gradtau_abi_version()` at start-up.
pub const GRADTAU_ABI_VERSION: u32 = 1;

static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library version as a NUL-terminated string, e.g. `"0.1.0"`. Static storage: never
/// freed, valid for the life of the process. Thread-safe.
#[no_mangle]
pub extern "C" fn gradtau_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// The `GRADTAU_ABI_VERSION` the library was built with. A host compiled against a header
/// whose `GRADTAU_ABI_VERSION` differs must not use the library. Thread-safe.
#[no_mangle]
pub extern "C" fn gradtau_abi_version() -> u32 {
    GRADTAU_ABI_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn version_macros_follow_cargo_toml() {
        let v = |s: &str| s.parse::<u32>().unwrap();
        assert_eq!(GRADTAU_VERSION_MAJOR, v(env!("CARGO_PKG_VERSION_MAJOR")));
        assert_eq!(GRADTAU_VERSION_MINOR, v(env!("CARGO_PKG_VERSION_MINOR")));
        assert_eq!(GRADTAU_VERSION_PATCH, v(env!("CARGO_PKG_VERSION_PATCH")));
        let s = unsafe { CStr::from_ptr(gradtau_version()) }
            .to_str()
            .unwrap();
        assert_eq!(s, env!("CARGO_PKG_VERSION"));
        assert_eq!(gradtau_abi_version(), GRADTAU_ABI_VERSION);
    }
}
