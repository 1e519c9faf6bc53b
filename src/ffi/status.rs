//! Status codes, the thread-local last-error message, the panic boundary and the checked
//! pointer conversions every export goes through.

use crate::error::Error;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, CStr, CString};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// The result of every fallible call. The numbers are part of the ABI: they never change and
/// a retired code is never reused for another meaning.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum gradtau_status {
    /// Success; the out-parameters were written.
    GRADTAU_OK = 0,
    /// A required pointer argument was NULL.
    GRADTAU_NULL_POINTER = 1,
    /// An argument is outside what the call accepts (length overflow, negative label, unknown
    /// enum value, empty set, bad option value, invalid UTF-8, ...).
    GRADTAU_INVALID_ARGUMENT = 2,
    /// Two shapes or lengths that must agree do not.
    GRADTAU_SHAPE = 3,
    /// A value is NaN or infinite where finite numbers are required.
    GRADTAU_NON_FINITE = 4,
    /// The model spec (JSON) is malformed.
    GRADTAU_SPEC = 5,
    /// A parameter has no bound buffer, a buffer has the wrong length, or a name is unknown.
    GRADTAU_BINDING = 6,
    /// The requested device cannot be used (CUDA compiled out, no driver, no GPU).
    GRADTAU_DEVICE_UNAVAILABLE = 7,
    /// An operation is not implemented on the device its data lives on.
    GRADTAU_UNSUPPORTED = 8,
    /// The progress callback returned non-zero; the bound buffers are untouched.
    GRADTAU_CANCELLED = 9,
    /// Reading or writing a file failed, or its contents are malformed.
    GRADTAU_IO = 10,
    /// A CUDA driver, NVRTC or cuBLAS call failed.
    GRADTAU_CUDA = 11,
    /// A writing call (a run, a bind, an initialisation, a hook change) is already running on
    /// the same model handle, from another thread or re-entered from a callback; nothing was
    /// done. Read calls never return it.
    GRADTAU_BUSY = 12,
    /// gradtau hit an internal bug (a Rust panic caught at the boundary, or a broken internal
    /// invariant). The handles involved stay valid and the bound buffers untouched, but
    /// please report it.
    GRADTAU_PANIC = 13,
    /// An options struct's `struct_size` does not match this library: initialise it with
    /// its `*_default()` function and compile against the header of this library.
    GRADTAU_ABI_MISMATCH = 14,
    /// The call would need more memory than the model's memory limit allows (see
    /// `gradtau_model_set_memory_limit`), or an allocation failed; nothing was done and the
    /// bound buffers are untouched. The message names the node and the bytes.
    GRADTAU_RESOURCE_LIMIT = 15,
}

use gradtau_status::*;

impl gradtau_status {
    fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => GRADTAU_OK,
            1 => GRADTAU_NULL_POINTER,
            2 => GRADTAU_INVALID_ARGUMENT,
            3 => GRADTAU_SHAPE,
            4 => GRADTAU_NON_FINITE,
            5 => GRADTAU_SPEC,
            6 => GRADTAU_BINDING,
            7 => GRADTAU_DEVICE_UNAVAILABLE,
            8 => GRADTAU_UNSUPPORTED,
            9 => GRADTAU_CANCELLED,
            10 => GRADTAU_IO,
            11 => GRADTAU_CUDA,
            12 => GRADTAU_BUSY,
            13 => GRADTAU_PANIC,
            14 => GRADTAU_ABI_MISMATCH,
            15 => GRADTAU_RESOURCE_LIMIT,
            _ => return None,
        })
    }

    fn name(self) -> &'static CStr {
        match self {
            GRADTAU_OK => c"GRADTAU_OK",
            GRADTAU_NULL_POINTER => c"GRADTAU_NULL_POINTER",
            GRADTAU_INVALID_ARGUMENT => c"GRADTAU_INVALID_ARGUMENT",
            GRADTAU_SHAPE => c"GRADTAU_SHAPE",
            GRADTAU_NON_FINITE => c"GRADTAU_NON_FINITE",
            GRADTAU_SPEC => c"GRADTAU_SPEC",
            GRADTAU_BINDING => c"GRADTAU_BINDING",
            GRADTAU_DEVICE_UNAVAILABLE => c"GRADTAU_DEVICE_UNAVAILABLE",
            GRADTAU_UNSUPPORTED => c"GRADTAU_UNSUPPORTED",
            GRADTAU_CANCELLED => c"GRADTAU_CANCELLED",
            GRADTAU_IO => c"GRADTAU_IO",
            GRADTAU_CUDA => c"GRADTAU_CUDA",
            GRADTAU_BUSY => c"GRADTAU_BUSY",
            GRADTAU_PANIC => c"GRADTAU_PANIC",
            GRADTAU_ABI_MISMATCH => c"GRADTAU_ABI_MISMATCH",
            GRADTAU_RESOURCE_LIMIT => c"GRADTAU_RESOURCE_LIMIT",
        }
    }
}

