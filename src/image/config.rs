//! OCI image config and manifest from an [`ImageSpec`], written once as canonical JSON (sorted
//! keys, no insignificant whitespace) and hashed exactly as written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    ANNOTATION_BASE_IMAGE_DIGEST, ANNOTATION_BASE_IMAGE_NAME, ANNOTATION_CREATED, Arch, Config,
    ConfigBuilder, Descriptor, DescriptorBuilder, Digest, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::layer::LayerBlob;
use super::{ImageError, Result, io_err};

/// One history entry for a layer (or an empty layer) this build adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The command that made the layer.
    pub created_by: Option<String>,
    /// Free text.
    pub comment: Option<String>,
    /// Who made it.
    pub author: Option<String>,
    /// True if the entry has no layer.
    pub empty_layer: bool,
}

/// The base an image derives from, as read by [`super::base`].
#[derive(Debug, Clone)]
pub struct BaseRef {
    /// Name for the `org.opencontainers.image.base.name` annotation.
    pub name: String,
    /// Manifest digest for `org.opencontainers.image.base.digest`.
    pub manifest_digest: String,
    /// The base's image config (its runtime config, `diff_ids` and history are inherited).
    pub config: ImageConfiguration,
    /// The base's layers, already present in the target blobs directory.
    pub layers: Vec<Descriptor>,
}

/// What an image should be: runtime config, metadata and names.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    /// Repository name (`kiwi-container` in KIWI when unset).
    pub name: String,
    /// Tag (`latest` in KIWI when unset).
    pub tag: String,
    /// Extra names: `:tag`, `name:` or `name:tag` forms, as KIWI's `additionalnames`.
    pub additional_names: Vec<String>,
    /// Entrypoint; `None` keeps the base's.
    pub entrypoint: Option<Vec<String>>,
    /// Drop an inherited entrypoint.
    pub clear_entrypoint: bool,
    /// Cmd; `None` keeps the base's.
    pub cmd: Option<Vec<String>>,
    /// Drop an inherited cmd.
    pub clear_cmd: bool,
    /// `KEY=VALUE` entries, merged over the base's by key.
    pub env: Vec<String>,
    /// Labels, merged over the base's.
    pub labels: BTreeMap<String, String>,
    /// Ports: `80`, `80/tcp`, `53/udp` (a bare port means tcp).
    pub exposed_ports: Vec<String>,
    /// Volume paths.
    pub volumes: Vec<String>,
    /// User (name, uid, `user:group`).
    pub user: Option<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// Stop signal, e.g. `SIGTERM`.
    pub stop_signal: Option<String>,
    /// Image author.
    pub author: Option<String>,
    /// Creation time, seconds since the epoch (the `SOURCE_DATE_EPOCH`).
    pub created: u64,
    /// OCI architecture (`amd64`, `arm64`, …).
    pub architecture: String,
    /// OCI os (`linux`).
    pub os: String,
    /// Architecture variant (`v8`, …).
    pub variant: Option<String>,
    /// History for the layers this build adds, in order; missing entries are filled in.
    pub history: Vec<HistoryEntry>,
    /// Manifest annotations (`org.opencontainers.image.version`, `title`, `description`,
    /// `authors`, …); `created` and the base annotations are added automatically.
    pub annotations: BTreeMap<String, String>,
    /// The base for a derived image.
    pub base: Option<BaseRef>,
}

/// One layer of a built image.
#[derive(Debug, Clone)]
pub struct ImageLayer {
    /// Manifest descriptor of the blob.
    pub descriptor: Descriptor,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the uncompressed tar, when known without reading it.
    pub tar_size: Option<u64>,
    /// An uncompressed copy of the layer's tar, when the build kept one.
    pub plain: Option<PathBuf>,
}

/// An image whose blobs (layers, config, manifest) are all in one blobs directory.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The `blobs/sha256` directory holding every blob.
    pub blobs_dir: PathBuf,
    /// Manifest descriptor (media type, digest, size).
    pub manifest: Descriptor,
    /// Config descriptor.
    pub config: Descriptor,
    /// Layers, base first.
    pub layers: Vec<ImageLayer>,
    /// The reference name for `index.json` (the tag).
    pub ref_name: String,
    /// Every `name:tag` the image carries, primary first.
    pub repo_tags: Vec<String>,
    /// Platform of the image.
    pub architecture: String,
    /// OS of the image.
    pub os: String,
}

