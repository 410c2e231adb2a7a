//! Which ports a module serves on, and binding them where the container's network is.

use std::net::TcpListener;

use anyhow::Result;
use fabricks_engine::{NetNamespace, Socket};
use fabricks_listen::{ListenSpec, ANNOTATION, ENV_LISTEN, HTTP_COMPONENT_DEFAULT, LABEL};
use oci_spec::image::ImageConfiguration;

use crate::error::invalid;
use crate::spec::ContainerSpec;

/// The container's listen spec, from the first place that has one: the annotation
/// (a pod's, passed on by CRI), the container's environment, then the image config (its
/// `fabricks.io/listen` label, else its `ExposedPorts`). `image` is asked only if needed.
pub fn resolve(spec: &ContainerSpec, image: impl FnOnce() -> Result<Option<ImageConfiguration>>) -> Result<ListenSpec> {
    let parse = |text: &str, from: String| ListenSpec::parse(text).map_err(|e| invalid(format!("{from}: {e:#}")));
    if let Some(text) = spec.annotations.get(ANNOTATION) {
        return parse(text, format!("the annotation {ANNOTATION}={text:?}"));
    }
    if let Some(text) = spec.env_var(ENV_LISTEN) {
        return parse(text, format!("the environment variable {ENV_LISTEN}={text:?}"));
    }
    let Some(image) = image()? else { return Ok(ListenSpec::default()) };
    let Some(config) = image.config() else { return Ok(ListenSpec::default()) };
    if let Some(text) = config.labels().as_ref().and_then(|l| l.get(LABEL)) {
        return parse(text, format!("the image label {LABEL}={text:?}"));
    }
    let ports = config.exposed_ports().clone().unwrap_or_default();
    if let Some(udp) = ports.iter().find(|p| !p.ends_with("/tcp") && p.contains('/')) {
        return Err(invalid(format!("the image exposes {udp}: Fabricks modules serve TCP only")));
    }
    ListenSpec::parse_all(ports.iter()).map_err(|e| invalid(format!("the image config's ExposedPorts: {e:#}")))
}

/// `listen`, or [`HTTP_COMPONENT_DEFAULT`] when no annotation, env, label or ExposedPorts
/// gave one.
pub fn or_http_default(listen: &ListenSpec) -> ListenSpec {
    if !listen.is_empty() {
        return listen.clone();
    }
    log::info!("no listen spec: the HTTP component serves on {HTTP_COMPONENT_DEFAULT}");
    ListenSpec::parse(HTTP_COMPONENT_DEFAULT).expect("the default listen spec parses")
}

/// Binds every endpoint inside `namespace` (the host's if `None`).
pub fn bind(namespace: Option<&NetNamespace>, listen: &ListenSpec) -> Result<Vec<Socket>> {
    if listen.is_empty() {
        return Ok(Vec::new());
    }
    // Entering a namespace changes the calling thread only, so a short-lived thread does it;
    // the sockets keep the namespace they were created in.
    std::thread::scope(|s| s.spawn(|| bind_in(namespace, listen)).join().expect("binding thread panicked"))
}

fn bind_in(namespace: Option<&NetNamespace>, listen: &ListenSpec) -> Result<Vec<Socket>> {
    if let Some(namespace) = namespace {
        namespace.enter()?;
    }
    listen
        .endpoints()
        .iter()
        .map(|e| {
            let listener = TcpListener::bind(e.addr).map_err(|err| match err.kind() {
                std::io::ErrorKind::AddrInUse => invalid(format!(
                    "listener {} cannot bind {}: the port is already in use in the container's network namespace",
                    e.name, e.addr
                )),
                _ => anyhow::anyhow!("listener {} cannot bind {}: {err}", e.name, e.addr),
            })?;
            log::info!("listening on {} as {}", e.addr, e.name);
            Ok(Socket { name: e.name.clone(), listener })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn spec(annotation: Option<&str>, env: Option<&str>) -> ContainerSpec {
        ContainerSpec {
            annotations: annotation
                .map(|a| HashMap::from([(ANNOTATION.to_string(), a.to_string())]))
                .unwrap_or_default(),
            env: env.map(|e| vec!["PATH=/bin".to_string(), format!("{ENV_LISTEN}={e}")]).unwrap_or_default(),
            ..Default::default()
        }
    }

    fn image(label: Option<&str>, exposed: &[&str]) -> ImageConfiguration {
        let mut config = oci_spec::image::Config::default();
        config.set_labels(label.map(|l| HashMap::from([(LABEL.to_string(), l.to_string())])));
        config.set_exposed_ports(Some(exposed.iter().map(|p| p.to_string()).collect()));
        let mut image = ImageConfiguration::default();
        image.set_config(Some(config));
        image
    }

    fn names(listen: &ListenSpec) -> Vec<String> {
        listen.endpoints().iter().map(|e| format!("{}={}", e.name, e.addr)).collect()
    }

    #[test]
    fn annotation_beats_env_beats_label_beats_exposed_ports() {
        let img = || Ok(Some(image(Some("web=9000"), &["8080/tcp"])));
        let got = resolve(&spec(Some("a=1111"), Some("b=2222")), img).unwrap();
        assert_eq!(names(&got), ["a=0.0.0.0:1111"]);
        let got = resolve(&spec(None, Some("b=2222")), img).unwrap();
        assert_eq!(names(&got), ["b=0.0.0.0:2222"]);
        let got = resolve(&spec(None, None), img).unwrap();
        assert_eq!(names(&got), ["web=0.0.0.0:9000"]);
        let got = resolve(&spec(None, None), || Ok(Some(image(None, &["8080/tcp"])))).unwrap();
        assert_eq!(names(&got), ["port-8080=0.0.0.0:8080"]);
        let got = resolve(&spec(None, None), || Ok(None)).unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn the_image_is_not_asked_when_the_spec_has_the_answer() {
        let got = resolve(&spec(None, Some("b=2222")), || panic!("image fetched")).unwrap();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn bad_specs_say_where_they_came_from() {
        let err = resolve(&spec(Some("http=nope"), None), || Ok(None)).unwrap_err();
        assert!(format!("{err:#}").contains("the annotation fabricks.io/listen"), "{err:#}");
        let err = resolve(&spec(None, Some("a=80,b=80")), || Ok(None)).unwrap_err();
        assert!(format!("{err:#}").contains(ENV_LISTEN), "{err:#}");
        let err = resolve(&spec(None, None), || Ok(Some(image(None, &["53/udp"])))).unwrap_err();
        assert!(format!("{err:#}").contains("TCP only"), "{err:#}");
    }

    #[test]
    fn a_port_in_use_names_the_listener() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let listen = ListenSpec::parse(&format!("web=127.0.0.1:{port}")).unwrap();
        let err = bind(None, &listen).unwrap_err();
        assert!(format!("{err:#}").contains("listener web cannot bind"), "{err:#}");
        assert!(format!("{err:#}").contains("already in use"), "{err:#}");
        // In a namespace of its own (made on a thread: unsharing changes only the caller), the
        // port is free.
        let own = std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            NetNamespace::current().unwrap()
        })
        .join()
        .unwrap();
        assert!(!own.is_current());
        let own = bind(Some(&own), &listen).unwrap();
        assert_eq!(own[0].listener.local_addr().unwrap().port(), port);
    }
}
