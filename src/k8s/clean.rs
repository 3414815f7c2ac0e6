//! Apply-ready objects: what `kubectl apply` should get back, without the fields the apiserver
//! and controllers set. Rules follow Velero's restore (`resetMetadata` and its item actions) and
//! kubectl-neat; each removal is named so users see why a field is gone.

use serde_json::{Map, Value};

/// Metadata the apiserver sets or that would tie the object to objects that no longer exist.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "selfLink",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "ownerReferences",
];

/// Annotations controllers write.
const SERVER_ANNOTATIONS: &[&str] = &[
    "deployment.kubernetes.io/revision",
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.kubernetes.io/selected-node",
    "kubernetes.io/service-account.uid",
];

/// Labels the Job controller derives from the Job's uid.
const JOB_UID_LABELS: &[&str] = &["controller-uid", "batch.kubernetes.io/controller-uid"];

/// `kubectl get -o json`: the object as the apiserver serves it, with `resourceVersion` from the
/// etcd mod revision (the apiserver blanks it on write and fills it on read).
pub fn as_served(obj: &mut Map<String, Value>, mod_revision: i64) {
    if let Some(Value::Object(md)) = obj.get_mut("metadata") {
        md.insert(
            "resourceVersion".into(),
            Value::String(mod_revision.to_string()),
        );
    }
}

/// Strip `obj` (Kubernetes JSON) to what `kubectl apply` needs; returns what was removed, as
/// dotted paths, and warnings.
pub fn apply_ready(obj: &mut Map<String, Value>) -> (Vec<String>, Vec<String>) {
    let mut removed = Vec::new();
    let mut warnings = Vec::new();
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(Value::Object(md)) = obj.get_mut("metadata") {
        for f in SERVER_METADATA {
            if md.remove(*f).is_some() {
                removed.push(format!("metadata.{f}"));
            }
        }
        if md.contains_key("name") && md.remove("generateName").is_some() {
            removed.push("metadata.generateName".into());
        }
        if let Some(Value::Object(a)) = md.get_mut("annotations") {
            for an in SERVER_ANNOTATIONS {
                if a.remove(*an).is_some() {
                    removed.push(format!("metadata.annotations[{an}]"));
                }
            }
            if a.is_empty() {
                md.remove("annotations");
            }
        }
    }
    if obj.remove("status").is_some() {
        removed.push("status".into());
    }
    let last_applied = obj
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get("kubectl.kubernetes.io/last-applied-configuration"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let spec = match obj.get_mut("spec") {
        Some(Value::Object(s)) => s,
        _ => return (removed, warnings),
    };
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Service") => {
            let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
            if !headless {
                for f in ["clusterIP", "clusterIPs"] {
                    if spec.remove(f).is_some() {
                        removed.push(format!("spec.{f}"));
                    }
                }
            }
            // Allocated ports go, unless the user's own last-applied configuration set them.
            if !last_applied.contains("\"nodePort\"")
                && let Some(Value::Array(ports)) = spec.get_mut("ports")
            {
                for (i, p) in ports.iter_mut().enumerate() {
                    if let Value::Object(p) = p
                        && p.remove("nodePort").is_some()
                    {
                        removed.push(format!("spec.ports[{i}].nodePort"));
                    }
                }
            }
            if !last_applied.contains("healthCheckNodePort")
                && spec.remove("healthCheckNodePort").is_some()
            {
                removed.push("spec.healthCheckNodePort".into());
            }
        }
        ("v1", "Pod") => clean_pod_spec(spec, "spec", &mut removed),
        ("batch/v1", "Job") => {
            let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
            if !manual {
                if spec.remove("selector").is_some() {
                    removed.push("spec.selector".into());
                }
                if let Some(Value::Object(labels)) = spec
                    .get_mut("template")
                    .and_then(|t| t.get_mut("metadata"))
                    .and_then(|m| m.get_mut("labels"))
                {
                    for l in JOB_UID_LABELS {
                        if labels.remove(*l).is_some() {
                            removed.push(format!("spec.template.metadata.labels[{l}]"));
                        }
                    }
                }
            }
        }
        ("v1", "PersistentVolumeClaim") if spec.contains_key("volumeName") => {
            warnings.push(
                "spec.volumeName kept: the claim binds only to that PersistentVolume, which must \
                 exist and be Available"
                    .into(),
            );
        }
        ("v1", "PersistentVolume") => {
            if let Some(Value::Object(c)) = spec.get_mut("claimRef") {
                for f in ["uid", "resourceVersion"] {
                    if c.remove(f).is_some() {
                        removed.push(format!("spec.claimRef.{f}"));
                    }
                }
            }
        }
        _ => {}
    }
    if kind == "CustomResourceDefinition" && api_version == "apiextensions.k8s.io/v1beta1" {
        crd_v1beta1_to_v1(obj, &mut warnings);
    }
    if let Some(Value::Object(md)) = obj.get_mut("metadata")
        && let Some(Value::Object(l)) = md.get("labels")
        && l.is_empty()
    {
        md.remove("labels");
    }
    (removed, warnings)
}

