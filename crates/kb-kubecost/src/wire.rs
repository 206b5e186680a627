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
//!
//! [`scan_allocation`] is a fast path for the common shape of an allocation object; it returns
//! `None` for anything else, and the caller then uses the serde types above.

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

/// A fast path for the common shape of an allocation object, used before serde.
///
/// It reads what the derived [`WireAllocation`] deserializer reads, and gives the same result
/// for the objects it accepts: numbers and `null` where numbers go, strings without escapes and
/// `null` where strings go, objects of such strings for label maps, arrays of them for service
/// lists; unknown members (`pvs`, `rawAllocationOnly`, `proportionalAssetResourceCosts`, ...)
/// are skipped after checking their JSON syntax. Anything else (an escape, a control character,
/// a string where a number goes, a repeated member, deep nesting, a syntax error) returns
/// `None`, and the caller parses the object with serde, which then gives the same value or the
/// same error as before. The fast path exists because serde's generic visitor was most of the
/// parser thread's time: keys here are matched as bytes, and no key is decoded.
///
/// Numbers are parsed with std's correctly rounded `f64::from_str` (after checking JSON's
/// number grammar, which is stricter), zeros without it.
pub fn scan_allocation(text: &str) -> Option<WireAllocation<'_>> {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        p: 0,
    };
    let w = s.allocation()?;
    s.ws();
    (s.p == s.b.len()).then_some(w)
}

/// Flags (high bit of each byte) the bytes of `x` that are `"`, `\\` or below 0x20. The
/// lowest flagged byte is always a real one (borrows only propagate upwards), which is all the
/// caller uses.
#[inline]
fn special_bytes(x: u64) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    zero(x ^ (LO * u64::from(b'"')))
        | zero(x ^ (LO * u64::from(b'\\')))
        | (x.wrapping_sub(LO * 0x20) & !x & HI)
}

