// The console's charts, drawn with Chart.js (vendored at build time, served from
// /web/vendor/ only as pinned; a classic script, so window.Chart). Charts are
// updated in place on every state the stream sends.

const charts = new Map(); // canvas id -> Chart
const STATE_COLOURS = { completed: "#17653a", aborted: "#a3261b", expired: "#a3261b", posting: "#8a5a00", fusing: "#8a5a00" };
const STAGE_COLOURS = ["#2450a6", "#6f8fd1", "#9aa7bd", "#a3261b", "#17653a", "#8a5a00", "#5b6472", "#c77dba"];

export function chartsAvailable() {
  return typeof window.Chart === "function";
}

const axis = (title, extra = {}) => ({ title: { display: true, text: title }, ...extra });

function upsert(id, config) {
  const existing = charts.get(id);
  if (existing && existing.config.type === config.type) {
    existing.data = config.data;
    existing.options.scales = config.scales;
    existing.update("none");
    return existing;
  }
  existing?.destroy();
  const chart = new window.Chart(document.getElementById(id), {
    type: config.type,
    data: config.data,
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      plugins: { legend: { display: config.legend ?? true } },
      scales: config.scales,
    },
  });
  charts.set(id, chart);
  return chart;
}

// Rounds over time: x = when it opened (seconds since the first shown), y = how long it
// ran (to its end, or so far), one dataset per state.
export function drawRounds(rounds, now) {
  const shown = rounds.slice(0, 50).reverse();
  const origin = shown.length ? shown[0].opened_at : now;
  const byState = new Map();
  for (const r of shown) {
    const end = r.ended_at ?? now;
    const list = byState.get(r.state) ?? [];
    list.push({ x: r.opened_at - origin, y: Math.max(0, end - r.opened_at), id: r.id });
    byState.set(r.state, list);
  }
  const datasets = [...byState.entries()].map(([state, data]) => ({
    label: state, data, backgroundColor: STATE_COLOURS[state] ?? "#5b6472", borderColor: STATE_COLOURS[state] ?? "#5b6472", pointRadius: 5,
  }));
  return upsert("chart-rounds", {
    type: "scatter",
    data: { datasets },
    scales: { x: axis("opened (s after the first shown)", { beginAtZero: true }), y: axis("duration (s)", { beginAtZero: true }) },
  });
}

export function drawGas(rounds, stages) {
  const shown = rounds.slice(0, 20).reverse();
  const used = stages.filter((s) => shown.some((r) => r.gas[s]));
  return upsert("chart-gas", {
    type: "bar",
    data: {
      labels: shown.map((r) => `#${r.id}`),
      datasets: used.map((stage, i) => ({
        label: stage, data: shown.map((r) => r.gas[stage] ?? 0), backgroundColor: STAGE_COLOURS[i % STAGE_COLOURS.length],
      })),
    },
    scales: { x: axis("round", { stacked: true }), y: axis("gas", { stacked: true, beginAtZero: true }) },
  });
}

export function drawLatency(requests) {
  const done = requests.filter((r) => r.latency !== null).slice(0, 200).reverse();
  return upsert("chart-latency", {
    type: "line",
    legend: false,
    data: {
      labels: done.map((r) => `#${r.id}`),
      datasets: [{ label: "latency (s)", data: done.map((r) => r.latency), borderColor: "#2450a6", backgroundColor: "#2450a6", pointRadius: 3 }],
    },
    scales: { x: axis("request"), y: axis("seconds (block timestamps)", { beginAtZero: true }) },
  });
}
