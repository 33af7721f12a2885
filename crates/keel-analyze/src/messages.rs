//! Istio's analysis message catalogue (`pkg/config/analysis/msg/messages.yaml`): codes, names,
//! levels and text shapes, so output matches `istioctl analyze` line for line.

use std::fmt;

use keel_config::yaml::Pos;

/// Message level. Ordered worst first, as Istio sorts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Level {
    Error,
    Warning,
    Info,
}

impl Level {
    /// `true` when `self` is as bad as `threshold` or worse.
    pub fn reaches(&self, threshold: Level) -> bool {
        *self <= threshold
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Error => "Error",
            Level::Warning => "Warning",
            Level::Info => "Info",
        })
    }
}

/// A message type: code, name, level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType {
    pub code: &'static str,
    pub name: &'static str,
    pub level: Level,
}

/// The resource a message is about, and where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The kind's name as shown (`Gateway` for Istio's and the Gateway API's alike).
    pub kind: String,
    /// The kind's API group, which tells kinds of the same name apart (not shown).
    pub group: String,
    pub namespace: String,
    pub name: String,
    pub file: String,
    /// Line of the offending field, or of the resource's start.
    pub line: u32,
}

impl Origin {
    /// `Kind namespace/name`, or `Kind name` for objects without a namespace.
    pub fn friendly_name(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }

    /// `file:line` (just the file for JSON input, as istioctl does).
    pub fn reference(&self) -> Option<String> {
        if self.file.is_empty() {
            None
        } else if self.file.ends_with(".json") || self.line == 0 {
            Some(self.file.clone())
        } else {
            Some(format!("{}:{}", self.file, self.line))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    pub mtype: MessageType,
    pub text: String,
    pub origin: Option<Origin>,
}

impl Message {
    pub fn code(&self) -> &'static str {
        self.mtype.code
    }

    pub fn level(&self) -> Level {
        self.mtype.level
    }

    /// `https://istio.io/latest/docs/reference/config/analysis/ist0101/`: Istio's page for the code.
    pub fn documentation_url(&self) -> String {
        format!(
            "https://istio.io/latest/docs/reference/config/analysis/{}/?ref=keel-analyze",
            self.mtype.code.to_lowercase()
        )
    }

    pub fn with_line(mut self, pos: Option<Pos>) -> Self {
        if let (Some(o), Some(p)) = (self.origin.as_mut(), pos) {
            o.line = p.line;
        }
        self
    }
}

impl fmt::Display for Message {
    /// `Error [IST0101] (VirtualService default/reviews file.yaml:12) Referenced host not found: "reviewz"`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.mtype.level, self.mtype.code)?;
        if let Some(o) = &self.origin {
            write!(f, " ({}", o.friendly_name())?;
            if let Some(r) = o.reference() {
                write!(f, " {r}")?;
            }
            f.write_str(")")?;
        }
        write!(f, " {}", self.text)
    }
}

