// The consortium page: one EventSource on /api/stream; every `state` event carries the
// whole view, and the page redraws from it (no reload, no polling). Text only goes in
// through textContent: names come from the chain and are not trusted.

import { chartsAvailable, drawGas, drawLatency, drawRounds } from "./charts.js";

const STAGES = ["open", "post shares", "close posting", "complaints", "fuse", "finalize", "reveal", "blame", "other"];
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells, attrs = {}) {
  const tr = document.createElement("tr");
  for (const [k, v] of Object.entries(attrs)) tr.setAttribute(k, v);
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

const time = (ts) => (ts ? new Date(ts * 1000).toISOString().replace("T", " ").replace(".000Z", "Z") : "–");
const short = (hex) => (hex && hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex ?? "");
const gas = (n) => Number(n).toLocaleString("en");
const names = (list) => list.map((m) => m.name).join(", ");
const seconds = (s) => (s === null || s === undefined ? "–" : `${s} s`);

function td(text, cls, title) {
  const cell = el("td", text, cls);
  if (title) cell.title = title;
  return cell;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function blameText(r) {
  const parts = [];
  if (r.state === "aborted") {
    parts.push(`aborted (${r.abort_reason})${r.culprits.length ? ": " + names(r.culprits) : ""}`);
  }
  for (const x of r.exclusions) parts.push(`excluded ${x.name} (${x.reason})`);
  for (const b of r.blames) parts.push(`blamed ${b.name} (${b.reason}, by ${b.reporter})`);
  return parts.join("; ");
}

function renderRounds(rounds, kept) {
  $("rounds-empty").hidden = rounds.length > 0;
  $("rounds-more").textContent = kept > rounds.length ? `The latest ${rounds.length} of ${kept} rounds kept; all in /api/rounds.` : "";
  fill($("rounds").tBodies[0], rounds.map((r) => row([
    td(`#${r.id}`),
    td(r.state, `state state-${r.state}`),
    td(`${r.kind}, ${r.scheme}${r.scheme === "shamir" ? ` t=${r.threshold}` : ""}/${r.encoding}, d=${r.length}`),
    td(time(r.opened_at)),
    td(`posting ${time(r.posting_deadline)}\nend ${time(r.deadline)}`, "deadlines"),
    td(names(r.participants), "participants"),
    td(r.contributors.length ? `${r.contributors.length}: ${names(r.contributors)}` : `posted ${r.posted.length}/${r.participants.length}`, "contributors"),
    td(gas(r.gas_total), "gas", Object.entries(r.gas).map(([k, v]) => `${k}: ${gas(v)}`).join("\n")),
    td(blameText(r), "blame bad"),
  ], { "data-round-id": r.id, "data-state": r.state })));
}

function renderMembers(members) {
  fill($("members").tBodies[0], members.map((m) => row([
    td(m.organisation, "organisation"),
    td(m.role),
    td(short(m.enclave), "mono", m.enclave),
    td(short(m.measurement), "mono", m.measurement),
    td(m.evidence, "evidence"),
    td(`${time(m.registered_at)} (epoch ${m.epoch})`),
    td(m.active ? "active" : `left (${m.revoked_reason})`, m.active ? "state state-active" : "state state-left"),
  ], { "data-enclave": m.enclave })));
}

function renderEpochs(epochs) {
  fill($("epochs").tBodies[0], epochs.map((e) => row([
    td(e.epoch),
    td(e.members),
    td(time(e.started_at)),
    td(time(e.sync_deadline)),
    td(e.state + (e.synchronised_at ? ` at ${time(e.synchronised_at)}` : ""), `state state-${e.state}`),
    td(`${e.digests.length}/${e.members}${e.digests.length ? ": " + e.digests.join(", ") : ""}`),
  ], { "data-epoch": e.epoch })));
}

function renderRequests(requests, usage) {
  $("requests-empty").hidden = requests.length > 0;
  fill($("usage").tBodies[0], usage.map((u) => row([
    td(u.model_name), td(short(u.client), "mono", u.client), td(u.requests), td(u.rows), td(u.completed),
    td(u.refunded), td(seconds(u.mean_latency)), td(gas(u.gas)),
  ])));
  fill($("requests").tBodies[0], requests.slice(0, 100).map((r) => row([
    td(`#${r.id}`), td(r.model_name), td(short(r.client), "mono", r.client), td(r.rows),
    td(r.state, `state state-${r.state}`), td(seconds(r.latency)), td(r.partials), td(gas(r.gas)),
  ], { "data-request-id": r.id })));
}

function renderActivity(activity) {
  $("activity").replaceChildren(...activity.map((a) => el("li", `${time(a.time)} · block ${a.block} · ${a.text}`, a.kind)));
}

function renderChain(s) {
  const chain = s.chain;
  const banner = $("banner");
  if (!chain.reachable) {
    const read = s.head.block ? `Showing what was read up to block ${s.head.block}` : "Nothing was read yet";
    banner.textContent = `The chain is unreachable: ${chain.error}. ${read}; retrying.`;
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
  $("chain").textContent = `${chain.rpc_url} (chain id ${chain.chain_id})${chain.reachable ? "" : " — unreachable"}`;
  $("head").textContent = s.head.block ? `${s.head.block} at ${time(s.head.time)}` : "–";
  const e = s.epoch;
  $("epoch").textContent = e ? `${e.epoch}: ${e.state}, ${e.members} members, sync deadline ${time(e.sync_deadline)}` : "none yet";
  $("epoch").className = e ? `state state-${e.state}` : "";
  $("updated").textContent = new Date().toISOString().slice(11, 19) + "Z";
}

function renderCharts(s) {
  if (!chartsAvailable()) {
    $("charts-status").textContent = "Charts unavailable: the charting library was not served (run `make setup`).";
    return;
  }
  $("charts-status").textContent = "";
  drawRounds(s.rounds, s.head.time);
  drawGas(s.rounds, STAGES);
  drawLatency(s.requests);
}

function render(s) {
  renderChain(s);
  renderRounds(s.rounds, s.kept.rounds);
  renderMembers(s.members);
  renderEpochs(s.epochs);
  renderRequests(s.requests, s.usage);
  renderActivity(s.activity);
  renderCharts(s);
  document.body.dataset.version = String(s.version);
}

function connect() {
  const source = new EventSource("/api/stream");
  source.addEventListener("state", (event) => {
    try {
      render(JSON.parse(event.data));
    } catch (err) {
      $("banner").textContent = `Could not show the state: ${err.message}`;
      $("banner").hidden = false;
    }
  });
  source.addEventListener("error", () => {
    if (source.readyState !== EventSource.OPEN) {
      $("banner").textContent = "The console service does not answer; reconnecting…";
      $("banner").hidden = false;
      $("chain").textContent = "console service unreachable";
    }
  });
}

// Chart.js loads deferred; the module runs after it, so window.Chart is set by now.
connect();
