//! `fabricks build`: a project (its programs compiled here) or a prebuilt `.wasm` → a
//! payload each → an image each → its destinations: the archive, and with `--push` a
//! registry too, through one [`Publisher`].

use crate::cli::BuildArgs;
use crate::compile::{self, Compiled, Plan};
use crate::progress::Step;
use crate::project::{Mode, Project};
use crate::provenance;
use crate::push::{PushReport, RegistryPublisher};
use crate::toolchain::{Bundle, Output};
use anyhow::{ensure, Context, Result};
use fabricks_image::{
    ArchiveFile, Destination, Image, ImageOptions, Payload, Published, Publisher, Reference, Tee, Tree, WasmKind,
};
use fabricks_listen::ListenSpec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Image config label naming a reactor build.
const MODE_LABEL: &str = "fabricks.io/mode";

pub fn build(args: BuildArgs) -> Result<()> {
    let push = match &args.push {
        Some(target) => Some(target.parse::<Reference>().context("in --push")?),
        None => None,
    };
    for packed in pack(&args)? {
        let output = args.output.clone().unwrap_or_else(|| packed.default_output.clone());
        let mut destinations: Vec<Box<dyn Publisher>> = vec![Box::new(ArchiveFile::new(&output))];
        if let Some(target) = &push {
            destinations.push(Box::new(RegistryPublisher::new(target.clone(), &args.registry)?));
        }
        let published = Tee(destinations).publish(&packed.image)?;
        report(&args, &packed.image, &published)?;
    }
    Ok(())
}

/// An image `fabricks build` made, and where its archive goes unless `-o` says otherwise.
struct Packed {
    image: Image,
    default_output: PathBuf,
}

/// What is packed, before the image options are applied.
struct Packing {
    payload: Payload,
    /// Names the image (`localhost/<name>`) and the archive.
    name: String,
    native: bool,
    /// Where the archive goes by default.
    default_output: PathBuf,
    /// The directory whose git checkout the provenance annotations come from.
    provenance_dir: PathBuf,
    labels: BTreeMap<String, String>,
}

/// Settings first, compiles (if any) second, so a typo fails before a slow build. One image
/// per program (a Go module with several commands under ./cmd).
fn pack(args: &BuildArgs) -> Result<Vec<Packed>> {
    let node_platforms = args.index.platforms()?;
    let (packings, listen) = match args.source.is_file() {
        true => (vec![prebuilt(args, &args.source)?], listen_spec(args, &project(args)?)?),
        false => {
            let plan = compile::plan(&compile::Request {
                dir: &args.source,
                native: args.native,
                mode: args.mode,
                packages: &args.packages,
                ldflags: args.ldflags.as_deref(),
                tags: &args.tags,
            })?;
            let listen = listen_spec(args, &plan.file)?;
            (compiled(args, &plan)?, listen)
        }
    };
    packings
        .into_iter()
        .map(|packing| {
            let mut options = image_options(args, &packing, listen.clone())?;
            options.node_platforms = node_platforms.clone();
            let step = Step::start(format!("Packing {}", options.reference));
            let image = Image::build(&packing.payload, &options)?;
            step.done(format!("Packed {} ({})", options.reference, image.manifest_blob().digest()));
            Ok(Packed { image, default_output: packing.default_output })
        })
        .collect()
}

/// A project directory: every program the plan names, compiled for the target its flags
/// and fabricks.toml ask for.
fn compiled(args: &BuildArgs, plan: &Plan) -> Result<Vec<Packing>> {
    let programs = match (&args.output, &args.tag, &args.push) {
        (None, None, None) => plan.programs()?,
        _ => vec![plan.single("-o, -t and --push each name one image, so the build")?],
    };
    let mut packings = Vec::new();
    for program in &programs {
        let compiled = plan.compile(program)?;
        let mut labels = BTreeMap::new();
        if compiled.target.mode() == Mode::Reactor {
            // Informational: the shim tells a reactor by its exports.
            labels.insert(MODE_LABEL.to_owned(), "reactor".to_owned());
        }
        let native = compiled.target.is_native();
        let name = match native {
            true => format!("{}-native", compiled.name),
            false => compiled.name.clone(),
        };
        packings.push(Packing {
            payload: payload(&compiled)?,
            default_output: compiled.build_dir.join(format!("{name}.tar")),
            name: compiled.name.clone(),
            native,
            provenance_dir: args.source.clone(),
            labels,
        });
    }
    Ok(packings)
}

/// What compile left, as the image carries it: the module at its entrypoint, or a bundle's
/// files at the image's root.
fn payload(compiled: &Compiled) -> Result<Payload> {
    match &compiled.output {
        Output::File(path) => {
            let module =
                std::fs::read(path).with_context(|| format!("reading the compiled module {}", path.display()))?;
            Ok(Payload::file(compiled.entry_path(), module))
        }
        Output::Bundle(bundle) => bundle_payload(bundle, compiled),
    }
}

