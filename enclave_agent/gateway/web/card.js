// The model card: what the chosen model or statistic is, where it came from and how
// to read its answers (GET /v1/models: features, units, the input range the
// providers published, training rounds and their contributors, link, threshold and
// the meaning of the classes). Built with DOM nodes only: no HTML from the gateway.

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function definitions(pairs) {
  const dl = el("dl");
  for (const [term, value, id] of pairs) {
    const dd = el("dd", value);
    if (id) dd.id = id;
    dl.append(el("dt", term), dd);
  }
  return dl;
}

export function formatBound(bound) {
  if (bound === undefined || bound === null) return "not published yet";
  if (bound === 0) return "none (the model answers no value)";
  const text = bound.toLocaleString("en", { maximumSignificantDigits: 15 });
  return `−${text} … ${text}`;
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "–";
}

function roundsTable(rounds) {
  const table = el("table");
  table.id = "card-rounds";
  const head = table.createTHead().insertRow();
  for (const name of ["round", "purpose", "state", "contributors", "completed"]) head.append(el("th", name));
  const body = table.createTBody();
  for (const r of rounds) {
    const row = body.insertRow();
    row.dataset.roundId = r.id;
    const names = (r.contributors || []).map((c) => c.organisation).sort().join(", ");
    const cells = [`#${r.id}`, r.purpose, r.status, names ? `${r.contributors.length} of ${r.participants}: ${names}` : "–", when(r.completed_at)];
    for (const text of cells) row.append(el("td", text));
  }
  return table;
}

function featuresTable(model) {
  const card = model.card || {};
  const bounds = model.input_range ? model.input_range.bounds : null;
  const table = el("table");
  table.id = "card-features";
  const head = table.createTHead().insertRow();
  const columns = model.kind === "statistic" ? ["column", "unit"] : ["feature", "unit", "accepted values"];
  for (const name of columns) head.append(el("th", name));
  const body = table.createTBody();
  for (const name of model.features) {
    const row = body.insertRow();
    row.dataset.feature = name;
    row.append(el("td", name, "mono"), el("td", (card.units || {})[name] || "–"));
    if (model.kind !== "statistic") {
      const bound = bounds ? bounds[name] : null;
      const cell = el("td", formatBound(bound), "bound");
      if (bound !== null && bound !== undefined) cell.dataset.bound = String(bound);
      row.append(cell);
    }
  }
  return table;
}

export function renderCard(box, model, formatFee) {
  box.replaceChildren();
  if (!model) return;
  const card = model.card || {};
  box.append(el("h3", `${model.name} (#${model.id})`));
  if (card.description) box.append(el("p", card.description, "lede"));
  if (model.kind === "statistic") {
    box.append(
      definitions([
        ["Answers", "sum, mean, std and count of one column over every contributor's rows"],
        ["std", (card.values || {}).std || "–"],
        ["Released", card.min_contributors ? `only with at least ${card.min_contributors} contributors` : "–"],
        ["Fee", formatFee(model.fee_wei)],
      ]),
    );
  } else {
    const classes = card.classes || { 0: "class 0", 1: "class 1" };
    box.append(
      definitions([
        ["Score", `the probability that the row is ${classes[1]} (class 1), as the model estimates it (${card.link || "logistic"} link of a linear score)`, "card-score"],
        ["Label", `1 (${classes[1]}) when the score is at least ${card.threshold}, else 0 (${classes[0]})`, "card-label"],
        ["Link", card.link || "–"],
        ["Fee", `${formatFee(model.fee_wei)} per row; ${model.rows_per_request} rows per signed request`],
      ]),
    );
  }
  const details = el("details");
  details.open = model.features.length <= 12;
  details.append(el("summary", `${model.features.length} ${model.kind === "statistic" ? "columns" : "features"}, units${model.kind === "statistic" ? "" : " and accepted range"}`));
  details.append(featuresTable(model));
  box.append(details);
  if (card.rounds && card.rounds.length) {
    box.append(el("h4", "Made by"), roundsTable(card.rounds));
  }
}
