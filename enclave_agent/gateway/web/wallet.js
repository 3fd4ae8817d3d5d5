// The wallet page of the gateway: a client with CLIENT_ROLE on chain signs each
// request with its wallet (EIP-712, eth_signTypedData_v4) instead of holding an
// API key. It talks only to this gateway and to the injected EIP-1193 wallet.

import * as analysis from "./analysis.js";
import { renderCard, formatBound } from "./card.js";
import { chartsAvailable, drawCalibration, drawHistogram, drawRoc } from "./charts.js";

const $ = (id) => document.getElementById(id);
// status: the element next to the button whose action runs (its messages and errors go there)
const state = { deployment: null, models: [], account: null, busy: false, status: "load-status" };

class ApiError extends Error {
  constructor(status, body) {
    let text = `HTTP ${status}: ${body.error || "request failed"}`;
    if (body.field) text += ` (${body.field})`;
    if (body.reason) text += ` [${body.reason}${body.args ? " " + JSON.stringify(body.args) : ""}]`;
    super(text);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let payload;
  try {
    payload = await response.json();
  } catch {
    payload = { error: response.statusText };
  }
  if (!response.ok) throw new ApiError(response.status, payload);
  return payload;
}

function wallet() {
  if (!window.ethereum) {
    throw new Error("no wallet found: install or unlock an EIP-1193 wallet (MetaMask, Rabby, Frame…) and reload");
  }
  return window.ethereum;
}

function say(text, kind = "info") {
  const message = $(state.status);
  message.textContent = text;
  message.className = `status ${kind}`;
}

function walletError(error) {
  // EIP-1193: 4001 is the user's refusal.
  if (error && error.code === 4001) return "refused in the wallet: nothing was sent";
  return error && error.message ? error.message : String(error);
}

// Decimal ETH to wei without floating point ("0.001" -> 10^15).
export function parseEther(text) {
  const match = /^\s*(\d+)(?:\.(\d{0,18}))?\s*$/.exec(text);
  if (!match) throw new Error(`"${text}" is not an amount of ETH (up to 18 decimals)`);
  return BigInt(match[1]) * 10n ** 18n + BigInt((match[2] || "").padEnd(18, "0"));
}

export function formatEther(wei) {
  const value = BigInt(wei);
  const whole = value / 10n ** 18n;
  const fraction = (value % 10n ** 18n).toString().padStart(18, "0").replace(/0+$/, "");
  return fraction ? `${whole}.${fraction} ETH` : `${whole} ETH`;
}

function selectedModel() {
  return state.models.find((m) => String(m.id) === $("model").value);
}

function renderInputs() {
  const model = selectedModel();
  const box = $("inputs");
  box.replaceChildren();
  renderCard($("card"), model, formatEther);
  if (!model) return;
  const statistic = model.kind === "statistic";
  $("model-fee").textContent = `fee ${formatEther(model.fee_wei)} per answer`;
  // A statistic takes a column, no numbers: no row inputs, no pasting, no CSV.
  $("score-only").hidden = statistic;
  $("csv-section").hidden = statistic;
  $("ask").textContent = statistic ? "Sign and ask the statistic" : "Sign and send";
  if (statistic) {
    const label = document.createElement("label");
    label.textContent = "column";
    label.htmlFor = "statistic-column";
    const select = document.createElement("select");
    select.id = "statistic-column";
    for (const name of model.features) select.add(new Option(name, name));
    box.append(label, select);
    return;
  }
  const bounds = model.input_range ? model.input_range.bounds : {};
  const units = (model.card && model.card.units) || {};
  for (const name of model.features) {
    const label = document.createElement("label");
    label.textContent = units[name] && units[name] !== "1" ? `${name} (${units[name]})` : name;
    label.htmlFor = `feature-${name}`;
    const input = document.createElement("input");
    input.id = `feature-${name}`;
    input.name = name;
    input.type = "text";
    input.inputMode = "decimal";
    input.autocomplete = "off";
    input.required = true;
    input.placeholder = formatBound(bounds[name]);
    input.title = `accepted: ${formatBound(bounds[name])}`;
    box.append(label, input);
  }
}

// A finite number, or an error naming where the text came from ("12,5" is not one).
function toNumber(text, where) {
  const trimmed = text.trim();
  const value = Number(trimmed);
  if (trimmed === "" || !Number.isFinite(value)) throw new Error(`${where}: "${trimmed}" is not a number`);
  return value;
}

// What the request asks (the gateway hashes its canonical bytes for the signature).
function readInputs(model) {
  if (model.kind === "statistic") return { statistic: { column: $("statistic-column").value } };
  const features = {};
  for (const name of model.features) {
    const field = $(`feature-${name}`);
    try {
      features[name] = toNumber(field.value, name);
    } catch (error) {
      field.focus();
      throw error;
    }
  }
  return { features };
}

// A pasted row: {"name": value, ...} or values in feature order, comma-separated.
export function parseRow(text, features) {
  const trimmed = text.trim();
  if (trimmed.startsWith("{")) {
    const row = JSON.parse(trimmed);
    const unknown = Object.keys(row).filter((name) => !features.includes(name));
    if (unknown.length) throw new Error(`unknown feature ${unknown[0]}`);
    return row;
  }
  const values = trimmed.split(",").map((v) => v.trim());
  if (values.length !== features.length) {
    throw new Error(`expected ${features.length} comma-separated values, got ${values.length}`);
  }
  return Object.fromEntries(features.map((name, i) => [name, values[i]]));
}

function fill() {
  const model = selectedModel();
  if (!model || model.kind === "statistic") throw new Error("pick a scoring model first");
  const row = parseRow($("paste").value, model.features);
  for (const [name, value] of Object.entries(row)) $(`feature-${name}`).value = String(value);
  say(`filled ${Object.keys(row).length} features`);
}

async function refreshAccount() {
  if (!state.account) return;
  const info = await api("GET", `/v1/clients/${state.account}`);
  $("access").textContent = info.access ? "granted (CLIENT_ROLE)" : "none: ask the consortium's governor for CLIENT_ROLE";
  $("access").className = info.access ? "ok" : "bad";
  $("quota").textContent = `${info.used} of ${info.quota} answers used`;
  $("balance").textContent = formatEther(info.balance_wei);
}

async function switchChain(ethereum) {
  const { chain_id: id, rpc_url: rpcUrl } = state.deployment;
  const chainId = "0x" + id.toString(16);
  try {
    await ethereum.request({ method: "wallet_switchEthereumChain", params: [{ chainId }] });
  } catch (error) {
    // EIP-3085: 4902 is a chain the wallet does not know yet; offer the consortium's.
    if (!error || error.code !== 4902 || !rpcUrl) throw error;
    await ethereum.request({
      method: "wallet_addEthereumChain",
      params: [{ chainId, chainName: `enclave-share (chain ${id})`, rpcUrls: [rpcUrl], nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 } }],
    });
  }
}

