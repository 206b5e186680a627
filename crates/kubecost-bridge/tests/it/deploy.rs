//! The deployment files under `deploy/` (Kubernetes manifests, PrometheusRule, Grafana
//! dashboard), the `Dockerfile` and its dependency skeleton: they parse, the config they ship
//! passes the real loader, the Deployment is locked down, RBAC is read-only metadata only, and
//! the alerts keep the seed's thresholds. `promtool` and `kubectl` (for `kubectl kustomize`)
//! are used when installed; without them those checks say they were skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::{bin, run_ok};

const NS: &str = "kubecost-bridge";
const SECRET_DIR: &str = "/var/run/secrets/kubecost-bridge/";
const DATA_DIR: &str = "/var/lib/kubecost-bridge";
const CONFIG_DIR: &str = "/etc/kubecost-bridge";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy() -> PathBuf {
    root().join("deploy")
}

fn files_with(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_with(&p, exts, out);
        } else if p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| exts.contains(&x))
        {
            out.push(p);
        }
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    files_with(dir, &["yaml", "yml"], &mut out);
    out
}

/// Every non-empty document of a YAML file.
fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for (i, d) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let v = Value::deserialize(d)
            .unwrap_or_else(|e| panic!("{} document {i}: not YAML: {e}", path.display()));
        if !v.is_null() {
            out.push(v);
        }
    }
    out
}

/// `v` at a dotted path; numeric segments index sequences.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path.split('.') {
        cur = match seg.parse::<usize>() {
            Ok(i) if cur.is_sequence() => cur.get(i)?,
            _ => cur.get(seg)?,
        };
    }
    Some(cur)
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {path} in {v:?}"))
}

fn seq<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_sequence)
        .map(|s| s.as_slice())
        .unwrap_or(&[])
}

fn strs(v: &Value, path: &str) -> BTreeSet<String> {
    seq(v, path)
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn is_kustomize(kind: &str) -> bool {
    kind == "Kustomization" || kind == "Component"
}

/// Every Kubernetes object under deploy/, with the file it is in.
fn objects() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for f in yaml_files(&deploy()) {
        for d in docs(&f) {
            let kind = d.get("kind").and_then(Value::as_str).unwrap_or("");
            if !kind.is_empty() && !is_kustomize(kind) {
                out.push((f.clone(), d));
            }
        }
    }
    out
}

fn object(kind: &str, name: &str) -> Value {
    let found: Vec<Value> = objects()
        .into_iter()
        .map(|(_, o)| o)
        .filter(|o| s(o, "kind") == kind && s(o, "metadata.name") == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} {name} under deploy/");
    found.into_iter().next().unwrap()
}

fn deployment() -> Value {
    object("Deployment", "kubecost-bridge")
}

fn container(dep: &Value) -> &Value {
    let cs = seq(dep, "spec.template.spec.containers");
    assert_eq!(cs.len(), 1, "one container");
    &cs[0]
}

/// The example Secret's keys and values.
fn secret_data() -> BTreeMap<String, String> {
    let f = deploy().join("kubernetes/secret.example.yaml");
    let d = docs(&f);
    assert_eq!(s(&d[0], "kind"), "Secret");
    assert_eq!(s(&d[0], "metadata.name"), "kubecost-bridge");
    let m = at(&d[0], "stringData").and_then(Value::as_mapping).unwrap();
    m.iter()
        .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
        .collect()
}

fn configmap_config() -> String {
    let cm = object("ConfigMap", "kubecost-bridge-config");
    at(&cm, "data")
        .and_then(|d| d.get("config.yaml"))
        .and_then(Value::as_str)
        .expect("the ConfigMap has data.config.yaml")
        .to_string()
}

fn available(tool: &str) -> bool {
    Command::new(tool)
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success())
}

// ----- (a) YAML and object shape ------------------------------------------------------------

