// Accuracy and ROC AUC as MedMNIST v2 reports them: AUC by the rank-sum (Mann–Whitney U) formula with
// ties averaged; macro one-vs-rest for more than two classes.

/** ROC AUC of `scores` for the positives marked in `positive`. */
export function binaryAuc(scores: readonly number[], positive: readonly boolean[]): number {
  const order = scores.map((score, index) => ({ score, index })).sort((a, b) => a.score - b.score);
  const ranks = new Float64Array(scores.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]?.score === order[i]?.score) {
      j++;
    }
    for (let k = i; k <= j; k++) {
      ranks[order[k]?.index ?? 0] = (i + j) / 2 + 1;
    }
    i = j + 1;
  }
  const positives = positive.filter(Boolean).length;
  const negatives = positive.length - positives;
  if (positives === 0 || negatives === 0) {
    return Number.NaN;
  }
  let rankSum = 0;
  positive.forEach((isPositive, index) => {
    if (isPositive) {
      rankSum += ranks[index] ?? 0;
    }
  });
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

export interface ClassificationMetrics {
  readonly n: number;
  readonly acc: number;
  readonly auc: number;
}

/** `probabilities[i]` is image i's probability per class; `labels[i]` its true class. */
export function classificationMetrics(
  probabilities: readonly (readonly number[])[],
  labels: readonly number[],
): ClassificationMetrics {
  const classes = probabilities[0]?.length ?? 0;
  let correct = 0;
  probabilities.forEach((row, i) => {
    if (row.indexOf(Math.max(...row)) === labels[i]) {
      correct++;
    }
  });
  const auc =
    classes === 2
      ? binaryAuc(
          probabilities.map((row) => row[1] ?? 0),
          labels.map((label) => label === 1),
        )
      : Array.from({ length: classes }, (_, c) =>
          binaryAuc(
            probabilities.map((row) => row[c] ?? 0),
            labels.map((label) => label === c),
          ),
        ).reduce((sum, value) => sum + value, 0) / classes;
  return { n: labels.length, acc: labels.length === 0 ? 0 : correct / labels.length, auc };
}