async function connect() {
  const ethereum = wallet();
  const [account] = await ethereum.request({ method: "eth_requestAccounts" });
  if (!account) throw new Error("the wallet shared no account");
  const chainId = parseInt(await ethereum.request({ method: "eth_chainId" }), 16);
  if (chainId !== state.deployment.chain_id) {
    say(`switching the wallet from chain ${chainId} to ${state.deployment.chain_id}…`);
    await switchChain(ethereum);
  }
  state.account = account;
  $("account").textContent = account;
  $("connect").textContent = "Connected";
  $("ask").disabled = false;
  $("ask-csv").disabled = false;
  $("deposit").disabled = false;
  await refreshAccount();
  say("wallet connected");
}

async function waitForReceipt(hash) {
  for (let i = 0; i < 240; i++) {
    const receipt = await wallet().request({ method: "eth_getTransactionReceipt", params: [hash] });
    if (receipt) return receipt;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`transaction ${hash} was not mined in 2 minutes`);
}

async function deposit() {
  const wei = parseEther($("deposit-amount").value);
  if (wei === 0n) throw new Error("deposit a positive amount");
  say("confirm the deposit in your wallet…");
  const hash = await wallet().request({
    method: "eth_sendTransaction",
    params: [{ from: state.account, to: state.deployment.deposit.to, value: "0x" + wei.toString(16), data: state.deployment.deposit.data }],
  });
  say(`deposit ${hash} sent, waiting for it to be mined…`);
  const receipt = await waitForReceipt(hash);
  if (receipt.status !== "0x1") throw new Error(`deposit ${hash} reverted`);
  await refreshAccount();
  say(`deposited ${formatEther(wei)}`, "ok");
}