/// Pod specs: the node and priority the scheduler set, the deprecated duplicate of the service
/// account name, and the token volumes the admission plugin injected.
fn clean_pod_spec(spec: &mut Map<String, Value>, at: &str, removed: &mut Vec<String>) {
    for f in ["nodeName", "priority", "serviceAccount"] {
        if spec.remove(f).is_some() {
            removed.push(format!("{at}.{f}"));
        }
    }
    let mut dropped = Vec::new();
    if let Some(Value::Array(vols)) = spec.get_mut("volumes") {
        vols.retain(|v| {
            let name = v["name"].as_str().unwrap_or_default();
            let injected = name.starts_with("kube-api-access-")
                || (name.contains("-token-") && v.get("secret").is_some());
            if injected {
                dropped.push(name.to_string());
            }
            !injected
        });
        if vols.is_empty() {
            spec.remove("volumes");
        }
    }
    for name in &dropped {
        removed.push(format!("{at}.volumes[{name}]"));
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut() {
                if let Some(Value::Array(ms)) = c.get_mut("volumeMounts") {
                    ms.retain(|m| !dropped.iter().any(|d| m["name"] == d.as_str()));
                    if ms.is_empty()
                        && let Value::Object(c) = c
                    {
                        c.remove("volumeMounts");
                    }
                }
            }
        }
    }
}

/// kube-apiserver stores CRDs as apiextensions.k8s.io/v1beta1 (kubernetes/kubernetes#82292), which
/// has not been served since 1.22. Move the fields v1 keeps per version into each version, as
/// the apiextensions v1beta1→v1 conversion does.
fn crd_v1beta1_to_v1(obj: &mut Map<String, Value>, warnings: &mut Vec<String>) {
    obj.insert(
        "apiVersion".into(),
        Value::String("apiextensions.k8s.io/v1".into()),
    );
    let Some(Value::Object(spec)) = obj.get_mut("spec") else {
        return;
    };
    let validation = spec.remove("validation");
    let subresources = spec.remove("subresources");
    let mut columns = spec.remove("additionalPrinterColumns");
    if let Some(Value::Array(cols)) = &mut columns {
        for c in cols.iter_mut() {
            if let Value::Object(c) = c
                && let Some(p) = c.remove("JSONPath")
            {
                c.insert("jsonPath".into(), p);
            }
        }
    }
    let single = spec.remove("version");
    if !matches!(spec.get("versions"), Some(Value::Array(v)) if !v.is_empty()) {
        let name = single.unwrap_or_else(|| Value::String("v1".into()));
        spec.insert(
            "versions".into(),
            serde_json::json!([{"name": name, "served": true, "storage": true}]),
        );
    }
    if let Some(Value::Array(versions)) = spec.get_mut("versions") {
        for v in versions.iter_mut() {
            let Value::Object(v) = v else { continue };
            for (field, top) in [
                ("schema", &validation),
                ("subresources", &subresources),
                ("additionalPrinterColumns", &columns),
            ] {
                if let Some(top) = top
                    && !v.contains_key(field)
                {
                    v.insert(field.into(), top.clone());
                }
            }
            if let Some(Value::Array(cols)) = v.get_mut("additionalPrinterColumns") {
                for c in cols.iter_mut() {
                    if let Value::Object(c) = c
                        && let Some(p) = c.remove("JSONPath")
                    {
                        c.insert("jsonPath".into(), p);
                    }
                }
            }
        }
    }
    if let Some(Value::Object(conv)) = spec.get_mut("conversion") {
        let cc = conv.remove("webhookClientConfig");
        let rv = conv.remove("conversionReviewVersions");
        if cc.is_some() {
            let mut hook = Map::new();
            if let Some(cc) = cc {
                hook.insert("clientConfig".into(), cc);
            }
            hook.insert(
                "conversionReviewVersions".into(),
                rv.unwrap_or_else(|| serde_json::json!(["v1beta1"])),
            );
            conv.insert("webhook".into(), Value::Object(hook));
        }
    }
    if spec.get("preserveUnknownFields") == Some(&Value::Bool(true)) {
        warnings.push(
            "spec.preserveUnknownFields is true, which apiextensions.k8s.io/v1 only accepts \
             without structural schemas; review before applying"
                .into(),
        );
    }
    warnings.push("converted from the stored apiextensions.k8s.io/v1beta1 to v1".into());
}

/// A warning when a built-in object is stored in a pre-release version (left from an upgrade
/// without storage migration, or a kind whose storage version is still beta): the cluster it is
/// applied to may not serve that version. Never converted: only the apiserver knows how.
pub fn stored_version_warning(obj: &Map<String, Value>) -> Option<String> {
    let av = obj.get("apiVersion")?.as_str()?;
    let (group, version) = av.rsplit_once('/').unwrap_or(("", av));
    let builtin = !group.contains('.') || group.ends_with(".k8s.io");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    ((version.contains("alpha") || version.contains("beta"))
        && builtin
        && kind != "CustomResourceDefinition")
        .then(|| {
            format!(
                "stored as {av}, a pre-release version the target cluster may not serve; check \
                 `kubectl api-versions` there before applying"
            )
        })
}

