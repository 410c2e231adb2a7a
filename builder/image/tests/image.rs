use fabricks_image::oci_spec::image::{Descriptor, MediaType};
use fabricks_image::{write_archive, write_archive_file, ImageOptions, LayerKind, WasmImage};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Read;

/// The smallest valid module (magic + version) plus a custom section, so the
/// bytes are not trivially short.
fn module() -> Vec<u8> {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend_from_slice(&[0x00, 0x06, 0x04, b't', b'e', b's', b't', 0x2a]);
    bytes
}

fn options(layer: LayerKind) -> ImageOptions {
    let mut options = ImageOptions::new("localhost/go-hello:latest".parse().unwrap(), "/go-hello.wasm");
    options.layer = layer;
    options.created = Some(1_700_000_000);
    options
}

fn build(layer: LayerKind) -> WasmImage {
    WasmImage::build(&module(), &options(layer)).unwrap()
}

fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn json(data: &[u8]) -> Value {
    serde_json::from_slice(data).unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

/// Path, mode, uid, gid, mtime and content of every tar entry, in order.
fn tar_entries(data: &[u8]) -> Vec<(String, u32, u64, u64, u64, Vec<u8>)> {
    let mut archive = tar::Archive::new(data);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            (
                path,
                header.mode().unwrap(),
                header.uid().unwrap(),
                header.gid().unwrap(),
                header.mtime().unwrap(),
                content,
            )
        })
        .collect()
}

fn archive_bytes(image: &WasmImage) -> Vec<u8> {
    write_archive(image, Vec::new()).unwrap()
}

#[test]
fn digests_and_sizes_match_blob_contents() {
    for kind in [LayerKind::Tar, LayerKind::Wasm] {
        let image = build(kind);
        for blob in image.blobs() {
            assert_eq!(blob.digest().to_string(), sha256_digest(blob.data()), "{kind}");
            assert_eq!(blob.descriptor().size(), blob.data().len() as u64, "{kind}");
        }
        let manifest = json(image.manifest_blob().data());
        let descriptor = |value: &Value| -> Descriptor { serde_json::from_value(value.clone()).unwrap() };
        assert_eq!(&descriptor(&manifest["config"]), image.config_blob().descriptor());
        assert_eq!(&descriptor(&manifest["layers"][0]), image.layer_blob().descriptor());
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
        assert_eq!(image.manifest_descriptor().digest(), image.manifest_blob().digest());
    }
}

