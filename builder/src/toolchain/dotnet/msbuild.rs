//! What a `.csproj` says, as far as fabricks needs it: properties (target framework,
//! assembly name, WASI switches) and package references. Not an MSBuild evaluator:
//! unconditional `PropertyGroup`/`ItemGroup` content of the nearest `Directory.Build.props`
//! (which MSBuild imports first) and then the project file, with `$(Name)` references to
//! properties already read. What needs real evaluation (conditions, imports) is left to
//! `dotnet publish` itself; the errors say which property could not be read.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct ProjectFile {
    pub path: PathBuf,
    /// Property names are case-insensitive in MSBuild: keys are lowercase.
    properties: BTreeMap<String, String>,
    /// `PackageReference Include` values.
    packages: Vec<String>,
    /// How many `NativeFileReference` items there are (they force a native relink).
    pub native_file_references: usize,
}

impl ProjectFile {
    pub fn read(csproj: &Path) -> Result<Self> {
        let mut file = ProjectFile { path: csproj.to_owned(), ..ProjectFile::default() };
        let stem = csproj.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        file.properties.insert("msbuildprojectname".into(), stem);
        let dir = csproj.parent().unwrap_or(Path::new("/"));
        file.properties.insert("msbuildprojectdirectory".into(), dir.display().to_string());
        if let Some(props) = nearest(dir, "Directory.Build.props") {
            file.merge(&props)?;
        }
        file.merge(csproj)?;
        Ok(file)
    }

