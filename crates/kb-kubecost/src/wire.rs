//! Serde types for Kubecost's and OpenCost's JSON, as sent on the wire.
//!
//! Allocation and asset types borrow from the input: strings without escapes are `&str` slices
//! of the body ([`Str`]), label maps are read into vectors of borrowed pairs ([`Pairs`]) without
//! a hash map. Every number is a [`Num`], which tells a `null` (Kubecost's encoding of NaN and
//! ±Inf) from an absent field, so conversion can count nulls. Unknown fields are ignored, as
//! Kubecost adds fields across versions. Singular `label`, `annotation` and `service` (Kubecost
//! ≈1.76) are separate fields merged with the plural ones, so a document with both still parses.
//!
//! Struct fields are named after the JSON keys (camelCase on the wire, snake_case here) and
//! mean what `kubecost-api.md` says of those keys.
//!
//! The small endpoints (budgets, savings, predictions) use owned types: their bodies are small
//! and read whole.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// A string borrowed from the input when it has no escapes, owned otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Str<'a>(pub Cow<'a, str>);

impl Str<'_> {
    /// Returns the string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
            // Be lenient with the odd number or bool where a string is expected.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed("")))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed("")))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(V)
            }
        }
        d.deserialize_option(V)
    }
}

/// A number that may be `null` (NaN or ±Inf on Kubecost's side) or absent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Num {
    /// The field was not in the object.
    #[default]
    Absent,
    /// The field was `null`, or a string such as `"NaN"` that is not a finite number.
    Null,
    /// A finite number.
    Value(f64),
}

impl Num {
    /// Returns the number, or `None` for absent or null.
    pub fn get(self) -> Option<f64> {
        match self {
            Num::Value(v) => Some(v),
            _ => None,
        }
    }

    /// Returns the value (0 for absent or null), adding 1 to `nulls` for a null.
    /// `-0.0` becomes `0.0`.
    #[inline]
    pub fn take(self, nulls: &mut u32) -> f64 {
        match self {
            Num::Value(v) => v + 0.0,
            Num::Null => {
                *nulls += 1;
                0.0
            }
            Num::Absent => 0.0,
        }
    }
}

fn finite(v: f64) -> Num {
    if v.is_finite() {
        Num::Value(v)
    } else {
        Num::Null
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or null")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                Ok(finite(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num::Value(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num::Value(v as f64))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Num, E> {
                Ok(Num::Value(if v { 1.0 } else { 0.0 }))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                // Kubecost never sends numbers as strings, but CSV-era tools wrote "NaN".
                Ok(v.trim().parse::<f64>().map(finite).unwrap_or(Num::Null))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Num, E> {
                Ok(Num::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Num, E> {
                Ok(Num::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Num, D::Error> {
                d.deserialize_any(V)
            }
        }
        d.deserialize_option(V)
    }
}

/// A JSON object of string to string (labels, annotations), or `null`, read as pairs in input
/// order. Non-string values are kept as their JSON text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pairs<'a>(pub Vec<(Str<'a>, Str<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings or null")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some((k, v)) = m.next_entry::<Str<'de>, Str<'de>>()? {
                    out.push((k, v));
                }
                Ok(Pairs(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Pairs(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Pairs(Vec::new()))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(V)
            }
        }
        d.deserialize_option(V)
    }
}

/// A JSON array of strings, or `null`, or a single string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StrList<'a>(pub Vec<Str<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for StrList<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrList<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of strings or null")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element::<Str<'de>>()? {
                    out.push(v);
                }
                Ok(StrList(out))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StrList(vec![Str(Cow::Borrowed(v))]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrList(vec![Str(Cow::Owned(v.to_string()))]))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(StrList(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(StrList(Vec::new()))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(V)
            }
        }
        d.deserialize_option(V)
    }
}

/// `window: {start, end}`; either bound may be `null` or the string `"null"`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireWindow<'a> {
    /// RFC3339 start.
    #[serde(default, borrow)]
    pub start: Option<Str<'a>>,
    /// RFC3339 end.
    #[serde(default, borrow)]
    pub end: Option<Str<'a>>,
}

