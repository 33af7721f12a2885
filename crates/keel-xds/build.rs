//! Generates the delta-xDS and Istio CA messages, clients and servers from the vendored protos with protox
//! (a protobuf compiler in Rust), so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(
        [
            "envoy/service/discovery/v3/ads.proto",
            "istio/security/v1alpha1/ca.proto",
        ],
        ["proto"],
    )?;
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
