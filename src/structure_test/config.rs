//! The config file (schema version 2.0.0), read strictly: an unknown field, a value of the
//! wrong kind, a missing required field or a regular expression that does not compile is an
//! error naming the file, the line and the field.

use super::StructureTestError;
use super::yaml::{self, Node, Value};
use regex::Regex;
use std::path::{Path, PathBuf};

/// The only schema version accepted.
pub const SCHEMA_VERSION: &str = "2.0.0";

/// A regular expression of the config, with its text as written.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The expression as written.
    pub source: String,
    /// The compiled expression (matched anywhere in the text, as a search).
    pub regex: Regex,
}

/// A `key`/`value` pair (`envVars`, `globalEnvVars`, `labels`).
#[derive(Debug, Clone, Default)]
pub struct KeyValue {
    /// The variable or label name.
    pub key: String,
    /// The value (`$VAR` expanded when set in an environment).
    pub value: String,
    /// Whether `value` is a regular expression (metadata checks only).
    pub is_regex: bool,
}

/// One entry of `commandTests`.
#[derive(Debug, Clone)]
pub struct CommandTest {
    /// The test's name.
    pub name: String,
    /// Commands run before `command`, in the same container.
    pub setup: Vec<Vec<String>>,
    /// Commands run after `command`, in the same container.
    pub teardown: Vec<Vec<String>>,
    /// Variables set for this test.
    pub env: Vec<KeyValue>,
    /// The exit code expected (default 0).
    pub exit_code: i32,
    /// The program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Patterns that must match stdout.
    pub expected_output: Vec<Pattern>,
    /// Patterns that must not match stdout.
    pub excluded_output: Vec<Pattern>,
    /// Patterns that must match stderr.
    pub expected_error: Vec<Pattern>,
    /// Patterns that must not match stderr.
    pub excluded_error: Vec<Pattern>,
}

/// Who a file must be executable by (`isExecutableBy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutableBy {
    /// The owner (`0o100`).
    Owner,
    /// The group (`0o010`).
    Group,
    /// Others (`0o001`).
    Other,
    /// Anyone (any of the three bits).
    Any,
}

/// One entry of `fileExistenceTests`.
#[derive(Debug, Clone)]
pub struct FileExistenceTest {
    /// The test's name.
    pub name: String,
    /// The path in the image (`$VAR` expanded from the image's environment).
    pub path: String,
    /// Whether the path must exist (default true).
    pub should_exist: bool,
    /// The mode string expected, as `ls -l` and Go's `FileMode` write it (`-rwxr-xr-x`).
    pub permissions: Option<String>,
    /// The owner's uid expected.
    pub uid: Option<u32>,
    /// The group's gid expected.
    pub gid: Option<u32>,
    /// Who must be able to execute it.
    pub executable_by: Option<ExecutableBy>,
}

/// One entry of `fileContentTests`.
#[derive(Debug, Clone)]
pub struct FileContentTest {
    /// The test's name.
    pub name: String,
    /// The file in the image (symlinks followed inside the image).
    pub path: String,
    /// Patterns that must match the contents.
    pub expected_contents: Vec<Pattern>,
    /// Patterns that must not match the contents.
    pub excluded_contents: Vec<Pattern>,
}

/// `metadataTest`: the image config checked. `None` fields are not checked.
#[derive(Debug, Clone, Default)]
pub struct MetadataTest {
    /// Variables the image's `Env` must set (to the value, or a match of it).
    pub env: Vec<KeyValue>,
    /// Variables the image's `Env` must not set.
    pub unbound_env: Vec<String>,
    /// Ports (`80`, no protocol) that must be exposed.
    pub exposed_ports: Vec<String>,
    /// Ports that must not be exposed.
    pub unexposed_ports: Vec<String>,
    /// The exact `Entrypoint` (`[]` for none).
    pub entrypoint: Option<Vec<String>>,
    /// The exact `Cmd` (`[]` for none).
    pub cmd: Option<Vec<String>>,
    /// The `WorkingDir`.
    pub workdir: Option<String>,
    /// Volumes that must be declared.
    pub volumes: Vec<String>,
    /// Volumes that must not be declared.
    pub unmounted_volumes: Vec<String>,
    /// Labels that must be set (to the value, or a match of it).
    pub labels: Vec<KeyValue>,
    /// The `User`.
    pub user: Option<String>,
}

