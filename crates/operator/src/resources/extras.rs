//! The optional children: PodDisruptionBudget, Ingress (with ingress-nginx WebSocket
//! annotations) and HorizontalPodAutoscaler.

use super::*;

pub(super) fn pdb(room: &ChatRoom) -> PodDisruptionBudget {
    let name = room.name_any();
    PodDisruptionBudget {
        metadata: meta(room, name.clone(), Component::Server),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&name, Component::Server)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

/// Annotations ingress-nginx needs for long-lived WebSockets; `spec.ingress.annotations`
/// override them.
pub fn default_ingress_annotations() -> BTreeMap<String, String> {
    [
        ("nginx.ingress.kubernetes.io/proxy-read-timeout", "3600"),
        ("nginx.ingress.kubernetes.io/proxy-send-timeout", "3600"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// ingress-nginx cookie affinity, keeping a client on one pod: only with
/// `spec.service.sessionAffinity: ClientIP` (the replicas need none, they forward).
pub fn cookie_affinity_annotations() -> BTreeMap<String, String> {
    [
        ("nginx.ingress.kubernetes.io/affinity", "cookie"),
        ("nginx.ingress.kubernetes.io/affinity-mode", "persistent"),
        (
            "nginx.ingress.kubernetes.io/session-cookie-name",
            "hubbub-affinity",
        ),
        (
            "nginx.ingress.kubernetes.io/session-cookie-max-age",
            "86400",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub(super) fn ingress(room: &ChatRoom) -> Ingress {
    let name = room.name_any();
    let spec = room.spec.ingress.clone().unwrap_or_default();
    let host = spec.host.clone().unwrap_or_default();
    let mut annotations = default_ingress_annotations();
    if room.spec.service.session_affinity == SessionAffinity::ClientIP {
        annotations.extend(cookie_affinity_annotations());
    }
    annotations.extend(spec.annotations.clone());
    let mut metadata = meta(room, name.clone(), Component::Server);
    metadata.annotations = Some(annotations);
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: spec.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: Some(host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: name.clone(),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".into()),
                                    number: None,
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            tls: spec.tls.as_ref().map(|tls| {
                vec![IngressTLS {
                    hosts: Some(vec![host.clone()]),
                    secret_name: Some(tls.secret_name.clone()),
                }]
            }),
            ..IngressSpec::default()
        }),
        status: None,
    }
}

pub(super) fn hpa(room: &ChatRoom, auto: &crate::crd::AutoscalingSpec) -> HorizontalPodAutoscaler {
    let name = room.name_any();
    HorizontalPodAutoscaler {
        metadata: meta(room, name.clone(), Component::Server),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name,
            },
            min_replicas: Some(auto.min_replicas),
            max_replicas: auto.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(auto.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        status: None,
    }
}
