//! Prometheus metrics: the exposition formats, a lock-free histogram, and a small writer
//! for metric families computed at scrape time.
//!
//! Servers keep hot-path counters as relaxed atomics and compute everything else (gauges
//! over partitions, sessions, groups) when scraped, through a [`Collector`] that reads their
//! state in place. The text comes from `prometheus-client`'s encoders: Prometheus text
//! 0.0.4 by default, OpenMetrics 1.0 when the scraper asks for it.

pub mod histogram;
pub mod process;

use histogram::Snapshot;
pub use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The exposition format of one scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`, what Prometheus scrapes by default.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics if it names it (Prometheus
    /// sends it first, with a higher weight, when it prefers it), Prometheus text
    /// otherwise.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let prefers_open_metrics = accept.is_some_and(|a| {
            a.split(',').any(|part| {
                let mut fields = part.split(';').map(str::trim);
                let media = fields.next().unwrap_or("");
                let q = fields
                    .find_map(|f| f.strip_prefix("q="))
                    .and_then(|q| q.parse::<f64>().ok())
                    .unwrap_or(1.0);
                media.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
            })
        });
        if prefers_open_metrics {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Encodes what `collector` shows, in `format`.
pub fn render(format: Format, collector: impl Collector) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::with_capacity(64 * 1024);
    match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

/// Writes metric families into a scrape. Counter names are given without `_total`: the
/// encoder adds it.
#[derive(Debug)]
pub struct Families<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl<'a> Families<'a> {
    pub fn new(encoder: DescriptorEncoder<'a>) -> Families<'a> {
        Families { encoder }
    }

    fn family<'s>(
        &'s mut self,
        name: &'s str,
        help: &str,
        kind: MetricType,
    ) -> Result<MetricEncoder<'s>, std::fmt::Error> {
        self.encoder.encode_descriptor(name, help, None, kind)
    }

    /// One unlabelled gauge.
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        value: impl EncodeGaugeValue,
    ) -> std::fmt::Result {
        self.family(name, help, MetricType::Gauge)?
            .encode_gauge(&value)
    }

    /// One unlabelled sample of no declared type (`untyped`), for counters whose
    /// established names lack `_total`.
    pub fn untyped(&mut self, name: &str, help: &str, value: i64) -> std::fmt::Result {
        self.family(name, help, MetricType::Unknown)?
            .encode_gauge(&value)
    }

    /// A gauge with one sample per label set.
    pub fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> std::fmt::Result {
        let mut family = self.family(name, help, MetricType::Gauge)?;
        for (labels, value) in samples {
            family.encode_family(&labels)?.encode_gauge(&value)?;
        }
        Ok(())
    }

    /// One unlabelled counter.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> std::fmt::Result {
        self.family(name, help, MetricType::Counter)?
            .encode_counter::<NoLabelSet, u64, u64>(&value, None)
    }

    /// One unlabelled counter of a fractional quantity (seconds).
    pub fn counter_f64(&mut self, name: &str, help: &str, value: f64) -> std::fmt::Result {
        self.family(name, help, MetricType::Counter)?
            .encode_counter::<NoLabelSet, f64, f64>(&value, None)
    }

    /// A counter with one sample per label set.
    pub fn counters<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, u64)>,
    ) -> std::fmt::Result {
        let mut family = self.family(name, help, MetricType::Counter)?;
        for (labels, value) in samples {
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, u64, u64>(&value, None)?;
        }
        Ok(())
    }

    /// One unlabelled histogram.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Snapshot) -> std::fmt::Result {
        self.family(name, help, MetricType::Histogram)?
            .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.per_bucket(), None)
    }

    /// A histogram with one series per label set.
    pub fn histograms<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (L, Snapshot)>,
    ) -> std::fmt::Result {
        let mut family = self.family(name, help, MetricType::Histogram)?;
        for (labels, h) in series {
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.per_bucket(), None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Sample;

    impl Collector for Sample {
        fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
            let mut f = Families::new(encoder);
            f.gauge("znode_count", "Znodes", 5i64)?;
            f.counters(
                "kafka_server_brokertopicmetrics_messagesin",
                "Messages in",
                [([("topic", "orders")], 3)],
            )?;
            let h = histogram::Histogram::seconds();
            h.observe(std::time::Duration::from_millis(2));
            h.observe(std::time::Duration::from_millis(200));
            f.histograms(
                "fjord_request_seconds",
                "Time",
                [([("api", "Produce")], h.snapshot())],
            )
        }
    }

    #[test]
    fn both_formats() {
        let text = render(Format::Prometheus, Sample).unwrap();
        assert!(
            text.contains("# TYPE znode_count gauge\nznode_count 5\n"),
            "{text}"
        );
        assert!(text.contains(
            "# TYPE kafka_server_brokertopicmetrics_messagesin_total counter\nkafka_server_brokertopicmetrics_messagesin_total{topic=\"orders\"} 3\n"
        ), "{text}");
        assert!(
            text.contains("fjord_request_seconds_bucket{api=\"Produce\",le=\"0.0025\"} 1\n"),
            "{text}"
        );
        for cumulative in [
            "fjord_request_seconds_bucket{api=\"Produce\",le=\"0.25\"} 2\n",
            "fjord_request_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 2\n",
            "fjord_request_seconds_count{api=\"Produce\"} 2\n",
        ] {
            assert!(text.contains(cumulative), "{cumulative} in {text}");
        }
        assert!(!text.contains("# EOF"));
        let om = render(Format::OpenMetrics, Sample).unwrap();
        assert!(
            om.contains("# TYPE kafka_server_brokertopicmetrics_messagesin counter\n"),
            "{om}"
        );
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn negotiation() {
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Prometheus
        );
    }
}