impl MetadataTest {
    /// Whether nothing is checked (such a test is not run, as upstream).
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.unbound_env.is_empty()
            && self.exposed_ports.is_empty()
            && self.unexposed_ports.is_empty()
            && self.entrypoint.is_none()
            && self.cmd.is_none()
            && self.workdir.is_none()
            && self.volumes.is_empty()
            && self.unmounted_volumes.is_empty()
            && self.labels.is_empty()
            && self.user.is_none()
    }
}

/// One entry of `licenseTests`.
#[derive(Debug, Clone, Default)]
pub struct LicenseTest {
    /// Check every package's `/usr/share/doc/PKG/copyright`.
    pub debian: bool,
    /// Further files to check.
    pub files: Vec<String>,
}

/// `containerRunOptions`: how the command tests' containers run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `USER[:GROUP]` over the image's `User`.
    pub user: Option<String>,
    /// Names of imgbuild's own environment variables passed in (unset ones are skipped).
    pub env_vars: Vec<String>,
    /// A file of `KEY=VALUE` lines, relative to the config file's directory.
    pub env_file: Option<PathBuf>,
    /// `HOST:CONTAINER[:ro]` bind mounts.
    pub bind_mounts: Vec<String>,
}

/// A parsed config file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Variables set for every command test (and used to expand `$VAR`).
    pub global_env: Vec<KeyValue>,
    /// `commandTests`.
    pub command_tests: Vec<CommandTest>,
    /// `fileExistenceTests`.
    pub file_existence_tests: Vec<FileExistenceTest>,
    /// `fileContentTests`.
    pub file_content_tests: Vec<FileContentTest>,
    /// `metadataTest`.
    pub metadata: MetadataTest,
    /// `licenseTests`.
    pub license_tests: Vec<LicenseTest>,
    /// `containerRunOptions`.
    pub run_options: RunOptions,
}

impl Config {
    /// How many results running this config gives.
    pub fn test_count(&self) -> usize {
        self.command_tests.len()
            + self.file_existence_tests.len()
            + self.file_content_tests.len()
            + self.license_tests.len()
            + usize::from(!self.metadata.is_empty())
    }