#[test]
fn every_yaml_file_parses_and_every_object_has_api_version_kind_and_name() {
    let files = yaml_files(&deploy());
    assert!(files.len() >= 18, "only {} YAML files", files.len());
    let mut seen = BTreeSet::new();
    for f in &files {
        let ds = docs(f);
        assert!(!ds.is_empty(), "{}: empty", f.display());
        let under_k8s = f.starts_with(deploy().join("kubernetes"));
        for d in ds {
            let kind = d.get("kind").and_then(Value::as_str);
            let Some(kind) = kind else {
                assert!(
                    !under_k8s && d.get("apiVersion").is_none(),
                    "{}: a document without kind",
                    f.display()
                );
                continue;
            };
            let api = s(&d, "apiVersion");
            if is_kustomize(kind) {
                assert!(
                    api.starts_with("kustomize.config.k8s.io/"),
                    "{}",
                    f.display()
                );
                continue;
            }
            assert!(!api.is_empty(), "{}: apiVersion", f.display());
            let name = at(&d, "metadata.name")
                .and_then(Value::as_str)
                .unwrap_or("");
            assert!(
                !name.is_empty(),
                "{}: {kind} without metadata.name",
                f.display()
            );
            let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
            if !cluster_scoped.contains(&kind) {
                assert_eq!(
                    at(&d, "metadata.namespace").and_then(Value::as_str),
                    Some(NS),
                    "{}: {kind} {name} namespace",
                    f.display()
                );
            }
            assert!(
                seen.insert(format!("{kind}/{name}")),
                "{kind}/{name} defined twice"
            );
        }
    }
    for want in [
        "Namespace/kubecost-bridge",
        "ServiceAccount/kubecost-bridge",
        "Secret/kubecost-bridge",
        "ConfigMap/kubecost-bridge-config",
        "PersistentVolumeClaim/kubecost-bridge-data",
        "Deployment/kubecost-bridge",
        "Service/kubecost-bridge",
        "NetworkPolicy/kubecost-bridge",
        "ServiceMonitor/kubecost-bridge",
        "PrometheusRule/kubecost-bridge",
        "ClusterRole/kubecost-bridge-metadata",
        "ClusterRoleBinding/kubecost-bridge-metadata",
    ] {
        assert!(seen.contains(want), "missing {want}; have {seen:?}");
    }
}

/// The manifest files a kustomization directory brings in, recursively.
fn kustomize_files(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    let k = dir.join("kustomization.yaml");
    let d = &docs(&k)[0];
    for key in ["resources", "components"] {
        for r in seq(d, key) {
            let p = dir.join(r.as_str().unwrap());
            assert!(
                p.exists(),
                "{}: {key} entry {} missing",
                k.display(),
                p.display()
            );
            let p = p.canonicalize().unwrap();
            if p.is_dir() {
                assert!(
                    p.join("kustomization.yaml").exists(),
                    "{}: directory without kustomization.yaml",
                    p.display()
                );
                kustomize_files(&p, out);
            } else {
                out.insert(p);
            }
        }
    }
    for p in seq(d, "patches") {
        let kind = s(p, "target.kind");
        let name = s(p, "target.name");
        object(kind, name);
    }
}

#[test]
fn kustomizations_list_existing_files_and_every_manifest_is_installed_by_one() {
    let k8s = deploy().join("kubernetes");
    let mut default = BTreeSet::new();
    kustomize_files(&k8s, &mut default);
    let mut with_metadata = BTreeSet::new();
    kustomize_files(&k8s.join("overlays/with-metadata"), &mut with_metadata);
    let mut base = BTreeSet::new();
    kustomize_files(&k8s.join("base"), &mut base);
    let mut rbac = BTreeSet::new();
    kustomize_files(&k8s.join("components/rbac-metadata"), &mut rbac);

    assert!(
        base.is_subset(&default),
        "the default install includes base"
    );
    let rules = deploy()
        .join("prometheus/kubecost-bridge-rules.yaml")
        .canonicalize()
        .unwrap();
    assert!(
        default.contains(&rules),
        "the default install has the PrometheusRule"
    );
    // The overlay is the default install plus the metadata component, nothing else.
    let extra: BTreeSet<_> = with_metadata.difference(&default).cloned().collect();
    assert_eq!(extra, rbac, "with-metadata = default + rbac-metadata");
    assert!(default.is_subset(&with_metadata));
    assert!(
        rbac.is_disjoint(&default),
        "no RBAC without metadata enrichment"
    );

    // Every manifest is installed by some kustomization, except the example Secret, which
    // never is (re-applying must not reset real credentials).
    let secret = k8s.join("secret.example.yaml").canonicalize().unwrap();
    assert!(!with_metadata.contains(&secret));
    for f in yaml_files(&k8s) {
        let f = f.canonicalize().unwrap();
        if f.file_name().is_some_and(|n| n == "kustomization.yaml") || f == secret {
            continue;
        }
        assert!(
            with_metadata.contains(&f),
            "{} is in no kustomization",
            f.display()
        );
    }
}

// ----- (b) the shipped config passes the real loader -----------------------------------------

/// Every string in a YAML value.
fn all_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(x) => out.push(x.clone()),
        Value::Sequence(xs) => xs.iter().for_each(|x| all_strings(x, out)),
        Value::Mapping(m) => m.values().for_each(|x| all_strings(x, out)),
        _ => {}
    }
}

/// The Deployment's environment, with secret references resolved from the example Secret.
fn deployment_env() -> Vec<(String, String)> {
    let secret = secret_data();
    seq(&deployment(), "spec.template.spec.containers.0.env")
        .iter()
        .map(|e| {
            let name = s(e, "name").to_string();
            let value = match at(e, "value") {
                Some(v) => v.as_str().unwrap().to_string(),
                None => {
                    assert_eq!(s(e, "valueFrom.secretKeyRef.name"), "kubecost-bridge");
                    let key = s(e, "valueFrom.secretKeyRef.key");
                    secret
                        .get(key)
                        .unwrap_or_else(|| panic!("env {name}: no key {key} in the Secret"))
                        .clone()
                }
            };
            (name, value)
        })
        .collect()
}

