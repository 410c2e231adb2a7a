//! `fabricks build`: project → programs → one OCI image archive each.

use crate::cli::BuildArgs;
use crate::compile::{self, Compiled, Plan};
use crate::oci_archive::PushableImage;
use crate::progress::Step;
use crate::toolchain::Output;
use crate::{provenance, push};
use anyhow::{ensure, Context, Result};
use fabricks_image::{fabricks_listen, write_archive_file, ImageOptions, ListenSpec, Reference, RootFile, WasmImage};

/// Image config label naming a reactor build.
const MODE_LABEL: &str = "fabricks.io/mode";

pub fn build(args: BuildArgs) -> Result<()> {
    // Settings are checked before the (slow) compile, so a typo fails at once.
    let plan = compile::plan(&compile::Request {
        dir: &args.dir,
        native: args.native,
        mode: args.mode,
        packages: &args.packages,
        ldflags: args.ldflags.as_deref(),
        tags: &args.tags,
    })?;
    let listen = listen_spec(&args, &plan)?;
    let programs = match (&args.output, &args.tag, &args.push) {
        (None, None, None) => plan.programs()?,
        _ => vec![plan.single("-o, -t and --push each name one image, so the build")?],
    };
    for program in &programs {
        let compiled = plan.compile(program)?;
        pack(&args, &compiled, listen.clone())?;
    }
    Ok(())
}

/// The image of one compiled program: written to its archive, pushed if asked.
fn pack(args: &BuildArgs, compiled: &Compiled, listen: ListenSpec) -> Result<()> {
    let options = image_options(args, compiled, listen)?;
    let output = match &args.output {
        Some(path) => path.clone(),
        None => compiled.build_dir.join(format!("{}.tar", default_name(compiled))),
    };

    let step = Step::start(format!("Packing {}", options.reference));
    let module = std::fs::read(compiled.module())
        .with_context(|| format!("reading the compiled module {}", compiled.module().display()))?;
    let image = WasmImage::build(&module, &options)?;
    write_archive_file(&image, &output)?;
    step.done(format!("Wrote {}", output.display()));

    if let Some(target) = &args.push {
        let reference: Reference = target.parse().context("in --push")?;
        let report = push::push(&PushableImage::from_image(&image), &reference, &args.registry, &args.index)?;
        return push::print_report(&report, args.json);
    }

    println!("image:  {}", image.reference());
    println!("digest: {}", image.manifest_blob().digest());
    println!("file:   {}", output.display());
    if !options.listen.is_empty() {
        println!("listen: {} ({})", options.listen, options.listen.exposed_ports().join(", "));
    }
    Ok(())
}

/// `--listen`, else `listen` of the project's fabricks.toml, else none.
fn listen_spec(args: &BuildArgs, plan: &Plan) -> Result<ListenSpec> {
    ensure!(
        !args.label.iter().any(|(key, _)| key == fabricks_listen::LABEL),
        "the label {} comes from the listen spec: give it as --listen SPEC (or `listen` in {}), \
         which also sets the image's ExposedPorts",
        fabricks_listen::LABEL,
        crate::project::FILE
    );
    plan.file.listen_spec(&args.listen)
}

/// `<dir name>` (wasm) or `<dir name>-native`: archive file names.
fn default_name(compiled: &Compiled) -> String {
    match compiled.target.is_native() {
        false => compiled.name.clone(),
        true => format!("{}-native", compiled.name),
    }
}

/// `localhost/<dir name>:latest`, or `:native` for a native build, so that
/// importing both does not replace one with the other.
fn default_reference(compiled: &Compiled) -> Result<Reference> {
    let reference = Reference::localhost(&compiled.name)
        .with_context(|| format!("naming the image after the directory {:?}", compiled.name))?;
    Ok(match compiled.target.is_native() {
        false => reference,
        true => format!("{}:native", reference.name()).parse()?,
    })
}

fn image_options(args: &BuildArgs, compiled: &Compiled, listen: ListenSpec) -> Result<ImageOptions> {
    let reference = match (&args.tag, &args.push) {
        (Some(tag), _) => tag.parse().context("in -t/--tag")?,
        (None, Some(push)) => push.parse().context("in --push")?,
        (None, None) => default_reference(compiled)?,
    };
    let mut options = ImageOptions::new(reference, compiled.entry_path());
    options.layer = args.layer.into();
    options.env = args.env.clone();
    if let Output::Bundle(bundle) = &compiled.output {
        options.args = compiled.entry_args();
        options.files = bundle_files(bundle, &compiled.entry_path())?;
    }
    if compiled.target.is_native() {
        options.platform = fabricks_image::host_platform();
        // A native program binds its own ports; the SDK reads them from here.
        if !listen.is_empty() {
            options.env.push((fabricks_listen::ENV_LISTEN.to_owned(), listen.to_string()));
        }
    }
    options.labels = args.label.iter().cloned().collect();
    if compiled.target.mode() == crate::project::Mode::Reactor {
        // Informational: the shim tells a reactor by its exports.
        options.labels.insert(MODE_LABEL.to_owned(), "reactor".to_owned());
    }
    options.listen = listen;
    let created = fabricks_image::source_date_epoch()?;
    options.created = Some(created);
    // Given --annotation values win over what is found out.
    options.annotations = provenance::annotations(&args.dir, created);
    options.annotations.extend(args.annotation.iter().cloned());
    Ok(options)
}

/// A bundle's files but its entry (which the image takes as the module), at the image's
/// root: the .NET runtime opens `/runtimeconfig.bin` and `managed/<App>.dll` relative to the
/// guest's `/` (wasi-libc starts in `/`), so the bundle has to be the guest's `/`.
fn bundle_files(bundle: &crate::toolchain::Bundle, entry_path: &str) -> Result<Vec<RootFile>> {
    let mut files = Vec::new();
    for file in bundle.files()? {
        let path = format!("/{}", file.relative);
        if path == entry_path {
            continue;
        }
        let data = std::fs::read(&file.source).with_context(|| format!("reading {}", file.source.display()))?;
        files.push(RootFile { path, data, mode: file.mode });
    }
    Ok(files)
}
