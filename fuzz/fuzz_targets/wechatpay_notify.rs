#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    orderflow_fuzz::wechatpay::check_notify(data);
});