/// `Kind/name` of the controller that owns `obj`, if any.
pub fn controller_owner(obj: &Map<String, Value>) -> Option<String> {
    obj.get("metadata")?
        .get("ownerReferences")?
        .as_array()?
        .iter()
        .find(|o| o["controller"] == Value::Bool(true))
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["name"].as_str().unwrap_or("?")
            )
        })
}

/// Position in a restore: what others depend on comes first (namespaces, CRDs, identities and
/// RBAC, configuration, storage, services, workloads), custom resources last.
pub fn apply_rank(group: &str, resource: &str) -> u8 {
    match (group, resource) {
        ("", "namespaces") => 0,
        ("apiextensions.k8s.io", "customresourcedefinitions") => 1,
        ("", "serviceaccounts") => 2,
        ("rbac.authorization.k8s.io", "clusterroles" | "roles") => 3,
        ("rbac.authorization.k8s.io", "clusterrolebindings" | "rolebindings") => 4,
        ("", "configmaps" | "secrets" | "limitranges" | "resourcequotas") => 5,
        ("storage.k8s.io", "storageclasses") | ("scheduling.k8s.io", "priorityclasses") => 5,
        ("", "persistentvolumes") => 6,
        ("", "persistentvolumeclaims") => 7,
        ("", "services") => 8,
        ("apps", _) | ("batch", _) | ("", "replicationcontrollers") => 9,
        ("", "pods") => 10,
        (g, _) if !g.contains('.') || g.ends_with(".k8s.io") => 11,
        _ => 12,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn server_fields_go_and_user_fields_stay() {
        let mut o = obj(json!({"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": "web", "namespace": "a", "uid": "u", "resourceVersion": "9",
                "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"app": "web"},
                "managedFields": [{}], "ownerReferences": [{"kind": "X"}]},
            "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "type": "NodePort",
                "ports": [{"port": 80, "nodePort": 30080}]},
            "status": {"loadBalancer": {}}}));
        let (removed, _) = apply_ready(&mut o);
        assert_eq!(
            Value::Object(o),
            json!({"kind": "Service", "apiVersion": "v1",
                "metadata": {"name": "web", "namespace": "a", "labels": {"app": "web"}},
                "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
        );
        assert!(removed.contains(&"spec.clusterIP".to_string()));
        let mut headless = obj(
            json!({"kind": "Service", "apiVersion": "v1", "metadata": {},
            "spec": {"clusterIP": "None"}}),
        );
        apply_ready(&mut headless);
        assert_eq!(headless["spec"]["clusterIP"], "None");
    }

    #[test]
    fn pods_lose_scheduler_and_token_fields() {
        let mut o = obj(
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"},
            "spec": {"nodeName": "n1", "serviceAccount": "default", "serviceAccountName": "default",
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "kube-api-access-x1", "projected": {}}],
                "containers": [{"name": "c", "volumeMounts": [{"name": "data", "mountPath": "/d"},
                    {"name": "kube-api-access-x1", "mountPath": "/var/run/secrets"}]}]}}),
        );
        apply_ready(&mut o);
        assert_eq!(
            o["spec"],
            json!({"serviceAccountName": "default", "volumes": [{"name": "data", "emptyDir": {}}],
                "containers": [{"name": "c", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]})
        );
    }

    #[test]
    fn stored_v1beta1_crds_become_v1() {
        let mut o = obj(json!({"kind": "CustomResourceDefinition",
            "apiVersion": "apiextensions.k8s.io/v1beta1", "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "version": "v1", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "validation": {"openAPIV3Schema": {"type": "object"}},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Age", "type": "date", "JSONPath": ".metadata.creationTimestamp"}],
                "versions": [{"name": "v1", "served": true, "storage": true}]}}));
        apply_ready(&mut o);
        assert_eq!(o["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(
            o["spec"]["versions"],
            json!([{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object"}}, "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]}])
        );
        assert!(o["spec"].get("validation").is_none() && o["spec"].get("version").is_none());
    }

    #[test]
    fn pre_release_storage_versions_are_named() {
        let w = |av: &str, kind: &str| {
            stored_version_warning(&obj(json!({"apiVersion": av, "kind": kind})))
        };
        assert!(w("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema").is_some());
        assert!(w("extensions/v1beta1", "Ingress").is_some());
        assert!(w("apps/v1", "Deployment").is_none());
        assert!(w("example.com/v1beta1", "Widget").is_none());
        assert!(w("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition").is_none());
    }

    #[test]
    fn controllers_are_found() {
        let o = obj(json!({"metadata": {"ownerReferences": [
            {"kind": "Deployment", "name": "web", "controller": false},
            {"kind": "ReplicaSet", "name": "web-1", "controller": true}]}}));
        assert_eq!(controller_owner(&o).as_deref(), Some("ReplicaSet/web-1"));
    }
}