/// A bundle at the image's root: the .NET runtime opens `/runtimeconfig.bin` and
/// `managed/<App>.dll` relative to the guest's `/` (wasi-libc starts in `/`), so the bundle
/// has to be the guest's `/`. Its fixed arguments (the app's name) follow the entry in
/// `Entrypoint`, so a pod's `args` add to them rather than replace them.
fn bundle_payload(bundle: &Bundle, compiled: &Compiled) -> Result<Payload> {
    let mut tree = Tree::new();
    let entry = compiled.entry_path();
    for file in bundle.files()? {
        let data = std::fs::read(&file.source).with_context(|| format!("reading {}", file.source.display()))?;
        let executable = format!("/{}", file.relative) == entry || file.mode & 0o111 != 0;
        tree.add_file(&file.relative, data, executable)?;
    }
    let entrypoint = std::iter::once(entry).chain(compiled.entry_args()).collect();
    Ok(Payload::Tree { root: "/".into(), tree, entrypoint, args: Vec::new(), workdir: Some("/".into()) })
}

/// A wasm binary some other toolchain made: packed as it is, at `/<name>.wasm`.
fn prebuilt(args: &BuildArgs, file: &Path) -> Result<Packing> {
    let shown = file.display();
    ensure!(!args.native, "--native compiles a project; {shown} is built already: give the project directory");
    ensure!(
        args.mode.is_none(),
        "--mode chooses how a project is compiled; {shown} is built already and is packed as it is \
         (the shim tells a reactor by its exports)"
    );
    let data = std::fs::read(file).with_context(|| format!("reading {shown}"))?;
    let kind = WasmKind::of(&data).with_context(|| {
        format!(
            "{shown} is not a WebAssembly module or component (no `\\0asm` header); give a .wasm file, or a \
             project directory to compile"
        )
    })?;
    let stem = file.file_stem().unwrap_or_default().to_string_lossy().into_owned();
    log::info!("{shown} is a wasm {kind}");
    Ok(Packing {
        payload: Payload::file(format!("/{stem}.wasm"), data),
        default_output: file.with_extension("tar"),
        name: stem,
        native: false,
        provenance_dir: file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned(),
        labels: BTreeMap::new(),
    })
}

/// `--listen`, else `listen` of the project's fabricks.toml, else none.
fn listen_spec(args: &BuildArgs, file: &Project) -> Result<ListenSpec> {
    ensure!(
        !args.label.iter().any(|(key, _)| key == fabricks_listen::LABEL),
        "the label {} comes from the listen spec: give it as --listen SPEC (or `listen` in {}), \
         which also sets the image's ExposedPorts",
        fabricks_listen::LABEL,
        crate::project::FILE
    );
    file.listen_spec(&args.listen)
}

fn project(args: &BuildArgs) -> Result<Project> {
    // A missing directory is left for compile to report.
    match args.source.is_dir() {
        true => Project::load(&args.source),
        false => Ok(Project::default()),
    }
}

/// `localhost/<name>:latest`, or `:native` for a native build, so that importing both does
/// not replace one with the other.
fn default_reference(packing: &Packing) -> Result<Reference> {
    let reference = Reference::localhost(&packing.name)
        .with_context(|| format!("naming the image after {:?}; give a name with -t", packing.name))?;
    Ok(match packing.native {
        false => reference,
        true => format!("{}:native", reference.name()).parse()?,
    })
}

fn image_options(args: &BuildArgs, packing: &Packing, listen: ListenSpec) -> Result<ImageOptions> {
    let reference = match (&args.tag, &args.push) {
        (Some(tag), _) => tag.parse().context("in -t/--tag")?,
        (None, Some(push)) => push.parse().context("in --push")?,
        (None, None) => default_reference(packing)?,
    };
    let mut options = ImageOptions::new(reference);
    options.layer = args.layer.into();
    options.env = args.env.clone();
    if packing.native {
        options.platform = fabricks_image::host_platform();
        // A native program binds its own ports; the SDK reads them from here.
        if !listen.is_empty() {
            options.env.push((fabricks_listen::ENV_LISTEN.to_owned(), listen.to_string()));
        }
    }
    options.labels = packing.labels.clone();
    options.labels.extend(args.label.iter().cloned());
    options.listen = listen;
    let created = fabricks_image::source_date_epoch()?;
    options.created = Some(created);
    // Given --annotation values win over what is found out.
    options.annotations = provenance::annotations(&packing.provenance_dir, created);
    options.annotations.extend(args.annotation.iter().cloned());
    Ok(options)
}