/// `properties` of an allocation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAllocProps<'a> {
    #[serde(default, borrow)]
    pub cluster: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub node: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub container: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub controller: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub controller_kind: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub namespace: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub pod: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub services: StrList<'a>,
    /// Kubecost ≈1.76 spelling of `services`.
    #[serde(default, borrow)]
    pub service: StrList<'a>,
    #[serde(default, borrow, rename = "providerID")]
    pub provider_id: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub labels: Pairs<'a>,
    /// Kubecost ≈1.76 spelling of `labels`.
    #[serde(default, borrow)]
    pub label: Pairs<'a>,
    #[serde(default, borrow)]
    pub annotations: Pairs<'a>,
    /// Kubecost ≈1.76 spelling of `annotations`.
    #[serde(default, borrow)]
    pub annotation: Pairs<'a>,
    #[serde(default, borrow)]
    pub namespace_labels: Pairs<'a>,
}

/// One allocation object (`data[i].{name}`), every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAllocation<'a> {
    #[serde(default, borrow)]
    pub name: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub properties: Option<WireAllocProps<'a>>,
    #[serde(default, borrow)]
    pub window: Option<WireWindow<'a>>,
    #[serde(default, borrow)]
    pub start: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub end: Option<Str<'a>>,
    #[serde(default)]
    pub minutes: Num,

    #[serde(default)]
    pub cpu_cores: Num,
    #[serde(default)]
    pub cpu_core_request_average: Num,
    #[serde(default)]
    pub cpu_core_usage_average: Num,
    #[serde(default)]
    pub cpu_core_hours: Num,
    #[serde(default)]
    pub cpu_cost: Num,
    #[serde(default)]
    pub cpu_cost_adjustment: Num,
    #[serde(default)]
    pub cpu_cost_idle: Num,
    #[serde(default)]
    pub cpu_efficiency: Num,

    #[serde(default)]
    pub gpu_count: Num,
    #[serde(default)]
    pub gpu_hours: Num,
    #[serde(default)]
    pub gpu_cost: Num,
    #[serde(default)]
    pub gpu_cost_adjustment: Num,
    #[serde(default)]
    pub gpu_cost_idle: Num,
    #[serde(default)]
    pub gpu_efficiency: Num,

    #[serde(default)]
    pub ram_bytes: Num,
    #[serde(default)]
    pub ram_byte_request_average: Num,
    #[serde(default)]
    pub ram_byte_usage_average: Num,
    #[serde(default)]
    pub ram_byte_hours: Num,
    #[serde(default)]
    pub ram_cost: Num,
    #[serde(default)]
    pub ram_cost_adjustment: Num,
    #[serde(default)]
    pub ram_cost_idle: Num,
    #[serde(default)]
    pub ram_efficiency: Num,

    #[serde(default)]
    pub pv_bytes: Num,
    #[serde(default)]
    pub pv_byte_hours: Num,
    #[serde(default)]
    pub pv_cost: Num,
    #[serde(default)]
    pub pv_cost_adjustment: Num,

    #[serde(default)]
    pub network_transfer_bytes: Num,
    #[serde(default)]
    pub network_receive_bytes: Num,
    #[serde(default)]
    pub network_cost: Num,
    #[serde(default)]
    pub network_cross_zone_cost: Num,
    #[serde(default)]
    pub network_cross_region_cost: Num,
    #[serde(default)]
    pub network_internet_cost: Num,
    #[serde(default)]
    pub network_cost_adjustment: Num,

    #[serde(default)]
    pub load_balancer_cost: Num,
    #[serde(default)]
    pub load_balancer_cost_adjustment: Num,

    #[serde(default)]
    pub shared_cost: Num,
    #[serde(default)]
    pub external_cost: Num,
    #[serde(default)]
    pub total_cost: Num,
    #[serde(default)]
    pub total_efficiency: Num,
}

