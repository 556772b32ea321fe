// The Node.js pingers' result line: p50, p99 and mean of the round trips in µs (nearest
// rank), as percentiles() in benchmarks/floor/__init__.py computes them for Python's.
export function printPercentiles(rttsNs) {
  const rtts = [...rttsNs].sort((a, b) => a - b)
  const rank = (p) => rtts[Math.min(rtts.length - 1, Math.max(0, Math.round(p * rtts.length) - 1))] / 1000
  const mean = rtts.reduce((a, b) => a + b, 0) / rtts.length / 1000
  process.stdout.write(JSON.stringify({ p50_us: rank(0.5), p99_us: rank(0.99), mean_us: mean }) + '\n')
}
