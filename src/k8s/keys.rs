//! Where kube-apiserver keeps objects: `<etcd prefix>/<resource prefix>/[<namespace>/]<name>`,
//! and which user-typed KIND names which resource.

use super::schema::Schema;
use std::collections::{BTreeMap, HashMap};

/// The etcd prefixes kube-apiserver uses: its default and OpenShift's.
pub const KNOWN_PREFIXES: &[&str] = &["/registry", "/kubernetes.io"];

/// Resource prefixes that are not the resource's plural name. Facts from kubernetes/kubernetes
/// `pkg/kubeapiserver/default_storage_factory_builder.go` (`SpecialDefaultResourcePrefixes`) and
/// `test/integration/etcd/data.go` (`ExpectedEtcdPath`), release 1.36: (path, group, resource).
const SPECIAL_PREFIXES: &[(&str, &str, &str)] = &[
    ("services/specs", "", "services"),
    ("services/endpoints", "", "endpoints"),
    ("minions", "", "nodes"),
    ("controllers", "", "replicationcontrollers"),
    ("ingress", "networking.k8s.io", "ingresses"),
];

/// Keys under the prefix that hold no API object.
const NOT_OBJECTS: &[&str] = &["masterleases", "ranges", "health"];

/// kubectl's short names for built-in resources (`kubectl api-resources`, Kubernetes 1.36).
const SHORT_NAMES: &[(&str, &str)] = &[
    ("cs", "componentstatuses"),
    ("cm", "configmaps"),
    ("ep", "endpoints"),
    ("ev", "events"),
    ("limits", "limitranges"),
    ("ns", "namespaces"),
    ("no", "nodes"),
    ("pvc", "persistentvolumeclaims"),
    ("pv", "persistentvolumes"),
    ("po", "pods"),
    ("rc", "replicationcontrollers"),
    ("quota", "resourcequotas"),
    ("sa", "serviceaccounts"),
    ("svc", "services"),
    ("crd", "customresourcedefinitions"),
    ("crds", "customresourcedefinitions"),
    ("ds", "daemonsets"),
    ("deploy", "deployments"),
    ("rs", "replicasets"),
    ("sts", "statefulsets"),
    ("hpa", "horizontalpodautoscalers"),
    ("cj", "cronjobs"),
    ("csr", "certificatesigningrequests"),
    ("ing", "ingresses"),
    ("netpol", "networkpolicies"),
    ("pdb", "poddisruptionbudgets"),
    ("pc", "priorityclasses"),
    ("sc", "storageclasses"),
];

/// A resource: group (empty for core) and plural name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resource {
    pub group: String,
    pub resource: String,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// What an etcd key under the Kubernetes prefix names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    pub resource: Resource,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

/// A resource the tool knows how to name: built-in from the schema, or a custom resource whose
/// CRD is in the same backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    pub resource: Resource,
    pub kind: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
}

/// The resources one backup can hold.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    resources: BTreeMap<Resource, ResourceInfo>,
    /// Built-in resource prefix (plural) → the group its objects are listed under.
    prefix_groups: HashMap<String, String>,
}

/// Whether a group is Kubernetes' own (core, `apps`, `*.k8s.io`), not a custom resource's.
fn is_builtin_group(g: &str) -> bool {
    !g.contains('.') || g.ends_with(".k8s.io")
}

/// Preference among groups sharing one resource name, best first, as kubectl prefers them: the
/// core group, then GA groups without a dot, then the rest; the deprecated `extensions` last.
fn group_rank(g: &str) -> (bool, bool, bool, &str) {
    (g == "extensions", !g.is_empty(), g.contains('.'), g)
}