// End-to-end sealed answers: an X25519 key made in this page (not extractable), the
// gateway seals to it (X25519 + HKDF-SHA256 + AES-256-GCM, crypto/sealed_box.py).
const SEALED_BOX_INFO = "enclave-share/sealed-box/v1";
const utf8 = (text) => new TextEncoder().encode(text);

function fromHex(hex) {
  if (!/^0x([0-9a-fA-F]{2})*$/.test(hex)) throw new Error("the gateway sent malformed hex");
  return Uint8Array.from(hex.slice(2).match(/../g) || [], (byte) => parseInt(byte, 16));
}

const toHex = (bytes) => "0x" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export async function newResultKey() {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { privateKey: pair.privateKey, publicKey };
}

export async function openSealed(key, sealed, requestId, row) {
  const ephemeral = fromHex(sealed.ephemeral_public);
  const blob = fromHex(sealed.ciphertext);
  const peer = await crypto.subtle.importKey("raw", ephemeral, { name: "X25519" }, false, []);
  const shared = new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: peer }, key.privateKey, 256));
  if (shared.every((b) => b === 0)) throw new Error("the sealed answer used a degenerate key");
  const material = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
  const aes = await crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info: concat(utf8(SEALED_BOX_INFO), ephemeral, key.publicKey) },
    material,
    { name: "AES-GCM", length: 256 },
    false,
    ["decrypt"],
  );
  let plain;
  try {
    plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: blob.slice(0, 12), additionalData: utf8(`enclave-share/result/v2/${requestId}/${row}`) },
      aes,
      blob.slice(12),
    );
  } catch {
    throw new Error(`the sealed answer to request ${requestId} row ${row} does not open with this page's key`);
  }
  return JSON.parse(new TextDecoder().decode(plain));
}

function describe(answer) {
  if ("score" in answer) return `score ${answer.score.toFixed(4)}, label ${answer.label}`;
  return `sum ${answer.sum.toPrecision(6)}, mean ${answer.mean.toPrecision(6)}, std ${answer.std.toPrecision(6)} (population), count ${answer.count}`;
}

const shortHash = (hash) => `${hash.slice(0, 6)}…${hash.slice(-4)}`;

// One receipt per request: a link to the gateway's record of it, and its two
// transactions (shortened; the whole hash in the title and data attributes).
function receipt(answer, rows) {
  const link = document.createElement("a");
  link.href = `/v1/requests/${answer.request_id}`;
  link.target = "_blank";
  link.rel = "noopener";
  link.textContent = `request ${answer.request_id}`;
  const txs = document.createElement("span");
  txs.className = "mono";
  txs.textContent = ` submit ${shortHash(answer.tx.submit)} · complete ${shortHash(answer.tx.complete)}`;
  txs.title = `submitRequest ${answer.tx.submit}\ncompleteRequest ${answer.tx.complete}`;
  const box = document.createElement("span");
  box.className = "receipt";
  box.dataset.submit = answer.tx.submit;
  box.dataset.complete = answer.tx.complete;
  box.append(link, txs);
  if (rows !== undefined) box.append(` · ${rows} row${rows > 1 ? "s" : ""}`);
  return box;
}

