//! Domain records: what the bridge knows about Kubernetes costs, independent of any wire format.
//!
//! Units are Kubecost's: money in the currency Kubecost reports (an `f64`), time in hours or
//! minutes as the field name says, memory and storage in bytes, CPU in cores. Kubecost
//! serialises NaN and ±Inf as JSON `null`; adapters turn such a `null` into `0.0` and count it
//! (see [`Allocation::null_fields`]), so every number here is finite.
//!
//! Names of special allocations follow Kubecost: [`IDLE`], [`UNALLOCATED`], [`UNMOUNTED`].

use crate::window::Window;

/// Name Kubecost gives the idle allocation (cost of capacity no workload was allocated).
pub const IDLE: &str = "__idle__";
/// Value Kubecost uses when an aggregation property is missing (for example no `app` label).
pub const UNALLOCATED: &str = "__unallocated__";
/// Value Kubecost uses for volumes and load balancers not mounted by any pod.
pub const UNMOUNTED: &str = "__unmounted__";

/// Sorted `(key, value)` pairs: Kubernetes labels or annotations, Prometheus-sanitised by Kubecost.
pub type Labels = Vec<(String, String)>;

/// One allocation of one Kubecost allocation set: a container, pod, namespace, ... depending on
/// the `aggregate` of the query, or an idle or unmounted row.
///
/// Property strings are empty when Kubecost did not report them (an aggregated row keeps only
/// the properties all its members share).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allocation {
    /// The allocation's key in its set, for example `cluster-one/kubecost/pod-1`.
    pub name: String,
    pub cluster: String,
    pub node: String,
    pub namespace: String,
    /// Kubecost's controller kind, lower case as Kubecost reports it (`deployment`, ...).
    pub controller_kind: String,
    pub controller: String,
    pub pod: String,
    pub container: String,
    pub provider_id: String,
    /// Pod labels, sorted by key.
    pub labels: Labels,
    /// Pod annotations, sorted by key.
    pub annotations: Labels,
    /// Namespace labels, sorted by key.
    pub namespace_labels: Labels,
    /// Kubernetes services that select the pod, sorted.
    pub services: Vec<String>,
    /// The window of the allocation set this row belongs to.
    pub window: Window,
    /// Unix seconds when the allocation started running inside the window.
    pub start: i64,
    /// Unix seconds when the allocation stopped running inside the window.
    pub end: i64,
    pub minutes: f64,

    pub cpu_cores: f64,
    pub cpu_core_request_average: f64,
    pub cpu_core_usage_average: f64,
    pub cpu_core_hours: f64,
    pub cpu_cost: f64,
    pub cpu_cost_adjustment: f64,
    pub cpu_cost_idle: f64,
    pub cpu_efficiency: f64,

    pub gpu_count: f64,
    pub gpu_hours: f64,
    pub gpu_cost: f64,
    pub gpu_cost_adjustment: f64,
    pub gpu_cost_idle: f64,
    pub gpu_efficiency: f64,

    pub ram_bytes: f64,
    pub ram_byte_request_average: f64,
    pub ram_byte_usage_average: f64,
    pub ram_byte_hours: f64,
    pub ram_cost: f64,
    pub ram_cost_adjustment: f64,
    pub ram_cost_idle: f64,
    pub ram_efficiency: f64,

    pub pv_bytes: f64,
    pub pv_byte_hours: f64,
    pub pv_cost: f64,
    pub pv_cost_adjustment: f64,

    pub network_transfer_bytes: f64,
    pub network_receive_bytes: f64,
    pub network_cost: f64,
    pub network_cross_zone_cost: f64,
    pub network_cross_region_cost: f64,
    pub network_internet_cost: f64,
    pub network_cost_adjustment: f64,

    pub load_balancer_cost: f64,
    pub load_balancer_cost_adjustment: f64,

    pub shared_cost: f64,
    pub external_cost: f64,
    /// `totalCost` as Kubecost reported it (see [`crate::cost::allocation_total`] for the formula).
    pub total_cost: f64,
    /// `totalEfficiency` as Kubecost reported it.
    pub total_efficiency: f64,

    /// How many numeric fields Kubecost sent as `null` (NaN or ±Inf on its side) and were read as 0.
    pub null_fields: u32,
}

impl Allocation {
    /// Returns true for Kubecost's idle row (`__idle__` or `<cluster or node>/__idle__`).
    pub fn is_idle(&self) -> bool {
        self.name == IDLE || self.name.ends_with("/__idle__") || self.pod == IDLE
    }
}

/// Kubecost asset types, as the `type` field of `/model/assets` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AssetType {
    Node,
    Disk,
    LoadBalancer,
    ClusterManagement,
    Network,
    Cloud,
    Shared,
    /// Kubecost's `Any` asset: an aggregate of assets of different types (no `type` key).
    Any,
}

impl AssetType {
    /// Returns Kubecost's spelling of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetType::Node => "Node",
            AssetType::Disk => "Disk",
            AssetType::LoadBalancer => "LoadBalancer",
            AssetType::ClusterManagement => "ClusterManagement",
            AssetType::Network => "Network",
            AssetType::Cloud => "Cloud",
            AssetType::Shared => "Shared",
            AssetType::Any => "Asset",
        }
    }

    /// Parses Kubecost's spelling; unknown strings are `None`.
    pub fn parse(s: &str) -> Option<AssetType> {
        Some(match s {
            "Node" => AssetType::Node,
            "Disk" => AssetType::Disk,
            "LoadBalancer" => AssetType::LoadBalancer,
            "ClusterManagement" => AssetType::ClusterManagement,
            "Network" => AssetType::Network,
            "Cloud" => AssetType::Cloud,
            "Shared" => AssetType::Shared,
            "Asset" | "Any" => AssetType::Any,
            _ => return None,
        })
    }
}

