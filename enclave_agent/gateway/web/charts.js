// The batch plots, drawn with Chart.js (vendored at build time, served by the gateway
// from /web/vendor/ only as pinned; loaded by index.html as a classic script, so it
// is window.Chart). Without it the page still answers, and says the plots are missing.

const charts = new Map(); // canvas id -> Chart

export function chartsAvailable() {
  return typeof window.Chart === "function";
}

function draw(id, config) {
  charts.get(id)?.destroy();
  const canvas = document.getElementById(id);
  const base = {
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    plugins: { legend: { display: config.legend ?? false } },
  };
  const chart = new window.Chart(canvas, {
    type: config.type,
    data: config.data,
    options: { ...base, scales: config.scales },
  });
  charts.set(id, chart);
  return chart;
}

const axis = (title, extra = {}) => ({ title: { display: true, text: title }, ...extra });
const unit = (title) => axis(title, { type: "linear", min: 0, max: 1 });

export function drawHistogram(id, bins, threshold) {
  return draw(id, {
    type: "bar",
    data: {
      labels: bins.map((b) => b.from.toFixed(2)),
      datasets: [
        {
          label: "rows",
          data: bins.map((b) => b.count),
          backgroundColor: bins.map((b) => (b.from >= threshold ? "#2450a6" : "#9aa7bd")),
          barPercentage: 1,
          categoryPercentage: 1,
        },
      ],
    },
    scales: { x: axis("score (lower edge of the bin)"), y: axis("rows", { beginAtZero: true, ticks: { precision: 0 } }) },
  });
}

export function drawRoc(id, points, auc) {
  return draw(id, {
    type: "line",
    legend: true,
    data: {
      datasets: [
        { label: `model (AUC ${auc.toFixed(3)})`, data: points, borderColor: "#2450a6", pointRadius: 0, stepped: false },
        { label: "chance", data: [{ x: 0, y: 0 }, { x: 1, y: 1 }], borderColor: "#9aa7bd", borderDash: [4, 4], pointRadius: 0 },
      ],
    },
    scales: { x: unit("false positive rate"), y: unit("true positive rate") },
  });
}

export function drawCalibration(id, bins) {
  return draw(id, {
    type: "line",
    legend: true,
    data: {
      datasets: [
        {
          label: "observed fraction of label 1",
          data: bins.map((b) => ({ x: b.predicted, y: b.observed })),
          borderColor: "#2450a6",
          backgroundColor: "#2450a6",
          pointRadius: bins.map((b) => Math.min(8, 2 + Math.sqrt(b.count))),
        },
        { label: "perfectly calibrated", data: [{ x: 0, y: 0 }, { x: 1, y: 1 }], borderColor: "#9aa7bd", borderDash: [4, 4], pointRadius: 0 },
      ],
    },
    scales: { x: unit("mean score in the bin"), y: unit("fraction with label 1") },
  });
}

export function clearCharts() {
  for (const chart of charts.values()) chart.destroy();
  charts.clear();
}