#[test]
fn the_configmap_config_passes_check_config_with_the_deployments_secrets_and_env() {
    let text = configmap_config();
    let cfg: Value = serde_yaml_ng::from_str(&text).unwrap();
    let dep = deployment();
    let c = container(&dep);

    // The file is where `run --config` looks for it: the ConfigMap's key in the config mount.
    let args: Vec<&str> = seq(c, "args").iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(
        args,
        ["run", "--config", "/etc/kubecost-bridge/config.yaml"]
    );
    let mounts = seq(c, "volumeMounts");
    let volumes = seq(&dep, "spec.template.spec.volumes");
    let volume_at = |path: &str| -> &Value {
        let m = mounts
            .iter()
            .find(|m| s(m, "mountPath") == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        volumes
            .iter()
            .find(|v| s(v, "name") == s(m, "name"))
            .unwrap()
    };
    assert_eq!(
        s(volume_at(CONFIG_DIR), "configMap.name"),
        "kubecost-bridge-config"
    );
    let secret_mount = SECRET_DIR.trim_end_matches('/');
    assert_eq!(
        s(volume_at(secret_mount), "secret.secretName"),
        "kubecost-bridge"
    );
    assert_eq!(
        s(volume_at(DATA_DIR), "persistentVolumeClaim.claimName"),
        "kubecost-bridge-data"
    );

    // Every secret file the config names is a key of the Secret; the store is on the volume.
    let secret = secret_data();
    let mut strings = Vec::new();
    all_strings(&cfg, &mut strings);
    let secret_files: Vec<&str> = strings
        .iter()
        .filter_map(|x| x.strip_prefix(SECRET_DIR))
        .collect();
    assert!(!secret_files.is_empty(), "the config reads a secret file");
    for f in &secret_files {
        assert!(
            secret.contains_key(*f),
            "config names {f}, not a key of the Secret"
        );
    }
    assert!(
        s(&cfg, "cloudtuner.storage.sqlite").starts_with(&format!("{DATA_DIR}/")),
        "the SQLite store lives on the data volume"
    );
    // Every *_env secret the config names is set by the Deployment.
    let env = deployment_env();
    if let Some(auth) = at(&cfg, "kubecost.auth") {
        for k in ["token_env", "password_env"] {
            if let Some(name) = auth.get(k).and_then(Value::as_str) {
                assert!(env.iter().any(|(n, _)| n == name), "{name} not in the env");
            }
        }
    }
    // The API listens on the container's port, on all interfaces.
    let listen = s(&cfg, "api.listen");
    let port = at(c, "ports.0.containerPort")
        .and_then(Value::as_u64)
        .unwrap();
    assert_eq!(listen, format!("0.0.0.0:{port}"));

    // Run the real loader on the file, relocated to a temp dir, with the Deployment's env.
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    for (k, v) in &secret {
        std::fs::write(secrets.join(k), format!("{v}\n")).unwrap();
    }
    let relocated = text
        .replace(SECRET_DIR, &format!("{}/", secrets.display()))
        .replace(DATA_DIR, &data.display().to_string());
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, &relocated).unwrap();
    let mut cmd = bin();
    for (k, _) in std::env::vars() {
        if k.starts_with("KUBECOST_BRIDGE") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env).args(["check-config", "--config"]).arg(&file);
    let out = run_ok(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok (1 cluster(s)"), "{stdout}");
    assert!(
        stdout.contains(&data.join("kubecost-bridge.db").display().to_string()),
        "{stdout}"
    );

    // The same loader refuses a key it does not know: the check above is not vacuous.
    std::fs::write(&file, format!("{relocated}\nnot_a_key: 1\n")).unwrap();
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_images_default_config_passes_check_config() {
    let f = deploy().join("docker/config.yaml");
    let cfg: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
    assert_eq!(s(&cfg, "api.listen"), "0.0.0.0:8080");
    assert!(s(&cfg, "cloudtuner.storage.sqlite").starts_with(&format!("{DATA_DIR}/")));
    let out = run_ok(bin().args(["check-config", "--config"]).arg(&f));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 cluster(s)"));
}

// ----- (c) the Deployment ------------------------------------------------------------------

#[test]
fn the_deployment_probes_runs_unprivileged_read_only_and_bounded() {
    let dep = deployment();
    let c = container(&dep);
    let pod = at(&dep, "spec.template.spec").unwrap();

    // One writer for the SQLite file, never two pods at once.
    assert_eq!(at(&dep, "spec.replicas").and_then(Value::as_u64), Some(1));
    assert_eq!(s(&dep, "spec.strategy.type"), "Recreate");

    // Probes on the container's one port.
    assert_eq!(
        at(c, "ports.0.containerPort").and_then(Value::as_u64),
        Some(8080)
    );
    let port_name = s(c, "ports.0.name");
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        assert_eq!(s(c, &format!("{probe}.httpGet.path")), path, "{probe}");
        let port = at(c, &format!("{probe}.httpGet.port")).unwrap();
        assert!(
            port.as_str() == Some(port_name) || port.as_u64() == Some(8080),
            "{probe} port {port:?}"
        );
    }

    // Non-root, read-only, no privileges.
    let t = |v: &Value, p: &str| at(v, p).and_then(Value::as_bool) == Some(true);
    let f = |v: &Value, p: &str| at(v, p).and_then(Value::as_bool) == Some(false);
    assert!(t(pod, "securityContext.runAsNonRoot"));
    assert_eq!(
        at(pod, "securityContext.runAsUser").and_then(Value::as_u64),
        Some(65532)
    );
    assert_eq!(
        s(pod, "securityContext.seccompProfile.type"),
        "RuntimeDefault"
    );
    assert!(t(c, "securityContext.runAsNonRoot"));
    assert!(t(c, "securityContext.readOnlyRootFilesystem"));
    assert!(f(c, "securityContext.allowPrivilegeEscalation"));
    assert_eq!(
        strs(c, "securityContext.capabilities.drop"),
        BTreeSet::from(["ALL".to_string()])
    );
    assert!(seq(c, "securityContext.capabilities.add").is_empty());
    assert!(!t(c, "securityContext.privileged"));
    assert!(
        f(pod, "automountServiceAccountToken"),
        "no API token without enrichment"
    );
    assert_eq!(s(pod, "serviceAccountName"), "kubecost-bridge");

    // Requests and limits for CPU and memory.
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            let v = at(c, &format!("resources.{kind}.{res}"));
            assert!(
                v.is_some_and(|v| v.as_str().is_some_and(|x| !x.is_empty()) || v.is_number()),
                "resources.{kind}.{res}"
            );
        }
    }
    assert_eq!(s(c, "resources.limits.memory"), "512Mi");

    // With a read-only root, every writable mount is a volume meant for it.
    let volumes = seq(pod, "volumes");
    for m in seq(c, "volumeMounts") {
        let v = volumes
            .iter()
            .find(|v| s(v, "name") == s(m, "name"))
            .unwrap();
        if at(m, "readOnly").and_then(Value::as_bool) != Some(true) {
            assert!(
                v.get("persistentVolumeClaim").is_some() || v.get("emptyDir").is_some(),
                "writable mount {} is {v:?}",
                s(m, "mountPath")
            );
        }
    }
    let writable: BTreeSet<&str> = seq(c, "volumeMounts")
        .iter()
        .filter(|m| at(m, "readOnly").and_then(Value::as_bool) != Some(true))
        .map(|m| s(m, "mountPath"))
        .collect();
    assert_eq!(writable, BTreeSet::from([DATA_DIR, "/tmp"]));

    // The image is named without a registry host, with the crate's version.
    let image = s(c, "image");
    assert_no_registry_host(image);
    assert_eq!(
        image,
        format!("kubecost-bridge:{}", env!("CARGO_PKG_VERSION"))
    );
}