/// The push report with `--push`; else the image, its digest, the archive and the ports.
fn report(args: &BuildArgs, image: &Image, published: &[Published]) -> Result<()> {
    if let Some(pushed) = published.iter().find(|p| matches!(p.destination, Destination::Registry(_))) {
        return PushReport::new(image, pushed).print(args.json);
    }
    println!("image:  {}", image.reference());
    println!("digest: {}", image.manifest_blob().digest());
    for archive in published {
        println!("file:   {}", archive.destination);
    }
    let listen = image.config().labels.get(fabricks_listen::LABEL);
    if let Some(spec) = listen {
        println!("listen: {spec} ({})", image.config().exposed_ports.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn args(extra: &[&str]) -> BuildArgs {
        let argv = ["fabricks", "build"].into_iter().chain(extra.iter().copied());
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Build(args) => args,
            other => panic!("{other:?}"),
        }
    }

    fn component_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hello-component.wasm");
        std::fs::write(&file, COMPONENT).unwrap();
        (dir, file)
    }

    /// Records what it was given: the unit-boundary stand-in for a registry.
    #[derive(Default)]
    struct Recorder(std::rc::Rc<std::cell::RefCell<Vec<Image>>>);

    impl Publisher for Recorder {
        fn publish(&mut self, image: &Image) -> Result<Vec<Published>> {
            self.0.borrow_mut().push(image.clone());
            Ok(vec![Published {
                destination: Destination::Registry("recorded".into()),
                digest: image.index()?.digest().clone(),
                transfer: None,
            }])
        }
    }

    /// A prebuilt file is one image.
    fn pack_one(args: &BuildArgs) -> Result<Packed> {
        let mut packed = pack(args)?;
        assert_eq!(packed.len(), 1, "one image per prebuilt file");
        Ok(packed.remove(0))
    }

    #[test]
    fn a_prebuilt_component_is_packed_as_it_is_with_every_option() {
        let (_dir, file) = component_file();
        let packed = pack_one(&args(&[
            file.to_str().unwrap(),
            "--listen",
            "http=8080",
            "--env",
            "A=1",
            "--label",
            "team=x",
            "--annotation",
            "org.opencontainers.image.source=https://example.com/x",
            "--node-platform",
            "linux/amd64",
        ]))
        .unwrap();
        let image = &packed.image;
        assert_eq!(image.reference().to_string(), "localhost/hello-component:latest");
        assert_eq!(packed.default_output, file.with_extension("tar"));
        let config = image.config();
        assert_eq!(config.entrypoint, ["/hello-component.wasm"]);
        assert_eq!(config.env, ["A=1"]);
        assert_eq!(config.labels[fabricks_image::LABEL_WASM_KIND], "component");
        assert_eq!(config.labels["team"], "x");
        assert_eq!(config.labels[fabricks_listen::LABEL], "http=8080");
        assert_eq!(config.exposed_ports, ["8080/tcp"]);
        assert_eq!(image.annotations()["org.opencontainers.image.source"], "https://example.com/x");
        assert_eq!(image.entries().len(), 2, "wasi/wasm and linux/amd64");
        assert_eq!(image.module().unwrap().data, COMPONENT);
    }

    #[test]
    fn a_prebuilt_module_goes_in_a_wasm_layer_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app");
        std::fs::write(&file, b"\0asm\x01\0\0\0").unwrap();
        let packed = pack_one(&args(&[file.to_str().unwrap(), "--layer", "wasm", "-t", "localhost/a:b"])).unwrap();
        assert_eq!(packed.image.layers()[0].media_type().to_string(), "application/wasm");
        assert_eq!(packed.image.config().labels[fabricks_image::LABEL_WASM_KIND], "module");
        assert_eq!(packed.image.config().entrypoint, ["/app.wasm"]);
        assert_eq!(packed.image.reference().to_string(), "localhost/a:b");
    }

    #[test]
    fn a_file_that_is_not_wasm_or_flags_for_projects_are_refused() {
        let (_dir, file) = component_file();
        let file = file.to_str().unwrap();
        let err = pack_one(&args(&[file, "--native"])).err().unwrap().to_string();
        assert!(err.contains("built already"), "{err}");
        let err = pack_one(&args(&[file, "--mode", "reactor"])).err().unwrap().to_string();
        assert!(err.contains("--mode"), "{err}");
        let script = Path::new(file).with_file_name("run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let err = pack_one(&args(&[script.to_str().unwrap()])).err().unwrap().to_string();
        assert!(err.contains("not a WebAssembly module or component"), "{err}");
    }

    #[test]
    fn one_image_goes_to_the_archive_and_the_registry_alike() {
        let (dir, file) = component_file();
        let packed = pack_one(&args(&[file.to_str().unwrap()])).unwrap();
        let archive = dir.path().join("out/image.tar");
        let recorded = Recorder::default();
        let seen = recorded.0.clone();
        let mut tee = Tee(vec![Box::new(ArchiveFile::new(&archive)), Box::new(recorded)]);
        let published = tee.publish(&packed.image).unwrap();
        assert_eq!(published.len(), 2);
        let read = fabricks_image::read_archive_file(&archive).unwrap();
        let seen = seen.borrow();
        assert_eq!(read.manifest_blob(), seen[0].manifest_blob());
        assert_eq!(read.reference(), seen[0].reference());
        assert_eq!(published[1].digest, *seen[0].index().unwrap().digest());
    }
}