function addAnswer(model, answer) {
  const row = document.createElement("tr");
  row.dataset.requestId = answer.request_id;
  const shown = describe(answer) + (answer.sealed ? "\nsealed to this page's key" : "");
  for (const text of [String(answer.request_id), model.name, shown]) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  const cell = document.createElement("td");
  cell.append(receipt(answer));
  row.append(cell);
  $("answers").tBodies[0].prepend(row);
}

// Sign only what this page asked for: its chain, contract, account and model.
export function checkPrepared(typed, model) {
  const { domain, message } = typed;
  const problems = [];
  if (Number(domain.chainId) !== state.deployment.chain_id) problems.push(`chain ${domain.chainId}`);
  if (String(domain.verifyingContract).toLowerCase() !== state.deployment.contracts.InferenceGateway.toLowerCase()) {
    problems.push(`contract ${domain.verifyingContract}`);
  }
  if (String(message.client).toLowerCase() !== state.account.toLowerCase()) problems.push(`client ${message.client}`);
  if (Number(message.modelId) !== model.id) problems.push(`model ${message.modelId}`);
  if (problems.length) throw new Error(`the gateway prepared a different request (${problems.join(", ")}): not signed`);
}

// Prepare, check, sign and send one request (a row, a batch of rows or a statistic);
// the answers come back opened if they were sealed.
async function send(model, inputs) {
  const prepared = await api("POST", "/v1/inference/typed-data", { model: model.id, client: state.account, ...inputs });
  checkPrepared(prepared.typed_data, model);
  say("sign the request in your wallet…");
  const signature = await wallet().request({
    method: "eth_signTypedData_v4",
    params: [state.account, JSON.stringify(prepared.typed_data)],
  });
  say("signed; the providers are answering…");
  const sealing = $("seal").checked ? await newResultKey() : null;
  const reply = await api("POST", "/v1/inference", {
    model: model.id,
    ...inputs,
    client: state.account,
    nonce: prepared.nonce,
    deadline: prepared.deadline,
    max_fee: prepared.max_fee,
    signature,
    ...(sealing ? { encrypt_to: toHex(sealing.publicKey) } : {}),
  });
  const replies = "results" in reply ? reply.results : [reply];
  const answers = [];
  for (const one of replies) {
    const answer = sealing ? await openSealed(sealing, one.sealed, one.request_id, one.row ?? 0) : one;
    answer.sealed = Boolean(sealing);
    answers.push(answer);
  }
  return answers;
}

async function ask() {
  const model = selectedModel();
  if (!model) throw new Error("the gateway serves no model yet");
  const [answer] = await send(model, readInputs(model));
  addAnswer(model, answer);
  say(`request ${answer.request_id}: ${describe(answer)}`, "ok");
  await refreshAccount();
}

// A CSV with a header row: the model's features by name, other columns ignored.
export function parseCsv(text, features) {
  return rowsOf(analysis.parseTable(text), features);
}

function rowsOf(table, features) {
  const missing = features.find((name) => !table.header.includes(name));
  if (missing) throw new Error(`the CSV has no column ${missing}`);
  const index = features.map((name) => table.header.indexOf(name));
  return table.cells.map((cells, i) => {
    const row = {};
    features.forEach((name, k) => {
      row[name] = toNumber(cells[index[k]], `CSV line ${i + 2}, ${name}`);
    });
    return row;
  });
}

export function scoresCsv(answers, labels = null) {
  const head = "row,request_id,request_row,score,label" + (labels ? ",true_label" : "");
  const lines = answers.map((a, i) => `${i + 1},${a.request_id},${a.row},${a.score},${a.label}` + (labels ? `,${labels[i]}` : ""));
  return [head, ...lines].join("\n") + "\n";
}

