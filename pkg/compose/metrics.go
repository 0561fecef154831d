package compose

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	reg        *prometheus.Registry
	submitted  prometheus.Counter
	composes   *prometheus.CounterVec
	duration   prometheus.Histogram
	stage      *prometheus.HistogramVec
	buildStage *prometheus.HistogramVec
	failures   *prometheus.CounterVec
	uploads    *prometheus.CounterVec
}

// queueCollector reports River's waiting jobs per queue at each scrape.
type queueCollector struct {
	s    *Service
	desc *prometheus.Desc
}

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	depth, err := c.s.db.queueDepth(ctx)
	if err != nil {
		return
	}
	queues := map[string]bool{lockQueue: true}
	for _, a := range c.s.cfg.Arches {
		queues[BuildQueue(a)] = true
	}
	for q := range depth {
		queues[q] = true
	}
	for q := range queues {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(depth[q]), q)
	}
}

func newMetrics(s *Service) *metrics {
	buckets := []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		submitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ibuild_composes_submitted_total", Help: "Composes queued by this process."}),
		composes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ibuild_composes_finished_total", Help: "Composes finished, by status."}, []string{"status"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ibuild_compose_duration_seconds", Help: "Time from queueing to the end of a compose.", Buckets: buckets}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ibuild_compose_stage_duration_seconds", Help: "Time of a compose's steps: lock, build, upload.", Buckets: buckets}, []string{"step"}),
		buildStage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ibuild_build_stage_duration_seconds", Help: "Time of build stages that ran (not cached), by stage type.", Buckets: buckets}, []string{"stage"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ibuild_compose_failures_total", Help: "Failed steps, by step."}, []string{"step"}),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ibuild_uploads_total", Help: "Uploads, by target and result."}, []string{"target", "result"}),
	}
	m.reg.MustRegister(m.submitted, m.composes, m.duration, m.stage, m.buildStage, m.failures, m.uploads,
		queueCollector{s: s, desc: prometheus.NewDesc("ibuild_queue_depth", "Jobs waiting in a queue (one build queue per architecture).", []string{"queue"}, nil)},
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) finished(c *Compose) {
	m.composes.WithLabelValues(string(c.Status)).Inc()
	if c.Finished != nil {
		m.duration.Observe(c.Finished.Sub(c.Created).Seconds())
	}
}

// MetricsHandler serves the service's metrics in Prometheus's format.
func (s *Service) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
}