    /// Read and check the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, StructureTestError> {
        let text = std::fs::read_to_string(path).map_err(|source| StructureTestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parse `text`, read from `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Config, StructureTestError> {
        let p = Parse { path };
        let root = yaml::parse(text)
            .map_err(|(line, message)| p.err(line, "", message))?
            .ok_or_else(|| p.err(1, "", "the file is empty".into()))?;
        let fields = p.map(
            &root,
            "",
            &[
                "schemaVersion",
                "globalEnvVars",
                "commandTests",
                "fileExistenceTests",
                "fileContentTests",
                "metadataTest",
                "licenseTests",
                "containerRunOptions",
            ],
        )?;
        let version = match fields.get("schemaVersion") {
            Some(n) => p.string(n, "schemaVersion")?,
            None => {
                return Err(p.err(
                    root.line,
                    "schemaVersion",
                    format!("missing; this tool reads schema version {SCHEMA_VERSION}"),
                ));
            }
        };
        if version != SCHEMA_VERSION {
            return Err(p.err(
                fields.get("schemaVersion").map_or(1, |n| n.line),
                "schemaVersion",
                format!(
                    "unsupported schema version '{version}' (only {SCHEMA_VERSION} is supported)"
                ),
            ));
        }
        let mut config = Config {
            path: path.to_path_buf(),
            global_env: Vec::new(),
            command_tests: Vec::new(),
            file_existence_tests: Vec::new(),
            file_content_tests: Vec::new(),
            metadata: MetadataTest::default(),
            license_tests: Vec::new(),
            run_options: RunOptions::default(),
        };
        if let Some(n) = fields.get("globalEnvVars") {
            config.global_env = p.key_values(n, "globalEnvVars", true)?;
        }
        if let Some(n) = fields.get("commandTests") {
            for (i, item) in p.seq(n, "commandTests")?.iter().enumerate() {
                config
                    .command_tests
                    .push(p.command_test(item, &format!("commandTests[{i}]"))?);
            }
        }
        if let Some(n) = fields.get("fileExistenceTests") {
            for (i, item) in p.seq(n, "fileExistenceTests")?.iter().enumerate() {
                config
                    .file_existence_tests
                    .push(p.existence_test(item, &format!("fileExistenceTests[{i}]"))?);
            }
        }
        if let Some(n) = fields.get("fileContentTests") {
            for (i, item) in p.seq(n, "fileContentTests")?.iter().enumerate() {
                config
                    .file_content_tests
                    .push(p.content_test(item, &format!("fileContentTests[{i}]"))?);
            }
        }
        if let Some(n) = fields.get("metadataTest") {
            config.metadata = p.metadata(n, "metadataTest")?;
        }
        if let Some(n) = fields.get("licenseTests") {
            for (i, item) in p.seq(n, "licenseTests")?.iter().enumerate() {
                let at = format!("licenseTests[{i}]");
                let f = p.map(item, &at, &["debian", "files"])?;
                config.license_tests.push(LicenseTest {
                    debian: f
                        .get("debian")
                        .map(|n| p.boolean(n, &format!("{at}.debian")))
                        .transpose()?
                        .unwrap_or(false),
                    files: p.opt_strings(&f, &at, "files")?,
                });
            }
        }
        if let Some(n) = fields.get("containerRunOptions") {
            config.run_options = p.run_options(n, "containerRunOptions")?;
        }
        Ok(config)
    }
}

/// The fields of one mapping, looked up by name.
struct Fields<'a>(Vec<(&'a str, &'a Node)>);

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a Node> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, n)| *n)
            .filter(|n| !matches!(n.value, Value::Null))
    }
}

struct Parse<'p> {
    path: &'p Path,
}

fn join(at: &str, field: &str) -> String {
    if at.is_empty() {
        field.to_string()
    } else {
        format!("{at}.{field}")
    }
}

impl Parse<'_> {
    fn err(&self, line: usize, field: &str, message: String) -> StructureTestError {
        StructureTestError::Config {
            path: self.path.to_path_buf(),
            line,
            field: field.to_string(),
            message,
        }
    }

    fn map<'n>(
        &self,
        node: &'n Node,
        at: &str,
        allowed: &[&str],
    ) -> Result<Fields<'n>, StructureTestError> {
        let Value::Map(entries) = &node.value else {
            return Err(self.err(node.line, at, "expected a mapping".into()));
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            if !allowed.contains(&k.as_str()) {
                return Err(self.err(
                    v.line,
                    &join(at, k),
                    format!("unknown field (known: {})", allowed.join(", ")),
                ));
            }
            out.push((k.as_str(), v));
        }
        Ok(Fields(out))
    }

    fn seq<'n>(&self, node: &'n Node, at: &str) -> Result<&'n [Node], StructureTestError> {
        match &node.value {
            Value::Seq(items) => Ok(items),
            _ => Err(self.err(node.line, at, "expected a list".into())),
        }
    }

    fn string(&self, node: &Node, at: &str) -> Result<String, StructureTestError> {
        match &node.value {
            Value::Scalar(s) => Ok(s.clone()),
            Value::Null => Ok(String::new()),
            _ => Err(self.err(node.line, at, "expected a string".into())),
        }
    }

    fn required(
        &self,
        f: &Fields,
        parent: &Node,
        at: &str,
        name: &str,
    ) -> Result<String, StructureTestError> {
        let field = join(at, name);
        let s = match f.get(name) {
            Some(n) => self.string(n, &field)?,
            None => String::new(),
        };
        if s.is_empty() {
            return Err(self.err(
                f.get(name).map_or(parent.line, |n| n.line),
                &field,
                "required and must not be empty".into(),
            ));
        }
        Ok(s)
    }

    fn strings(&self, node: &Node, at: &str) -> Result<Vec<String>, StructureTestError> {
        self.seq(node, at)?
            .iter()
            .enumerate()
            .map(|(i, n)| self.string(n, &format!("{at}[{i}]")))
            .collect()
    }

    fn opt_strings(
        &self,
        f: &Fields,
        at: &str,
        name: &str,
    ) -> Result<Vec<String>, StructureTestError> {
        f.get(name)
            .map_or(Ok(Vec::new()), |n| self.strings(n, &join(at, name)))
    }

    fn boolean(&self, node: &Node, at: &str) -> Result<bool, StructureTestError> {
        // YAML 1.1's spellings, which the upstream tool's YAML reader accepts for booleans.
        match &node.value {
            Value::Scalar(s) => match s.as_str() {
                "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y"
                | "Y" => Ok(true),
                "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n"
                | "N" => Ok(false),
                _ => Err(self.err(node.line, at, format!("expected true or false, not '{s}'"))),
            },
            _ => Err(self.err(node.line, at, "expected true or false".into())),
        }
    }

    fn integer(&self, node: &Node, at: &str) -> Result<i64, StructureTestError> {
        match &node.value {
            Value::Scalar(s) => s
                .parse()
                .map_err(|_| self.err(node.line, at, format!("expected an integer, not '{s}'"))),
            _ => Err(self.err(node.line, at, "expected an integer".into())),
        }
    }

    fn patterns(
        &self,
        f: &Fields,
        at: &str,
        name: &str,
    ) -> Result<Vec<Pattern>, StructureTestError> {
        let Some(node) = f.get(name) else {
            return Ok(Vec::new());
        };
        let field = join(at, name);
        self.seq(node, &field)?
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let at = format!("{field}[{i}]");
                let source = self.string(n, &at)?;
                let regex = Regex::new(&source).map_err(|e| {
                    self.err(n.line, &at, format!("invalid regular expression: {e}"))
                })?;
                Ok(Pattern { source, regex })
            })
            .collect()
    }

    fn commands(
        &self,
        f: &Fields,
        at: &str,
        name: &str,
    ) -> Result<Vec<Vec<String>>, StructureTestError> {
        let Some(node) = f.get(name) else {
            return Ok(Vec::new());
        };
        let field = join(at, name);
        self.seq(node, &field)?
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let at = format!("{field}[{i}]");
                let cmd = self.strings(n, &at)?;
                if cmd.is_empty() {
                    return Err(self.err(n.line, &at, "a command must not be empty".into()));
                }
                Ok(cmd)
            })
            .collect()
    }

    fn key_values(
        &self,
        node: &Node,
        at: &str,
        value_required: bool,
    ) -> Result<Vec<KeyValue>, StructureTestError> {
        self.seq(node, at)?
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let at = format!("{at}[{i}]");
                let f = self.map(n, &at, &["key", "value", "isRegex"])?;
                let key = self.required(&f, n, &at, "key")?;
                let value = if value_required {
                    self.required(&f, n, &at, "value")?
                } else {
                    f.get("value")
                        .map(|v| self.string(v, &join(&at, "value")))
                        .transpose()?
                        .unwrap_or_default()
                };
                let is_regex = f
                    .get("isRegex")
                    .map(|v| self.boolean(v, &join(&at, "isRegex")))
                    .transpose()?
                    .unwrap_or(false);
                if is_regex && let Err(e) = Regex::new(&value) {
                    return Err(self.err(
                        f.get("value").map_or(n.line, |v| v.line),
                        &join(&at, "value"),
                        format!("invalid regular expression: {e}"),
                    ));
                }
                Ok(KeyValue {
                    key,
                    value,
                    is_regex,
                })
            })
            .collect()
    }

    fn command_test(&self, node: &Node, at: &str) -> Result<CommandTest, StructureTestError> {
        let f = self.map(
            node,
            at,
            &[
                "name",
                "setup",
                "teardown",
                "envVars",
                "exitCode",
                "command",
                "args",
                "expectedOutput",
                "excludedOutput",
                "expectedError",
                "excludedError",
            ],
        )?;
        let exit_code = match f.get("exitCode") {
            Some(n) => {
                let field = join(at, "exitCode");
                let v = self.integer(n, &field)?;
                i32::try_from(v)
                    .map_err(|_| self.err(n.line, &field, format!("{v} is out of range")))?
            }
            None => 0,
        };
        Ok(CommandTest {
            name: self.required(&f, node, at, "name")?,
            setup: self.commands(&f, at, "setup")?,
            teardown: self.commands(&f, at, "teardown")?,
            env: f
                .get("envVars")
                .map(|n| self.key_values(n, &join(at, "envVars"), true))
                .transpose()?
                .unwrap_or_default(),
            exit_code,
            command: self.required(&f, node, at, "command")?,
            args: self.opt_strings(&f, at, "args")?,
            expected_output: self.patterns(&f, at, "expectedOutput")?,
            excluded_output: self.patterns(&f, at, "excludedOutput")?,
            expected_error: self.patterns(&f, at, "expectedError")?,
            excluded_error: self.patterns(&f, at, "excludedError")?,
        })
    }

    fn id(&self, f: &Fields, at: &str, name: &str) -> Result<Option<u32>, StructureTestError> {
        let Some(n) = f.get(name) else {
            return Ok(None);
        };
        let field = join(at, name);
        let v = self.integer(n, &field)?;
        // -1 is the upstream tool's "not checked".
        if v == -1 {
            return Ok(None);
        }
        u32::try_from(v)
            .map(Some)
            .map_err(|_| self.err(n.line, &field, format!("{v} is not a valid id")))
    }

    fn existence_test(
        &self,
        node: &Node,
        at: &str,
    ) -> Result<FileExistenceTest, StructureTestError> {
        let f = self.map(
            node,
            at,
            &[
                "name",
                "path",
                "shouldExist",
                "permissions",
                "uid",
                "gid",
                "isExecutableBy",
            ],
        )?;
        let executable_by = match f.get("isExecutableBy") {
            None => None,
            Some(n) => {
                let field = join(at, "isExecutableBy");
                Some(match self.string(n, &field)?.as_str() {
                    "owner" => ExecutableBy::Owner,
                    "group" => ExecutableBy::Group,
                    "other" => ExecutableBy::Other,
                    "any" => ExecutableBy::Any,
                    other => {
                        return Err(self.err(
                            n.line,
                            &field,
                            format!("'{other}' is not one of owner, group, other, any"),
                        ));
                    }
                })
            }
        };
        Ok(FileExistenceTest {
            name: self.required(&f, node, at, "name")?,
            path: self.required(&f, node, at, "path")?,
            should_exist: f
                .get("shouldExist")
                .map(|n| self.boolean(n, &join(at, "shouldExist")))
                .transpose()?
                .unwrap_or(true),
            permissions: f
                .get("permissions")
                .map(|n| self.string(n, &join(at, "permissions")))
                .transpose()?
                .filter(|s| !s.is_empty()),
            uid: self.id(&f, at, "uid")?,
            gid: self.id(&f, at, "gid")?,
            executable_by,
        })
    }

    fn content_test(&self, node: &Node, at: &str) -> Result<FileContentTest, StructureTestError> {
        let f = self.map(
            node,
            at,
            &["name", "path", "expectedContents", "excludedContents"],
        )?;
        Ok(FileContentTest {
            name: self.required(&f, node, at, "name")?,
            path: self.required(&f, node, at, "path")?,
            expected_contents: self.patterns(&f, at, "expectedContents")?,
            excluded_contents: self.patterns(&f, at, "excludedContents")?,
        })
    }

    fn metadata(&self, node: &Node, at: &str) -> Result<MetadataTest, StructureTestError> {
        let f = self.map(
            node,
            at,
            &[
                "envVars",
                "unboundEnvVars",
                "exposedPorts",
                "unexposedPorts",
                "entrypoint",
                "cmd",
                "workdir",
                "volumes",
                "unmountedVolumes",
                "labels",
                "user",
            ],
        )?;
        let kv = |name: &str| {
            f.get(name)
                .map(|n| self.key_values(n, &join(at, name), false))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let non_empty = |name: &str| -> Result<Vec<String>, StructureTestError> {
            let list = self.opt_strings(&f, at, name)?;
            if let Some(i) = list.iter().position(String::is_empty) {
                return Err(self.err(
                    f.get(name).map_or(node.line, |n| n.line),
                    &format!("{}[{i}]", join(at, name)),
                    "must not be empty".into(),
                ));
            }
            Ok(list)
        };
        // `entrypoint: []` checks that there is none; an absent field checks nothing.
        let exact = |name: &str| -> Result<Option<Vec<String>>, StructureTestError> {
            match f.0.iter().find(|(k, _)| *k == name) {
                None => Ok(None),
                Some((_, n)) if matches!(n.value, Value::Null) => Ok(Some(Vec::new())),
                Some((_, n)) => self.strings(n, &join(at, name)).map(Some),
            }
        };
        let text = |name: &str| -> Result<Option<String>, StructureTestError> {
            Ok(f.get(name)
                .map(|n| self.string(n, &join(at, name)))
                .transpose()?
                .filter(|s| !s.is_empty()))
        };
        Ok(MetadataTest {
            env: kv("envVars")?,
            unbound_env: kv("unboundEnvVars")?.into_iter().map(|k| k.key).collect(),
            exposed_ports: non_empty("exposedPorts")?,
            unexposed_ports: self.opt_strings(&f, at, "unexposedPorts")?,
            entrypoint: exact("entrypoint")?,
            cmd: exact("cmd")?,
            workdir: text("workdir")?,
            volumes: non_empty("volumes")?,
            unmounted_volumes: self.opt_strings(&f, at, "unmountedVolumes")?,
            labels: kv("labels")?,
            user: text("user")?,
        })
    }

    fn run_options(&self, node: &Node, at: &str) -> Result<RunOptions, StructureTestError> {
        let f = self.map(
            node,
            at,
            &[
                "user",
                "privileged",
                "allocateTty",
                "envFile",
                "envVars",
                "capabilities",
                "bindMounts",
            ],
        )?;
        // What imgbuild's containers cannot give is refused rather than silently ignored.
        for name in ["privileged", "allocateTty"] {
            if let Some(n) = f.get(name)
                && self.boolean(n, &join(at, name))?
            {
                return Err(self.err(n.line, &join(at, name), "not supported by imgbuild".into()));
            }
        }
        if let Some(n) = f.get("capabilities")
            && !self.strings(n, &join(at, "capabilities"))?.is_empty()
        {
            return Err(self.err(
                n.line,
                &join(at, "capabilities"),
                "not supported by imgbuild (containers get Docker's default capabilities)".into(),
            ));
        }
        let env_file = f
            .get("envFile")
            .map(|n| self.string(n, &join(at, "envFile")))
            .transpose()?
            .filter(|s| !s.is_empty())
            .map(|s| {
                // Relative to the config file, so a config works from any directory.
                let dir = self.path.parent().unwrap_or(Path::new("."));
                dir.join(s)
            });
        let bind_mounts = self.opt_strings(&f, at, "bindMounts")?;
        for (i, b) in bind_mounts.iter().enumerate() {
            if let Err(e) = b.parse::<crate::runtime::Volume>() {
                return Err(self.err(
                    f.get("bindMounts").map_or(node.line, |n| n.line),
                    &format!("{at}.bindMounts[{i}]"),
                    e.to_string(),
                ));
            }
        }
        Ok(RunOptions {
            user: f
                .get("user")
                .map(|n| self.string(n, &join(at, "user")))
                .transpose()?
                .filter(|s| !s.is_empty()),
            env_vars: self.opt_strings(&f, at, "envVars")?,
            env_file,
            bind_mounts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, StructureTestError> {
        Config::parse(Path::new("t.yaml"), text)
    }

    fn err(text: &str) -> (usize, String, String) {
        match parse(text).unwrap_err() {
            StructureTestError::Config {
                line,
                field,
                message,
                ..
            } => (line, field, message),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn full_config_parses_with_defaults() {
        let c = parse(
            r#"schemaVersion: "2.0.0"
globalEnvVars:
  - key: A
    value: "1"
commandTests:
  - name: echo
    command: echo
    args: [hi]
    setup: [["touch", "/x"]]
    expectedOutput: ["h.$"]
fileExistenceTests:
  - name: root
    path: /
    permissions: drwxr-xr-x
    isExecutableBy: any
fileContentTests:
  - name: os
    path: /etc/os-release
    excludedContents: [Ubuntu]
metadataTest:
  entrypoint: []
  envVars:
  labels:
    - key: a
      value: "^b"
      isRegex: true
licenseTests:
  - debian: yes
"#,
        )
        .unwrap();
        let t = &c.command_tests[0];
        assert_eq!(t.exit_code, 0);
        assert_eq!(t.setup, vec![vec!["touch".to_string(), "/x".into()]]);
        assert!(t.expected_output[0].regex.is_match("hi"));
        let f = &c.file_existence_tests[0];
        assert!(f.should_exist);
        assert_eq!((f.uid, f.gid), (None, None));
        assert_eq!(f.executable_by, Some(ExecutableBy::Any));
        assert_eq!(c.metadata.entrypoint, Some(vec![]));
        assert_eq!(c.metadata.cmd, None);
        assert!(c.metadata.labels[0].is_regex);
        assert!(c.license_tests[0].debian);
        assert_eq!(c.test_count(), 5);
    }

    #[test]
    fn errors_name_line_and_field() {
        let (line, field, msg) =
            err("schemaVersion: 2.0.0\ncommandTests:\n  - name: a\n    comand: x\n");
        assert_eq!((line, field.as_str()), (4, "commandTests[0].comand"));
        assert!(msg.contains("unknown field"), "{msg}");

        let (line, field, _) =
            err("schemaVersion: 2.0.0\ncommandTests:\n  - name: a\n    args: [x]\n");
        assert_eq!((line, field.as_str()), (3, "commandTests[0].command"));

        let (line, field, msg) = err(
            "schemaVersion: 2.0.0\nfileContentTests:\n  - name: a\n    path: /x\n    expectedContents:\n      - ok\n      - '(unclosed'\n",
        );
        assert_eq!(
            (line, field.as_str()),
            (7, "fileContentTests[0].expectedContents[1]")
        );
        assert!(msg.contains("regular expression"), "{msg}");

        let (line, field, _) = err(
            "schemaVersion: 2.0.0\ncommandTests:\n  - name: a\n    command: x\n    exitCode: one\n",
        );
        assert_eq!((line, field.as_str()), (5, "commandTests[0].exitCode"));

        let (line, field, _) = err(
            "schemaVersion: 2.0.0\ncommandTests:\n  - name: a\n    command: x\n    setup: [[]]\n",
        );
        assert_eq!((line, field.as_str()), (5, "commandTests[0].setup[0]"));
    }

    #[test]
    fn schema_version_is_required_and_checked() {
        let (line, field, msg) = err("commandTests: []\n");
        assert_eq!((line, field.as_str()), (1, "schemaVersion"));
        assert!(msg.contains("missing"), "{msg}");
        let (line, _, msg) = err("\n\nschemaVersion: '1.0.0'\n");
        assert_eq!(line, 3);
        assert!(msg.contains("'1.0.0'"), "{msg}");
        assert!(parse(r#"{"schemaVersion": "2.0.0"}"#).is_ok());
    }

    #[test]
    fn unsupported_run_options_are_refused() {
        let (line, field, _) =
            err("schemaVersion: 2.0.0\ncontainerRunOptions:\n  privileged: true\n");
        assert_eq!(
            (line, field.as_str()),
            (3, "containerRunOptions.privileged")
        );
        let c = parse("schemaVersion: 2.0.0\ncontainerRunOptions:\n  user: nobody\n  bindMounts: [/tmp:/mnt:ro]\n").unwrap();
        assert_eq!(c.run_options.user.as_deref(), Some("nobody"));
        let (_, field, _) =
            err("schemaVersion: 2.0.0\ncontainerRunOptions:\n  bindMounts: [rel:/mnt]\n");
        assert_eq!(field, "containerRunOptions.bindMounts[0]");
    }
}
