//! The embedded UCI digits data and the demo MLP spec: a convenience for demos and for the C
//! and C++ test suites, so they need no data files.

use super::dataset::gradtau_dataset;
use super::gradtau_status;
use super::status::{out_ptr, run};
use crate::data::digits;
use std::ffi::{c_char, CString};
use std::sync::LazyLock;

static MLP_SPEC: LazyLock<CString> =
    LazyLock::new(|| CString::new(digits::MLP_SPEC).expect("the spec holds no NUL"));

/// The demo model spec for the digits data (64-128-128-10 MLP, ReLU, cross-entropy) as a
/// NUL-terminated JSON string. Static storage. Demo and test convenience.
#[no_mangle]
pub extern "C" fn gradtau_digits_mlp_spec() -> *const c_char {
    super::status::value(std::ptr::null(), || MLP_SPEC.as_ptr())
}

/// The embedded UCI digits data (1797 8x8 images scaled to [0, 1], inputs `[N, 64]`, labels
/// 0-9), split with `seed` into train (70 %), validation (10 %) and test (20 %) sets, each a
/// new data set the caller frees. Either all three out-parameters are written or none is.
/// Demo and test convenience.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_digits_split(
    seed: u64,
    train_out: *mut *mut gradtau_dataset,
    val_out: *mut *mut gradtau_dataset,
    test_out: *mut *mut gradtau_dataset,
) -> gradtau_status {
    run(|| {
        let outs = [
            out_ptr(train_out, "train_out")?,
            out_ptr(val_out, "val_out")?,
            out_ptr(test_out, "test_out")?,
        ];
        let (train, val, test) = digits::train_val_test(seed)?;
        for (out, data) in outs.into_iter().zip([train, val, test]) {
            // SAFETY: checked non-NULL; the caller promises they are writable.
            unsafe { out.write(Box::into_raw(Box::new(gradtau_dataset { data }))) };
        }
        Ok(())
    })
}
