//! Business metrics, recorded by the activities on the worker's Prometheus endpoint (the same
//! meter as the SDK's own worker metrics).
//!
//! Counts are taken where the database says something changed (a status row inserted, a refund
//! recorded), not per activity attempt, so retries do not inflate them.

use orderflow_domain::OrderStatus;
use std::sync::Arc;
use std::time::Duration;
use temporalio_common::telemetry::metrics::{
    CoreMeter, Counter, HistogramDuration, MetricKeyValue, MetricParameters, NewAttributes,
};

pub struct OrderMetrics {
    meter: Arc<dyn CoreMeter>,
    orders: Counter,
    refunds: Counter,
    activity_failures: Counter,
    payment_latency: HistogramDuration,
    close_lateness: HistogramDuration,
}

impl std::fmt::Debug for OrderMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrderMetrics")
    }
}

/// An instrument's name, description and unit (every Orderflow metric is declared this way).
pub fn params(
    name: &'static str,
    description: &'static str,
    unit: &'static str,
) -> MetricParameters {
    MetricParameters::builder()
        .name(name)
        .description(description)
        .unit(unit)
        .build()
}

impl OrderMetrics {
    pub fn new(meter: Arc<dyn CoreMeter>) -> Arc<Self> {
        Arc::new(OrderMetrics {
            orders: meter.counter(params(
                "orderflow_orders_total",
                "Orders reaching a status, by status (and reason code for REJECTED)",
                "",
            )),
            refunds: meter.counter(params(
                "orderflow_refunds_total",
                "Refunds recorded, by provider",
                "",
            )),
            activity_failures: meter.counter(params(
                "orderflow_activity_failures_total",
                "Failed activity attempts, by activity and failure code",
                "",
            )),
            payment_latency: meter.histogram_duration(params(
                "orderflow_payment_latency",
                "Order start to PAID",
                "duration",
            )),
            close_lateness: meter.histogram_duration(params(
                "orderflow_close_lateness",
                "Payment deadline to CLOSED",
                "duration",
            )),
            meter,
        })
    }

    fn attrs(
        &self,
        pairs: &[(&'static str, String)],
    ) -> temporalio_common::telemetry::metrics::MetricAttributes {
        self.meter.new_attributes(NewAttributes::from(
            pairs
                .iter()
                .map(|(k, v)| MetricKeyValue::new(*k, v.clone())),
        ))
    }

    pub fn order_reached(&self, status: OrderStatus, reason_code: Option<&str>) {
        let mut pairs = vec![("status", status.as_str().to_owned())];
        if status == OrderStatus::Rejected {
            pairs.push(("reason", reason_code.unwrap_or("OTHER").to_owned()));
        }
        self.orders.add(1, &self.attrs(&pairs));
    }

    pub fn refunded(&self, provider: &str) {
        self.refunds
            .add(1, &self.attrs(&[("provider", provider.to_owned())]));
    }

    pub fn activity_failed(&self, activity: &'static str, code: &str) {
        self.activity_failures.add(
            1,
            &self.attrs(&[("activity", activity.to_owned()), ("code", code.to_owned())]),
        );
    }

    pub fn payment_latency(&self, latency: Duration) {
        self.payment_latency.record(latency, &self.attrs(&[]));
    }

    pub fn close_lateness(&self, lateness: Duration) {
        self.close_lateness.record(lateness, &self.attrs(&[]));
    }
}