    /// A property's value, `$(…)` references resolved as far as known.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(&name.to_ascii_lowercase()).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A boolean property: MSBuild compares `'$(X)' == 'true'` case-insensitively.
    pub fn is_true(&self, name: &str) -> bool {
        self.property(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// Whether a `PackageReference` includes `package` (NuGet ids are case-insensitive).
    pub fn references(&self, package: &str) -> bool {
        self.packages.iter().any(|p| p.eq_ignore_ascii_case(package))
    }

    /// The assembly name: the SDK names its outputs after it (default: the project file's name).
    pub fn assembly_name(&self) -> Result<String> {
        let name = self.property("AssemblyName").or(self.property("MSBuildProjectName")).unwrap_or_default();
        if name.contains("$(") || name.is_empty() {
            bail!(
                "{}: cannot work out the AssemblyName {name:?} without MSBuild; set <AssemblyName> to a plain name",
                self.path.display()
            );
        }
        Ok(name.to_owned())
    }

    /// `TargetFramework`, else the entries of `TargetFrameworks`.
    pub fn target_frameworks(&self) -> Vec<String> {
        if let Some(one) = self.property("TargetFramework") {
            return vec![one.trim().to_owned()];
        }
        self.property("TargetFrameworks")
            .map(|list| list.split(';').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    fn merge(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc = roxmltree::Document::parse(&text).with_context(|| {
            format!("{} is not well-formed XML; `dotnet build` would refuse it too", path.display())
        })?;
        let root = doc.root_element();
        for group in root.children().filter(|n| n.is_element() && n.attribute("Condition").is_none()) {
            match group.tag_name().name() {
                "PropertyGroup" => {
                    for property in group.children().filter(|n| n.is_element() && n.attribute("Condition").is_none()) {
                        let value = self.expand(property.text().unwrap_or("").trim());
                        self.properties.insert(property.tag_name().name().to_ascii_lowercase(), value);
                    }
                }
                "ItemGroup" => {
                    for item in group.children().filter(|n| n.is_element() && n.attribute("Condition").is_none()) {
                        match item.tag_name().name() {
                            "PackageReference" => {
                                if let Some(include) = item.attribute("Include") {
                                    self.packages.push(include.trim().to_owned());
                                }
                            }
                            "NativeFileReference" => self.native_file_references += 1,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `$(Name)` replaced by the properties read so far; unknown ones stay as they are.
    fn expand(&self, value: &str) -> String {
        let mut out = String::new();
        let mut rest = value;
        while let Some(start) = rest.find("$(") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find(')') {
                Some(end) if self.properties.contains_key(&after[..end].to_ascii_lowercase()) => {
                    out.push_str(&self.properties[&after[..end].to_ascii_lowercase()]);
                    rest = &after[end + 1..];
                }
                _ => {
                    out.push_str("$(");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// `name` in `dir` or the closest directory above it.
pub fn nearest(dir: &Path, name: &str) -> Option<PathBuf> {
    dir.ancestors().map(|d| d.join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(dir: &Path, name: &str, xml: &str) -> ProjectFile {
        let path = dir.join(name);
        std::fs::write(&path, xml).unwrap();
        ProjectFile::read(&path).unwrap()
    }

    #[test]
    fn reads_properties_and_package_references() {
        let dir = tempfile::tempdir().unwrap();
        let file = project(
            dir.path(),
            "Hello.csproj",
            r#"<Project Sdk="Microsoft.NET.Sdk">
                 <PropertyGroup>
                   <TargetFramework> net8.0 </TargetFramework>
                   <RuntimeIdentifier>wasi-wasm</RuntimeIdentifier>
                   <WasmSingleFileBundle>True</WasmSingleFileBundle>
                   <AssemblyName>$(MSBuildProjectName).App</AssemblyName>
                 </PropertyGroup>
                 <PropertyGroup Condition="'$(Configuration)' == 'Debug'">
                   <InvariantGlobalization>true</InvariantGlobalization>
                 </PropertyGroup>
                 <ItemGroup>
                   <PackageReference Include="bytecodealliance.componentize.dotnet.wasm.sdk" Version="0.8.0-preview*" />
                   <NativeFileReference Include="native.c" />
                 </ItemGroup>
               </Project>"#,
        );
        assert_eq!(file.target_frameworks(), ["net8.0"]);
        assert!(file.is_true("wasmsinglefilebundle"), "names and true are case-insensitive");
        assert!(!file.is_true("InvariantGlobalization"), "conditional groups are not evaluated");
        assert_eq!(file.assembly_name().unwrap(), "Hello.App");
        assert!(file.references("BytecodeAlliance.Componentize.DotNet.Wasm.SDK"));
        assert_eq!(file.native_file_references, 1);
    }

    #[test]
    fn directory_build_props_comes_first_and_the_project_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Directory.Build.props"),
            "<Project><PropertyGroup><TargetFrameworks>net8.0;net10.0</TargetFrameworks>\
             <AssemblyName>Shared</AssemblyName></PropertyGroup></Project>",
        )
        .unwrap();
        let sub = dir.path().join("app");
        std::fs::create_dir(&sub).unwrap();
        let file = project(
            &sub,
            "App.csproj",
            "<Project xmlns=\"http://schemas.microsoft.com/developer/msbuild/2003\">\
             <PropertyGroup><AssemblyName>Mine</AssemblyName></PropertyGroup></Project>",
        );
        assert_eq!(file.target_frameworks(), ["net8.0", "net10.0"]);
        assert_eq!(file.assembly_name().unwrap(), "Mine");
    }

    #[test]
    fn the_assembly_name_defaults_to_the_project_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = project(dir.path(), "Web.Api.csproj", "<Project Sdk=\"Microsoft.NET.Sdk\" />");
        assert_eq!(file.assembly_name().unwrap(), "Web.Api");
        assert!(file.target_frameworks().is_empty());
        let odd = project(
            dir.path(),
            "Odd.csproj",
            "<Project><PropertyGroup><AssemblyName>$(Unknown)</AssemblyName></PropertyGroup></Project>",
        );
        let err = odd.assembly_name().unwrap_err().to_string();
        assert!(err.contains("set <AssemblyName> to a plain name"), "{err}");
    }

    #[test]
    fn broken_xml_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Bad.csproj");
        std::fs::write(&path, "<Project><PropertyGroup></Project>").unwrap();
        let err = format!("{:#}", ProjectFile::read(&path).unwrap_err());
        assert!(err.contains("Bad.csproj is not well-formed XML"), "{err}");
    }
}