/// `properties` of an asset.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireAssetProps<'a> {
    #[serde(default, borrow)]
    pub category: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub provider: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub account: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub project: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub service: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub cluster: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub name: Option<Str<'a>>,
    #[serde(default, borrow, rename = "providerID")]
    pub provider_id: Option<Str<'a>>,
}

/// One asset object of `/model/assets` (any type; fields of other types are absent).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAsset<'a> {
    #[serde(default, borrow, rename = "type")]
    pub asset_type: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub properties: Option<WireAssetProps<'a>>,
    #[serde(default, borrow)]
    pub labels: Pairs<'a>,
    #[serde(default, borrow)]
    pub window: Option<WireWindow<'a>>,
    #[serde(default, borrow)]
    pub start: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub end: Option<Str<'a>>,
    #[serde(default)]
    pub minutes: Num,
    #[serde(default, borrow)]
    pub node_type: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub pool: Option<Str<'a>>,
    #[serde(default)]
    pub cpu_cores: Num,
    #[serde(default)]
    pub ram_bytes: Num,
    #[serde(default)]
    pub cpu_core_hours: Num,
    #[serde(default)]
    pub ram_byte_hours: Num,
    /// Kubecost writes `GPUHours` with a capital GPU.
    #[serde(default, rename = "GPUHours")]
    pub gpu_hours_caps: Num,
    #[serde(default)]
    pub gpu_hours: Num,
    #[serde(default)]
    pub preemptible: Num,
    #[serde(default)]
    pub discount: Num,
    #[serde(default)]
    pub cpu_cost: Num,
    #[serde(default)]
    pub gpu_cost: Num,
    #[serde(default)]
    pub gpu_count: Num,
    #[serde(default)]
    pub ram_cost: Num,
    #[serde(default)]
    pub byte_hours: Num,
    #[serde(default)]
    pub bytes: Num,
    #[serde(default, borrow)]
    pub storage_class: Option<Str<'a>>,
    #[serde(default)]
    pub cost: Num,
    #[serde(default)]
    pub adjustment: Num,
    #[serde(default)]
    pub credit: Num,
    #[serde(default)]
    pub total_cost: Num,
}

/// `{cpu, memory}` of a request-sizing recommendation (Kubernetes quantity strings).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireQuantities {
    #[serde(default)]
    pub cpu: Option<serde_json::Value>,
    #[serde(default)]
    pub memory: Option<serde_json::Value>,
}

/// `{cpu, memory}` of monthly savings.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireCpuMem {
    #[serde(default)]
    pub cpu: Num,
    #[serde(default)]
    pub memory: Num,
}

/// One item of `/model/savings/requestSizingV2`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireRequestSizing {
    #[serde(default, rename = "clusterID", alias = "clusterId")]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub controller_kind: Option<String>,
    #[serde(default)]
    pub controller_name: Option<String>,
    #[serde(default)]
    pub container_name: Option<String>,
    #[serde(default)]
    pub recommended_request: Option<WireQuantities>,
    #[serde(default)]
    pub latest_known_request: Option<WireQuantities>,
    #[serde(default)]
    pub monthly_savings: Option<WireCpuMem>,
}

/// One option (`single`, `multi`, ...) of a cluster-sizing recommendation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireClusterOption {
    #[serde(default)]
    pub pools: Option<Vec<WirePool>>,
    #[serde(default)]
    pub node_count: Num,
    #[serde(default)]
    pub monthly_savings: Num,
    #[serde(default)]
    pub total_monthly_cost: Num,
}

/// A node pool of a cluster-sizing option.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WirePool {
    #[serde(default, rename = "type")]
    pub node_type: Option<WireNodeType>,
    #[serde(default)]
    pub count: Num,
}

/// The instance type of a pool.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireNodeType {
    #[serde(default)]
    pub name: Option<String>,
}

/// The per-cluster object of `/model/savings/clusterSizingETL`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireClusterSizing {
    #[serde(default)]
    pub recommendations: Option<std::collections::BTreeMap<String, Option<WireClusterOption>>>,
}

/// An owner of an abandoned pod.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireOwner {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

