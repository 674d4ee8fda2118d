#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    orderflow_fuzz::webhooks::check_sandbox_webhook(data);
});