/// A failed call: the status to return and the message for `gradtau_last_error_message`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: gradtau_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: gradtau_status, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }
    pub fn null(what: &str) -> Self {
        Failure::new(GRADTAU_NULL_POINTER, format!("`{what}` is NULL"))
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(GRADTAU_INVALID_ARGUMENT, message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Shape { .. } => GRADTAU_SHAPE,
            Error::InvalidArgument(_) => GRADTAU_INVALID_ARGUMENT,
            Error::NonFinite(_) => GRADTAU_NON_FINITE,
            Error::Spec(_) => GRADTAU_SPEC,
            Error::Binding(_) => GRADTAU_BINDING,
            Error::DeviceUnavailable(_) => GRADTAU_DEVICE_UNAVAILABLE,
            Error::Unsupported { .. } => GRADTAU_UNSUPPORTED,
            Error::Cancelled => GRADTAU_CANCELLED,
            Error::Io(_) => GRADTAU_IO,
            Error::Cuda(_) => GRADTAU_CUDA,
            Error::Busy(_) => GRADTAU_BUSY,
            Error::ResourceLimit(_) => GRADTAU_RESOURCE_LIMIT,
            Error::Internal(_) => GRADTAU_PANIC,
        };
        Failure::new(status, e.to_string())
    }
}

pub(crate) type FfiResult<T> = std::result::Result<T, Failure>;

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: &str) {
    // An interior NUL would truncate the C string silently; show it instead.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(c));
}

fn clear_last_error() {
    LAST_ERROR.with(|e| *e.borrow_mut() = None);
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".into()
    }
}

thread_local! {
    /// How many gradtau exports are running on this thread (exports may nest, e.g. a
    /// progress callback that queries a model).
    static EXPORT_DEPTH: Cell<usize> = const { Cell::new(0) };
    /// The message and location of a panic raised inside an export, recorded by the hook.
    static PANIC_SEEN: RefCell<Option<String>> = const { RefCell::new(None) };
}

static QUIET_HOOK: Once = Once::new();

/// Installs, once per process, a panic hook that keeps panics raised inside a gradtau export
/// off the host's stderr: the default hook prints every panic, even one the boundary catches,
/// and gradtau runs inside other people's processes. A panic outside any export (the host's
/// own, or a Rust host calling the Rust API directly) goes to the hook that was installed
/// before, so the host keeps its own behaviour. A host that installs its own hook later
/// replaces this one; gradtau then still returns `GRADTAU_PANIC` with the message.
fn install_quiet_hook() {
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if EXPORT_DEPTH.with(Cell::get) > 0 {
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let text = format!("{}{at}", panic_message(info.payload()));
                PANIC_SEEN.with(|p| *p.borrow_mut() = Some(text));
            } else {
                previous(info);
            }
        }));
    });
}

/// Marks the current thread as inside an export for as long as it lives.
struct InExport;

impl InExport {
    fn enter() -> Self {
        install_quiet_hook();
        EXPORT_DEPTH.with(|d| d.set(d.get() + 1));
        InExport
    }
}

impl Drop for InExport {
    fn drop(&mut self) {
        EXPORT_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Runs `body` inside the panic boundary: the panic's message (with its location when the
/// hook saw it) on a panic.
fn catch<T>(body: impl FnOnce() -> T) -> std::result::Result<T, String> {
    let _inside = InExport::enter();
    PANIC_SEEN.with(|p| p.borrow_mut().take());
    panic::catch_unwind(AssertUnwindSafe(body)).map_err(|payload| {
        PANIC_SEEN
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| panic_message(&*payload))
    })
}

/// The panic boundary of every fallible export: runs `body`, turns its error or a panic into
/// a status, and keeps the last-error message in step (cleared on success). Nothing is
/// printed (see [`install_quiet_hook`]).
pub(crate) fn run(body: impl FnOnce() -> FfiResult<()>) -> gradtau_status {
    match catch(body) {
        Ok(Ok(())) => {
            clear_last_error();
            GRADTAU_OK
        }
        Ok(Err(f)) => {
            set_last_error(&f.message);
            f.status
        }
        Err(message) => {
            set_last_error(&format!("internal error (panic): {message}"));
            GRADTAU_PANIC
        }
    }
}

/// The panic boundary of infallible getters: a panic gives `fallback` (and prints nothing).
pub(crate) fn value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch(body).unwrap_or(fallback)
}

/// A shared reference from a handle or struct pointer; NULL is an error.
pub(crate) unsafe fn borrow<'a, T>(p: *const T, what: &str) -> FfiResult<&'a T> {
    // SAFETY: the caller promises that a non-NULL `p` points to a live `T` (header contract).
    unsafe { p.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// Checks an out-parameter before any work is done.
pub(crate) fn out_ptr<T>(p: *mut T, what: &str) -> FfiResult<*mut T> {
    if p.is_null() {
        Err(Failure::null(what))
    } else {
        Ok(p)
    }
}

fn check_buffer<T>(p: *const T, len: usize, what: &str) -> FfiResult<()> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Failure::invalid(format!(
            "`{what}` is not aligned for its element type"
        )));
    }
    if len
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Failure::invalid(format!(
            "`{what}`: length {len} overflows the address space"
        )));
    }
    Ok(())
}