fn assert_no_registry_host(image: &str) {
    let first = image.split('/').next().unwrap();
    let has_host =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    assert!(!has_host, "image {image} names a registry host");
}

// ----- (d) RBAC ----------------------------------------------------------------------------

#[test]
fn the_only_rbac_is_read_only_access_to_namespaces_pods_and_nodes() {
    let objs = objects();
    let rbac: Vec<&(PathBuf, Value)> = objs
        .iter()
        .filter(|(_, o)| s(o, "apiVersion").starts_with("rbac.authorization.k8s.io/"))
        .collect();
    let kinds: BTreeSet<&str> = rbac.iter().map(|(_, o)| s(o, "kind")).collect();
    assert_eq!(kinds, BTreeSet::from(["ClusterRole", "ClusterRoleBinding"]));
    assert_eq!(rbac.len(), 2, "one ClusterRole, one binding");
    let component = deploy().join("kubernetes/components/rbac-metadata");
    for (f, _) in &rbac {
        assert!(
            f.starts_with(&component),
            "{} outside rbac-metadata",
            f.display()
        );
    }

    let role = object("ClusterRole", "kubecost-bridge-metadata");
    let rules = seq(&role, "rules");
    assert!(!rules.is_empty());
    let mut resources = BTreeSet::new();
    for r in rules {
        assert_eq!(
            strs(r, "apiGroups"),
            BTreeSet::from([String::new()]),
            "core group only"
        );
        let verbs = strs(r, "verbs");
        assert!(
            verbs
                .iter()
                .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
            "verbs {verbs:?}"
        );
        assert!(r.get("nonResourceURLs").is_none() && r.get("resourceNames").is_none());
        resources.extend(strs(r, "resources"));
    }
    let want: BTreeSet<String> = ["namespaces", "pods", "nodes"].map(String::from).into();
    assert_eq!(resources, want);
    for r in rules {
        assert_eq!(strs(r, "verbs").len(), 3, "get, list and watch");
    }

    let binding = object("ClusterRoleBinding", "kubecost-bridge-metadata");
    assert_eq!(s(&binding, "roleRef.kind"), "ClusterRole");
    assert_eq!(s(&binding, "roleRef.name"), "kubecost-bridge-metadata");
    let subjects = seq(&binding, "subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(s(&subjects[0], "kind"), "ServiceAccount");
    assert_eq!(s(&subjects[0], "name"), "kubecost-bridge");
    assert_eq!(s(&subjects[0], "namespace"), NS);
}

// ----- Service, NetworkPolicy, ServiceMonitor ----------------------------------------------

fn ports(rules: &[Value]) -> BTreeSet<(u64, String)> {
    rules
        .iter()
        .flat_map(|r| seq(r, "ports").iter())
        .map(|p| {
            (
                at(p, "port").and_then(Value::as_u64).unwrap(),
                at(p, "protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn the_service_network_policy_and_service_monitor_fit_the_pod() {
    let dep = deployment();
    let pod_labels = at(&dep, "spec.template.metadata.labels").unwrap();
    let matches = |selector: &Value| {
        selector
            .as_mapping()
            .unwrap()
            .iter()
            .all(|(k, v)| pod_labels.get(k.as_str().unwrap()) == Some(v))
    };
    let svc = object("Service", "kubecost-bridge");
    assert!(matches(at(&svc, "spec.selector").unwrap()));
    assert_eq!(
        at(&svc, "spec.ports.0.port").and_then(Value::as_u64),
        Some(8080)
    );
    let port_name = s(&svc, "spec.ports.0.name");
    assert_eq!(
        s(&svc, "spec.ports.0.targetPort"),
        s(container(&dep), "ports.0.name")
    );

    let np = object("NetworkPolicy", "kubecost-bridge");
    assert!(matches(at(&np, "spec.podSelector.matchLabels").unwrap()));
    assert_eq!(
        strs(&np, "spec.policyTypes"),
        ["Ingress", "Egress"].map(String::from).into()
    );
    assert_eq!(
        ports(seq(&np, "spec.ingress")),
        BTreeSet::from([(8080, "TCP".into())])
    );
    let egress: BTreeSet<u64> = ports(seq(&np, "spec.egress"))
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(egress, BTreeSet::from([53, 9090, 8123, 8443, 8086]));
    assert!(
        ports(seq(&np, "spec.egress")).contains(&(53, "UDP".into())),
        "DNS over UDP"
    );
    // Every egress rule names its destination (no "anywhere on this port").
    for r in seq(&np, "spec.egress") {
        assert!(!seq(r, "to").is_empty(), "egress rule without `to`: {r:?}");
    }
    let kubecost_rule = seq(&np, "spec.egress")
        .iter()
        .find(|r| ports(std::slice::from_ref(*r)).iter().any(|p| p.0 == 9090))
        .unwrap();
    assert_eq!(
        at(kubecost_rule, "to.0.namespaceSelector.matchLabels")
            .and_then(|m| m.get("kubernetes.io/metadata.name"))
            .and_then(Value::as_str),
        Some("kubecost")
    );

    let sm = object("ServiceMonitor", "kubecost-bridge");
    assert_eq!(s(&sm, "apiVersion"), "monitoring.coreos.com/v1");
    assert!(matches(at(&sm, "spec.selector.matchLabels").unwrap()));
    assert_eq!(s(&sm, "spec.endpoints.0.port"), port_name);
    assert_eq!(s(&sm, "spec.endpoints.0.path"), "/metrics");
}

// ----- the metrics contract ----------------------------------------------------------------

/// The metric names deploy/prometheus/README.md promises (its table's first column).
fn contract_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(deploy().join("prometheus/README.md")).unwrap();
    let names: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("| `kubecost_bridge_"))
        .map(|rest| format!("kubecost_bridge_{}", rest.split('`').next().unwrap()))
        .collect();
    assert!(names.len() >= 12, "contract lists {names:?}");
    names
}

/// The `kubecost_bridge_*` metric names a PromQL expression reads (histogram suffixes
/// stripped).
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("kubecost_bridge_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suf| name.strip_suffix(suf).filter(|b| b.ends_with("_seconds")))
            .unwrap_or(name);
        out.insert(base.to_string());
        rest = &tail[end..];
    }
    out
}

// ----- (f) the PrometheusRule ----------------------------------------------------------------

fn rule_groups() -> Value {
    let pr = object("PrometheusRule", "kubecost-bridge");
    assert_eq!(s(&pr, "apiVersion"), "monitoring.coreos.com/v1");
    at(&pr, "spec").unwrap().clone()
}

/// The number an alert expression compares against (`... > N`).
fn threshold(expr: &str) -> f64 {
    let after = expr.rsplit('>').next().unwrap().trim();
    let num: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse()
        .unwrap_or_else(|_| panic!("no threshold after the last > in {expr}"))
}

#[test]
fn the_prometheus_rule_has_the_seeds_five_alerts_and_thresholds() {
    let spec = rule_groups();
    let mut alerts = BTreeMap::new();
    for g in seq(&spec, "groups") {
        for r in seq(g, "rules") {
            let name = s(r, "alert").to_string();
            assert!(
                alerts.insert(name.clone(), r.clone()).is_none(),
                "{name} twice"
            );
        }
    }
    let names: BTreeSet<&str> = alerts.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "KubecostBridgeExtractionFailureRate",
            "KubecostBridgeDataStale",
            "KubecostBridgeCostSpike",
            "KubecostBridgeStorageFull",
            "KubecostBridgeDown",
        ])
    );
    let expr = |n: &str| s(&alerts[n], "expr").to_string();
    let failure = expr("KubecostBridgeExtractionFailureRate");
    assert_eq!(threshold(&failure), 0.05);
    assert!(failure.contains("kubecost_bridge_extraction_runs_total{outcome=\"failure\"}"));
    let stale = expr("KubecostBridgeDataStale");
    assert_eq!(threshold(&stale), 14400.0, "4 h in seconds");
    assert!(stale.contains("kubecost_bridge_data_freshness_seconds"));
    let spike = expr("KubecostBridgeCostSpike");
    assert_eq!(threshold(&spike), 0.5);
    assert!(spike.contains("kubecost_bridge_cost_increase_ratio"));
    let storage = expr("KubecostBridgeStorageFull");
    assert_eq!(threshold(&storage), 0.8);
    assert!(storage.contains("kubecost_bridge_storage_used_ratio"));
    let down = expr("KubecostBridgeDown");
    assert!(down.contains("up{job=\"kubecost-bridge\"} == 0") && down.contains("absent("));
    // The job label is the Service's name, which the ServiceMonitor scrapes.
    object("Service", "kubecost-bridge");

    let contract = contract_metrics();
    for (name, r) in &alerts {
        for m in metrics_in(s(r, "expr")) {
            assert!(
                contract.contains(&m),
                "{name} reads {m}, not in the contract"
            );
        }
        assert!(
            ["warning", "critical"].contains(&s(r, "labels.severity")),
            "{name} severity"
        );
        assert!(!s(r, "annotations.summary").is_empty());
        assert!(!s(r, "annotations.description").is_empty());
        assert!(s(r, "for").ends_with('m'), "{name} has a `for`");
    }
}

