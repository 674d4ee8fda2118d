#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    orderflow_fuzz::alipay::check_notify(data);
});
