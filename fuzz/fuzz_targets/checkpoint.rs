//! Any bytes given to the checkpoint readers (PyTorch zip, legacy pickle stream,
//! safetensors) give a StateDict or an error: never a panic, never an allocation much
//! larger than the input (run with `-rss_limit_mb` / `-malloc_limit_mb`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sd) = dsconv::weights::StateDict::from_bytes(data, "fuzz") {
        let mut total = 0usize;
        for name in sd.names() {
            let t = sd.get(name).expect("listed name");
            assert_eq!(t.data.len(), t.dims.iter().product::<usize>());
            total += t.data.len();
        }
        assert!(total <= 4 * data.len() + 65_536);
    }
    // The pickle machine alone, on raw bytes (reaches opcodes the containers rarely do).
    let _ = dsconv::weights::pickle::unpickle(data);
});