impl BuiltImage {
    /// Path of a blob of this image by digest (`sha256:<hex>`).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir.join(digest.digest())
    }
}

/// Serialises `value` canonically: keys sorted (`serde_json`'s default map), no whitespace.
pub fn canonical_json<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>> {
    let err = |source| ImageError::Json {
        what: what.to_string(),
        source,
    };
    let v = serde_json::to_value(value).map_err(err)?;
    serde_json::to_vec(&v).map_err(err)
}

/// Formats seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    // Always fits: u64::MAX / 86_400 is far below i64::MAX.
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant), valid for every date after 1970.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Expands KIWI's name forms to `name:tag` strings, primary first, without duplicates.
pub fn repo_tags(name: &str, tag: &str, additional: &[String]) -> Vec<String> {
    let mut out = vec![format!("{name}:{tag}")];
    for a in additional {
        let t = match a.rsplit_once(':') {
            Some(("", t)) => format!("{name}:{t}"),
            Some((n, "")) => format!("{n}:{tag}"),
            Some((n, t)) if !t.contains('/') => format!("{n}:{t}"),
            _ => format!("{a}:{tag}"),
        };
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn normalize_port(p: &str) -> String {
    if p.contains('/') {
        p.to_string()
    } else {
        format!("{p}/tcp")
    }
}

fn spec_err(field: &str) -> impl Fn(oci_spec::OciSpecError) -> ImageError + '_ {
    move |e| ImageError::Spec {
        field: field.to_string(),
        message: e.to_string(),
    }
}

fn parse_digest(d: &str, field: &str) -> Result<Digest> {
    Digest::from_str(d).map_err(spec_err(field))
}

/// Merges the base's runtime config with the spec's.
fn runtime_config(spec: &ImageSpec, base: Option<&Config>) -> Result<Config> {
    let mut entrypoint = base.and_then(|c| c.entrypoint().clone());
    let mut cmd = base.and_then(|c| c.cmd().clone());
    if spec.clear_entrypoint {
        entrypoint = None;
    }
    if spec.clear_cmd {
        cmd = None;
    }
    if spec.entrypoint.is_some() {
        entrypoint.clone_from(&spec.entrypoint);
    }
    if spec.cmd.is_some() {
        cmd.clone_from(&spec.cmd);
    }
    // Env: base order kept, values replaced by key, new keys appended in the spec's order.
    let mut env: Vec<String> = base.and_then(|c| c.env().clone()).unwrap_or_default();
    for kv in &spec.env {
        let key = kv.split('=').next().unwrap_or(kv);
        match env
            .iter_mut()
            .find(|e| e.split('=').next().unwrap_or(e) == key)
        {
            Some(slot) => slot.clone_from(kv),
            None => env.push(kv.clone()),
        }
    }
    let mut labels: BTreeMap<String, String> = base
        .and_then(|c| c.labels().clone())
        .map(|l| l.into_iter().collect())
        .unwrap_or_default();
    labels.extend(spec.labels.clone());
    let mut ports: BTreeSet<String> = base
        .and_then(|c| c.exposed_ports().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    ports.extend(spec.exposed_ports.iter().map(|p| normalize_port(p)));
    let mut volumes: BTreeSet<String> = base
        .and_then(|c| c.volumes().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    volumes.extend(spec.volumes.iter().cloned());

    let mut b = ConfigBuilder::default();
    if let Some(e) = entrypoint {
        b = b.entrypoint(e);
    }
    if let Some(c) = cmd {
        b = b.cmd(c);
    }
    if !env.is_empty() {
        b = b.env(env);
    }
    if !labels.is_empty() {
        b = b.labels(labels.into_iter().collect::<HashMap<_, _>>());
    }
    if !ports.is_empty() {
        b = b.exposed_ports(ports.into_iter().collect::<Vec<_>>());
    }
    if !volumes.is_empty() {
        b = b.volumes(volumes.into_iter().collect::<Vec<_>>());
    }
    let inherit = |f: fn(&Config) -> &Option<String>| base.and_then(|c| f(c).clone());
    if let Some(u) = spec.user.clone().or_else(|| inherit(Config::user)) {
        b = b.user(u);
    }
    if let Some(w) = spec
        .working_dir
        .clone()
        .or_else(|| inherit(Config::working_dir))
    {
        b = b.working_dir(w);
    }
    if let Some(s) = spec
        .stop_signal
        .clone()
        .or_else(|| inherit(Config::stop_signal))
    {
        b = b.stop_signal(s);
    }
    b.build().map_err(spec_err("config"))
}

/// Builds the image config for `spec` on top of `layers` (the layers this build adds).
pub fn image_config(spec: &ImageSpec, layers: &[LayerBlob]) -> Result<ImageConfiguration> {
    let created = rfc3339(spec.created);
    let base_cfg = spec.base.as_ref().map(|b| &b.config);
    let mut diff_ids: Vec<String> = base_cfg
        .map(|c| c.rootfs().diff_ids().clone())
        .unwrap_or_default();
    diff_ids.extend(layers.iter().map(|l| l.diff_id.clone()));
    let mut history = base_cfg
        .and_then(|c| c.history().clone())
        .unwrap_or_default();
    let mut entries = spec.history.clone();
    let with_layer = entries.iter().filter(|e| !e.empty_layer).count();
    for _ in with_layer..layers.len() {
        entries.push(HistoryEntry {
            created_by: Some("imgbuild".into()),
            ..HistoryEntry::default()
        });
    }
    if entries.iter().filter(|e| !e.empty_layer).count() != layers.len() {
        return Err(ImageError::Spec {
            field: "history".into(),
            message: format!(
                "{} history entries with a layer for {} new layers",
                with_layer,
                layers.len()
            ),
        });
    }
    for e in &entries {
        let mut h = HistoryBuilder::default().created(created.clone());
        if let Some(v) = &e.created_by {
            h = h.created_by(v.clone());
        }
        if let Some(v) = &e.comment {
            h = h.comment(v.clone());
        }
        if let Some(v) = e.author.as_ref().or(spec.author.as_ref()) {
            h = h.author(v.clone());
        }
        if e.empty_layer {
            h = h.empty_layer(true);
        }
        history.push(h.build().map_err(spec_err("history"))?);
    }
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(diff_ids)
        .build()
        .map_err(spec_err("rootfs"))?;
    let mut b = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(Arch::from(spec.architecture.as_str()))
        .os(Os::from(spec.os.as_str()))
        .config(runtime_config(
            spec,
            base_cfg.and_then(|c| c.config().as_ref()),
        )?)
        .rootfs(rootfs)
        .history(history);
    if let Some(v) = &spec.variant {
        b = b.variant(v.clone());
    }
    if let Some(a) = &spec.author {
        b = b.author(a.clone());
    }
    b.build().map_err(spec_err("image config"))
}

/// Writes `data` as a blob named by its sha256 into `blobs_dir` (temp + rename).
pub fn write_blob(blobs_dir: &Path, data: &[u8]) -> Result<(Digest, u64)> {
    let hexd = hex::encode(Sha256::digest(data));
    fs::create_dir_all(blobs_dir).map_err(io_err(blobs_dir))?;
    let path = blobs_dir.join(&hexd);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-blob-")
        .tempfile_in(blobs_dir)
        .map_err(io_err(blobs_dir))?;
    tmp.write_all(data).map_err(io_err(tmp.path()))?;
    tmp.persist(&path).map_err(|e| ImageError::Io {
        path: path.clone(),
        source: e.error,
    })?;
    Ok((
        parse_digest(&format!("sha256:{hexd}"), "blob")?,
        data.len() as u64,
    ))
}

fn descriptor(media_type: MediaType, digest: Digest, size: u64) -> Result<Descriptor> {
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(size)
        .build()
        .map_err(spec_err("descriptor"))
}

/// Writes the config and manifest blobs for `spec` plus `layers` (already in `blobs_dir`, as
/// are the base's layers) and returns the assembled image.
pub fn assemble(spec: &ImageSpec, layers: &[LayerBlob], blobs_dir: &Path) -> Result<BuiltImage> {
    let config = image_config(spec, layers)?;
    let config_json = canonical_json(&config, "image config")?;
    let (config_digest, config_size) = write_blob(blobs_dir, &config_json)?;
    let config_desc = descriptor(MediaType::ImageConfig, config_digest, config_size)?;

    let mut image_layers: Vec<ImageLayer> = Vec::new();
    if let Some(base) = &spec.base {
        let diff_ids = base.config.rootfs().diff_ids();
        if diff_ids.len() != base.layers.len() {
            return Err(ImageError::Spec {
                field: "base".into(),
                message: format!(
                    "{} layers but {} diff_ids",
                    base.layers.len(),
                    diff_ids.len()
                ),
            });
        }
        for (d, id) in base.layers.iter().zip(diff_ids) {
            let tar_size = (*d.media_type() == MediaType::ImageLayer).then(|| d.size());
            image_layers.push(ImageLayer {
                descriptor: d.clone(),
                diff_id: id.clone(),
                tar_size,
                plain: None,
            });
        }
    }
    for l in layers {
        image_layers.push(ImageLayer {
            descriptor: descriptor(
                l.media_type.clone(),
                parse_digest(&l.digest, "layer")?,
                l.size,
            )?,
            diff_id: l.diff_id.clone(),
            tar_size: Some(l.tar_size),
            plain: l.plain.clone(),
        });
    }

    let mut annotations: BTreeMap<String, String> = spec.annotations.clone();
    annotations.insert(ANNOTATION_CREATED.into(), rfc3339(spec.created));
    if let Some(base) = &spec.base {
        annotations.insert(ANNOTATION_BASE_IMAGE_NAME.into(), base.name.clone());
        annotations.insert(
            ANNOTATION_BASE_IMAGE_DIGEST.into(),
            base.manifest_digest.clone(),
        );
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc.clone())
        .layers(
            image_layers
                .iter()
                .map(|l| l.descriptor.clone())
                .collect::<Vec<_>>(),
        )
        .annotations(annotations.into_iter().collect::<HashMap<_, _>>())
        .build()
        .map_err(spec_err("manifest"))?;
    let manifest_json = canonical_json(&manifest, "image manifest")?;
    let (m_digest, m_size) = write_blob(blobs_dir, &manifest_json)?;
    let name = if spec.name.is_empty() {
        "kiwi-container"
    } else {
        &spec.name
    };
    let tag = if spec.tag.is_empty() {
        "latest"
    } else {
        &spec.tag
    };
    Ok(BuiltImage {
        blobs_dir: blobs_dir.to_path_buf(),
        manifest: descriptor(MediaType::ImageManifest, m_digest, m_size)?,
        config: config_desc,
        layers: image_layers,
        ref_name: tag.to_string(),
        repo_tags: repo_tags(name, tag, &spec.additional_names),
        architecture: spec.architecture.clone(),
        os: spec.os.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn repo_tags_expand_kiwi_forms() {
        let add = vec![
            ":v1".into(),
            "other:".into(),
            "reg/x:y".into(),
            "plain".into(),
        ];
        assert_eq!(
            repo_tags("n", "t", &add),
            ["n:t", "n:v1", "other:t", "reg/x:y", "plain:t"]
        );
    }

    #[test]
    fn canonical_json_sorts_keys_without_whitespace() {
        let mut m = HashMap::new();
        m.insert("b", 1);
        m.insert("a", 2);
        assert_eq!(canonical_json(&m, "t").unwrap(), br#"{"a":2,"b":1}"#);
    }

    #[test]
    fn derived_config_merges_env_labels_and_ports() {
        let base_rt = ConfigBuilder::default()
            .env(vec!["PATH=/bin".to_string(), "A=1".to_string()])
            .entrypoint(vec!["/old".to_string()])
            .cmd(vec!["x".to_string()])
            .exposed_ports(vec!["80/tcp".to_string()])
            .build()
            .unwrap();
        let spec = ImageSpec {
            env: vec!["A=2".into(), "B=3".into()],
            exposed_ports: vec!["80".into(), "53/udp".into()],
            clear_entrypoint: true,
            ..ImageSpec::default()
        };
        let c = runtime_config(&spec, Some(&base_rt)).unwrap();
        assert_eq!(c.env().clone().unwrap(), ["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(c.entrypoint(), &None);
        assert_eq!(c.cmd().clone().unwrap(), ["x"]);
        assert_eq!(c.exposed_ports().clone().unwrap(), ["53/udp", "80/tcp"]);
    }
}
