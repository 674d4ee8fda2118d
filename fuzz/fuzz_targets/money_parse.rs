#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    orderflow_fuzz::domain::check_money(data);
});