#[test]
fn media_types_are_the_oci_ones() {
    let tar = build(LayerKind::Tar);
    let wasm = build(LayerKind::Wasm);
    assert_eq!(tar.layer_blob().media_type().to_string(), "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_eq!(wasm.layer_blob().media_type().to_string(), "application/wasm");
    for image in [&tar, &wasm] {
        assert_eq!(image.config_blob().media_type(), &MediaType::ImageConfig);
        assert_eq!(image.manifest_blob().media_type(), &MediaType::ImageManifest);
        let manifest = json(image.manifest_blob().data());
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
    }
}

#[test]
fn config_names_platform_entrypoint_and_diff_id() {
    let tar = build(LayerKind::Tar);
    let wasm = build(LayerKind::Wasm);
    let tar_diff_id = sha256_digest(&gunzip(tar.layer_blob().data()));
    // A wasm layer is no filesystem layer: containerd 2.x rejects images whose
    // diff_ids list one.
    for (image, diff_ids) in [(&tar, serde_json::json!([tar_diff_id])), (&wasm, serde_json::json!([]))] {
        let config = json(image.config_blob().data());
        assert_eq!(config["os"], "wasi");
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/go-hello.wasm"]));
        assert_eq!(config["rootfs"]["type"], "layers");
        assert_eq!(config["rootfs"]["diff_ids"], diff_ids);
    }
    assert_eq!(wasm.layer_blob().data(), module());
}

#[test]
fn tar_layer_holds_the_module_at_the_entrypoint() {
    let image = build(LayerKind::Tar);
    let entries = tar_entries(&gunzip(image.layer_blob().data()));
    assert_eq!(entries, vec![("go-hello.wasm".to_owned(), 0o755, 0, 0, 1_700_000_000, module())]);
}

#[test]
fn nested_entrypoints_get_their_directories() {
    let mut options = options(LayerKind::Tar);
    options.entrypoint = "/app/bin/hello.wasm".into();
    let image = WasmImage::build(&module(), &options).unwrap();
    let paths: Vec<String> = tar_entries(&gunzip(image.layer_blob().data())).into_iter().map(|e| e.0).collect();
    assert_eq!(paths, ["app/", "app/bin/", "app/bin/hello.wasm"]);
}

#[test]
fn env_labels_and_annotations_land_where_they_belong() {
    let mut options = options(LayerKind::Wasm);
    options.env = vec![("GREETING".into(), "hi=there".into())];
    options.labels = BTreeMap::from([("team".into(), "fabricks".into())]);
    options.annotations = BTreeMap::from([("org.opencontainers.image.source".into(), "https://example.com/x".into())]);
    let image = WasmImage::build(&module(), &options).unwrap();
    let config = json(image.config_blob().data());
    assert_eq!(config["config"]["Env"], serde_json::json!(["GREETING=hi=there"]));
    assert_eq!(config["config"]["Labels"]["team"], "fabricks");
    let manifest = json(image.manifest_blob().data());
    assert_eq!(manifest["annotations"]["org.opencontainers.image.source"], "https://example.com/x");
    assert_eq!(manifest["layers"][0]["annotations"]["org.opencontainers.image.title"], "go-hello.wasm");
}

#[test]
fn listen_spec_sets_exposed_ports_and_the_label() {
    let mut options = options(LayerKind::Tar);
    options.labels = BTreeMap::from([("team".into(), "fabricks".into())]);
    options.listen = "http=0.0.0.0:8080/tcp,admin=[::1]:9090".parse().unwrap();
    let image = WasmImage::build(&module(), &options).unwrap();
    let config = json(image.config_blob().data());
    assert_eq!(config["config"]["ExposedPorts"], serde_json::json!({"8080/tcp": {}, "9090/tcp": {}}));
    assert_eq!(
        config["config"]["Labels"],
        serde_json::json!({
            "fabricks.io/listen": "http=8080,admin=[::1]:9090",
            "team": "fabricks",
        })
    );
    // The label parses back to the same spec.
    let label = config["config"]["Labels"]["fabricks.io/listen"].as_str().unwrap();
    assert_eq!(label.parse::<fabricks_image::ListenSpec>().unwrap(), options.listen);
}

#[test]
fn no_listen_spec_means_no_ports_and_no_label() {
    let config = json(build(LayerKind::Tar).config_blob().data());
    assert!(config["config"].get("ExposedPorts").is_none(), "{config}");
    assert!(config["config"].get("Labels").is_none(), "{config}");
}

#[test]
fn the_listen_label_is_not_set_by_hand_next_to_a_spec() {
    let mut options = options(LayerKind::Tar);
    options.listen = "http=8080".parse().unwrap();
    options.labels = BTreeMap::from([("fabricks.io/listen".into(), "http=9090".into())]);
    let err = WasmImage::build(&module(), &options).unwrap_err().to_string();
    assert!(err.contains("fabricks.io/listen"), "{err}");
    assert!(err.contains("http=8080"), "{err}");
}

#[test]
fn archive_lists_exactly_the_expected_files() {
    for kind in [LayerKind::Tar, LayerKind::Wasm] {
        let image = build(kind);
        let entries = tar_entries(&archive_bytes(&image));
        let mut expected = vec!["oci-layout".to_owned(), "index.json".into(), "blobs/".into(), "blobs/sha256/".into()];
        for blob in image.blobs() {
            expected.push(format!("blobs/sha256/{}", blob.digest().digest()));
        }
        let paths: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(paths, expected);
        for (path, _, _, _, _, content) in &entries {
            if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                assert_eq!(sha256_digest(content), format!("sha256:{hex}"), "{path}");
            }
        }
        assert_eq!(json(&entries[0].5), serde_json::json!({"imageLayoutVersion": "1.0.0"}));
    }
}

#[test]
fn index_names_the_image_for_containerd() {
    let image = build(LayerKind::Tar);
    let entries = tar_entries(&archive_bytes(&image));
    let index = json(&entries[1].5);
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let manifest = &manifests[0];
    assert_eq!(manifest["digest"], image.manifest_blob().digest().to_string());
    assert_eq!(manifest["size"], image.manifest_blob().data().len());
    assert_eq!(manifest["platform"], serde_json::json!({"os": "wasi", "architecture": "wasm"}));
    assert_eq!(manifest["annotations"]["io.containerd.image.name"], "localhost/go-hello:latest");
    assert_eq!(manifest["annotations"]["org.opencontainers.image.ref.name"], "latest");
}

