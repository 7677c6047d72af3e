//! The C surface: a thin layer over the core, one file per exported object.
//!
//! Every export catches panics (a panic never unwinds into C), checks its pointers for NULL and
//! its strings for UTF-8, and reports through a [`wa_result`]; outputs are written only on
//! success. Exports are plain `extern "C" fn`s: Rust's `unsafe` marker means nothing to a C
//! caller, so the contract of each pointer is written in the header instead, and each
//! dereference below carries a `SAFETY:` note.
#![allow(clippy::not_unsafe_ptr_arg_deref)]
// The C names are part of the ABI.
#![allow(non_camel_case_types)]

pub mod client;
pub mod media;
pub mod onboarding;
pub mod options;
pub mod result;

use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use result::wa_result;

thread_local! {
    /// Detail of the last failed call on this thread (until the next failure), for
    /// `wa_last_error_message`.
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

pub(crate) fn set_last_error(text: impl Into<String>) {
    let text = text.into();
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = text);
}

fn take_last_error() -> String {
    LAST_ERROR
        .try_with(|e| std::mem::take(&mut *e.borrow_mut()))
        .unwrap_or_default()
}

/// After a successful call: the detail of the last failure stays readable (as errno does),
/// unless a call nested in this one (from a callback) failed meanwhile and left its own.
fn keep_last_error(previous: String) {
    let _ = LAST_ERROR.try_with(|e| {
        let mut current = e.borrow_mut();
        if current.is_empty() {
            *current = previous;
        }
    });
}

/// Runs an export's body, turning a panic into `WA_ERR_PANIC`. A failure's detail (set by the
/// body, "" when it gave none) replaces the previous one; a success leaves it.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), wa_result>) -> wa_result {
    let previous = take_last_error();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            keep_last_error(previous);
            wa_result::WA_OK
        }
        Ok(Err(code)) => code,
        Err(_) => {
            set_last_error("internal error (panic caught at the C boundary)");
            wa_result::WA_ERR_PANIC
        }
    }
}

/// Like [`guard`] for exports that return a value instead of a result code.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

pub(crate) fn fail(code: wa_result, detail: impl Into<String>) -> wa_result {
    set_last_error(detail);
    code
}

/// Borrows a required C string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid for `'a`.
pub(crate) unsafe fn borrow_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, wa_result> {
    if ptr.is_null() {
        return Err(fail(
            wa_result::WA_ERR_NULL_ARGUMENT,
            format!("{name} is NULL"),
        ));
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|_| {
        fail(
            wa_result::WA_ERR_INVALID_UTF8,
            format!("{name} is not valid UTF-8"),
        )
    })
}

/// Borrows an optional C string argument (NULL = absent).
///
/// # Safety
/// As [`borrow_str`].
pub(crate) unsafe fn borrow_opt_str<'a>(
    ptr: *const c_char,
    name: &str,
) -> Result<Option<&'a str>, wa_result> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { borrow_str(ptr, name) }.map(Some)
}

/// Writes an output only on success; a NULL output pointer is an error.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) -> Result<(), wa_result> {
    if out.is_null() {
        return Err(fail(
            wa_result::WA_ERR_NULL_ARGUMENT,
            "output pointer is NULL",
        ));
    }
    // SAFETY: non-NULL and writable per this function's contract.
    unsafe { out.write(value) };
    Ok(())
}

thread_local! {
    /// Reused storage for callback strings: no allocation per callback once warmed up.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with NUL-terminated copies of `parts` (NUL bytes inside become U+FFFD), valid
/// during the call. Re-entrant: a nested call gets its own buffer.
pub(crate) fn with_c_strings<const N: usize, R>(
    parts: [&str; N],
    f: impl FnOnce([*const c_char; N]) -> R,
) -> R {
    let mut buffer = SCRATCH
        .try_with(|s| std::mem::take(&mut *s.borrow_mut()))
        .unwrap_or_default();
    buffer.clear();
    let mut offsets = [0usize; N];
    for (offset, part) in offsets.iter_mut().zip(parts) {
        *offset = buffer.len();
        for (i, chunk) in part.split('\0').enumerate() {
            if i > 0 {
                buffer.extend_from_slice("\u{FFFD}".as_bytes());
            }
            buffer.extend_from_slice(chunk.as_bytes());
        }
        buffer.push(0);
    }
    let base = buffer.as_ptr();
    // SAFETY: every offset is inside `buffer`, which is not modified while the pointers live.
    let pointers = offsets.map(|o| unsafe { base.add(o) }.cast::<c_char>());
    let result = f(pointers);
    let _ = SCRATCH.try_with(|s| *s.borrow_mut() = buffer);
    result
}

/// Copies the detail of the last failed call on the calling thread (kept until the next failed
/// call: successful calls leave it) into `buf` (NUL-terminated, truncated to fit) and stores the full length, without the NUL, in `*out_len`. Returns
/// `WA_ERR_BUFFER_TOO_SMALL` when the text was truncated. An empty text means no detail.
/// `buf` NULL with `len` 0 asks for the length only (`*out_len`, `WA_ERR_BUFFER_TOO_SMALL`).
#[no_mangle]
pub extern "C" fn wa_last_error_message(
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> wa_result {
    let text = LAST_ERROR
        .try_with(|e| e.borrow().clone())
        .unwrap_or_default();
    match catch_unwind(AssertUnwindSafe(|| {
        if buf.is_null() && len == 0 && !out_len.is_null() {
            // A size query, as webhook_request's out_body_len allows.
            // SAFETY: non-NULL output pointer from the caller.
            unsafe { out_len.write(text.len()) };
            return Err(wa_result::WA_ERR_BUFFER_TOO_SMALL);
        }
        if buf.is_null() || len == 0 {
            return Err(wa_result::WA_ERR_NULL_ARGUMENT);
        }
        let n = text.len().min(len - 1);
        // SAFETY: the caller gives a writable buffer of `len` bytes; we write n + 1 <= len.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
        if !out_len.is_null() {
            // SAFETY: non-NULL output pointer from the caller.
            unsafe { out_len.write(text.len()) };
        }
        if n < text.len() {
            Err(wa_result::WA_ERR_BUFFER_TOO_SMALL)
        } else {
            Ok(())
        }
    })) {
        Ok(Ok(())) => wa_result::WA_OK,
        Ok(Err(code)) => code,
        Err(_) => wa_result::WA_ERR_PANIC,
    }
}

/// The library's version, e.g. "0.1.0" (static; never freed).
#[no_mangle]
pub extern "C" fn wa_library_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_strings_are_nul_terminated_and_nul_free() {
        with_c_strings(["a\0b", "", "\0x"], |[a, empty, x]| {
            // SAFETY: pointers from with_c_strings, valid in this closure.
            let read = |p| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
            assert_eq!(read(a), "a\u{FFFD}b");
            assert_eq!(read(empty), "");
            assert_eq!(read(x), "\u{FFFD}x");
            // Nested use (a callback dispatching another client) gets its own buffer.
            with_c_strings(["inner"], |[i]| assert_eq!(read(i), "inner"));
            assert_eq!(read(a), "a\u{FFFD}b");
        });
    }
}