/// One asset of a Kubecost asset set: a node, a disk, a load balancer, ...
///
/// Fields that do not apply to the type are 0 or empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    /// The asset's key in its set.
    pub key: String,
    pub asset_type: AssetType,
    pub window: Window,
    pub start: i64,
    pub end: i64,
    pub minutes: f64,
    pub cluster: String,
    /// `properties.name`: node name, volume name, service name, ...
    pub name: String,
    pub provider: String,
    pub provider_id: String,
    pub account: String,
    pub project: String,
    pub service: String,
    pub category: String,
    pub labels: Labels,

    /// Node: instance type. Disk: storage class.
    pub node_type: String,
    /// Node: zone (from the `topology_kubernetes_io_zone` label when present).
    pub zone: String,
    pub cpu_cores: f64,
    pub ram_bytes: f64,
    pub cpu_core_hours: f64,
    pub ram_byte_hours: f64,
    pub gpu_hours: f64,
    pub gpu_count: f64,
    pub cpu_cost: f64,
    pub ram_cost: f64,
    pub gpu_cost: f64,
    /// Node: 1 for spot or preemptible, 0 otherwise.
    pub preemptible: f64,
    /// Node: fractional discount applied to CPU and RAM cost.
    pub discount: f64,
    /// Disk: bytes and byte-hours.
    pub bytes: f64,
    pub byte_hours: f64,
    /// Undiscounted cost for types that report only one (`cost`), 0 for nodes.
    pub cost: f64,
    pub adjustment: f64,
    pub credit: f64,
    /// `totalCost` as Kubecost reported it (see [`crate::cost::asset_total`]).
    pub total_cost: f64,
    pub null_fields: u32,
}

impl Default for Asset {
    fn default() -> Self {
        Asset {
            key: String::new(),
            asset_type: AssetType::Any,
            window: Window::default(),
            start: 0,
            end: 0,
            minutes: 0.0,
            cluster: String::new(),
            name: String::new(),
            provider: String::new(),
            provider_id: String::new(),
            account: String::new(),
            project: String::new(),
            service: String::new(),
            category: String::new(),
            labels: Vec::new(),
            node_type: String::new(),
            zone: String::new(),
            cpu_cores: 0.0,
            ram_bytes: 0.0,
            cpu_core_hours: 0.0,
            ram_byte_hours: 0.0,
            gpu_hours: 0.0,
            gpu_count: 0.0,
            cpu_cost: 0.0,
            ram_cost: 0.0,
            gpu_cost: 0.0,
            preemptible: 0.0,
            discount: 0.0,
            bytes: 0.0,
            byte_hours: 0.0,
            cost: 0.0,
            adjustment: 0.0,
            credit: 0.0,
            total_cost: 0.0,
            null_fields: 0,
        }
    }
}

/// A Kubecost budget (`/model/budgets`), or one from the bridge's config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budget {
    pub id: String,
    pub name: String,
    /// `allocations`, `asset`, `cloud` or `collections`.
    pub budget_type: String,
    /// What the budget covers: category (`namespace`, `cluster`, `label:team`, ...) to values.
    pub values: Vec<(String, Vec<String>)>,
    /// `weekly` or `monthly`.
    pub interval: String,
    /// Day of week (0 = Sunday) or day of month the interval starts on.
    pub interval_day: u32,
    pub spend_limit: f64,
    pub current_spend: f64,
    pub window: Window,
}

/// Cost of a workload spec before and after a change (`/model/prediction/speccost`), monthly rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecCostPrediction {
    pub namespace: String,
    pub controller_kind: String,
    pub controller_name: String,
    pub cost_before: MonthlyCost,
    pub cost_after: MonthlyCost,
    pub cost_change: MonthlyCost,
}

/// Monthly cost rates and resource hours, as in Kubecost's spec-cost prediction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonthlyCost {
    pub total_monthly_rate: f64,
    pub cpu_monthly_rate: f64,
    pub ram_monthly_rate: f64,
    pub gpu_monthly_rate: f64,
    pub monthly_cpu_core_hours: f64,
    pub monthly_ram_byte_hours: f64,
    pub monthly_gpu_hours: f64,
}

/// The kind of a Kubecost savings recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SavingsKind {
    /// `/model/savings/requestSizingV2`: container request right-sizing.
    RequestSizing,
    /// `/model/savings/clusterSizingETL`: node pool right-sizing.
    ClusterSizing,
    /// `/model/savings/abandonedWorkloads`: pods with no meaningful traffic.
    AbandonedWorkload,
}

impl SavingsKind {
    /// Returns the stable name stored and served for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            SavingsKind::RequestSizing => "request_sizing",
            SavingsKind::ClusterSizing => "cluster_sizing",
            SavingsKind::AbandonedWorkload => "abandoned_workload",
        }
    }
}

/// One savings recommendation from Kubecost, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct SavingsRecommendation {
    pub kind: SavingsKind,
    pub cluster: String,
    pub namespace: String,
    pub controller_kind: String,
    pub controller: String,
    /// Container (request sizing) or pod (abandoned workloads); empty for cluster sizing.
    pub target: String,
    /// Estimated monthly saving in the currency Kubecost reports.
    pub monthly_savings: f64,
    /// Human-readable summary of the recommendation (for example `cpu 500m -> 120m`).
    pub detail: String,
}