/// Go's `%q` for a string: double-quoted with Go escapes.
pub fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%v` for a string slice: `[a b c]`.
pub fn list<S: AsRef<str>>(items: &[S]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

macro_rules! catalogue {
    ( $( $konst:ident = $code:literal $name:literal $level:ident ),+ $(,)? ) => {
        $( pub const $konst: MessageType = MessageType { code: $code, name: $name, level: Level::$level }; )+
        /// Every message type Keel can emit.
        pub const ALL: &[MessageType] = &[ $( $konst ),+ ];
    };
}

catalogue! {
    INTERNAL_ERROR = "IST0001" "InternalError" Error,
    DEPRECATED = "IST0002" "Deprecated" Warning,
    REFERENCED_RESOURCE_NOT_FOUND = "IST0101" "ReferencedResourceNotFound" Error,
    NAMESPACE_NOT_INJECTED = "IST0102" "NamespaceNotInjected" Info,
    POD_MISSING_PROXY = "IST0103" "PodMissingProxy" Warning,
    SCHEMA_VALIDATION_ERROR = "IST0106" "SchemaValidationError" Error,
    MISPLACED_ANNOTATION = "IST0107" "MisplacedAnnotation" Warning,
    UNKNOWN_ANNOTATION = "IST0108" "UnknownAnnotation" Warning,
    CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS = "IST0109" "ConflictingMeshGatewayVirtualServiceHosts" Error,
    CONFLICTING_SIDECAR_WORKLOAD_SELECTORS = "IST0110" "ConflictingSidecarWorkloadSelectors" Error,
    MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS = "IST0111" "MultipleSidecarsWithoutWorkloadSelectors" Error,
    VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED = "IST0112" "VirtualServiceDestinationPortSelectorRequired" Error,
    DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES = "IST0116" "DeploymentAssociatedToMultipleServices" Warning,
    PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION = "IST0118" "PortNameIsNotUnderNamingConvention" Info,
    NAMESPACE_MULTIPLE_INJECTION_LABELS = "IST0123" "NamespaceMultipleInjectionLabels" Warning,
    INVALID_ANNOTATION = "IST0125" "InvalidAnnotation" Warning,
    NO_MATCHING_WORKLOADS_FOUND = "IST0127" "NoMatchingWorkloadsFound" Warning,
    NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL = "IST0128" "NoServerCertificateVerificationDestinationLevel" Warning,
    NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL = "IST0129" "NoServerCertificateVerificationPortLevel" Warning,
    VIRTUAL_SERVICE_UNREACHABLE_RULE = "IST0130" "VirtualServiceUnreachableRule" Warning,
    VIRTUAL_SERVICE_INEFFECTIVE_MATCH = "IST0131" "VirtualServiceIneffectiveMatch" Info,
    VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY = "IST0132" "VirtualServiceHostNotFoundInGateway" Warning,
    SCHEMA_WARNING = "IST0133" "SchemaWarning" Warning,
    SERVICE_ENTRY_ADDRESSES_REQUIRED = "IST0134" "ServiceEntryAddressesRequired" Warning,
    DEPRECATED_ANNOTATION = "IST0135" "DeprecatedAnnotation" Info,
    DEPLOYMENT_CONFLICTING_PORTS = "IST0137" "DeploymentConflictingPorts" Warning,
    GATEWAY_DUPLICATE_CERTIFICATE = "IST0138" "GatewayDuplicateCertificate" Warning,
    INVALID_WEBHOOK = "IST0139" "InvalidWebhook" Error,
    INGRESS_ROUTE_RULES_NOT_AFFECTED = "IST0140" "IngressRouteRulesNotAffected" Warning,
    INVALID_APPLICATION_UID = "IST0144" "InvalidApplicationUID" Warning,
    CONFLICTING_GATEWAYS = "IST0145" "ConflictingGateways" Error,
    IMAGE_AUTO_WITHOUT_INJECTION_WARNING = "IST0146" "ImageAutoWithoutInjectionWarning" Warning,
    IMAGE_AUTO_WITHOUT_INJECTION_ERROR = "IST0147" "ImageAutoWithoutInjectionError" Error,
    NAMESPACE_INJECTION_ENABLED_BY_DEFAULT = "IST0148" "NamespaceInjectionEnabledByDefault" Info,
    JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTHN = "IST0149" "JwtClaimBasedRoutingWithoutRequestAuthN" Error,
    EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME = "IST0150" "ExternalNameServiceTypeInvalidPortName" Warning,
    ENVOY_FILTER_USES_RELATIVE_OPERATION = "IST0151" "EnvoyFilterUsesRelativeOperation" Warning,
    ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY = "IST0152" "EnvoyFilterUsesReplaceOperationIncorrectly" Error,
    ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY = "IST0153" "EnvoyFilterUsesAddOperationIncorrectly" Error,
    ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY = "IST0154" "EnvoyFilterUsesRemoveOperationIncorrectly" Error,
    ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION = "IST0155" "EnvoyFilterUsesRelativeOperationWithProxyVersion" Warning,
    INVALID_TELEMETRY_PROVIDER = "IST0157" "InvalidTelemetryProvider" Warning,
    PODS_ISTIO_PROXY_IMAGE_MISMATCH_IN_NAMESPACE = "IST0158" "PodsIstioProxyImageMismatchInNamespace" Warning,
    CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS = "IST0159" "ConflictingTelemetryWorkloadSelectors" Error,
    MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS = "IST0160" "MultipleTelemetriesWithoutWorkloadSelectors" Error,
    INVALID_GATEWAY_CREDENTIAL = "IST0161" "InvalidGatewayCredential" Error,
    GATEWAY_PORT_NOT_DEFINED_ON_SERVICE = "IST0162" "GatewayPortNotDefinedOnService" Warning,
    INVALID_EXTERNAL_CONTROL_PLANE_CONFIG = "IST0163" "InvalidExternalControlPlaneConfig" Warning,
    EXTERNAL_CONTROL_PLANE_ADDRESS_IS_NOT_A_HOSTNAME = "IST0164" "ExternalControlPlaneAddressIsNotAHostname" Info,
    REFERENCED_INTERNAL_GATEWAY = "IST0165" "ReferencedInternalGateway" Warning,
    INEFFECTIVE_SELECTOR = "IST0166" "IneffectiveSelector" Warning,
    INEFFECTIVE_POLICY = "IST0167" "IneffectivePolicy" Warning,
    NEGATIVE_CONDITION_STATUS = "IST0171" "NegativeConditionStatus" Warning,
    DESTINATION_RULE_SUBSET_NOT_SELECT_PODS = "IST0173" "DestinationRuleSubsetNotSelectPods" Error,
    UNKNOWN_DESTINATION_RULE_HOST = "IST0174" "UnknownDestinationRuleHost" Warning,
    CONFLICTING_SERVICE_ENTRY_PROTOCOL = "IST0177" "ConflictingServiceEntryProtocol" Warning,
}

/// Looks a message type up by code (`IST0101`), for `--suppress`.
pub fn by_code(code: &str) -> Option<MessageType> {
    ALL.iter().copied().find(|m| m.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_istioctl() {
        let m = Message {
            mtype: REFERENCED_RESOURCE_NOT_FOUND,
            text: format!("Referenced host not found: {}", q("reviewz")),
            origin: Some(Origin {
                kind: "VirtualService".into(),
                group: "networking.istio.io".into(),
                namespace: "default".into(),
                name: "reviews".into(),
                file: "vs.yaml".into(),
                line: 12,
            }),
        };
        assert_eq!(
            m.to_string(),
            "Error [IST0101] (VirtualService default/reviews vs.yaml:12) Referenced host not found: \"reviewz\""
        );
        assert_eq!(list(&["a", "b"]), "[a b]");
        assert!(Level::Error.reaches(Level::Warning));
        assert!(!Level::Info.reaches(Level::Warning));
        let codes: std::collections::BTreeSet<_> = ALL.iter().map(|m| m.code).collect();
        assert_eq!(codes.len(), ALL.len(), "codes are unique");
    }
}