/// Deepest nesting the fast path skips (serde_json's own limit is 128).
const MAX_SKIP_DEPTH: u32 = 64;

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    p: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.p).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.p += 1;
        }
    }

    /// Consumes `c` after optional whitespace.
    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.p += 1;
            Some(())
        } else {
            None
        }
    }

    /// Reads a string without escapes or control characters (at its opening quote); returns
    /// its content.
    #[inline]
    fn plain_str(&mut self) -> Option<&'a str> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.p + 1;
        let mut q = start;
        // Eight bytes at a time up to the first quote, backslash or control character.
        while let Some(chunk) = self.b.get(q..q + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            let m = special_bytes(u64::from_le_bytes(w));
            if m != 0 {
                q += (m.trailing_zeros() / 8) as usize;
                break;
            }
            q += 8;
        }
        loop {
            match *self.b.get(q)? {
                b'"' => break,
                b'\\' | 0x00..=0x1f => return None,
                _ => q += 1,
            }
        }
        self.p = q + 1;
        self.text.get(start..q)
    }

    /// Reads `null` if it is next.
    #[inline]
    fn null(&mut self) -> Option<bool> {
        if self.peek() != Some(b'n') {
            return Some(false);
        }
        if self.b.get(self.p..self.p + 4)? == b"null" {
            self.p += 4;
            Some(true)
        } else {
            None
        }
    }

    /// Reads a number checked against JSON's grammar; returns its text.
    #[inline]
    fn number(&mut self) -> Option<&'a str> {
        let start = self.p;
        let mut q = start;
        let digit = |q: usize| matches!(self.b.get(q), Some(b'0'..=b'9'));
        if self.b.get(q) == Some(&b'-') {
            q += 1;
        }
        match self.b.get(q) {
            Some(b'0') => q += 1,
            Some(b'1'..=b'9') => {
                while digit(q) {
                    q += 1;
                }
            }
            _ => return None,
        }
        if self.b.get(q) == Some(&b'.') {
            q += 1;
            if !digit(q) {
                return None;
            }
            while digit(q) {
                q += 1;
            }
        }
        if let Some(b'e' | b'E') = self.b.get(q) {
            q += 1;
            if let Some(b'+' | b'-') = self.b.get(q) {
                q += 1;
            }
            if !digit(q) {
                return None;
            }
            while digit(q) {
                q += 1;
            }
        }
        self.p = q;
        self.text.get(start..q)
    }

    /// Reads a number or `null` into a [`Num`].
    #[inline]
    fn num(&mut self) -> Option<Num> {
        self.ws();
        if self.null()? {
            return Some(Num::Null);
        }
        let t = self.number()?;
        let v = match t {
            "0" | "0.0" => 0.0,
            _ => t.parse::<f64>().ok()?,
        };
        // serde_json refuses out-of-range numbers: let it say so.
        v.is_finite().then_some(Num::Value(v))
    }

    /// Reads a string or `null` into an optional [`Str`].
    #[inline]
    fn opt_str(&mut self) -> Option<Option<Str<'a>>> {
        self.ws();
        if self.null()? {
            return Some(None);
        }
        Some(Some(Str(Cow::Borrowed(self.plain_str()?))))
    }

    /// Reads a member name and its colon, or the end of the object. `first` allows `}` right
    /// after `{`; otherwise a `,` must come first.
    #[inline]
    fn key(&mut self, first: bool) -> Option<Option<&'a str>> {
        self.ws();
        match self.peek()? {
            b'}' => {
                self.p += 1;
                return Some(None);
            }
            b',' if !first => {
                self.p += 1;
                self.ws();
            }
            _ if first => {}
            _ => return None,
        }
        let k = self.plain_str()?;
        self.eat(b':')?;
        Some(Some(k))
    }

    /// Skips any JSON value, checking its syntax.
    fn skip(&mut self, depth: u32) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => {
                self.plain_str()?;
            }
            b'{' => {
                if depth >= MAX_SKIP_DEPTH {
                    return None;
                }
                self.p += 1;
                let mut first = true;
                while self.key(first)?.is_some() {
                    first = false;
                    self.skip(depth + 1)?;
                }
            }
            b'[' => {
                if depth >= MAX_SKIP_DEPTH {
                    return None;
                }
                self.p += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.p += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.p += 1,
                        b']' => {
                            self.p += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
            }
            b't' | b'f' | b'n' => {
                let rest = self.b.get(self.p..)?;
                let n = if rest.starts_with(b"true") || rest.starts_with(b"null") {
                    4
                } else if rest.starts_with(b"false") {
                    5
                } else {
                    return None;
                };
                self.p += n;
            }
            _ => {
                self.number()?;
            }
        }
        Some(())
    }

    /// Reads an object of strings (or `null`) into [`Pairs`].
    fn pairs(&mut self) -> Option<Pairs<'a>> {
        self.ws();
        if self.null()? {
            return Some(Pairs(Vec::new()));
        }
        self.eat(b'{')?;
        let mut out = Vec::new();
        let mut first = true;
        while let Some(k) = self.key(first)? {
            first = false;
            self.ws();
            let v = if self.null()? { "" } else { self.plain_str()? };
            out.push((Str(Cow::Borrowed(k)), Str(Cow::Borrowed(v))));
        }
        Some(Pairs(out))
    }

    /// Reads an array of strings, a single string or `null` into a [`StrList`].
    fn str_list(&mut self) -> Option<StrList<'a>> {
        self.ws();
        match self.peek()? {
            b'n' => {
                self.null()?;
                Some(StrList(Vec::new()))
            }
            b'"' => Some(StrList(vec![Str(Cow::Borrowed(self.plain_str()?))])),
            b'[' => {
                self.p += 1;
                let mut out = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.p += 1;
                    return Some(StrList(out));
                }
                loop {
                    self.ws();
                    let v = if self.null()? { "" } else { self.plain_str()? };
                    out.push(Str(Cow::Borrowed(v)));
                    self.ws();
                    match self.peek()? {
                        b',' => self.p += 1,
                        b']' => {
                            self.p += 1;
                            return Some(StrList(out));
                        }
                        _ => return None,
                    }
                }
            }
            _ => None,
        }
    }

    fn window(&mut self) -> Option<Option<WireWindow<'a>>> {
        self.ws();
        if self.null()? {
            return Some(None);
        }
        self.eat(b'{')?;
        let mut w = WireWindow::default();
        let mut seen = 0u8;
        let mut first = true;
        while let Some(k) = self.key(first)? {
            first = false;
            let bit = match k.as_bytes() {
                b"start" => {
                    w.start = self.opt_str()?;
                    1
                }
                b"end" => {
                    w.end = self.opt_str()?;
                    2
                }
                _ => {
                    self.skip(1)?;
                    0
                }
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
        }
        Some(Some(w))
    }

    fn properties(&mut self) -> Option<Option<WireAllocProps<'a>>> {
        self.ws();
        if self.null()? {
            return Some(None);
        }
        self.eat(b'{')?;
        let mut pr = WireAllocProps::default();
        let mut seen = 0u32;
        let mut first = true;
        while let Some(k) = self.key(first)? {
            first = false;
            let bit: u32 = match k.as_bytes() {
                b"cluster" => {
                    pr.cluster = self.opt_str()?;
                    1
                }
                b"node" => {
                    pr.node = self.opt_str()?;
                    1 << 1
                }
                b"container" => {
                    pr.container = self.opt_str()?;
                    1 << 2
                }
                b"controller" => {
                    pr.controller = self.opt_str()?;
                    1 << 3
                }
                b"controllerKind" => {
                    pr.controller_kind = self.opt_str()?;
                    1 << 4
                }
                b"namespace" => {
                    pr.namespace = self.opt_str()?;
                    1 << 5
                }
                b"pod" => {
                    pr.pod = self.opt_str()?;
                    1 << 6
                }
                b"services" => {
                    pr.services = self.str_list()?;
                    1 << 7
                }
                b"service" => {
                    pr.service = self.str_list()?;
                    1 << 8
                }
                b"providerID" => {
                    pr.provider_id = self.opt_str()?;
                    1 << 9
                }
                b"labels" => {
                    pr.labels = self.pairs()?;
                    1 << 10
                }
                b"label" => {
                    pr.label = self.pairs()?;
                    1 << 11
                }
                b"annotations" => {
                    pr.annotations = self.pairs()?;
                    1 << 12
                }
                b"annotation" => {
                    pr.annotation = self.pairs()?;
                    1 << 13
                }
                b"namespaceLabels" => {
                    pr.namespace_labels = self.pairs()?;
                    1 << 14
                }
                _ => {
                    self.skip(1)?;
                    0
                }
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
        }
        Some(Some(pr))
    }

    fn allocation(&mut self) -> Option<WireAllocation<'a>> {
        self.eat(b'{')?;
        let mut w = WireAllocation::default();
        let mut seen = 0u64;
        let mut first = true;
        macro_rules! num_field {
            ($i:expr, $f:ident) => {{
                w.$f = self.num()?;
                1u64 << ($i + 5)
            }};
        }
        while let Some(k) = self.key(first)? {
            first = false;
            let bit: u64 = match k.as_bytes() {
                b"name" => {
                    w.name = self.opt_str()?;
                    1
                }
                b"properties" => {
                    w.properties = self.properties()?;
                    1 << 1
                }
                b"window" => {
                    w.window = self.window()?;
                    1 << 2
                }
                b"start" => {
                    w.start = self.opt_str()?;
                    1 << 3
                }
                b"end" => {
                    w.end = self.opt_str()?;
                    1 << 4
                }
                b"minutes" => num_field!(0, minutes),
                b"cpuCores" => num_field!(1, cpu_cores),
                b"cpuCoreRequestAverage" => num_field!(2, cpu_core_request_average),
                b"cpuCoreUsageAverage" => num_field!(3, cpu_core_usage_average),
                b"cpuCoreHours" => num_field!(4, cpu_core_hours),
                b"cpuCost" => num_field!(5, cpu_cost),
                b"cpuCostAdjustment" => num_field!(6, cpu_cost_adjustment),
                b"cpuCostIdle" => num_field!(7, cpu_cost_idle),
                b"cpuEfficiency" => num_field!(8, cpu_efficiency),
                b"gpuCount" => num_field!(9, gpu_count),
                b"gpuHours" => num_field!(10, gpu_hours),
                b"gpuCost" => num_field!(11, gpu_cost),
                b"gpuCostAdjustment" => num_field!(12, gpu_cost_adjustment),
                b"gpuCostIdle" => num_field!(13, gpu_cost_idle),
                b"gpuEfficiency" => num_field!(14, gpu_efficiency),
                b"ramBytes" => num_field!(15, ram_bytes),
                b"ramByteRequestAverage" => num_field!(16, ram_byte_request_average),
                b"ramByteUsageAverage" => num_field!(17, ram_byte_usage_average),
                b"ramByteHours" => num_field!(18, ram_byte_hours),
                b"ramCost" => num_field!(19, ram_cost),
                b"ramCostAdjustment" => num_field!(20, ram_cost_adjustment),
                b"ramCostIdle" => num_field!(21, ram_cost_idle),
                b"ramEfficiency" => num_field!(22, ram_efficiency),
                b"pvBytes" => num_field!(23, pv_bytes),
                b"pvByteHours" => num_field!(24, pv_byte_hours),
                b"pvCost" => num_field!(25, pv_cost),
                b"pvCostAdjustment" => num_field!(26, pv_cost_adjustment),
                b"networkTransferBytes" => num_field!(27, network_transfer_bytes),
                b"networkReceiveBytes" => num_field!(28, network_receive_bytes),
                b"networkCost" => num_field!(29, network_cost),
                b"networkCrossZoneCost" => num_field!(30, network_cross_zone_cost),
                b"networkCrossRegionCost" => num_field!(31, network_cross_region_cost),
                b"networkInternetCost" => num_field!(32, network_internet_cost),
                b"networkCostAdjustment" => num_field!(33, network_cost_adjustment),
                b"loadBalancerCost" => num_field!(34, load_balancer_cost),
                b"loadBalancerCostAdjustment" => num_field!(35, load_balancer_cost_adjustment),
                b"sharedCost" => num_field!(36, shared_cost),
                b"externalCost" => num_field!(37, external_cost),
                b"totalCost" => num_field!(38, total_cost),
                b"totalEfficiency" => num_field!(39, total_efficiency),
                _ => {
                    self.skip(1)?;
                    0
                }
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path must agree with serde on every object it accepts.
    fn agrees(text: &str) -> bool {
        let fast = scan_allocation(text);
        let slow: Result<WireAllocation<'_>, _> = serde_json::from_str(text);
        match (&fast, &slow) {
            (Some(f), Ok(s)) => {
                // serde_json (without `float_roundtrip`) may miss the nearest double by one
                // unit in the last place; the fast path uses std's correctly rounded parser.
                let (f, s) = (format!("{f:?}"), format!("{s:?}"));
                let (fp, sp): (Vec<&str>, Vec<&str>) =
                    (f.split("Value(").collect(), s.split("Value(").collect());
                assert_eq!(fp.len(), sp.len(), "differs on {text}:\n{f}\n{s}");
                for (i, (a, b)) in fp.iter().zip(&sp).enumerate() {
                    if i == 0 {
                        assert_eq!(a, b, "differs on {text}");
                        continue;
                    }
                    let (an, ar) = a.split_once(')').unwrap();
                    let (bn, br) = b.split_once(')').unwrap();
                    assert_eq!(ar, br, "differs on {text}");
                    let (x, y): (f64, f64) = (an.parse().unwrap(), bn.parse().unwrap());
                    assert_eq!(Ok(x), an.parse::<f64>(), "{an}");
                    assert!(
                        x.to_bits().abs_diff(y.to_bits()) <= 1,
                        "{an} vs {bn} on {text}"
                    );
                }
                true
            }
            (Some(f), Err(e)) => {
                panic!("fast path accepted what serde refuses ({e}): {text}\n{f:?}")
            }
            (None, _) => false,
        }
    }

    #[test]
    fn fast_path_agrees_with_serde() {
        let common = r#"{"name":"c/ns/pod","properties":{"cluster":"c","node":"n1","container":"main","controller":"web","controllerKind":"deployment","namespace":"ns","pod":"pod-1","services":["svc-a","svc-b"],"providerID":"i-1","labels":{"app":"web","team":"x"},"namespaceLabels":{"team":"y"},"annotations":null},"window":{"start":"2026-11-26T00:00:00Z","end":"2026-11-26T01:00:00Z"},"start":"2026-11-26T00:00:00Z","end":"2026-11-26T01:00:00Z","minutes":60.0,"cpuCores":0.5,"cpuCoreRequestAverage":0.5,"cpuCoreUsageAverage":0.054834685949395806,"cpuCoreHours":0.5,"cpuCost":0.0158055,"cpuCostAdjustment":0.0,"cpuCostIdle":0,"cpuEfficiency":null,"gpuCount":0.0,"gpuRequestAverage":0.0,"gpuHours":-0.0,"gpuCost":1e-7,"gpuCostAdjustment":-2.5E+3,"gpuCostIdle":0.0,"gpuEfficiency":0.0,"networkTransferBytes":99247849.4539118,"networkReceiveBytes":168721344,"networkCost":0.0014789082028554648,"networkCrossZoneCost":0.0002772952880353996,"networkCrossRegionCost":6.012618967938481e-05,"networkInternetCost":0.0011091811521415985,"networkCostAdjustment":0.0,"loadBalancerCost":0.0,"loadBalancerCostAdjustment":0.0,"pvBytes":45097156608.0,"pvByteHours":45097156608.0,"pvCost":0.005753424657534248,"pvs":{"cluster=c:name=pvc-1":{"byteHours":45097156608.0,"cost":0.005753424657534248,"providerID":"vol-1","x":[1,true,false,null,{"y":[]},"s"]}},"pvCostAdjustment":0.0,"ramBytes":4294967296.0,"ramByteRequestAverage":4294967296.0,"ramByteUsageAverage":4144365409.3070555,"ramByteHours":4294967296.0,"ramCost":0.016948,"ramCostAdjustment":0.0,"ramCostIdle":0.0,"ramEfficiency":0.9649352657857946,"externalCost":0.0,"sharedCost":0.001992071344712358,"totalCost":0.04197790420510208,"totalEfficiency":0.5522189122409512,"rawAllocationOnly":null,"proportionalAssetResourceCosts":{},"lbAllocations":null,"sharedCostBreakdown":{}}"#;
        assert!(agrees(common), "the common shape takes the fast path");
        let accepted = [
            r#"{}"#,
            r#" { "name" : null , "properties" : null , "window" : null } "#,
            r#"{"properties":{"services":"one","service":null,"label":{"a":"1"},"labels":{"a":"2","a":"3"}}}"#,
            r#"{"properties":{"services":[],"labels":{},"unknown":[[],{}]},"window":{"start":null,"x":1}}"#,
            r#"{"totalCost":123456789012345678901234567890,"minutes":1.5e2,"cpuCost":-0}"#,
            "{\"name\":\"é/日本\",\"cpuCost\":\t0.25\n}",
            "{\"name\":\"ü a long name, 日本語 and more to cross 8 bytes \u{7f}\"}",
        ];
        for t in accepted {
            assert!(agrees(t), "fast path refused {t}");
        }
        // Shapes left to serde (it gives the value or the error).
        let refused = [
            r#"{"name":"a\"b"}"#,
            r#"{"cpuCost":"NaN"}"#,
            r#"{"cpuCost":true}"#,
            r#"{"cpuCost":1,"cpuCost":2}"#,
            r#"{"properties":{"cluster":1}}"#,
            r#"{"properties":{"labels":{"a":1}}}"#,
            r#"{"cpuCost":1e400}"#,
            r#"{"cpuCost":01}"#,
            r#"{"cpuCost":.5}"#,
            r#"{"cpuCost":1.}"#,
            r#"{"cpuCost":+1}"#,
            r#"{"cpuCost":NaN}"#,
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":nul}"#,
            r#"{"a":"x\u0041"}"#,
            r#"[1,2]"#,
            r#"{"a":1} x"#,
            "{\"name\":\"tab\there\"}",
            "{\"name\":\"a long name with a tab\there\"}",
            "{\"name\":\"a long name with a nul\u{0}here\"}",
            r#"{"name":"a long name with an escape \" here"}"#,
            r#"{"properties":{"labels":{"a long label key, longer":"and a long value\/x"}}}"#,
        ];
        for t in refused {
            assert!(!agrees(t), "fast path took {t}");
        }
        // Every prefix and every one-byte corruption of the common shape: the fast path either
        // refuses or agrees with serde.
        for cut in 0..common.len() {
            if let Some(prefix) = common.get(..cut) {
                agrees(prefix);
            }
        }
        for (i, _) in common.char_indices().step_by(3) {
            for c in [
                "\"", "{", "}", "[", "]", ",", ":", "0", "-", "n", " ", "\\", "e", ".",
            ] {
                let mut t = common.to_string();
                t.replace_range(i..=i, c);
                agrees(&t);
            }
        }
    }

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