/// A host buffer as a slice; NULL with length 0 is the empty slice.
pub(crate) unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> FfiResult<&'a [T]> {
    if p.is_null() && len == 0 {
        return Ok(&[]);
    }
    check_buffer(p, len, what)?;
    // SAFETY: non-NULL, aligned, size within isize; the caller promises `len` readable
    // elements that nobody writes during the call (header contract).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Checks a mutable host buffer (non-NULL, aligned, no overflow) without creating a
/// reference to it yet.
pub(crate) fn check_mut_buffer<T>(p: *mut T, len: usize, what: &str) -> FfiResult<()> {
    check_buffer(p.cast_const(), len, what)
}

/// A NUL-terminated UTF-8 string argument.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, what: &str) -> FfiResult<&'a str> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL; the caller promises a NUL-terminated string (header contract).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|e| Failure::invalid(format!("`{what}` is not valid UTF-8: {e}")))
}

/// A message describing the most recent failed call on the calling thread, or `""` when the
/// most recent call succeeded. Never NULL. The string belongs to gradtau and stays valid
/// until the next gradtau call on the same thread; copy it to keep it. Each thread has its own
/// message, so this is thread-safe.
#[no_mangle]
pub extern "C" fn gradtau_last_error_message() -> *const c_char {
    value(c"".as_ptr(), || {
        LAST_ERROR.with(|e| e.borrow().as_deref().unwrap_or(c"").as_ptr())
    })
}

/// The name of a status code (`"GRADTAU_BUSY"`), or `"GRADTAU_UNKNOWN_STATUS"` for a number
/// this library does not define. Never NULL; static storage. Thread-safe.
#[no_mangle]
pub extern "C" fn gradtau_status_name(status: i32) -> *const c_char {
    gradtau_status::from_code(status)
        .map_or(c"GRADTAU_UNKNOWN_STATUS", |s| s.name())
        .as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        unsafe { CStr::from_ptr(gradtau_last_error_message()) }
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn codes_round_trip_and_names_are_distinct() {
        let mut names = std::collections::HashSet::new();
        for code in 0..=15 {
            let s = gradtau_status::from_code(code).unwrap();
            assert_eq!(s as i32, code);
            assert!(names.insert(s.name()));
        }
        assert!(gradtau_status::from_code(16).is_none());
        let unknown = unsafe { CStr::from_ptr(gradtau_status_name(-3)) };
        assert_eq!(unknown.to_str().unwrap(), "GRADTAU_UNKNOWN_STATUS");
    }

    #[test]
    fn panics_become_a_status_and_success_clears_the_message() {
        let s = run(|| panic!("boom {}", 7));
        assert_eq!(s, GRADTAU_PANIC);
        assert!(last().contains("boom 7"), "{}", last());
        assert_eq!(run(|| Err(Error::Cancelled.into())), GRADTAU_CANCELLED);
        assert!(last().contains("cancelled"));
        assert_eq!(run(|| Ok(())), GRADTAU_OK);
        assert_eq!(last(), "");
        assert_eq!(value(5, || panic!("x")), 5);
    }

    /// Set in the child process of `panics_inside_an_export_print_nothing`.
    const CHILD: &str = "GRADTAU_QUIET_PANIC_CHILD";

    #[test]
    fn panics_inside_an_export_print_nothing() {
        if std::env::var_os(CHILD).is_some() {
            // The child: a panic through the boundary, then one outside any export.
            assert_eq!(run(|| panic!("quiet boom")), GRADTAU_PANIC);
            let m = last();
            assert!(m.contains("quiet boom") && m.contains("status.rs:"), "{m}");
            assert_eq!(value(1, || panic!("quiet getter")), 1);
            let loud = panic::catch_unwind(|| panic!("loud host panic"));
            assert!(loud.is_err());
            return;
        }
        // The test harness captures panic output per test thread, so the real stderr is only
        // seen from another process: this test binary, running just this test.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "ffi::status::tests::panics_inside_an_export_print_nothing",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed: {stderr}");
        assert!(!stderr.contains("quiet"), "library panic printed: {stderr}");
        // A panic outside gradtau still reaches the previous (default) hook.
        assert!(stderr.contains("loud host panic"), "{stderr}");
    }

    #[test]
    fn pointer_checks() {
        let v = [1.0f32, 2.0];
        assert!(unsafe { slice::<f32>(std::ptr::null(), 0, "x") }
            .unwrap()
            .is_empty());
        assert_eq!(
            unsafe { slice::<f32>(std::ptr::null(), 1, "x") }
                .unwrap_err()
                .status,
            GRADTAU_NULL_POINTER
        );
        let misaligned = (v.as_ptr() as *const u8).wrapping_add(1) as *const f32;
        assert_eq!(
            unsafe { slice(misaligned, 1, "x") }.unwrap_err().status,
            GRADTAU_INVALID_ARGUMENT
        );
        assert_eq!(
            unsafe { slice(v.as_ptr(), usize::MAX / 2, "x") }
                .unwrap_err()
                .status,
            GRADTAU_INVALID_ARGUMENT
        );
        assert_eq!(unsafe { slice(v.as_ptr(), 2, "x") }.unwrap(), &v);
    }
}
