//! YAML out: what `hubbub-operator render` prints (the children of each ChatRoom in a
//! file, as the operator would apply them) and `hubbub-operator crd` writes. Kept apart
//! from the pure builders in [`crate::resources`], which know nothing of YAML.

use crate::Error;
use crate::crd::ChatRoom;
use crate::resources::{self, Children, Images};

/// `hubbub-operator render`: the objects for every ChatRoom in `text` (one or more YAML
/// documents), as YAML. A ChatRoom without a namespace is rendered in `default`.
pub fn render(text: &str, images: &Images, source: &str) -> Result<String, Error> {
    let mut out = String::from(
        "# Rendered by `hubbub-operator render`. In a cluster the operator also sets a\n\
         # controller ownerReference to the ChatRoom on every object.\n",
    );
    let mut count = 0;
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value: serde_json::Value =
            serde::Deserialize::deserialize(doc).map_err(|e| Error::Input {
                path: source.to_string(),
                reason: e.to_string(),
            })?;
        if value.is_null() {
            continue;
        }
        let mut room: ChatRoom = serde_json::from_value(value).map_err(|e| Error::Input {
            path: source.to_string(),
            reason: e.to_string(),
        })?;
        if room.metadata.namespace.is_none() {
            room.metadata.namespace = Some("default".into());
        }
        let children = resources::build(&room, images)?;
        out.push_str(&children_yaml(&children)?);
        count += 1;
    }
    if count == 0 {
        return Err(Error::Input {
            path: source.to_string(),
            reason: "no ChatRoom found".into(),
        });
    }
    Ok(out)
}

/// A room's children as YAML documents (`---` separated), in the order they are applied.
pub fn children_yaml(children: &Children) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    let mut push = |doc: String| {
        out.push_str("---\n");
        out.push_str(&doc);
    };
    if let Some(service) = &children.redis_service {
        push(serde_yaml_ng::to_string(service)?);
    }
    if let Some(redis) = &children.redis {
        push(serde_yaml_ng::to_string(redis)?);
    }
    if let Some(service) = &children.sentinel_service {
        push(serde_yaml_ng::to_string(service)?);
    }
    if let Some(sentinel) = &children.sentinel {
        push(serde_yaml_ng::to_string(sentinel)?);
    }
    for pdb in [&children.redis_pdb, &children.sentinel_pdb]
        .into_iter()
        .flatten()
    {
        push(serde_yaml_ng::to_string(pdb)?);
    }
    push(serde_yaml_ng::to_string(&children.service)?);
    push(serde_yaml_ng::to_string(&children.deployment)?);
    if let Some(pdb) = &children.pdb {
        push(serde_yaml_ng::to_string(pdb)?);
    }
    if let Some(ingress) = &children.ingress {
        push(serde_yaml_ng::to_string(ingress)?);
    }
    if let Some(hpa) = &children.hpa {
        push(serde_yaml_ng::to_string(hpa)?);
    }
    Ok(quote_yaml11_booleans(&out))
}

/// Quotes plain scalars that YAML 1.1 readers (kubectl's sigs.k8s.io/yaml, PyYAML) would
/// take for booleans, e.g. the `no` in `--appendonly no`. serde_yaml_ng writes YAML 1.2,
/// where only `true`/`false` are booleans, so it leaves them bare. Lines inside block
/// scalars (`|`, `>`) are left alone.
pub fn quote_yaml11_booleans(yaml: &str) -> String {
    const WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF",
    ];
    let mut out = String::with_capacity(yaml.len() + 16);
    let mut block_indent: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(block) = block_indent {
            if line.trim().is_empty() || indent > block {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            block_indent = None;
        }
        let trimmed = line.trim_end();
        let (prefix, value) = match trimmed.rfind(": ") {
            Some(i)
                if !trimmed.trim_start().starts_with("- ")
                    || trimmed.trim_start()[2..].contains(": ") =>
            {
                (&trimmed[..i + 2], &trimmed[i + 2..])
            }
            _ => match trimmed.trim_start().strip_prefix("- ") {
                Some(v) => (&trimmed[..trimmed.len() - v.len()], v),
                None => (trimmed, ""),
            },
        };
        if WORDS.contains(&value) {
            out.push_str(prefix);
            out.push('\'');
            out.push_str(value);
            out.push('\'');
        } else {
            out.push_str(trimmed);
        }
        out.push('\n');
        if ["|", "|-", "|+", ">", ">-", ">+"].contains(&value) {
            block_indent = Some(indent);
        }
    }
    out
}