// A chosen file: read its header now, so that the label column can be picked.
async function chooseCsv() {
  const select = $("label-column");
  select.replaceChildren(new Option("none", ""));
  const model = selectedModel();
  const file = $("csv").files[0];
  if (!file || !model || model.kind === "statistic") return;
  state.status = "csv-status";
  const table = analysis.parseTable(await file.text());
  const classes = (model.card && model.card.classes) || {};
  for (const name of table.header.filter((n) => !model.features.includes(n))) {
    if (analysis.labelsOf(table, name, classes) !== null) select.add(new Option(name, name));
  }
  select.value = analysis.guessLabelColumn(table, model.features, classes) || "";
  say(`${table.cells.length} rows` + (select.value ? `; true labels in column ${select.value}` : "; no label column"));
}

async function askCsv() {
  const model = selectedModel();
  if (!model || model.kind === "statistic") throw new Error("pick a scoring model first");
  const file = $("csv").files[0];
  if (!file) throw new Error("choose a CSV file first");
  const table = analysis.parseTable(await file.text());
  const rows = rowsOf(table, model.features);
  const column = $("label-column").value;
  const labels = column ? analysis.labelsOf(table, column, (model.card && model.card.classes) || {}) : null;
  if (column && !labels) throw new Error(`column ${column} holds other values than the labels 0 and 1`);
  // One signature covers one on-chain request: a longer file is signed in parts.
  const answers = [];
  for (let start = 0; start < rows.length; start += model.rows_per_request) {
    say(`rows ${start + 1}–${Math.min(rows.length, start + model.rows_per_request)} of ${rows.length}: sign in your wallet…`);
    answers.push(...(await send(model, { rows: rows.slice(start, start + model.rows_per_request) })));
  }
  renderBatch(model, answers, labels, column);
  const link = $("download");
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([scoresCsv(answers, labels)], { type: "text/csv" }));
  const ids = [...new Set(answers.map((a) => a.request_id))];
  link.download = `scores-${ids.join("-")}.csv`;
  link.hidden = false;
  say(`${answers.length} rows of ${file.name} answered in ${ids.length} on-chain request${ids.length > 1 ? "s" : ""} (${ids.join(", ")})`, "ok");
  await refreshAccount();
}

// The batch: one compact table (a request link per row, a receipt per request), the
// score histogram and, with true labels, accuracy, AUC, ROC and calibration.
function renderBatch(model, answers, labels, column) {
  const card = model.card || {};
  const threshold = card.threshold ?? 0.5;
  const classes = card.classes || { 0: "0", 1: "1" };
  const scores = answers.map((a) => a.score);
  $("batch-section").hidden = false;
  const positives = answers.filter((a) => a.label === 1).length;
  $("batch-summary").textContent =
    `${answers.length} rows scored by ${model.name}: ${positives} labelled 1 (${classes[1]}, score ≥ ${threshold}), ` +
    `${answers.length - positives} labelled 0 (${classes[0]})` + (answers.some((a) => a.sealed) ? "; sealed to this page's key" : "");

  const receipts = $("receipts");
  receipts.replaceChildren();
  const perRequest = new Map();
  for (const a of answers) perRequest.set(a.request_id, [...(perRequest.get(a.request_id) || []), a]);
  for (const [id, rows] of perRequest) {
    const item = document.createElement("li");
    item.id = `receipt-${id}`;
    item.append(receipt(rows[0], rows.length));
    receipts.append(item);
  }

  const body = $("batch-table").tBodies[0];
  body.replaceChildren();
  $("batch-table").classList.toggle("labelled", Boolean(labels));
  answers.forEach((a, i) => {
    const row = body.insertRow();
    row.dataset.requestId = a.request_id;
    const cells = [String(i + 1), a.score.toFixed(4), `${a.label} ${classes[a.label] || ""}`.trim(), labels ? String(labels[i]) : ""];
    for (const text of cells) row.insertCell().textContent = text;
    row.cells[3].className = "truth";
    if (labels && labels[i] !== a.label) row.className = "miss";
    const link = document.createElement("a");
    link.href = `#receipt-${a.request_id}`;
    link.textContent = String(a.request_id);
    row.insertCell().append(link);
  });

  const metrics = $("metrics");
  metrics.hidden = !labels;
  $("roc-figure").hidden = !labels;
  $("calibration-figure").hidden = !labels;
  let auc = null;
  if (labels) {
    const acc = analysis.accuracy(labels, scores, threshold);
    auc = analysis.rocAuc(labels, scores);
    metrics.dataset.accuracy = String(acc);
    metrics.dataset.auc = auc === null ? "" : String(auc);
    metrics.dataset.labelColumn = column;
    $("metric-accuracy").textContent = `${acc.toFixed(4)} (label at score ≥ ${threshold}, against column ${column})`;
    $("metric-auc").textContent = auc === null ? "undefined: the labels hold one class only" : auc.toFixed(4);
    const ones = labels.filter((y) => y === 1).length;
    $("metric-counts").textContent = `${labels.length} rows, ${ones} with true label 1 (${classes[1]})`;
  }
  $("plots-missing").hidden = chartsAvailable();
  if (!chartsAvailable()) return;
  drawHistogram("plot-histogram", analysis.histogram(scores, 20), threshold);
  if (labels && auc !== null) {
    drawRoc("plot-roc", analysis.rocCurve(labels, scores), auc);
    drawCalibration("plot-calibration", analysis.calibration(labels, scores, 10));
  }
}

