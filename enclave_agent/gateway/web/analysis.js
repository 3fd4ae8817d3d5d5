// What an analyst computes from a batch of answers, in the page: the score
// histogram and, when the CSV carries true labels, accuracy at the model's
// threshold, ROC AUC (with ties counted half, as scikit-learn's roc_auc_score), the
// ROC curve and a calibration table. Pure functions: no DOM, no network.

// A CSV with a header row: the model's features by name; the other columns are kept
// (as text) so that a label column can be picked from them.
export function parseTable(text) {
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== "");
  if (lines.length < 2) throw new Error("the CSV needs a header row and at least one row");
  const header = lines[0].split(",").map((name) => name.trim().replace(/^"(.*)"$/, "$1"));
  const cells = lines.slice(1).map((line, i) => {
    const row = line.split(",").map((cell) => cell.trim());
    if (row.length !== header.length) {
      throw new Error(`CSV line ${i + 2}: ${row.length} cells, the header has ${header.length}`);
    }
    return row;
  });
  return { header, cells };
}

// The values of a label column as 0/1: the numbers 0 and 1, or the class names of
// the model card ("benign" -> 1). null if any cell is neither.
export function labelsOf(table, column, classes = {}) {
  const index = table.header.indexOf(column);
  if (index < 0) return null;
  const byName = new Map(Object.entries(classes).map(([label, name]) => [String(name).toLowerCase(), Number(label)]));
  const labels = [];
  for (const row of table.cells) {
    const cell = row[index].replace(/^"(.*)"$/, "$1").trim();
    if (cell === "0" || cell === "1" || cell === "0.0" || cell === "1.0") labels.push(Number(cell));
    else if (byName.has(cell.toLowerCase())) labels.push(byName.get(cell.toLowerCase()));
    else return null;
  }
  return labels;
}

// The column that holds labels: a non-feature column named like one, else the only
// non-feature column whose cells are all labels. null if none (or ambiguous).
export function guessLabelColumn(table, features, classes = {}) {
  const others = table.header.filter((name) => !features.includes(name));
  const usable = others.filter((name) => labelsOf(table, name, classes) !== null);
  const named = usable.find((name) => /^(target|label|labels|y|class|outcome|diagnosis)$/i.test(name));
  if (named) return named;
  return usable.length === 1 ? usable[0] : null;
}

export function accuracy(labels, scores, threshold) {
  let right = 0;
  for (let i = 0; i < labels.length; i++) right += Number(scores[i] >= threshold) === labels[i] ? 1 : 0;
  return right / labels.length;
}

// Area under the ROC curve: the probability that a random positive scores above a
// random negative, ties counting one half (Mann-Whitney U over average ranks).
export function rocAuc(labels, scores) {
  const positives = labels.filter((y) => y === 1).length;
  const negatives = labels.length - positives;
  if (positives === 0 || negatives === 0) return null; // undefined with one class
  const order = scores.map((s, i) => i).sort((a, b) => scores[a] - scores[b]);
  let rankSum = 0;
  for (let start = 0; start < order.length; ) {
    let end = start;
    while (end + 1 < order.length && scores[order[end + 1]] === scores[order[start]]) end++;
    const rank = (start + end) / 2 + 1; // average rank of the tied block (1-based)
    for (let k = start; k <= end; k++) if (labels[order[k]] === 1) rankSum += rank;
    start = end + 1;
  }
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

// ROC points (false positive rate, true positive rate), one per distinct score from
// the highest down, starting at (0, 0).
export function rocCurve(labels, scores) {
  const positives = labels.filter((y) => y === 1).length;
  const negatives = labels.length - positives;
  const order = scores.map((s, i) => i).sort((a, b) => scores[b] - scores[a]);
  const points = [{ x: 0, y: 0 }];
  let tp = 0;
  let fp = 0;
  for (let k = 0; k < order.length; k++) {
    if (labels[order[k]] === 1) tp++;
    else fp++;
    const last = k + 1 === order.length || scores[order[k + 1]] !== scores[order[k]];
    if (last) points.push({ x: negatives ? fp / negatives : 0, y: positives ? tp / positives : 0 });
  }
  return points;
}

// Calibration: rows grouped into `bins` equal-width score bins; per non-empty bin
// the mean score, the observed fraction of label 1 and the count.
export function calibration(labels, scores, bins = 10) {
  const sums = Array.from({ length: bins }, () => ({ score: 0, positive: 0, count: 0 }));
  scores.forEach((s, i) => {
    const bin = sums[Math.min(bins - 1, Math.max(0, Math.floor(s * bins)))];
    bin.score += s;
    bin.positive += labels[i];
    bin.count += 1;
  });
  return sums.filter((b) => b.count > 0).map((b) => ({ predicted: b.score / b.count, observed: b.positive / b.count, count: b.count }));
}

// Counts of scores in `bins` equal-width bins over [0, 1].
export function histogram(scores, bins = 20) {
  const counts = new Array(bins).fill(0);
  for (const s of scores) counts[Math.min(bins - 1, Math.max(0, Math.floor(s * bins)))]++;
  return counts.map((count, i) => ({ from: i / bins, to: (i + 1) / bins, count }));
}
