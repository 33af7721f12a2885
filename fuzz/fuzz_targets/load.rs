//! Fuzzes the YAML/JSON entry point end to end: read, decode, validate, analyze.
//! Run: `cargo +nightly fuzz run load` (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let loaded = keel_config::load_str(&text, "fuzz.yaml", &keel_config::LoadOptions::default());
    let _ = keel_config::validate_resources(&loaded.resources, "istio-system");
    let ctx = keel_analyze::AnalysisContext::new(&loaded.resources, Default::default());
    let _ = keel_analyze::analyzers::run(&ctx, &Default::default());
});