impl Catalog {
    /// Built-in resources of `schema` (one entry per group and resource).
    pub fn builtin(schema: &Schema) -> Self {
        let mut resources = BTreeMap::new();
        let mut prefix_groups: HashMap<String, String> = HashMap::new();
        for k in &schema.kinds {
            let r = Resource {
                group: k.group.clone(),
                resource: k.resource.clone(),
            };
            if resources.contains_key(&r) {
                continue;
            }
            let best = prefix_groups
                .entry(k.resource.clone())
                .or_insert_with(|| k.group.clone());
            if group_rank(&k.group) < group_rank(best) {
                *best = k.group.clone();
            }
            resources.insert(
                r.clone(),
                ResourceInfo {
                    short_names: SHORT_NAMES
                        .iter()
                        .filter(|(_, res)| {
                            *res == k.resource && (k.group.is_empty() || k.resource != "events")
                        })
                        .map(|(s, _)| (*s).to_string())
                        .collect(),
                    singular: k.kind.to_lowercase(),
                    kind: k.kind.clone(),
                    namespaced: k.namespaced,
                    resource: r,
                },
            );
        }
        // CRDs and APIServices are served by their own apiservers, so the k8s.io/api schema does
        // not list them; their keys and names are facts of the release.
        for (group, resource, kind, short) in [
            (
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                &["crd", "crds"][..],
            ),
            (
                "apiregistration.k8s.io",
                "apiservices",
                "APIService",
                &[][..],
            ),
        ] {
            let r = Resource {
                group: group.into(),
                resource: resource.into(),
            };
            resources.insert(
                r.clone(),
                ResourceInfo {
                    resource: r,
                    kind: kind.into(),
                    singular: kind.to_lowercase(),
                    short_names: short.iter().map(|s| (*s).to_string()).collect(),
                    namespaced: false,
                },
            );
        }
        Self {
            resources,
            prefix_groups,
        }
    }