// One action at a time (the page shows it is busy; clicks meanwhile are ignored);
// its messages and failures appear next to its button.
function action(button, fn, status = `${button}-status`) {
  $(button).addEventListener("click", async () => {
    if (state.busy) return;
    state.busy = true;
    state.status = status;
    for (const el of document.querySelectorAll(".status")) if (el.id !== status && el.id !== "load-status") el.textContent = "";
    document.body.setAttribute("aria-busy", "true");
    $(button).setAttribute("aria-busy", "true");
    try {
      await fn();
    } catch (error) {
      say(error instanceof ApiError ? error.message : walletError(error), "bad");
      refreshAccount().catch(() => {}); // a refusal may have changed quota or deposit
    } finally {
      state.busy = false;
      $(button).removeAttribute("aria-busy");
      document.body.removeAttribute("aria-busy");
    }
  });
}

async function load() {
  const [deployment, health, models] = await Promise.all([
    api("GET", "/v1/deployment"),
    fetch("/healthz").then((r) => r.json()),
    api("GET", "/v1/models"),
  ]);
  state.deployment = deployment;
  state.models = models.models;
  $("gateway-status").textContent = health.status === "ok" ? `ready (epoch ${health.epoch}, TEE ${health.tee})` : `not ready: ${health.stage}`;
  $("gateway-status").className = health.status === "ok" ? "ok" : "bad";
  $("chain-id").textContent = String(deployment.chain_id);
  $("gateway-contract").textContent = deployment.contracts.InferenceGateway;
  for (const model of state.models) $("model").add(new Option(`${model.name} (#${model.id}, ${model.kind})`, String(model.id)));
  renderInputs();
  $("model").addEventListener("change", () => {
    renderInputs();
    chooseCsv().catch(() => {});
  });
  $("csv").addEventListener("change", () => chooseCsv().catch((error) => say(error.message, "bad")));
  await newResultKey().catch(() => {
    $("seal").checked = false;
    $("seal").disabled = true;
    $("seal-label").textContent += " (this browser has no X25519 in WebCrypto: answers come unsealed)";
  });
  action("connect", connect);
  action("ask", ask);
  action("ask-csv", askCsv, "csv-status");
  action("deposit", deposit);
  action("fill", fill);
  if (window.ethereum && window.ethereum.on) {
    window.ethereum.on("accountsChanged", (accounts) => {
      state.account = accounts[0] || null;
      $("account").textContent = state.account || "not connected";
      for (const id of ["ask", "ask-csv", "deposit"]) $(id).disabled = !state.account;
      refreshAccount().catch((error) => {
        state.status = "connect-status";
        say(error.message, "bad");
      });
    });
  }
  document.body.dataset.ready = "true";
}

load().catch((error) => say(`could not load the gateway: ${error.message}`, "bad"));
