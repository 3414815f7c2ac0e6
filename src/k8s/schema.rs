//! The Kubernetes schema lifeboat decodes with: generated data (`schema/k8s.json`, written by
//! `scripts/k8s-schema/generate.py` from a pinned Kubernetes release), loaded once.

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// The whole schema of one Kubernetes release.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    /// Kubernetes release the data was generated from, e.g. `v1.36.0`.
    pub release: String,
    /// `apiVersion` (`v1`, `apps/v1`) → protobuf package of its messages.
    pub group_versions: BTreeMap<String, String>,
    /// Kinds that are API resources (stored in etcd).
    pub kinds: Vec<KindInfo>,
    /// Protobuf message full name → its Go shape.
    pub messages: HashMap<String, Message>,
}

/// One built-in kind of one group version.
#[derive(Debug, Clone, Deserialize)]
pub struct KindInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Plural resource name, as in the etcd key and the REST path.
    pub resource: String,
    pub namespaced: bool,
}

/// A message and how Go's encoding/json prints it.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// Set when the Go type has its own JSON form.
    #[serde(default)]
    pub special: Option<Special>,
    /// Fields in Go declaration order (the order encoding/json prints them).
    pub fields: Vec<Field>,
}

/// Go types with a MarshalJSON of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Special {
    /// meta/v1 Time: RFC 3339 seconds in UTC; zero prints `null`.
    Time,
    /// meta/v1 MicroTime: RFC 3339 with microseconds.
    Microtime,
    /// meta/v1 Duration: Go's duration string.
    Duration,
    /// RawExtension, FieldsV1: the bytes are JSON, embedded as they are.
    Rawjson,
    /// intstr.IntOrString: a number or a string.
    Intorstring,
    /// resource.Quantity: its string.
    Quantity,
    /// A named `[]string` (ExtraValue, Verbs): a bare array.
    BareArray,
}

/// One field of a message.
#[derive(Debug, Deserialize)]
pub struct Field {
    /// Protobuf field number.
    pub no: u32,
    /// Scalar (`string`, `int32`, ...) or message full name; absent for maps.
    #[serde(rename = "type", default)]
    pub ty: Option<String>,
    /// Key and value types of a map field.
    #[serde(default)]
    pub map: Option<(String, String)>,
    #[serde(default)]
    pub repeated: bool,
    /// JSON name (the Go tag's).
    pub json: String,
    /// `json:",inline"`: the message's fields are printed in the parent.
    #[serde(default)]
    pub inline: bool,
    #[serde(default)]
    pub omitempty: bool,
    #[serde(default)]
    pub omitzero: bool,
    /// A Go pointer: absent means nil, present zero is printed.
    #[serde(default)]
    pub pointer: bool,
}

/// The embedded schema, parsed on first use.
pub fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        serde_json::from_str(include_str!("schema/k8s.json"))
            .expect("the generated schema in src/k8s/schema/k8s.json parses")
    })
}

impl Schema {
    /// Message full name for an `apiVersion` and `kind`, when the schema knows them.
    pub fn message_for(&self, api_version: &str, kind: &str) -> Option<String> {
        let pkg = self.group_versions.get(api_version)?;
        let name = format!("{pkg}.{kind}");
        self.messages.contains_key(&name).then_some(name)
    }
}
