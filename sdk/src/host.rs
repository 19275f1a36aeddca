//! What the host tells a plugin about where it runs.

#[cfg(not(target_arch = "wasm32"))]
std::thread_local! {
    static CALLBACK_URL: std::cell::RefCell<String> =
        std::cell::RefCell::new(DEFAULT_TEST_CALLBACK_URL.to_owned());
}

/// What [`callback_url`] answers outside WebAssembly unless a test sets
/// another with [`set_test_callback_url`].
pub const DEFAULT_TEST_CALLBACK_URL: &str = "https://pigeon.test/v1/carriers/test/callback/s3cret";

/// The absolute URL at which this carrier reaches Pigeon's callback route
/// (`…/v1/carriers/{name}/callback/{secret}`, no trailing slash). Append a
/// path of your own, e.g. `format!("{}/dlr", callback_url())`.
pub fn callback_url() -> String {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::pigeon::carrier::host::callback_url();
    #[cfg(not(target_arch = "wasm32"))]
    CALLBACK_URL.with(|url| url.borrow().clone())
}

/// Sets what [`callback_url`] answers on this thread, outside WebAssembly
/// (the test kit uses it for fixtures with a `callback_url`).
#[cfg(not(target_arch = "wasm32"))]
pub fn set_test_callback_url(url: &str) {
    CALLBACK_URL.with(|current| *current.borrow_mut() = url.to_owned());
}