/// One item of `/model/savings/abandonedWorkloads`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAbandoned {
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default, alias = "clusterID")]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub owners: Option<Vec<WireOwner>>,
    #[serde(default)]
    pub ingress_bytes_per_second: Num,
    #[serde(default)]
    pub egress_bytes_per_second: Num,
    #[serde(default)]
    pub monthly_savings: Num,
}

/// A budget of `/model/budgets` (2.x), or of the retired 1.x recurring budget list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireBudget {
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub budget_type: Option<String>,
    /// 2.x: `{category: [names]}`; 1.x: `[names]` with the category in `property`.
    #[serde(default)]
    pub values: Option<serde_json::Value>,
    /// 1.x: the category of `values`.
    #[serde(default, alias = "filter")]
    pub property: Option<String>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub interval_day: Num,
    #[serde(default)]
    pub spend_limit: Num,
    /// 1.x spelling of `spendLimit`.
    #[serde(default)]
    pub amount: Num,
    #[serde(default)]
    pub current_spend: Num,
    #[serde(default)]
    pub window: Option<WireOwnedWindow>,
}

/// An owned `{start, end}` window.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireOwnedWindow {
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
}

/// Monthly rates of a spec-cost prediction.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireMonthlyCost {
    #[serde(default)]
    pub total_monthly_rate: Num,
    #[serde(default)]
    pub cpu_monthly_rate: Num,
    #[serde(default)]
    pub ram_monthly_rate: Num,
    #[serde(default)]
    pub gpu_monthly_rate: Num,
    #[serde(default, rename = "monthlyCPUCoreHours")]
    pub monthly_cpu_core_hours: Num,
    #[serde(default, rename = "monthlyRAMByteHours")]
    pub monthly_ram_byte_hours: Num,
    #[serde(default, rename = "monthlyGPUHours")]
    pub monthly_gpu_hours: Num,
}

/// One item of `/model/prediction/speccost`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireSpecCost {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub controller_kind: Option<String>,
    #[serde(default)]
    pub controller_name: Option<String>,
    #[serde(default)]
    pub cost_before: Option<WireMonthlyCost>,
    #[serde(default)]
    pub cost_after: Option<WireMonthlyCost>,
    #[serde(default)]
    pub cost_change: Option<WireMonthlyCost>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_borrow_without_escapes() {
        let w: WireAllocation<'_> =
            serde_json::from_slice(br#"{"name":"a/b","properties":{"cluster":"c\"1"}}"#).unwrap();
        assert!(matches!(w.name.unwrap().0, Cow::Borrowed("a/b")));
        assert!(matches!(
            w.properties.unwrap().cluster.unwrap().0,
            Cow::Owned(ref s) if s == "c\"1"
        ));
    }

    #[test]
    fn numbers_tell_null_from_absent() {
        let w: WireAllocation<'_> = serde_json::from_slice(
            br#"{"cpuCost":null,"ramCost":-0.000000,"gpuCost":"NaN","minutes":16}"#,
        )
        .unwrap();
        assert_eq!(w.cpu_cost, Num::Null);
        assert_eq!(w.gpu_cost, Num::Null);
        assert_eq!(w.pv_cost, Num::Absent);
        assert_eq!(w.minutes, Num::Value(16.0));
        let mut nulls = 0;
        let v = w.ram_cost.take(&mut nulls);
        assert!(v == 0.0 && v.is_sign_positive());
        w.cpu_cost.take(&mut nulls);
        w.pv_cost.take(&mut nulls);
        assert_eq!(nulls, 1);
    }

    #[test]
    fn null_maps_and_lists_are_empty() {
        let p: WireAllocProps<'_> = serde_json::from_slice(
            br#"{"labels":null,"services":null,"service":"s1","label":{"a":"b"}}"#,
        )
        .unwrap();
        assert!(p.labels.0.is_empty());
        assert!(p.services.0.is_empty());
        assert_eq!(p.service.0.len(), 1);
        assert_eq!(p.label.0.len(), 1);
    }
}