#[test]
fn same_input_gives_the_same_bytes() {
    let many = |prefix: &str| -> BTreeMap<String, String> {
        (0..32).map(|i| (format!("{prefix}.{i}"), format!("value {i}"))).collect()
    };
    let build_full = |created| {
        let mut options = options(LayerKind::Tar);
        options.labels = many("label");
        options.annotations = many("org.opencontainers.image.x");
        options.created = Some(created);
        WasmImage::build(&module(), &options).unwrap()
    };
    let (first, second) = (build_full(1_700_000_000), build_full(1_700_000_000));
    assert_eq!(archive_bytes(&first), archive_bytes(&second));
    assert_eq!(first.manifest_blob().digest(), second.manifest_blob().digest());
    let later = build_full(1_700_000_001);
    assert_ne!(first.manifest_blob().digest(), later.manifest_blob().digest());
}

#[test]
fn archive_file_matches_the_streamed_archive() {
    let image = build(LayerKind::Wasm);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/go-hello.tar");
    write_archive_file(&image, &path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), archive_bytes(&image));
    assert_eq!(std::fs::read_dir(dir.path().join("out")).unwrap().count(), 1, "temporary file left behind");
}

#[test]
fn rejects_what_is_not_a_module_or_an_absolute_path() {
    let err = WasmImage::build(b"#!/bin/sh\n", &options(LayerKind::Tar)).unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");
    for entrypoint in ["go-hello.wasm", "/", "/a/../b.wasm", "/a//b.wasm", "/dir/"] {
        let mut options = options(LayerKind::Tar);
        options.entrypoint = entrypoint.into();
        let err = WasmImage::build(&module(), &options).unwrap_err();
        assert!(err.to_string().contains("entrypoint"), "{entrypoint}: {err}");
    }
}

#[test]
fn layer_kinds_parse_from_their_names() {
    assert_eq!("tar".parse::<LayerKind>().unwrap(), LayerKind::Tar);
    assert_eq!("wasm".parse::<LayerKind>().unwrap(), LayerKind::Wasm);
    assert!("zip".parse::<LayerKind>().unwrap_err().to_string().contains("tar"));
}

/// A program that is a tree of files (a .NET AppBundle): every file in the one tar layer,
/// directories first, the module executable; `Entrypoint` the module plus its arguments.
#[test]
fn a_tree_of_files_goes_into_one_tar_layer_with_the_entrypoint_and_its_args() {
    use fabricks_image::RootFile;
    let mut options = ImageOptions::new("localhost/app:latest".parse().unwrap(), "/dotnet.wasm");
    options.created = Some(1_700_000_000);
    options.args = vec!["App".into()];
    options.working_dir = Some("/".into());
    options.files = vec![
        RootFile { path: "/runtimeconfig.bin".into(), data: b"\x01".to_vec(), mode: 0o644 },
        RootFile { path: "/managed/App.dll".into(), data: b"MZ".to_vec(), mode: 0o644 },
    ];
    let image = WasmImage::build(&module(), &options).unwrap();
    let config = json(image.config_blob().data());
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/dotnet.wasm", "App"]));
    assert_eq!(config["config"]["WorkingDir"], "/");
    let entries = tar_entries(&gunzip(image.layer_blob().data()));
    let names: Vec<(&str, u32)> = entries.iter().map(|e| (e.0.as_str(), e.1)).collect();
    assert_eq!(
        names,
        [("managed/", 0o755), ("dotnet.wasm", 0o755), ("managed/App.dll", 0o644), ("runtimeconfig.bin", 0o644)]
    );
    assert_eq!(entries[1].5, module());
    // Built again: the same digest.
    assert_eq!(WasmImage::build(&module(), &options).unwrap().manifest_blob().digest(), image.manifest_blob().digest());

    // A wasm layer is one module: a tree cannot go there.
    options.layer = LayerKind::Wasm;
    let err = WasmImage::build(&module(), &options).unwrap_err().to_string();
    assert!(err.contains("needs a tar layer"), "{err}");
    options.layer = LayerKind::Tar;
    options.files.push(RootFile { path: "/dotnet.wasm".into(), data: vec![], mode: 0o644 });
    let err = WasmImage::build(&module(), &options).unwrap_err().to_string();
    assert!(err.contains("both the module and one of the other files"), "{err}");
}