#[test]
fn the_alert_rules_pass_promtools_checks_and_unit_tests() {
    if !available("promtool") {
        eprintln!("skipped: promtool is not installed (Debian package prometheus)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, serde_yaml_ng::to_string(&rule_groups()).unwrap()).unwrap();
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let tests = dir.path().join("kubecost-bridge-rules.test.yaml");
    std::fs::copy(
        deploy().join("prometheus/tests/kubecost-bridge-rules.test.yaml"),
        &tests,
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&tests)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("SUCCESS"),
        "promtool test rules:\n{text}"
    );
}

// ----- (e) the Grafana dashboard -------------------------------------------------------------

#[test]
fn the_grafana_dashboard_is_valid_and_every_panel_queries_a_declared_data_source() {
    let text = std::fs::read_to_string(deploy().join("grafana/kubecost-bridge.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(d["uid"].as_str(), Some("kubecost-bridge"));
    let schema = d["schemaVersion"].as_u64().unwrap();
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(!d["title"].as_str().unwrap().is_empty());

    // Data source variables, by plugin type.
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds_vars: BTreeMap<String, String> = vars
        .iter()
        .filter(|v| v["type"] == "datasource")
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["query"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let plugins: BTreeSet<&str> = ds_vars.values().map(String::as_str).collect();
    assert_eq!(
        plugins,
        BTreeSet::from(["grafana-clickhouse-datasource", "influxdb", "prometheus"])
    );
    let var_names: BTreeSet<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert!(var_names.contains("cluster") && var_names.contains("namespace"));

    let contract = contract_metrics();
    let mut ids = BTreeSet::new();
    let mut by_plugin: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 12, "{} panels", panels.len());
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "{title}: duplicate id"
        );
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{title}: too wide"
        );
        if p["type"] == "row" {
            continue;
        }
        // The panel's data source is one of the variables, and so is every target's.
        let ds_of = |v: &serde_json::Value| -> String {
            let uid = v["uid"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: no datasource uid"));
            let var = uid
                .strip_prefix("${")
                .and_then(|x| x.strip_suffix('}'))
                .unwrap_or_else(|| panic!("{title}: datasource {uid} is not a variable"));
            let plugin = ds_vars
                .get(var)
                .unwrap_or_else(|| panic!("{title}: no variable {var}"));
            assert_eq!(
                v["type"].as_str(),
                Some(plugin.as_str()),
                "{title}: datasource type"
            );
            plugin.clone()
        };
        let plugin = ds_of(&p["datasource"]);
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        for t in targets {
            assert_eq!(
                ds_of(&t["datasource"]),
                plugin,
                "{title}: target datasource"
            );
            assert!(!t["refId"].as_str().unwrap().is_empty());
            let q = ["rawSql", "query", "expr"]
                .iter()
                .find_map(|k| t[*k].as_str())
                .unwrap_or_else(|| panic!("{title}: target without a query"));
            assert!(!q.trim().is_empty(), "{title}: empty query");
            if plugin == "prometheus" {
                for m in metrics_in(q) {
                    assert!(contract.contains(&m), "{title}: {m} is not in the contract");
                }
            }
            by_plugin
                .entry(plugin.clone())
                .or_default()
                .push(q.to_string());
        }
    }
    let all = |plugin: &str| {
        by_plugin
            .get(plugin)
            .cloned()
            .unwrap_or_default()
            .join("\n")
    };
    let ch = all("grafana-clickhouse-datasource");
    assert!(ch.contains("cost_summaries"));
    for col in [
        "timestamp",
        "cluster",
        "namespace",
        "total_cost",
        "cpu_cost",
        "memory_cost",
        "network_cost",
        "storage_cost",
        "efficiency_score",
    ] {
        assert!(ch.contains(col), "no ClickHouse panel uses {col}");
    }
    let influx = all("influxdb");
    for m in [
        "\"cost_allocations\"",
        "\"asset_costs\"",
        "\"team\"",
        "\"owner\"",
    ] {
        assert!(influx.contains(m), "no InfluxDB panel uses {m}");
    }
    let prom = all("prometheus");
    for m in [
        "kubecost_bridge_data_freshness_seconds",
        "kubecost_bridge_extraction_runs_total",
    ] {
        assert!(prom.contains(m), "no Prometheus panel uses {m}");
    }
}

/// The dashboard's PromQL with Grafana's variables replaced by what they expand to.
fn dashboard_promql() -> Vec<String> {
    let text = std::fs::read_to_string(deploy().join("grafana/kubecost-bridge.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    let mut targets: Vec<&serde_json::Value> = d["annotations"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    for p in d["panels"].as_array().unwrap() {
        targets.extend(p["targets"].as_array().into_iter().flatten());
    }
    for t in targets {
        if t["datasource"]["type"] == "prometheus" {
            if let Some(e) = t["expr"].as_str() {
                exprs.push(
                    e.replace("${cluster:regex}", "(a|b)")
                        .replace("$__rate_interval", "5m"),
                );
            }
        }
    }
    exprs
}

#[test]
fn the_dashboards_promql_parses() {
    let exprs = dashboard_promql();
    assert!(exprs.len() >= 8, "{exprs:?}");
    for e in &exprs {
        assert!(!e.contains('$'), "unexpanded variable in {e}");
    }
    if !available("promtool") {
        eprintln!("skipped: promtool is not installed (Debian package prometheus)");
        return;
    }
    // promtool parses expressions in rule files: one recording rule per query.
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": e}))
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dashboard PromQL:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ----- kustomize ---------------------------------------------------------------------------

fn kustomize(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn kubectl_kustomize_renders_every_install() {
    if !available("kubectl") {
        eprintln!("skipped: kubectl is not installed");
        return;
    }
    let k8s = deploy().join("kubernetes");
    let kinds = |objs: &[Value]| -> BTreeSet<String> {
        objs.iter()
            .map(|o| format!("{}/{}", s(o, "kind"), s(o, "metadata.name")))
            .collect()
    };
    let base = kustomize(&k8s.join("base"));
    let default = kustomize(&k8s);
    let with_metadata = kustomize(&k8s.join("overlays/with-metadata"));
    let rules = kustomize(&deploy().join("prometheus"));
    assert_eq!(
        kinds(&rules),
        BTreeSet::from(["PrometheusRule/kubecost-bridge".to_string()])
    );
    let extra: BTreeSet<String> = kinds(&default).difference(&kinds(&base)).cloned().collect();
    assert_eq!(
        extra,
        [
            "PrometheusRule/kubecost-bridge",
            "ServiceMonitor/kubecost-bridge"
        ]
        .map(String::from)
        .into()
    );
    let extra: BTreeSet<String> = kinds(&with_metadata)
        .difference(&kinds(&default))
        .cloned()
        .collect();
    assert_eq!(
        extra,
        [
            "ClusterRole/kubecost-bridge-metadata",
            "ClusterRoleBinding/kubecost-bridge-metadata",
            "NetworkPolicy/kubecost-bridge-apiserver",
        ]
        .map(String::from)
        .into()
    );
    for objs in [&base, &default, &with_metadata] {
        for o in objs.iter() {
            if let Some(ns) = at(o, "metadata.namespace") {
                assert_eq!(ns.as_str(), Some(NS));
            }
        }
    }
    let automount = |objs: &[Value]| {
        objs.iter()
            .find(|o| s(o, "kind") == "Deployment")
            .and_then(|d| at(d, "spec.template.spec.automountServiceAccountToken"))
            .and_then(Value::as_bool)
    };
    assert_eq!(automount(&default), Some(false));
    assert_eq!(
        automount(&with_metadata),
        Some(true),
        "enrichment mounts the token"
    );
}

// ----- the Dockerfile ------------------------------------------------------------------------

#[test]
fn the_dockerfile_builds_locked_and_runs_unprivileged_on_8080() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let instr = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .collect()
    };
    let froms = instr("FROM");
    assert!(froms.len() >= 2, "multi-stage");
    for f in &froms {
        let image = f.split_whitespace().next().unwrap();
        assert_no_registry_host(image);
    }
    assert!(froms[0].starts_with("rust:") && froms[0].contains("bookworm"));
    let runtime = froms.last().unwrap();
    assert!(runtime.starts_with("debian:bookworm-slim"), "{runtime}");
    let builds = text
        .matches("cargo build --release --locked -p kubecost-bridge")
        .count();
    assert_eq!(builds, 2, "dependency layer, then the sources");
    assert!(text.contains("deploy/docker/skeleton.sh"));
    assert!(text.contains("ca-certificates"));

    // The runtime stage: after its FROM.
    let last_from = text.rfind("\nFROM ").unwrap();
    let runtime_text = &text[last_from..];
    assert!(runtime_text.contains("\nUSER 65532:65532\n"));
    assert!(runtime_text.contains("\nEXPOSE 8080\n"));
    assert!(runtime_text.contains("VOLUME [\"/var/lib/kubecost-bridge\"]"));
    let json = |name: &str| -> Vec<String> {
        let v = instr(name);
        assert_eq!(v.len(), 1, "one {name}");
        serde_json::from_str(v[0]).unwrap_or_else(|e| panic!("{name} not exec form: {e}"))
    };
    assert_eq!(json("ENTRYPOINT"), ["kubecost-bridge"]);
    assert_eq!(
        json("CMD"),
        ["run", "--config", "/etc/kubecost-bridge/config.yaml"]
    );
    // The default config the image ships is the one tested above.
    assert!(
        runtime_text.contains("COPY deploy/docker/config.yaml /etc/kubecost-bridge/config.yaml")
    );

    // The build context keeps out build output and history, but not what the build copies.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    for must in ["target/", ".git/"] {
        assert!(rules.contains(&must), ".dockerignore lacks {must}");
    }
    let deploy_out = rules.iter().position(|r| *r == "deploy/");
    let docker_in = rules.iter().position(|r| *r == "!deploy/docker/");
    if let Some(out) = deploy_out {
        assert!(
            docker_in.is_some_and(|i| i > out),
            "deploy/docker/ must stay in the context"
        );
    }
    for r in &rules {
        assert!(
            !["crates", "crates/", "Cargo.lock", "Cargo.toml"].contains(r),
            ".dockerignore drops {r}"
        );
    }
}

/// `cargo metadata --no-deps` of a workspace: every package's targets, as
/// `package kind name` lines.
fn targets(dir: &Path) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut set = BTreeSet::new();
    for p in m["packages"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            set.insert(format!(
                "{} {} {}",
                p["name"].as_str().unwrap(),
                t["kind"],
                t["name"].as_str().unwrap()
            ));
        }
    }
    set
}

#[test]
fn the_docker_dependency_skeleton_has_every_package_and_target_of_the_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let skel = dir.path().join("skeleton");
    let out = Command::new("sh")
        .arg(deploy().join("docker/skeleton.sh"))
        .arg(&skel)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only manifests, the lock file and stubs: no real source leaks into the cached layer.
    let mut rs = Vec::new();
    files_with(&skel, &["rs"], &mut rs);
    for f in &rs {
        let body = std::fs::read_to_string(f).unwrap();
        assert!(
            body.is_empty() || body == "fn main() {}\n",
            "{}: not a stub",
            f.display()
        );
    }
    assert!(skel.join("Cargo.lock").exists());
    let want = targets(&root());
    assert!(
        want.iter()
            .any(|t| t.starts_with("kubecost-bridge [\"bin\"]"))
    );
    assert_eq!(targets(&skel), want);
}
