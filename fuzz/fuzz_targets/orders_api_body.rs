#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    orderflow_fuzz::orders_api::check_order_body(data);
});