    /// Add a custom resource from a CRD object (JSON, as stored); ignored when malformed.
    pub fn add_crd(&mut self, crd: &serde_json::Value) {
        let spec = &crd["spec"];
        let (Some(group), Some(plural), Some(kind)) = (
            spec["group"].as_str(),
            spec["names"]["plural"].as_str(),
            spec["names"]["kind"].as_str(),
        ) else {
            return;
        };
        let r = Resource {
            group: group.into(),
            resource: plural.into(),
        };
        self.resources.insert(
            r.clone(),
            ResourceInfo {
                resource: r,
                kind: kind.into(),
                singular: spec["names"]["singular"]
                    .as_str()
                    .map_or_else(|| kind.to_lowercase(), str::to_string),
                short_names: spec["names"]["shortNames"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
            },
        );
    }

    pub fn get(&self, r: &Resource) -> Option<&ResourceInfo> {
        self.resources.get(r)
    }

    /// The resources a kubectl-style KIND names: `cm`, `configmap`, `configmaps`, `ConfigMap`,
    /// `deployments.apps`, `Deployment.apps`, and `RESOURCE.GROUP` even for unknown groups.
    /// Core and GA groups win over others when a bare name is ambiguous, as kubectl prefers them.
    pub fn resolve(&self, kind: &str) -> Vec<Resource> {
        let lower = kind.to_lowercase();
        let matches = |info: &ResourceInfo, name: &str| {
            info.resource.resource == name
                || info.singular == name
                || info.kind.to_lowercase() == name
                || info.short_names.iter().any(|s| s == name)
        };
        let mut found: Vec<Resource> = self
            .resources
            .values()
            .filter(|i| matches(i, &lower))
            .map(|i| i.resource.clone())
            .collect();
        if found.is_empty()
            && let Some((name, group)) = lower.split_once('.')
        {
            found = self
                .resources
                .values()
                .filter(|i| i.resource.group == group && matches(i, name))
                .map(|i| i.resource.clone())
                .collect();
            if found.is_empty() {
                // The key holds RESOURCE.GROUP whether or not the CRD is in the backup.
                found.push(Resource {
                    group: group.into(),
                    resource: name.into(),
                });
            }
        }
        // One name, several built-in groups (events, ingresses, deployments of extensions):
        // they share one etcd prefix, whose objects carry the group kube-apiserver prefers.
        found.sort_by(|a, b| group_rank(&a.group).cmp(&group_rank(&b.group)));
        if found.len() > 1 && is_builtin_group(&found[0].group) {
            found.truncate(1);
        }
        found
    }
}

/// Whether a key's resource is one of those asked for. Built-in resources of one plural name
/// share one etcd prefix whatever their group (events and events.k8s.io events, apps and
/// extensions deployments), so for them the name decides.
pub fn selects(wanted: &[Resource], r: &Resource) -> bool {
    wanted.iter().any(|w| {
        w == r
            || (w.resource == r.resource
                && is_builtin_group(&w.group)
                && is_builtin_group(&r.group))
    })
}

/// The etcd prefixes to look under: the one asked for, else every known one.
pub fn etcd_prefixes(asked: Option<&str>) -> Vec<&str> {
    asked.map_or(KNOWN_PREFIXES.to_vec(), |p| vec![p])
}

/// Where the CRDs are under the etcd prefix `p`.
pub fn crd_prefix(p: &str) -> String {
    format!("{p}/apiextensions.k8s.io/customresourcedefinitions/")
}

/// Where the objects of `resources` can be under each of `etcd_prefixes`, as key prefixes
/// ending in `/`; with the CRDs (they name custom resources) and the namespaces (every cluster
/// has some, so they tell which etcd prefix it uses even when nothing else matches). Generous
/// on purpose (a resource's plural name, its `<group>/<plural>` form and its special path all
/// go in) so that no object of theirs is missed; callers still select each key by
/// [`parse_key`]. Pure.
pub fn key_prefixes(etcd_prefixes: &[&str], resources: &[Resource]) -> Vec<String> {
    let mut out = Vec::new();
    for p in etcd_prefixes {
        out.push(crd_prefix(p));
        out.push(format!("{p}/namespaces/"));
        for r in resources {
            out.push(format!("{p}/{}/", r.resource));
            if !r.group.is_empty() {
                out.push(format!("{p}/{}/{}/", r.group, r.resource));
            }
            for (path, _, res) in SPECIAL_PREFIXES {
                if *res == r.resource {
                    out.push(format!("{p}/{path}/"));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The etcd prefix a key list uses, from the first key that starts with a known one.
pub fn detect_prefix<'a>(mut keys: impl Iterator<Item = &'a [u8]>) -> Option<&'static str> {
    keys.find_map(|k| {
        KNOWN_PREFIXES
            .iter()
            .find(|p| k.starts_with(p.as_bytes()) && k.get(p.len()) == Some(&b'/'))
            .copied()
    })
}

/// Parse a key under `prefix` (e.g. `/registry`). `None` for keys that hold no API object
/// (compaction marker, masterleases, allocator ranges) or are outside the prefix.
pub fn parse_key(catalog: &Catalog, prefix: &str, key: &[u8]) -> Option<ObjectKey> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(prefix)?.strip_prefix('/')?;
    let segs: Vec<&str> = rest.split('/').collect();
    if segs.iter().any(|s| s.is_empty()) || NOT_OBJECTS.contains(&segs[0]) {
        return None;
    }
    let (resource, tail): (Resource, &[&str]) = if let Some((path, group, res)) = SPECIAL_PREFIXES
        .iter()
        .find(|(p, _, _)| rest.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
    {
        let n = path.split('/').count();
        (
            Resource {
                group: (*group).into(),
                resource: (*res).into(),
            },
            &segs[n..],
        )
    } else if segs[0].contains('.') {
        // CRDs, custom resources and APIServices: <group>/<resource>/...
        if segs.len() < 3 {
            return None;
        }
        (
            Resource {
                group: segs[0].into(),
                resource: segs[1].into(),
            },
            &segs[2..],
        )
    } else {
        (
            Resource {
                group: catalog
                    .prefix_groups
                    .get(segs[0])
                    .cloned()
                    .unwrap_or_default(),
                resource: segs[0].into(),
            },
            &segs[1..],
        )
    };
    let namespaced = catalog
        .get(&resource)
        .map_or(tail.len() == 2, |i| i.namespaced);
    match (tail, namespaced) {
        ([ns, name], true) => Some(ObjectKey {
            resource,
            namespace: (*ns).into(),
            name: (*name).into(),
        }),
        ([name], false) => Some(ObjectKey {
            resource,
            namespace: String::new(),
            name: (*name).into(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::schema::schema;

    fn key(k: &str) -> Option<ObjectKey> {
        parse_key(&Catalog::builtin(schema()), "/registry", k.as_bytes())
    }

    fn res(g: &str, r: &str) -> Resource {
        Resource {
            group: g.into(),
            resource: r.into(),
        }
    }

    #[test]
    fn keys_name_their_objects() {
        let k = key("/registry/configmaps/ns1/cm1").unwrap();
        assert_eq!(
            (k.resource, k.namespace.as_str(), k.name.as_str()),
            (res("", "configmaps"), "ns1", "cm1")
        );
        assert_eq!(
            key("/registry/services/specs/ns/s").unwrap().resource,
            res("", "services")
        );
        assert_eq!(
            key("/registry/services/endpoints/ns/s").unwrap().resource,
            res("", "endpoints")
        );
        assert_eq!(
            key("/registry/minions/node1").unwrap().resource,
            res("", "nodes")
        );
        assert_eq!(
            key("/registry/controllers/ns/rc").unwrap().resource,
            res("", "replicationcontrollers")
        );
        assert_eq!(
            key("/registry/ingress/ns/i").unwrap().resource,
            res("networking.k8s.io", "ingresses")
        );
        assert_eq!(
            key("/registry/deployments/ns/d").unwrap().resource,
            res("apps", "deployments")
        );
        assert_eq!(
            key("/registry/leases/kube-node-lease/n").unwrap().resource,
            res("coordination.k8s.io", "leases")
        );
        assert_eq!(
            key("/registry/events/ns/e").unwrap().resource,
            res("", "events")
        );
        let ns = key("/registry/namespaces/default").unwrap();
        assert_eq!((ns.namespace.as_str(), ns.name.as_str()), ("", "default"));
        let cr = key("/registry/example.com/widgets/ns/w1").unwrap();
        assert_eq!(
            (cr.resource, cr.namespace.as_str()),
            (res("example.com", "widgets"), "ns")
        );
        let crd =
            key("/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com")
                .unwrap();
        assert_eq!(crd.namespace, "");
        for not in [
            "compact_rev_key",
            "/registry/masterleases/10.0.0.1",
            "/registry/ranges/serviceips",
            "/other/x",
            "/registry/configmaps/a/b/c",
            "/registry//x",
        ] {
            assert_eq!(key(not), None, "{not}");
        }
    }

    #[test]
    fn key_prefixes_cover_every_key_of_their_resources() {
        let c = Catalog::builtin(schema());
        for k in [
            "/registry/configmaps/ns1/cm1",
            "/registry/services/specs/ns/s",
            "/registry/services/endpoints/ns/s",
            "/registry/minions/node1",
            "/registry/controllers/ns/rc",
            "/registry/ingress/ns/i",
            "/registry/deployments/ns/d",
            "/registry/leases/kube-node-lease/n",
            "/registry/events/ns/e",
            "/registry/namespaces/default",
            "/registry/example.com/widgets/ns/w1",
            "/registry/apiregistration.k8s.io/apiservices/v1.apps",
            "/kubernetes.io/configmaps/ns1/cm1",
        ] {
            let r = key(k).or_else(|| parse_key(&c, "/kubernetes.io", k.as_bytes()));
            let r = r.unwrap_or_else(|| panic!("{k} parses")).resource;
            let prefixes = key_prefixes(KNOWN_PREFIXES, std::slice::from_ref(&r));
            assert!(
                prefixes.iter().any(|p| k.starts_with(p)),
                "{k}: {prefixes:?}"
            );
            // What kubectl's names for it resolve to covers it too.
            let resolved = c.resolve(&format!("{}.{}", r.resource, r.group));
            let resolved = if r.group.is_empty() {
                c.resolve(&r.resource)
            } else {
                resolved
            };
            let prefixes = key_prefixes(KNOWN_PREFIXES, &resolved);
            assert!(
                prefixes.iter().any(|p| k.starts_with(p)),
                "{k}: {prefixes:?}"
            );
        }
        // The CRDs and namespaces are always read.
        let p = key_prefixes(&["/registry"], &[]);
        assert_eq!(
            p,
            vec![
                "/registry/apiextensions.k8s.io/customresourcedefinitions/",
                "/registry/namespaces/"
            ]
        );
    }

    #[test]
    fn kinds_resolve_like_kubectl() {
        let c = Catalog::builtin(schema());
        for k in ["cm", "configmap", "configmaps", "ConfigMap"] {
            assert_eq!(c.resolve(k), vec![res("", "configmaps")], "{k}");
        }
        for k in [
            "deploy",
            "Deployment",
            "deployments.apps",
            "deployment.apps",
        ] {
            assert_eq!(c.resolve(k), vec![res("apps", "deployments")], "{k}");
        }
        assert_eq!(c.resolve("events"), vec![res("", "events")]);
        assert_eq!(
            c.resolve("widgets.example.com"),
            vec![res("example.com", "widgets")]
        );
        assert!(c.resolve("nosuchkind").is_empty());
        let mut c = c;
        c.add_crd(&serde_json::json!({"spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]}}}));
        for k in ["wd", "widget", "Widget", "widgets"] {
            assert_eq!(c.resolve(k), vec![res("example.com", "widgets")], "{k}");
        }
    }

    #[test]
    fn cohabiting_builtins_are_selected_by_name() {
        let c = Catalog::builtin(schema());
        let ev = key("/registry/events/ns/e").unwrap().resource;
        assert!(selects(&c.resolve("events.events.k8s.io"), &ev));
        assert!(selects(&c.resolve("ev"), &ev));
        let w = res("example.com", "events");
        assert!(
            !selects(&[w], &ev),
            "a custom resource named events is another thing"
        );
    }

    #[test]
    fn prefix_is_detected() {
        let keys: Vec<&[u8]> = vec![b"compact_rev_key", b"/kubernetes.io/configmaps/a/b"];
        assert_eq!(detect_prefix(keys.into_iter()), Some("/kubernetes.io"));
    }
}
